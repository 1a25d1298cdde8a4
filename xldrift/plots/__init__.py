"""Figures of the notebooks (matplotlib/seaborn), sized for GitHub rendering: one module per chapter.

``style`` holds what the chapters share (when a figure switches to its
many-language form, family colours, named extremes); ``data`` draws notebook
01's figure, ``finetune`` 02's, ``drift`` 04's, ``correlation`` 05's and
``intervention`` 06's. Every figure function is re-exported here, so the
notebooks call ``U.plots.<function>``.
"""

from __future__ import annotations

from .correlation import correlation_heatmap, database_agreement, paper_vs_corrected, r_by_layer, strongest_scatter
from .data import token_lengths
from .drift import alignment_vs_drift, drift_heatmap, drift_profile, umap_panels
from .finetune import accuracy_bars
from .intervention import gap_summary, intervention_gains
from .style import MANY, N_FAMILIES, family_groups

__all__ = [
    "MANY", "N_FAMILIES", "accuracy_bars", "alignment_vs_drift", "correlation_heatmap", "database_agreement",
    "drift_heatmap", "drift_profile", "family_groups", "gap_summary", "intervention_gains", "paper_vs_corrected",
    "r_by_layer", "strongest_scatter", "token_lengths", "umap_panels",
]
