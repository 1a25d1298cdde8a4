"""Figures shared by the notebooks (matplotlib/seaborn), sized for GitHub rendering."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


def accuracy_bars(summary: pd.DataFrame, chance: float, title: str = "Zero-shot accuracy per target language"):
    """Bar chart of accuracy with bootstrap CIs, one panel per source, sorted by accuracy.

    Args:
        summary: ``source, target, accuracy, ci_low, ci_high`` (from transfer.accuracy_summary).
    """
    sources = summary["source"].unique()
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
