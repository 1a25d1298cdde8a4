"""Figures shared by the notebooks (matplotlib/seaborn), sized for GitHub rendering.

Figures with one mark per language switch, above :data:`MANY` languages (the
200-language SIB-200 profiles), from per-language bars and legends to sorted
profiles with the extremes named and colours per language family, so that
they keep a fixed, readable size.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

MANY = 40  # languages above which per-language bars, ticks and legends give way to summaries
N_FAMILIES = 9  # families shown by colour when there are many languages; the rest are "other"


def _named_extremes(ax, values, labels, *, k: int = 5, fmt: str = ".2f", high: str = "highest", low: str = "lowest",
                    loc: tuple[float, float] = (0.98, 0.97), ha: str = "right") -> None:
    """List the ``k`` highest and ``k`` lowest ``values`` with their labels in a box in the axes' corner."""
    s = pd.Series(np.asarray(values, float), index=list(labels)).dropna().sort_values()
    def line(part: pd.Series) -> str:
        return ", ".join(f"{name} {format(v, fmt)}" for name, v in part.items())

    text = f"{high}: {line(s.iloc[::-1].head(k))}\n{low}: {line(s.head(k))}"
    ax.text(*loc, text, transform=ax.transAxes, ha=ha, va="top", fontsize=7,
            bbox=dict(boxstyle="round", fc="white", ec="0.8", alpha=0.9))


def _thin_ticks(ax, labels, axis: str = "x", max_ticks: int = MANY) -> None:
    """Label at most ``max_ticks`` of the positions ``0..len(labels)-1``, evenly spaced."""
    step = max(1, math.ceil(len(labels) / max_ticks))
    pos = list(range(0, len(labels), step))
    names = [labels[i] for i in pos]
    if axis == "x":
        ax.set_xticks(pos, names, rotation=90, fontsize=6)
    else:
        ax.set_yticks(pos, names, fontsize=6)


def family_groups(targets: list[str], families: dict[str, str], n: int = N_FAMILIES) -> dict[str, str]:
    """Each target's family, keeping the ``n`` commonest among ``targets`` and calling the rest ``other``.

    Ties in frequency are broken by name, so the grouping is deterministic.
    """
    fams = pd.Series([families.get(t) or "unknown" for t in targets])
    counts = fams.value_counts()
    keep = set(sorted(counts.index, key=lambda f: (-counts[f], f))[:n])
    return {t: (f if f in keep else "other") for t, f in zip(targets, fams)}


def _family_colours(groups: dict[str, str]) -> dict[str, tuple]:
    """A colour per family group (commonest first), grey for ``other``."""
    counts = pd.Series(list(groups.values())).value_counts()
    names = sorted((f for f in counts.index if f != "other"), key=lambda f: (-counts[f], f))
    palette = plt.get_cmap("tab10")
    out = {f: palette(i % 10) for i, f in enumerate(names)}
    out["other"] = (0.6, 0.6, 0.6, 1.0)
    return out


def accuracy_bars(summary: pd.DataFrame, chance: float, title: str = "Zero-shot accuracy per target language"):
    """Bar chart of accuracy with bootstrap CIs, one panel per source, sorted by accuracy.

    Args:
        summary: ``source, target, accuracy, ci_low, ci_high`` (from transfer.accuracy_summary).
    """
    sources = summary["source"].unique()
    if summary["target"].nunique() > MANY:
        return _accuracy_profile(summary, chance, title)
    fig, axes = plt.subplots(len(sources), 1, figsize=(max(6, 0.45 * summary["target"].nunique() + 2),
                                                        3.2 * len(sources)), squeeze=False)
    for ax, source in zip(axes[:, 0], sources):
        d = summary[summary["source"] == source].sort_values("accuracy", ascending=False)
        x = np.arange(len(d))
        colors = ["#d95f02" if t == source else "#1b9e77" for t in d["target"]]
        ax.bar(x, d["accuracy"], color=colors)
        ax.errorbar(x, d["accuracy"], yerr=[d["accuracy"] - d["ci_low"], d["ci_high"] - d["accuracy"]],
                    fmt="none", ecolor="black", capsize=2, lw=1)
        ax.axhline(chance, ls="--", c="grey", lw=1)
        ax.set_xticks(x, d["target"], rotation=90 if len(d) > 25 else 0, fontsize=7 if len(d) > 25 else 9)
        ax.set(ylabel="accuracy", ylim=(0, 1), title=f"{title} (source {source}; orange = source)")
    fig.tight_layout()
    return fig


def _accuracy_profile(summary: pd.DataFrame, chance: float, title: str):
    """Many languages: accuracy sorted from best to worst with its CI band, extremes named; and a histogram."""
    sources = summary["source"].unique()
    fig, axes = plt.subplots(len(sources), 2, figsize=(12, 3.6 * len(sources)), squeeze=False,
                             gridspec_kw={"width_ratios": [4, 1]})
    for (ax, hist), source in zip(axes, sources):
        d = summary[summary["source"] == source].sort_values("accuracy", ascending=False).reset_index(drop=True)
        x = np.arange(len(d))
        ax.fill_between(x, d["ci_low"], d["ci_high"], color="#1b9e77", alpha=0.25, lw=0, label="95% CI")
        ax.plot(x, d["accuracy"], color="#1b9e77", lw=1.2, label="accuracy")
        src = d.index[d["target"] == source]
        ax.scatter(src, d.loc[src, "accuracy"], color="#d95f02", zorder=3, s=25, label=f"source {source}")
        _named_extremes(ax, d["accuracy"], d["target"], high="best", low="worst")
        ax.axhline(chance, ls="--", c="grey", lw=1, label="chance")
        ax.set(ylabel="accuracy", ylim=(0, 1), xlabel=f"target languages, best to worst (n = {len(d)})",
               title=f"{title} (source {source})")
        ax.legend(fontsize=8, loc="lower left")
        hist.hist(d["accuracy"], bins=20, range=(0, 1), orientation="horizontal", color="#1b9e77")
        hist.axhline(chance, ls="--", c="grey", lw=1)
        hist.set(ylim=(0, 1), xlabel="languages", title="distribution")
    fig.tight_layout()
    return fig


def token_lengths(lengths: pd.DataFrame, fertility: pd.DataFrame, max_length: int):
    """Tokens per item per language (box plots, or quartile bands above :data:`MANY` languages) and fertility.

    Args:
        lengths: ``language, tokens``, one row per item.
        fertility: ``language, median_tokens, tokens_per_char`` (from tokens.token_table).
        max_length: the truncation length, drawn as a dashed line.
    """
    import seaborn as sns

    order = fertility.sort_values("median_tokens")["language"].tolist()
    fert = fertility.sort_values("tokens_per_char")
    fig, axes = plt.subplots(1, 2, figsize=(11 if len(order) <= MANY else 12, 3.6),
                             gridspec_kw={"width_ratios": [2, 1]})
    if len(order) <= MANY:
        sns.boxplot(lengths, x="language", y="tokens", order=order, ax=axes[0], fliersize=1, color="#9ecae1")
        axes[0].tick_params(axis="x", rotation=90 if len(order) > 20 else 0)
        sns.barplot(fert, y="language", x="tokens_per_char", ax=axes[1], color="#3182bd")
        axes[1].tick_params(axis="y", labelsize=6 if len(order) > 30 else 9)
        axes[0].set(xlabel="")
        axes[1].set(ylabel="")
    else:
        q = lengths.groupby("language")["tokens"].quantile([0.25, 0.5, 0.75]).unstack().reindex(order)
        x = np.arange(len(q))
        axes[0].fill_between(x, q[0.25], q[0.75], color="#9ecae1", lw=0, label="quartiles")
        axes[0].plot(x, q[0.5], color="#3182bd", lw=1.2, label="median")
        _named_extremes(axes[0], q[0.5], q.index, k=4, fmt=".0f", loc=(0.02, 0.97), ha="left")
        axes[0].legend(fontsize=8, loc="lower right")
        axes[0].set(xlabel=f"languages, by median length (n = {len(q)})")
        y = np.arange(len(fert))
        axes[1].plot(fert["tokens_per_char"], y, color="#3182bd", lw=1.2)
        _named_extremes(axes[1], fert["tokens_per_char"], fert["language"], k=3, loc=(0.02, 0.97), ha="left")
        axes[1].set(ylabel=f"languages, by fertility (n = {len(fert)})", yticks=[])
    axes[0].axhline(max_length, ls="--", c="grey", lw=1)
    axes[0].set(title="Tokens per evaluation item", ylabel="tokens")
    axes[1].set(title="Fertility (tokens per character)", xlabel="tokens per character")
    fig.tight_layout()
    return fig


def intervention_gains(gains: pd.DataFrame, distance: pd.Series, close: list[str], distant: list[str],
                       title: str = "Gain over full fine-tuning per target"):
    """Gain per target, sorted by distance to the source, with bootstrap CIs; one panel per condition.

    Args:
        gains: ``condition, target, gain, ci_low, ci_high`` (from intervention.gain_table).
        distance: distance of each target to the source (index: language).
        close, distant: the two halves (coloured green / purple).
    """
    conds = [c for c in gains["condition"].unique() if c != "full"]
    order = [t for t in distance.sort_values().index if t in set(close) | set(distant)]
    if len(order) > MANY:
        return _gains_scatter(gains, distance, conds, order, set(distant), title)
    fig, axes = plt.subplots(1, len(conds), figsize=(max(4, 0.35 * len(order) + 1.5) * len(conds), 3.4),
                             squeeze=False, sharey=True)
    for ax, cond in zip(axes[0], conds):
        d = gains[gains["condition"] == cond].set_index("target").reindex(order)
        x = np.arange(len(order))
        colors = ["#7570b3" if t in distant else "#1b9e77" for t in order]
        ax.bar(x, d["gain"], color=colors)
        ax.errorbar(x, d["gain"], yerr=[d["gain"] - d["ci_low"], d["ci_high"] - d["gain"]], fmt="none",
                    ecolor="black", capsize=2, lw=1)
        ax.axhline(0, c="grey", lw=1)
        ax.set_xticks(x, [f"{t}\n{distance[t]:.2f}" for t in order], fontsize=7 if len(order) > 10 else 9)
        ax.set(title=f"{cond} - full", xlabel="target (distance to source)")
    axes[0, 0].set_ylabel("accuracy gain")
    fig.suptitle(f"{title} (green: close half, purple: distant half)", fontsize=10)
    fig.tight_layout()
    return fig


def _gains_scatter(gains: pd.DataFrame, distance: pd.Series, conds: list[str], order: list[str], distant: set,
                   title: str):
    """Many languages: gain against distance per condition, with CIs and the mean gain per distance decile."""
    fig, axes = plt.subplots(1, len(conds), figsize=(4.6 * len(conds) + 0.6, 3.6), squeeze=False, sharey=True)
    for ax, cond in zip(axes[0], conds):
        d = gains[gains["condition"] == cond].set_index("target").reindex(order)
        d["distance"] = distance.reindex(order).to_numpy()
        colors = ["#7570b3" if t in distant else "#1b9e77" for t in order]
        ax.errorbar(d["distance"], d["gain"], yerr=[d["gain"] - d["ci_low"], d["ci_high"] - d["gain"]], fmt="none",
                    ecolor="grey", alpha=0.3, lw=0.6)
        ax.scatter(d["distance"], d["gain"], c=colors, s=10, zorder=3)
        bins = pd.qcut(d["distance"].rank(method="first"), 10, labels=False)
        means = d.groupby(bins).agg(distance=("distance", "mean"), gain=("gain", "mean"))
        ax.plot(means["distance"], means["gain"], color="black", lw=1.5, marker="o", ms=3, label="decile mean")
        ax.axhline(0, c="grey", lw=1)
        ax.set(title=f"{cond} - full (n = {d['gain'].notna().sum()})", xlabel="distance to source")
        ax.legend(fontsize=8)
    axes[0, 0].set_ylabel("accuracy gain")
    fig.suptitle(f"{title} (green: close half, purple: distant half)", fontsize=10)
    fig.tight_layout()
    return fig


def gap_summary(gaps: pd.DataFrame, title: str = "Does freezing narrow the gap to distant languages?"):
    """Mean gain on the close vs the distant half per condition, and each gap change with its CI.

    Args:
        gaps: ``comparison, baseline, close, distant, gap_change, ci_low, ci_high``
            (from intervention.gap_table).
    """
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), gridspec_kw={"width_ratios": [1, 1.2]})
    vs_full = gaps[gaps["baseline"] == "full"]
    x = np.arange(len(vs_full))
    axes[0].bar(x - 0.2, vs_full["close"], 0.4, color="#1b9e77", label="close half")
    axes[0].bar(x + 0.2, vs_full["distant"], 0.4, color="#7570b3", label="distant half")
    axes[0].axhline(0, c="grey", lw=1)
    axes[0].set_xticks(x, vs_full["condition"])
    axes[0].set(ylabel="mean gain over full", title="Mean gain per half")
    axes[0].legend(fontsize=8)
    y = np.arange(len(gaps))[::-1]
    axes[1].errorbar(gaps["gap_change"], y, xerr=[gaps["gap_change"] - gaps["ci_low"], gaps["ci_high"] - gaps["gap_change"]],
                     fmt="o", color="black", capsize=3)
    axes[1].axvline(0, c="grey", lw=1, ls="--")
    axes[1].set_yticks(y, gaps["comparison"])
    axes[1].set(xlabel="distant-half gain minus close-half gain (95% CI)", title="Gap change (> 0: gap narrows)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


# -- drift (notebook 04) --------------------------------------------------------------
def _family_styles(targets: list[str], families: dict[str, str]) -> dict[str, dict]:
    """Colour per genealogical family, line style and marker varying within a family."""
    fams = list(dict.fromkeys(families.get(t) or "unknown" for t in targets))
    palette = plt.get_cmap("tab10" if len(fams) <= 10 else "tab20")
    seen: dict[str, int] = {}
    styles = {}
    for t in targets:
        f = families.get(t) or "unknown"
        k = seen[f] = seen.get(f, -1) + 1
        styles[t] = dict(color=palette(fams.index(f) % palette.N), ls=("-", "--", ":", "-.")[k % 4],
                         marker="osd^v<>"[k % 7], label=f"{t} ({f})")
    return styles


def _impact_scale(ax, values: np.ndarray) -> None:
    """Log y axis where every value is positive, else symmetric log: 0.9 and 0.01 both stay readable."""
    positive = values[values > 0]
    if len(positive) == len(values) and len(values):
        ax.set_yscale("log")
    elif len(positive):
        ax.set_yscale("symlog", linthresh=max(float(positive.min()), 1e-4))


def drift_profile(impact: pd.DataFrame, families: dict[str, str], metric: str, source: str):
    """Impact per layer, one line per language coloured by family; absolute (log y) and relative to the layer mean.

    Args:
        impact: ``target, pooling, layer, impact`` for one source (from drift.mean_impact).
        families: family of each target (from languages.csv).
    """
    poolings = list(dict.fromkeys(impact["pooling"]))
    targets = list(dict.fromkeys(impact["target"]))
    if len(targets) > MANY:
        return _drift_by_family(impact, families, metric, source, poolings, targets)
    styles = _family_styles(targets, families)
    fig, axes = plt.subplots(2, len(poolings), figsize=(5.0 * len(poolings) + 2.4, 7.2), squeeze=False)
    for j, pooling in enumerate(poolings):
        d = impact[impact["pooling"] == pooling]
        layer_mean = d.groupby("layer")["impact"].mean()
        for t in targets:
            g = d[d["target"] == t].sort_values("layer")
            kw = dict(styles[t], lw=1.3, ms=3.5)
            axes[0, j].plot(g["layer"], g["impact"], **kw)
            axes[1, j].plot(g["layer"], g["impact"] / g["layer"].map(layer_mean), **kw)
        _impact_scale(axes[0, j], d["impact"].to_numpy())
        axes[0, j].set(title=f"{pooling}: impact = 1 - {metric}", ylabel="impact (log scale)")
        axes[1, j].axhline(1.0, c="grey", lw=0.8)
        axes[1, j].set(title=f"{pooling}: relative to the layer's mean over languages", xlabel="layer",
                       ylabel="impact / layer mean")
        for ax in axes[:, j]:
            ax.set_xticks(sorted(d["layer"].unique()))
            ax.grid(alpha=0.3)
    axes[0, -1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, title="language (family)")
    fig.suptitle(f"Drift per layer after fine-tuning on {source}", fontsize=11)
    fig.tight_layout()
    return fig


def _drift_by_family(impact: pd.DataFrame, families: dict[str, str], metric: str, source: str,
                     poolings: list[str], targets: list[str]):
    """Many languages: one thin line per language and a thick median line per family, coloured by family."""
    groups = family_groups(targets, families)
    colours = _family_colours(groups)
    counts = pd.Series(groups).value_counts()
    fig, axes = plt.subplots(2, len(poolings), figsize=(5.0 * len(poolings) + 2.8, 7.2), squeeze=False)
    for j, pooling in enumerate(poolings):
        d = impact[impact["pooling"] == pooling].copy()
        d["relative"] = d["impact"] / d["layer"].map(d.groupby("layer")["impact"].mean())
        d["family"] = d["target"].map(groups)
        for row, col in enumerate(("impact", "relative")):
            ax = axes[row, j]
            for t, g in d.groupby("target"):
                g = g.sort_values("layer")
                ax.plot(g["layer"], g[col], color=colours[groups[t]], lw=0.5, alpha=0.25)
            for fam in colours:
                g = d[d["family"] == fam].groupby("layer")[col].median()
                if len(g):
                    ax.plot(g.index, g.to_numpy(), color=colours[fam], lw=2.2,
                            label=f"{fam} ({counts.get(fam, 0)})")
            ax.set_xticks(sorted(d["layer"].unique()))
            ax.grid(alpha=0.3)
        _impact_scale(axes[0, j], d["impact"].to_numpy())
        axes[0, j].set(title=f"{pooling}: impact = 1 - {metric}", ylabel="impact (log scale)")
        axes[1, j].axhline(1.0, c="grey", lw=0.8)
        axes[1, j].set(title=f"{pooling}: relative to the layer's mean over languages", xlabel="layer",
                       ylabel="impact / layer mean")
    axes[0, -1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8,
                       title=f"family median (languages)\n{len(targets)} languages, thin lines")
    fig.suptitle(f"Drift per layer after fine-tuning on {source}", fontsize=11)
    fig.tight_layout()
    return fig


def _heat(ax, table: pd.DataFrame, norm, cmap: str, fmt: str):
    """``table`` (rows = layers) as an image, each cell annotated in black or white, whichever reads.

    Above :data:`MANY` columns, only evenly spaced column labels are written.
    """
    im = ax.imshow(table.to_numpy(), aspect="auto", cmap=cmap, norm=norm, origin="lower", interpolation="nearest")
    if table.shape[1] > MANY:
        _thin_ticks(ax, [str(c) for c in table.columns])
    else:
        ax.set_xticks(range(table.shape[1]), table.columns, rotation=90 if table.shape[1] > 12 else 0, fontsize=8)
    ax.set_yticks(range(table.shape[0]), table.index, fontsize=8)
    if table.size <= 400:
        for (i, j), v in np.ndenumerate(table.to_numpy()):
            if np.isfinite(v):
                r, g, b, _ = im.cmap(im.norm(v))
                ax.text(j, i, format(v, fmt), ha="center", va="center", fontsize=6,
                        color="white" if 0.299 * r + 0.587 * g + 0.114 * b < 0.5 else "black")
    return im


def _log_norm(values: np.ndarray):
    from matplotlib.colors import LogNorm

    positive = values[np.isfinite(values) & (values > 0)]
    if not len(positive):
        return LogNorm(vmin=1e-4, vmax=1.0)
    hi = float(positive.max())
    # Six decades at most: rounding noise near 0 (e.g. 1e-16) must not flatten the rest.
    lo = max(float(positive.min()), hi * 1e-6)
    return LogNorm(vmin=lo, vmax=max(hi, lo * 10))


def drift_heatmap(impact: pd.DataFrame, metric: str, source: str):
    """Layers x languages heatmaps per pooling: impact (log colour) and impact relative to the layer mean.

    The second row divides each cell by its layer's mean over languages, so
    differences between languages show at every depth, also where every
    language's impact is close to 1.

    Args:
        impact: ``target, pooling, layer, impact`` for one source.
    """
    from matplotlib.colors import TwoSlopeNorm

    poolings = list(dict.fromkeys(impact["pooling"]))
    order = impact.groupby("target")["impact"].mean().sort_values(ascending=False).index
    n_t, n_l = len(order), impact["layer"].nunique()
    width = max(4.5, 0.45 * n_t + 2.2) if n_t <= MANY else 9.0
    fig, axes = plt.subplots(2, len(poolings), figsize=(width * len(poolings), 0.72 * n_l + 3.2), squeeze=False)
    for j, pooling in enumerate(poolings):
        table = impact[impact["pooling"] == pooling].pivot(index="layer", columns="target", values="impact")[order]
        im = _heat(axes[0, j], table, _log_norm(table.to_numpy()), "magma_r", ".2g")
        axes[0, j].set(title=f"{pooling}: 1 - {metric} (log colour)", ylabel="layer")
        fig.colorbar(im, ax=axes[0, j], shrink=0.85)
        rel = table.div(table.mean(axis=1), axis=0)
        spread = max(float(np.nanmax(np.abs(rel.to_numpy() - 1.0))), 1e-3)
        im = _heat(axes[1, j], rel, TwoSlopeNorm(1.0, 1.0 - spread, 1.0 + spread), "PuOr_r", ".2f")
        axes[1, j].set(title=f"{pooling}: relative to the layer mean", xlabel="target language", ylabel="layer")
        fig.colorbar(im, ax=axes[1, j], shrink=0.85)
    fig.suptitle(f"Drift after fine-tuning on {source}: layers x languages", fontsize=11)
    fig.tight_layout()
    return fig


def alignment_vs_drift(change: pd.DataFrame, impact: pd.DataFrame, metric: str, source: str, pooling: str):
    """Alignment change (post - pre) and absolute drift side by side, plus one against the other.

    Args:
        change: ``target, pooling, layer, change`` (from drift.alignment_change), one source.
        impact: ``target, pooling, layer, impact``, one source.
    """
    from matplotlib.colors import TwoSlopeNorm

    ch = change[change["pooling"] == pooling].pivot(index="layer", columns="target", values="change")
    order = impact[impact["target"].isin(ch.columns)].groupby("target")["impact"].mean().sort_values(
        ascending=False).index
    ch = ch[order]
    im_ = impact[impact["pooling"] == pooling].pivot(index="layer", columns="target", values="impact")
    im_ = im_.loc[ch.index, order]
    width = max(4.0, 0.38 * len(order) + 1.8) if len(order) <= MANY else 8.0
    fig, axes = plt.subplots(1, 3, figsize=(2 * width + 4.5, 0.36 * len(ch) + 2.4),
                             gridspec_kw={"width_ratios": [width, width, 4.5]})
    bound = max(float(np.nanmax(np.abs(ch.to_numpy()))), 1e-6)
    im0 = _heat(axes[0], ch, TwoSlopeNorm(0.0, -bound, bound), "RdBu", "+.2g")
    axes[0].set(title=f"alignment with {source}: post - pre", xlabel="target language", ylabel="layer")
    fig.colorbar(im0, ax=axes[0], shrink=0.85)
    im1 = _heat(axes[1], im_, _log_norm(im_.to_numpy()), "magma_r", ".2g")
    axes[1].set(title="absolute drift (impact, log colour)", xlabel="target language")
    fig.colorbar(im1, ax=axes[1], shrink=0.85)
    cells = ch.stack().rename("change").reset_index().merge(im_.stack().rename("impact").reset_index())
    sc = axes[2].scatter(cells["impact"], cells["change"], c=cells["layer"], cmap="viridis", s=14)
    if (cells["impact"] > 0).all():
        axes[2].set_xscale("log")
    axes[2].axhline(0.0, c="grey", lw=0.8)
    axes[2].set(xlabel="absolute drift (impact)", ylabel="alignment change", title="per (language, layer)")
    fig.colorbar(sc, ax=axes[2], label="layer", shrink=0.85)
    fig.suptitle(f"{pooling}, {metric}: alignment with the source vs absolute drift", fontsize=11)
    fig.tight_layout()
    return fig


def umap_panels(points: pd.DataFrame, families: dict[str, str], pooling: str):
    """UMAP of item representations coloured by language: one row per layer, pre | post.

    Args:
        points: ``state, layer, target, x, y`` (from drift.umap_points).
    """
    layers = sorted(points["layer"].unique())
    targets = list(dict.fromkeys(points["target"]))
    many = len(targets) > MANY
    if many:  # one colour per family: hundreds of language colours cannot be told apart
        groups = family_groups(targets, families)
        colours = _family_colours(groups)
        keys, key_of = list(colours), groups
        counts = pd.Series(groups).value_counts()
        label = {f: f"{f} ({counts.get(f, 0)} languages)" for f in keys}
    else:
        palette = plt.get_cmap("tab10" if len(targets) <= 10 else "tab20")
        colours = {t: palette(k % palette.N) for k, t in enumerate(targets)}
        keys, key_of = targets, {t: t for t in targets}
        label = {t: f"{t} ({families.get(t) or 'unknown'})" for t in targets}
    fig, axes = plt.subplots(len(layers), 2, figsize=(9.5, 3.9 * len(layers)), squeeze=False)
    for i, layer in enumerate(layers):
        for j, state in enumerate(("pre", "post")):
            ax = axes[i, j]
            d = points[(points["layer"] == layer) & (points["state"] == state)]
            for key in keys:
                g = d[d["target"].map(key_of) == key]
                ax.scatter(g["x"], g["y"], s=4, alpha=0.7, color=colours[key], label=label[key])
            ax.set(title=f"layer {layer}, {state}", xticks=[], yticks=[])
    axes[0, 1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, markerscale=3,
                      title="family" if many else "language (family)")
    fig.suptitle(f"UMAP of item representations ({pooling} pooling), coloured by "
                 f"{'family' if many else 'language'}", fontsize=11)
    fig.tight_layout()
    return fig


# -- correlations (notebook 05) --------------------------------------------------------
def _marks(p: float) -> str:
    """The paper's significance marks: ** for p <= .01, * for p <= .05."""
    return "**" if p <= 0.01 else "*" if p <= 0.05 else ""


def _panels(corr: pd.DataFrame, panels: tuple[str, ...]) -> tuple[list, list, list]:
    """Values of the (up to two) panel keys: grid rows, grid columns, and the (row, column) keys present."""
    first = sorted(set(corr[panels[0]]), key=str) if panels else [None]
    second = sorted(set(corr[panels[1]]), key=str) if len(panels) > 1 else [None]
    return first, second, [(a, b) for a in first for b in second]


def _panel_rows(corr: pd.DataFrame, panels: tuple[str, ...], key: tuple) -> pd.DataFrame:
    sel = np.ones(len(corr), bool)
    for col, value in zip(panels, key):
        sel &= (corr[col] == value).to_numpy()
    return corr[sel]


def _ordered(labels) -> list:
    kinds = ("syntactic", "phonological", "inventory", "featural", "genetic", "geographic")
    rank = {f"distance:{k}": i for i, k in enumerate(kinds)}
    return sorted(dict.fromkeys(labels), key=lambda x: (rank.get(x, len(rank)), str(x)))


def _n_text(rows: pd.DataFrame) -> str:
    lo, hi = int(rows["n"].min()), int(rows["n"].max())
    return f"n = {lo}" if lo == hi else f"n = {lo}-{hi}"


def correlation_heatmap(corr: pd.DataFrame, *, rows: str = "x", panels: tuple[str, ...] = ("database", "pooling"),
                        p: str = "p_adj", title: str = ""):
    """The paper's heatmap: r per (row, layer) with * p <= .05 and ** p <= .01, one panel per panel key.

    Args:
        corr: rows of one y, metric and method (columns ``x, layer, r, n``, ``p``
            and the panel keys).
        rows: column whose values are the heatmap's rows (distance kinds, or metrics).
        panels: up to two columns; the first spans grid rows, the second grid columns.
        p: which p-value the marks use (``p_adj``: family-corrected permutation p).
    """
    from matplotlib.colors import Normalize

    first, second, keys = _panels(corr, panels)
    n_layers = corr["layer"].nunique()
    fig, axes = plt.subplots(len(first), len(second), figsize=(0.55 * n_layers * len(second) + 2.5,
                                                               (0.42 * corr[rows].nunique() + 1.3) * len(first)),
                             squeeze=False)
    cmap = plt.get_cmap("RdBu_r").with_extremes(bad="#e0e0e0")
    for ax, key in zip(axes.ravel(), keys):
        d = _panel_rows(corr, panels, key)
        order = _ordered(d[rows])
        r = d.pivot_table(index=rows, columns="layer", values="r", dropna=False).reindex(order)
        pv = d.pivot_table(index=rows, columns="layer", values=p, dropna=False).reindex(index=order, columns=r.columns)
        im = ax.imshow(np.ma.masked_invalid(r.to_numpy(float)), cmap=cmap, norm=Normalize(-1, 1), aspect="auto")
        for (i, j), v in np.ndenumerate(r.to_numpy(float)):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.2f}{_marks(pv.iat[i, j])}", ha="center", va="center", fontsize=6.5,
                        color="white" if abs(v) > 0.6 else "black")
        ax.set_xticks(range(r.shape[1]), [int(c) for c in r.columns], fontsize=8)
        ax.set_yticks(range(r.shape[0]), [str(i).split(":")[-1] for i in r.index], fontsize=8)
        name = " · ".join(str(k) for k in key if k is not None)
        ax.set(xlabel="layer", title=f"{name} ({_n_text(d)})" if name else _n_text(d))
        fig.colorbar(im, ax=ax, shrink=0.8, label="r")
    fig.suptitle(f"{title} (* {p} <= .05, ** {p} <= .01; grey: undefined)", fontsize=10)
    fig.tight_layout()
    return fig


def r_by_layer(corr: pd.DataFrame, *, hue: str = "x", panels: tuple[str, ...] = ("database", "pooling"),
               title: str = ""):
    """r per layer with its 95% bootstrap CI as a band, one line per ``hue``, one panel per panel key."""
    first, second, keys = _panels(corr, panels)
    fig, axes = plt.subplots(len(first), len(second), figsize=(4.6 * len(second) + 1.8, 3.2 * len(first)),
                             squeeze=False, sharey=True)
    palette = plt.get_cmap("tab10")
    hues = _ordered(corr[hue])
    for ax, key in zip(axes.ravel(), keys):
        d = _panel_rows(corr, panels, key)
        for i, h in enumerate(hues):
            g = d[d[hue] == h].sort_values("layer")
            if g.empty:
                continue
            ax.plot(g["layer"], g["r"], marker="o", ms=3, lw=1.3, color=palette(i % 10), label=str(h).split(":")[-1])
            ax.fill_between(g["layer"].to_numpy(float), g["ci_low"].to_numpy(float), g["ci_high"].to_numpy(float),
                            color=palette(i % 10), alpha=0.12, lw=0)
        ax.axhline(0, c="grey", lw=0.8)
        name = " · ".join(str(k) for k in key if k is not None)
        ax.set(xlabel="layer", ylim=(-1.05, 1.05), title=f"{name} ({_n_text(d)})" if name else _n_text(d))
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("r (95% CI)")
    axes[0, -1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def strongest_scatter(pairs: pd.DataFrame, best: pd.DataFrame, *, label_max: int = 40, ncols: int = 3):
    """One scatter per row of ``best`` (e.g. each kind at its strongest layer) with the OLS line, points labelled.

    Args:
        pairs: the long pair table of :func:`xldrift.stats.pair_table`.
        best: correlation rows (``x, y, layer, pooling, metric, database, r,
            ci_low, ci_high, p_adj, n``); each selects its cell in ``pairs``.
        label_max: points are labelled (target, or source→target) up to this many.
    """
    keys = ["x", "y", "layer", "pooling", "metric", "database"]
    n = max(len(best), 1)
    fig, axes = plt.subplots(-(-n // ncols), min(ncols, n), figsize=(4.0 * min(ncols, n), 3.4 * -(-n // ncols)),
                             squeeze=False)
    for ax, row in zip(axes.ravel(), best.itertuples(index=False)):
        sel = np.ones(len(pairs), bool)
        for k in keys:
            v = getattr(row, k)
            sel &= (pairs[k].isna() if pd.isna(v) else pairs[k] == v).to_numpy()
        d = pairs[sel].dropna(subset=["x_value", "y_value"])
        ax.scatter(d["x_value"], d["y_value"], s=18, color="#3182bd")
        if d["x_value"].nunique() > 1:
            slope, icept = np.polyfit(d["x_value"], d["y_value"], 1)
            xs = np.linspace(d["x_value"].min(), d["x_value"].max(), 20)
            ax.plot(xs, slope * xs + icept, c="#d95f02", lw=1.2)
        if len(d) <= label_max:
            several = d["source"].nunique() > 1
            for t in d.itertuples():
                ax.annotate(f"{t.source}→{t.target}" if several else str(t.target), (t.x_value, t.y_value),
                            fontsize=7, xytext=(2, 2), textcoords="offset points")
        layer = "" if pd.isna(row.layer) else f", layer {int(row.layer)}"
        ax.set(xlabel=str(row.x).replace("distance:", "distance: "), ylabel=row.y,
               title=f"{str(row.x).split(':')[-1]}{layer}\nr = {row.r:+.2f} [{row.ci_low:+.2f}, {row.ci_high:+.2f}], "
                     f"p_adj = {row.p_adj:.2g}, n = {int(row.n)}")
        ax.title.set_fontsize(9)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(best):]:
        ax.set_visible(False)
    if best.empty:
        axes[0, 0].set_visible(True)
        axes[0, 0].axis("off")
        axes[0, 0].text(0.5, 0.5, "no cell has a finite r\n(see the table of undefined cells)", ha="center",
                        va="center", fontsize=10)
    fig.tight_layout()
    return fig


def database_agreement(distances: pd.DataFrame, agreement: pd.DataFrame, ncols: int = 3):
    """lang2vec against URIEL+ distance per kind, one point per language pair, with Spearman rho and n.

    Args:
        distances: ``lang_a, lang_b, kind, database, value`` holding both databases.
        agreement: ``kind, rho, n`` (from typology.database_agreement).
    """
    d = distances.assign(pair=[tuple(sorted(p)) for p in zip(distances["lang_a"], distances["lang_b"])])
    wide = d.drop_duplicates(["pair", "kind", "database"]).pivot_table(index=["kind", "pair"], columns="database",
                                                                       values="value")
    kinds = list(agreement["kind"])
    fig, axes = plt.subplots(-(-len(kinds) // ncols), min(ncols, len(kinds)),
                             figsize=(3.3 * min(ncols, len(kinds)), 3.1 * -(-len(kinds) // ncols)), squeeze=False)
    for ax, a in zip(axes.ravel(), agreement.itertuples()):
        if a.kind in wide.index.get_level_values(0) and {"lang2vec", "urielplus"} <= set(wide.columns):
            g = wide.loc[a.kind].dropna()
            ax.scatter(g["lang2vec"], g["urielplus"], s=10, alpha=0.7, color="#756bb1")
        ax.plot([0, 1], [0, 1], c="grey", lw=0.8, ls="--")
        ax.set(xlim=(-0.03, 1.03), ylim=(-0.03, 1.03), xlabel="lang2vec (1 - cosine)", ylabel="URIEL+ (angular)",
               title=f"{a.kind}: rho = {a.rho:.2f} (n = {int(a.n)})")
        ax.title.set_fontsize(9)
    for ax in axes.ravel()[len(kinds):]:
        ax.set_visible(False)
    fig.suptitle("Agreement of the two databases (one point per language pair)", fontsize=10)
    fig.tight_layout()
    return fig


def paper_vs_corrected(panels: list[tuple[str, pd.DataFrame, str]], title: str = ""):
    """Distance-vs-impact heatmaps side by side on one colour scale, each starred by its own rule.

    Args:
        panels: ``(name, rows, p_column)`` per panel. ``rows`` hold ``x, layer,
            r, n`` and ``p_column`` for one y, pooling, metric and method;
            a row with an empty ``layer`` is the AVG column (impact averaged
            over layers). Marks: * p <= .05, ** p <= .01 of ``p_column``
            (the paper's unadjusted analytic p, or our Holm-adjusted
            permutation p).
    """
    from matplotlib.colors import Normalize

    if not panels:
        raise ValueError("paper_vs_corrected needs at least one panel")
    n_cols = max(r["layer"].nunique() + 1 for _, r, _ in panels)
    n_rows = max(r["x"].nunique() for _, r, _ in panels)
    fig, axes = plt.subplots(1, len(panels), figsize=(0.55 * n_cols * len(panels) + 2.5, 0.42 * n_rows + 1.8),
                             squeeze=False, layout="constrained")
    cmap = plt.get_cmap("RdBu_r").with_extremes(bad="#e0e0e0")
    norm = Normalize(-1, 1)
    for ax, (name, d, p) in zip(axes[0], panels):
        d = d.assign(col=d["layer"].map(lambda v: "AVG" if pd.isna(v) else str(int(v))))
        order = _ordered(d["x"])
        cols = [str(c) for c in sorted(int(v) for v in d["layer"].dropna().unique())] + (
            ["AVG"] if d["layer"].isna().any() else [])
        r = d.pivot_table(index="x", columns="col", values="r", dropna=False).reindex(index=order, columns=cols)
        pv = d.pivot_table(index="x", columns="col", values=p, dropna=False).reindex(index=order, columns=cols)
        im = ax.imshow(np.ma.masked_invalid(r.to_numpy(float)), cmap=cmap, norm=norm, aspect="auto")
        for (i, j), v in np.ndenumerate(r.to_numpy(float)):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.2f}{_marks(pv.iat[i, j])}", ha="center", va="center", fontsize=6.5,
                        color="white" if abs(v) > 0.6 else "black")
        if "AVG" in cols:
            ax.axvline(len(cols) - 1.5, color="black", lw=0.8)
        ax.set_xticks(range(len(cols)), cols, fontsize=8)
        ax.set_yticks(range(len(order)), [str(i).split(":")[-1] for i in order], fontsize=8)
        ax.set(xlabel="layer", title=f"{name}\n({_n_text(d)}; marks: {p} <= .05 *, <= .01 **)")
        ax.title.set_fontsize(8.5)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="Pearson r")
    fig.suptitle(title, fontsize=10)
    return fig
