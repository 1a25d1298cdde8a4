"""Notebook 05's figures: correlation heatmaps, r by layer, the strongest cells, database agreement."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


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
        pairs: the long pair table of :func:`xldrift.analysis.stats.pair_table`.
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
