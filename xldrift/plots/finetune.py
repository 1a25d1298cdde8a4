"""Notebook 02's figure: zero-shot accuracy per target language."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .style import MANY, named_extremes


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
        named_extremes(ax, d["accuracy"], d["target"], high="best", low="worst")
        ax.axhline(chance, ls="--", c="grey", lw=1, label="chance")
        ax.set(ylabel="accuracy", ylim=(0, 1), xlabel=f"target languages, best to worst (n = {len(d)})",
               title=f"{title} (source {source})")
        ax.legend(fontsize=8, loc="lower left")
        hist.hist(d["accuracy"], bins=20, range=(0, 1), orientation="horizontal", color="#1b9e77")
        hist.axhline(chance, ls="--", c="grey", lw=1)
        hist.set(ylim=(0, 1), xlabel="languages", title="distribution")
    fig.tight_layout()
    return fig

