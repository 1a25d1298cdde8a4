"""Notebook 04's figures: impact per layer and language, alignment with the source, UMAP panels."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .style import MANY, family_colours, family_groups, thin_ticks


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
    colours = family_colours(groups)
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
        thin_ticks(ax, [str(c) for c in table.columns])
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
        colours = family_colours(groups)
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

