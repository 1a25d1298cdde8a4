"""Notebook 01's figure: tokens per item and fertility per language."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .style import MANY, named_extremes


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
        named_extremes(axes[0], q[0.5], q.index, k=4, fmt=".0f", loc=(0.02, 0.97), ha="left")
        axes[0].legend(fontsize=8, loc="lower right")
        axes[0].set(xlabel=f"languages, by median length (n = {len(q)})")
        y = np.arange(len(fert))
        axes[1].plot(fert["tokens_per_char"], y, color="#3182bd", lw=1.2)
        named_extremes(axes[1], fert["tokens_per_char"], fert["language"], k=3, loc=(0.02, 0.97), ha="left")
        axes[1].set(ylabel=f"languages, by fertility (n = {len(fert)})", yticks=[])
    axes[0].axhline(max_length, ls="--", c="grey", lw=1)
    axes[0].set(title="Tokens per evaluation item", ylabel="tokens")
    axes[1].set(title="Fertility (tokens per character)", xlabel="tokens per character")
    fig.tight_layout()
    return fig

