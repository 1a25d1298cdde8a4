"""Analyses over (source, target) pairs, for runs with several fine-tuning sources.

Philippy, Guo & Haddadan (2023) fine-tune one model per XNLI language (15 sources),
evaluate each zero-shot on all 15 targets, and correlate distance, impact and accuracy
over the 210 ordered pairs with source != target. With one source a correlation has
n = number of targets - 1; with the grid it has n = sources x targets - (sources among
the targets). This module turns the tables of notebooks 02, 04 and 05 into:

* the zero-shot accuracy matrix (sources x targets) with row and column means over the
  off-diagonal cells, and impact matrices per layer;
* checks that every pair correlation has the n the grid implies (same-language pairs
  never enter; :func:`xldrift.analysis.stats.correlation_table` already computes r, the
  Mantel-style permutation p, the bootstrap CI over languages and Holm's correction);
* the same correlations within each source (n = its targets other than itself) and their
  spread over sources, which says whether the source's own distance structure matters;
* one source's row set against a single-source run (same direction or not), the claims
  (a)-(c) judged on different sets of pairs, and the intervention's block selection
  from each.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from scipy import stats as st

from xldrift.analysis import claims, intervention, stats
from xldrift.model.frozen import FrozenLayers

MEAN = "mean (zero-shot)"  #: label of the margins of an accuracy matrix
CELL_KEYS = list(stats.KEYS) + ["method"]  #: what identifies one correlation cell


# -- pairs and matrices --------------------------------------------------------------------
def ordered_pairs(sources: Sequence[str], targets: Sequence[str]) -> list[tuple[str, str]]:
    """Every ordered (source, target) pair with ``source != target``, sources first."""
    return [(s, t) for s in sources for t in targets if s != t]


def _values(df: pd.DataFrame, name: str) -> pd.DataFrame:
    """``df`` with its measurement in ``value`` (``accuracy.csv`` calls it ``accuracy``)."""
    if "value" not in df.columns and "accuracy" in df.columns:
        df = df.rename(columns={"accuracy": "value"})
    need = {"source", "target", "value"}
    if not need <= set(df.columns):
        raise ValueError(f"{name} needs columns {sorted(need)}; got {list(df.columns)}")
    return df


def zero_shot_by_target(frame: pd.DataFrame) -> pd.Series:
    """Per target, the mean over the sources other than the target itself (seeds included).

    A target's own-source row (in-language accuracy, or the source's drift from itself) is
    not zero-shot and would pull a per-language mean towards it: with one source only that
    source's own row goes, with the grid each target loses the one of its 15 rows.

    Args:
        frame: ``source, target, value`` (or ``accuracy``) rows, e.g. accuracy or impact at one layer.

    Returns:
        Series indexed by target; a target that is only ever its own source is absent.
    """
    frame = _values(frame, "frame")
    return frame[frame["source"] != frame["target"]].groupby("target")["value"].mean()


def accuracy_matrix(accuracy: pd.DataFrame, sources: Sequence[str] | None = None,
                    targets: Sequence[str] | None = None) -> pd.DataFrame:
    """Zero-shot accuracy as a (sources x targets) matrix, seed means, with margins.

    Args:
        accuracy: ``source, target, value`` (or ``accuracy``) [``seed``], one condition.
        sources, targets: row and column order (default: as they appear).

    Returns:
        A frame of shape ``(n_sources + 1, n_targets + 1)``: index sources then
        :data:`MEAN`, columns targets then :data:`MEAN`. The diagonal (a source on
        itself) is shown but is not zero-shot, so the margins average the off-diagonal
        cells only: a row mean is how well a source transfers to the other targets, a
        column mean how well a target is reached from the other sources; the corner is
        the mean over every off-diagonal cell.

    Raises:
        ValueError: a (source, target) cell of the requested grid has no accuracy.
    """
    acc = _values(accuracy, "accuracy")
    sources = list(dict.fromkeys(acc["source"])) if sources is None else list(sources)
    targets = list(dict.fromkeys(acc["target"])) if targets is None else list(targets)
    mat = acc.groupby(["source", "target"])["value"].mean().unstack().reindex(index=sources, columns=targets)
    if mat.isna().any().any():
        missing = [(s, t) for s in sources for t in targets if pd.isna(mat.loc[s, t])]
        raise ValueError(f"accuracy lacks {len(missing)} (source, target) cell(s), e.g. {missing[:4]}")
    off = mat.where(~np.equal.outer(mat.index.to_numpy(), mat.columns.to_numpy()))
    out = mat.copy()
    out[MEAN] = off.mean(axis=1)
    out.loc[MEAN] = list(off.mean(axis=0)) + [float(np.nanmean(off.to_numpy()))]
    return out


def impact_matrices(impact: pd.DataFrame, *, pooling: str, metric: str, layers: Sequence[int],
                    sources: Sequence[str] | None = None, targets: Sequence[str] | None = None) -> dict[int, pd.DataFrame]:
    """Impact (1 - similarity) per layer as (sources x targets) matrices, seed means.

    Args:
        impact: ``source, target, layer, pooling, metric, value`` [``seed``]
            (:func:`xldrift.analysis.correlation.impact_table`).
        pooling, metric: the variant shown.
        layers: the layers wanted; each must be in the table.

    Returns:
        ``{layer: frame (n_sources, n_targets)}``; the diagonal is the source's own drift.
    """
    im = impact[(impact["pooling"] == pooling) & (impact["metric"] == metric)]
    absent = sorted(set(layers) - set(im["layer"]))
    if im.empty or absent:
        raise ValueError(f"no impact for {pooling}/{metric} at layer(s) {absent or list(layers)}")
    sources = list(dict.fromkeys(im["source"])) if sources is None else list(sources)
    targets = list(dict.fromkeys(im["target"])) if targets is None else list(targets)
    mean = im.groupby(["layer", "source", "target"])["value"].mean()
    return {int(layer): mean.loc[layer].unstack().reindex(index=sources, columns=targets) for layer in layers}


def spread_layers(available: Sequence[int], k: int = 4) -> list[int]:
    """``k`` layers spread evenly over ``available`` (first and last included), sorted."""
    avail = sorted(set(int(x) for x in available))
    if not avail:
        raise ValueError("no layers to choose from")
    picks = np.linspace(0, len(avail) - 1, min(k, len(avail))).round().astype(int)
    return sorted({avail[i] for i in picks})


# -- correlations over pairs ------------------------------------------------------------------
def pair_counts(corr: pd.DataFrame, sources: Sequence[str], targets: Sequence[str]) -> pd.DataFrame:
    """n of every correlation family against the number of ordered pairs the run implies.

    Args:
        corr: :func:`xldrift.analysis.stats.correlation_table` output over the run's pairs.
        sources, targets: the run's languages.

    Returns:
        One row per family (x group, y, method): ``cells``, ``n_min``, ``n_max`` and
        ``n_pairs`` = sources x targets - same-language pairs. ``n_max`` below
        ``n_pairs`` means a language lacked data in some cell (e.g. a distance).

    Raises:
        ValueError: a cell has more observations than there are pairs with
            source != target (a same-language pair got in, or duplicates).
    """
    expected = len(ordered_pairs(sources, targets))
    fam = corr.assign(family=corr["x"].astype(str).str.split(":").str[0] + " → " + corr["y"].astype(str))
    out = (fam.groupby(["family", "method"], sort=False)["n"].agg(cells="size", n_min="min", n_max="max")
           .reset_index().assign(n_pairs=expected))
    over = out[out["n_max"] > expected]
    if len(over):
        raise ValueError(f"cells with more than the {expected} ordered pairs with source != target:\n{over}")
    return out


def per_source_correlations(pairs: pd.DataFrame, *, n_perm: int, n_boot: int, adjust: str = "holm",
                            methods: Sequence[str] = ("pearson", "spearman"), seed: int = 0) -> pd.DataFrame:
    """The correlations of :func:`xldrift.analysis.stats.correlation_table` within each source separately.

    Within one source every pair shares that source, so the test is the ordinary
    permutation over its targets, with n = its targets other than itself; Holm's
    correction runs within each source's families.

    Args:
        pairs: :func:`xldrift.analysis.stats.pair_table` output (any subset of its cells).

    Returns:
        ``source`` plus :data:`xldrift.analysis.stats.COLUMNS`, one row per source and cell.
    """
    if pairs.empty:
        raise ValueError("no pairs to correlate")
    if (pairs["source"] == pairs["target"]).any():
        raise ValueError("same-language pairs (source == target) must be excluded before correlating")
    frames = [stats.correlation_table(g, methods=methods, partial=False, n_perm=n_perm, n_boot=n_boot, seed=seed,
                                      adjust=adjust).assign(source=s)
              for s, g in pairs.groupby("source", sort=False)]
    out = pd.concat(frames, ignore_index=True)
    return out[["source"] + stats.COLUMNS]


def source_spread(per_source: pd.DataFrame, alpha: float = 0.05,
                  all_pairs: pd.DataFrame | None = None) -> pd.DataFrame:
    """How much a correlation changes with the source: its spread over the sources.

    Args:
        per_source: :func:`per_source_correlations` output.
        alpha: level for counting cells significant after correction (``p_adj``).
        all_pairs: optional correlation table over every pair, whose r is added as
            ``r_all_pairs`` for comparison.

    Returns:
        One row per cell (:data:`CELL_KEYS`): ``sources`` (with a finite r), ``n``
        (pairs per source, a range if it differs), ``r_mean``, ``r_sd`` (ddof = 1; NaN
        with one source), ``r_min``, ``r_max``, ``positive`` and ``negative`` (sources
        whose r has that sign), ``significant`` (sources with ``p_adj < alpha``).
    """
    keys = CELL_KEYS
    d = per_source.dropna(subset=["r"])
    g = d.groupby(keys, dropna=False, sort=False)
    out = g["r"].agg(sources="size", r_mean="mean", r_sd="std", r_min="min", r_max="max").reset_index()
    out["positive"] = g["r"].apply(lambda r: int((r > 0).sum())).to_numpy()
    out["negative"] = g["r"].apply(lambda r: int((r < 0).sum())).to_numpy()
    out["significant"] = g["p_adj"].apply(lambda p: int((p < alpha).sum())).to_numpy()
    out["n"] = g["n"].apply(lambda n: str(int(n.min())) if n.min() == n.max() else f"{int(n.min())}-{int(n.max())}"
                            ).to_numpy()
    if all_pairs is not None:
        out = out.merge(all_pairs[keys + ["r", "n"]].rename(columns={"r": "r_all_pairs", "n": "n_all_pairs"}),
                        on=keys, how="left")
    return out


def _sign(r: pd.Series) -> pd.Series:
    return np.sign(r).where(r.notna())


def compare_rows(a: pd.DataFrame, b: pd.DataFrame, labels: tuple[str, str] = ("grid", "other")) -> pd.DataFrame:
    """Two correlation tables cell by cell: the same direction or not, with both r and n.

    Args:
        a, b: correlation tables (:data:`xldrift.analysis.stats.COLUMNS`), e.g. the grid's
            English-source cells and a single-source run's.
        labels: suffixes of their columns.

    Returns:
        One row per cell both have: :data:`CELL_KEYS`, ``r_<a>``, ``n_<a>``,
        ``p_adj_<a>``, the same for b, ``same_direction`` (both r finite and of one
        sign; NaN when either is missing) and ``diff`` (r_a - r_b).
    """
    la, lb = labels
    cols = ["r", "n", "p_adj"]
    m = a[CELL_KEYS + cols].merge(b[CELL_KEYS + cols], on=CELL_KEYS, suffixes=(f"_{la}", f"_{lb}"))
    sa, sb = _sign(m[f"r_{la}"]), _sign(m[f"r_{lb}"])
    m["same_direction"] = (sa == sb).where(sa.notna() & sb.notna())
    m["diff"] = m[f"r_{la}"] - m[f"r_{lb}"]
    return m


def direction_summary(compared: pd.DataFrame, labels: tuple[str, str] = ("grid", "other")) -> pd.DataFrame:
    """Per family (x group, y, method) of :func:`compare_rows`: how many cells keep their direction.

    Returns:
        ``family, method, cells`` (both r finite), ``same_direction``, ``share``,
        ``spearman`` (rank correlation of the two r over the family's cells; NaN under
        4 cells), ``mean_abs_r_<a>``, ``mean_abs_r_<b>``, ``n_<a>``, ``n_<b>``.
    """
    la, lb = labels
    c = compared.dropna(subset=[f"r_{la}", f"r_{lb}"])
    c = c.assign(family=c["x"].astype(str).str.split(":").str[0] + " → " + c["y"].astype(str))
    rows = []
    for (family, method), g in c.groupby(["family", "method"], sort=False):
        same = int(g["same_direction"].astype(bool).sum())
        rho = st.spearmanr(g[f"r_{la}"], g[f"r_{lb}"]).statistic if len(g) >= 4 else np.nan
        rows.append({"family": family, "method": method, "cells": len(g), "same_direction": same,
                     "share": same / len(g), "spearman": float(rho),
                     f"mean_abs_r_{la}": float(g[f"r_{la}"].abs().mean()),
                     f"mean_abs_r_{lb}": float(g[f"r_{lb}"].abs().mean()),
                     f"n_{la}": _span(g[f"n_{la}"]), f"n_{lb}": _span(g[f"n_{lb}"])})
    return pd.DataFrame(rows)


def _span(n: pd.Series) -> str:
    lo, hi = int(n.min()), int(n.max())
    return str(lo) if lo == hi else f"{lo}-{hi}"


def compare_accuracy(a: pd.DataFrame, b: pd.DataFrame, source: str,
                     labels: tuple[str, str] = ("grid", "other")) -> tuple[pd.DataFrame, dict]:
    """One source's zero-shot accuracy per target in two runs, and whether the targets rank alike.

    Args:
        a, b: accuracy tables (``source, target, value`` or ``accuracy`` [``seed``]).
        source: the source compared (rows of both).

    Returns:
        ``(table, summary)``: the table has ``target, <a>, <b>, diff`` for the targets
        both runs evaluated (the source itself excluded: not zero-shot); the summary
        ``dict(n, spearman, mean_diff)``, where ``n`` is the number of targets.
    """
    la, lb = labels
    pa, pb = (_values(x, name)[lambda d: d["source"] == source].groupby("target")["value"].mean()
              for x, name in ((a, la), (b, lb)))
    if pa.empty or pb.empty:
        raise ValueError(f"source {source!r} is missing from {la if pa.empty else lb}")
    common = [t for t in pa.index if t in pb.index and t != source]
    table = pd.DataFrame({"target": common, la: pa[common].to_numpy(), lb: pb[common].to_numpy()})
    table["diff"] = table[la] - table[lb]
    rho = st.spearmanr(table[la], table[lb]).statistic if len(table) >= 3 else np.nan
    return table, {"n": len(table), "spearman": float(rho), "mean_diff": float(table["diff"].mean())}


# -- claims and the intervention's blocks, per set of pairs -----------------------------------
def claims_by_scope(scopes: Mapping[str, pd.DataFrame], primary: Mapping[str, str],
                    alpha: float = 0.05) -> pd.DataFrame:
    """The verdicts of claims (a)-(c) (:func:`xldrift.analysis.claims.evaluate_claims`) on several sets of pairs.

    Args:
        scopes: ``{label: correlation table}``, e.g. ``{"210 pairs": ..., "14 pairs (en)": ...}``.
        primary: the variant the verdicts use.

    Returns:
        One row per claim: ``claim, statement``, then per scope its verdict and a
        column ``<label> evidence``; ``changed`` says whether the verdicts differ.
    """
    if not scopes:
        raise ValueError("no correlation tables given")
    out = None
    for label, corr in scopes.items():
        v = claims.evaluate_claims(corr, primary=primary, alpha=alpha)[["claim", "statement", "verdict", "evidence"]]
        v = v.rename(columns={"verdict": label, "evidence": f"{label} evidence"})
        out = v if out is None else out.merge(v.drop(columns=["statement"]), on="claim")
    out["changed"] = out[list(scopes)].nunique(axis=1) > 1
    return out


def selection_by_scope(scopes: Mapping[str, pd.DataFrame], *, k: int, distance_kind: str, database: str,
                       n_layers: int, pooling: str = "cls", metric: str = "linear_cka") -> pd.DataFrame:
    """The intervention's blocks (:func:`xldrift.analysis.intervention.select_layers`) chosen from each table.

    Returns:
        One row per scope: ``scope, blocks, r`` (the chosen blocks' r), ``n`` (pairs
        behind each r), ``same_as_first`` (the same set as the first scope's) and
        ``note``: why no blocks could be chosen (too few blocks with a finite r), if so.
    """
    rows, first = [], None
    for label, corr in scopes.items():
        try:
            choice = intervention.select_layers(corr, k=k, distance_kind=distance_kind, database=database,
                                                n_layers=n_layers, pooling=pooling, metric=metric)
        except ValueError as e:  # e.g. one source's few targets leave r undefined: say so, keep the other scopes
            rows.append({"scope": label, "blocks": "", "r": "", "n": "", "same_as_first": False,
                         "note": str(e).split(". ")[0]})
            continue
        chosen = choice.table[choice.table["selected"]]
        first = choice.layers if first is None else first
        rows.append({"scope": label, "blocks": FrozenLayers.of(choice.layers).text(),
                     "r": ", ".join(f"{r:+.2f}" for r in chosen["r"]),
                     "n": _span(chosen["n"]) if "n" in chosen else "",
                     "same_as_first": tuple(choice.layers) == tuple(first), "note": ""})
    return pd.DataFrame(rows)


def scope(corr: pd.DataFrame) -> str:
    """A label for a correlation table: how many pairs its cells rest on."""
    return f"{_span(corr['n'].dropna())} pairs"


# -- figures ------------------------------------------------------------------------------
def matrix_heatmap(matrix: pd.DataFrame, *, title: str, label: str, fmt: str = ".2f", cmap: str = "viridis"):
    """A (sources x targets) matrix as an annotated heatmap; margins (:data:`MEAN`) set apart by lines."""
    fig, ax = plt.subplots(figsize=(0.55 * matrix.shape[1] + 2.5, 0.45 * matrix.shape[0] + 1.5))
    sns.heatmap(matrix, annot=True, fmt=fmt, cmap=cmap, ax=ax, cbar_kws={"label": label},
                annot_kws={"fontsize": 7 if matrix.shape[1] > 10 else 9})
    if MEAN in matrix.columns:
        ax.axvline(matrix.shape[1] - 1, c="white", lw=3)
    if MEAN in matrix.index:
        ax.axhline(matrix.shape[0] - 1, c="white", lw=3)
    ax.set(title=title, xlabel="target", ylabel="source")
    fig.tight_layout()
    return fig


def impact_heatmaps(matrices: Mapping[int, pd.DataFrame], *, title: str):
    """One (sources x targets) impact heatmap per layer, on a shared logarithmic colour scale."""
    from matplotlib.colors import LogNorm

    values = np.concatenate([m.to_numpy().ravel() for m in matrices.values()])
    values = values[np.isfinite(values) & (values > 0)]
    norm = LogNorm(vmin=values.min(), vmax=values.max()) if values.size else None
    n = len(matrices)
    first = next(iter(matrices.values()))
    fig, axes = plt.subplots(1, n, figsize=(n * (0.4 * first.shape[1] + 1.2) + 1, 0.4 * first.shape[0] + 1.6),
                             squeeze=False)
    for i, (ax, (layer, m)) in enumerate(zip(axes[0], matrices.items())):
        sns.heatmap(m, ax=ax, cmap="magma", norm=norm, cbar=i == n - 1, cbar_kws={"label": "impact (log scale)"})
        ax.set(title=f"layer {layer}", xlabel="target", ylabel="source" if i == 0 else "")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def spread_figure(spread: pd.DataFrame, *, title: str):
    """Per layer: the r of every source (range and mean) next to the r over all pairs, one panel per x.

    Args:
        spread: :func:`source_spread` rows of one y, pooling, metric, database and method,
            with ``r_all_pairs``.
    """
    xs = list(dict.fromkeys(spread["x"]))
    fig, axes = plt.subplots(1, len(xs), figsize=(3.2 * len(xs) + 1, 3), squeeze=False, sharey=True)
    for ax, x in zip(axes[0], xs):
        d = spread[spread["x"] == x].sort_values("layer")
        ax.fill_between(d["layer"], d["r_min"], d["r_max"], alpha=0.25, label="range over sources")
        ax.plot(d["layer"], d["r_mean"], marker="o", ms=3, label="mean over sources")
        if "r_all_pairs" in d:
            ax.plot(d["layer"], d["r_all_pairs"], marker="s", ms=3, c="k", label="all pairs")
        ax.axhline(0, c="grey", lw=0.8)
        ax.set(title=str(x), xlabel="layer", ylim=(-1.05, 1.05))
    axes[0, 0].set_ylabel("r")
    axes[0, -1].legend(fontsize=7, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    return fig

