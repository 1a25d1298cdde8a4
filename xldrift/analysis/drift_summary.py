"""What the drift and alignment tables say: impact per layer, summaries, and sentences computed from them.

Impact is ``1 - similarity`` (for linear CKA the drift of Philippy, Guo &
Haddadan 2023; Kornblith et al. 2019). The tables come from
:func:`xldrift.analysis.drift.drift_tables`; every sentence of :func:`findings` is
computed from them, so the notebook's prose cannot drift from its numbers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def with_impact(drift: pd.DataFrame) -> pd.DataFrame:
    """``drift`` plus ``impact = 1 - similarity`` (the paper's drift for linear CKA)."""
    return drift.assign(impact=1.0 - drift["similarity"])


def mean_impact(drift: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Impact of ``metric`` averaged over seeds: ``source, target, pooling, layer, impact``."""
    d = with_impact(drift[drift["metric"] == metric])
    return d.groupby(["source", "target", "pooling", "layer"], as_index=False)["impact"].mean()


def alignment_change(alignment: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Post minus pre alignment with the source, averaged over seeds.

    Returns:
        ``source, target, pooling, layer, pre, post, change``.
    """
    a = alignment[alignment["metric"] == metric]
    keys = ["source", "target", "pooling", "layer"]
    pre = a[a["state"] == "pre"].groupby(keys)["similarity"].mean().rename("pre")
    post = a[a["state"] == "post"].groupby(keys)["similarity"].mean().rename("post")
    out = pd.concat([pre, post], axis=1).reset_index()
    return out.assign(change=out["post"] - out["pre"])


def _half_window(profile: pd.Series) -> tuple[int, int, float]:
    """Shortest run of consecutive layers holding at least half of the summed impact: (first, last, share)."""
    values, layers = profile.clip(lower=0).to_numpy(), profile.index.to_numpy()
    total = values.sum()
    best = (int(layers[0]), int(layers[-1]), 1.0)
    if total <= 0:
        return best
    for width in range(1, len(values) + 1):
        sums = np.convolve(values, np.ones(width), mode="valid")
        if sums.max() >= 0.5 * total:
            i = int(sums.argmax())
            return int(layers[i]), int(layers[i + width - 1]), float(sums[i] / total)
    return best


def layer_summary(impact: pd.DataFrame) -> pd.DataFrame:
    """Per (source, pooling): where drift peaks and concentrates, and where languages differ most.

    Args:
        impact: from :func:`mean_impact`.

    Returns:
        One row per (source, pooling): ``peak_layer``, ``peak_impact``,
        ``half_first``/``half_last``/``half_share`` (the shortest run of
        layers with half the summed mean impact), ``spread_layer`` (largest
        standard deviation across target languages) and ``relative_spread_layer``
        (largest standard deviation relative to the layer mean, among layers
        whose mean is at least a tenth of the peak: near-zero means make the
        ratio noise).
    """
    rows = []
    for (source, pooling), d in impact.groupby(["source", "pooling"]):
        by_layer = d.groupby("layer")["impact"]
        mean, std = by_layer.mean(), by_layer.std(ddof=0)
        first, last, share = _half_window(mean)
        rel = std / mean.where(mean >= 0.1 * mean.max())
        rows.append({"source": source, "pooling": pooling, "peak_layer": int(mean.idxmax()),
                     "peak_impact": float(mean.max()), "half_first": first, "half_last": last, "half_share": share,
                     "spread_layer": int(std.idxmax()), "relative_spread_layer": int(rel.fillna(-1).idxmax())})
    return pd.DataFrame(rows)


def language_ranking(impact: pd.DataFrame) -> pd.DataFrame:
    """Targets by mean impact over the scored layers, per (source, pooling), most moved first."""
    mean = impact.groupby(["source", "pooling", "target"], as_index=False)["impact"].mean()
    return mean.sort_values(["source", "pooling", "impact"], ascending=[True, True, False], ignore_index=True)


def drift_vs_alignment(impact: pd.DataFrame, change: pd.DataFrame) -> pd.DataFrame:
    """Per (source, pooling), over (target, layer) cells without the source itself.

    Returns:
        ``cells``, ``share_alignment_up`` (post > pre), ``mean_change``,
        ``mean_impact`` and ``spearman`` (rank correlation of alignment
        change with absolute drift across cells).
    """
    cells = change.merge(impact, on=["source", "target", "pooling", "layer"])
    rows = []
    for (source, pooling), d in cells.groupby(["source", "pooling"]):
        rho = d["change"].rank().corr(d["impact"].rank()) if len(d) > 2 else float("nan")
        rows.append({"source": source, "pooling": pooling, "cells": len(d),
                     "share_alignment_up": float((d["change"] > 0).mean()), "mean_change": float(d["change"].mean()),
                     "mean_impact": float(d["impact"].mean()), "spearman": float(rho)})
    return pd.DataFrame(rows)


def key_numbers(impact: pd.DataFrame, change: pd.DataFrame) -> pd.DataFrame:
    """One row per (source, pooling): peak and half-window of drift, most/least moved language, alignment vs drift."""
    ranking = language_ranking(impact).groupby(["source", "pooling"])["target"]
    out = layer_summary(impact).merge(drift_vs_alignment(impact, change), on=["source", "pooling"], how="left")
    out = out.merge(ranking.first().rename("most_moved").reset_index(), on=["source", "pooling"])
    out = out.merge(ranking.last().rename("least_moved").reset_index(), on=["source", "pooling"])
    return out[["source", "pooling", "peak_layer", "peak_impact", "half_first", "half_last", "most_moved",
                "least_moved", "share_alignment_up", "spearman"]]


def _num(v: float) -> str:
    """Three significant digits, and no "-0" for rounding noise around zero."""
    return f"{(0.0 if abs(v) < 5e-13 else v):.3g}"


def findings(impact: pd.DataFrame, change: pd.DataFrame, metric: str) -> list[str]:
    """Plain sentences that read the drift figures, computed from the tables.

    Args:
        impact: from :func:`mean_impact`.
        change: from :func:`alignment_change`.
        metric: the metric both were computed with (named in the sentences).
    """
    out = []
    ranking = language_ranking(impact)
    versus = drift_vs_alignment(impact, change).set_index(["source", "pooling"])
    def named(rank: pd.DataFrame) -> str:
        return ", ".join(f"{t} ({_num(v)})" for t, v in zip(rank["target"], rank["impact"]))

    for r in layer_summary(impact).itertuples():
        rank = ranking[(ranking["source"] == r.source) & (ranking["pooling"] == r.pooling)]
        k = max(1, min(3, len(rank) // 2))
        most, least = named(rank.head(k)), named(rank.tail(k).iloc[::-1])
        out.append(f"{r.pooling}, source {r.source}, {metric}: mean impact peaks at layer {r.peak_layer} "
                   f"({_num(r.peak_impact)}); layers {r.half_first}-{r.half_last} hold {r.half_share:.0%} of the "
                   f"summed impact. Languages differ most at layer {r.spread_layer} in absolute terms and at "
                   f"layer {r.relative_spread_layer} relative to the layer mean. Most moved: {most}; least: {least}.")
        if (r.source, r.pooling) in versus.index:
            v = versus.loc[(r.source, r.pooling)]
            out.append(f"{r.pooling}, source {r.source}: alignment with {r.source} rose in "
                       f"{v.share_alignment_up:.0%} of {int(v.cells)} (target, layer) cells (mean change "
                       f"{v.mean_change:+.2g}) while mean absolute impact was {_num(v.mean_impact)}; rank correlation "
                       f"of alignment change with absolute drift: {v.spearman:+.2f}.")
    return out
