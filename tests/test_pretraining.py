"""Seen/unseen languages and the seen-only correlations (notebook 05)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xldrift.analysis import pretraining as P
from xldrift.analysis import stats

VARIANT = {"database": "lang2vec", "pooling": "cls", "metric": "linear_cka", "method": "pearson"}


def test_seen_languages_for_cc100_models_and_unknown_otherwise():
    size = pd.Series({"en": 300.0, "de": 66.0, "xx": np.nan})
    seen = P.seen_languages("e5-small-q4", size, ["en", "de", "xx", "yy"])
    assert seen.tolist() == [True, True, False, False]
    unknown = P.seen_languages("bert-base-multilingual-cased", size, ["en", "xx"])
    assert unknown.isna().all()


def test_group_table_counts_and_means():
    seen = pd.Series([True, True, False], index=["a", "b", "c"], dtype="boolean")
    table = P.group_table(seen, pd.Series({"a": 0.6, "b": 0.8, "c": 0.4}), pd.Series({"a": 0.1, "b": 0.3, "c": 0.9}))
    row = table.set_index("group")
    assert row.loc["seen in pretraining", "languages"] == 2 and row.loc["unseen", "languages"] == 1
    assert row.loc["seen in pretraining", "accuracy_mean"] == pytest.approx(0.7)
    assert row.loc["unseen", "impact_max"] == pytest.approx(0.9)


def _pairs(n_seen: int = 12, n_unseen: int = 6, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """Distance drives impact among seen targets; unseen targets have random impact."""
    rng = np.random.default_rng(seed)
    targets = [f"s{i}" for i in range(n_seen)] + [f"u{i}" for i in range(n_unseen)]
    seen = pd.Series([t.startswith("s") for t in targets], index=targets, dtype="boolean")
    dist = pd.Series(rng.uniform(0, 1, len(targets)), index=targets)
    impact = pd.Series(np.where(seen, dist + rng.normal(0, 0.05, len(targets)), rng.uniform(0, 1, len(targets))),
                       index=targets)
    rows = [{"x": "distance:genetic", "y": "impact", "layer": 1, "pooling": "cls", "metric": "linear_cka",
             "database": "lang2vec", "source": "src", "target": t, "x_value": dist[t], "y_value": impact[t]}
            for t in targets]
    # a cell of another variant must not enter the seen-only table
    rows += [{**r, "pooling": "mean"} for r in rows]
    return pd.DataFrame(rows), seen


def test_seen_only_correlations_drop_unseen_targets_and_other_variants():
    pairs, seen = _pairs()
    corr_seen = P.seen_only_correlations(pairs, seen, VARIANT, n_perm=200, n_boot=100)
    assert set(corr_seen["pooling"]) == {"cls"}
    cell = corr_seen[corr_seen["method"] == "pearson"].iloc[0]
    assert cell["n"] == 12
    corr_all = stats.correlation_table(pairs[pairs["pooling"] == "cls"], methods=("pearson",), partial=False,
                                       n_perm=200, n_boot=100)
    assert corr_all.iloc[0]["n"] == 18
    assert cell["r"] > corr_all.iloc[0]["r"] > 0  # unseen noise weakens the all-language r
    table = P.compare(corr_all, corr_seen, VARIANT)
    assert table.iloc[0][["n_all", "n_seen"]].tolist() == [18, 12]
    assert table.iloc[0]["r_seen"] == pytest.approx(cell["r"])


def test_seen_only_needs_a_seen_language():
    pairs, seen = _pairs()
    with pytest.raises(ValueError, match="no target language"):
        P.seen_only_correlations(pairs, seen & False, VARIANT, n_perm=10, n_boot=10)
