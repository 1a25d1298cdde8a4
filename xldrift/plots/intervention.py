"""Notebook 06's figures: gain per target under each freezing condition, and the gap to distant languages."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .style import MANY


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

