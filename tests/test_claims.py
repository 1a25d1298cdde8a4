"""The claims table on synthetic correlation tables built to give each verdict."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xldrift.analysis import claims as C
from xldrift.analysis import stats as S

LAYERS = list(range(1, 13))
SIG, NONE = 0.001, 0.5


def _rows(x, y, database, pooling, values, metric="linear_cka", method="pearson"):
    """values: one (r, p_adj) per layer."""
    return [dict(x=x, y=y, layer=layer, pooling=pooling, metric=metric, database=database, method=method,
                 r=r, p=p, p_perm=p, ci_low=r - 0.2, ci_high=r + 0.2, p_adj=p, n=14)
            for layer, (r, p) in zip(LAYERS, values)]


def _table(distance: dict[str, list], impact_acc: list, variants=(("lang2vec", "cls"),)) -> pd.DataFrame:
    rows = []
    for database, pooling in variants:
        for kind, values in distance.items():
            rows += _rows(f"distance:{kind}", "impact", database, pooling, values)
    for pooling in {p for _, p in variants}:
        rows += _rows("impact", "accuracy", np.nan, pooling, impact_acc)
    return pd.DataFrame(rows, columns=S.COLUMNS)


def _deepening(r_top=-0.7, sig_top=True):
    """|r| grows with depth; the last four layers significant."""
    rs = np.linspace(-0.1, r_top, 12)
    return [(r, SIG if (sig_top and i >= 8) else NONE) for i, r in enumerate(rs)]


SUPPORTED = _table(
    {"genetic": [(-0.6, SIG)] * 12, "syntactic": _deepening(), "geographic": _deepening()},
    [(-0.7, SIG)] * 10 + [(-0.2, NONE)] * 2,
)
NOT_SUPPORTED = _table(
    {k: [(0.1, NONE)] * 12 for k in ("genetic", "syntactic", "geographic")},
    [(0.05, NONE)] * 12,
)
MIXED = _table(
    {"genetic": [(-0.5, SIG)] * 12,
     "syntactic": [(-0.6, SIG)] * 2 + [(-0.1, NONE)] * 10,  # strong only in shallow layers
     "geographic": [(-0.1, NONE)] * 12},
    [(-0.6, SIG)] * 3 + [(-0.1, NONE)] * 9,
)


def _verdicts(table, **kw):
    return C.evaluate_claims(table, **kw).set_index("claim")["verdict"].to_dict()


def test_supported():
    out = C.evaluate_claims(SUPPORTED)
    assert list(out.columns) == C.COLUMNS
    assert out.set_index("claim")["verdict"].to_dict() == {"a": "supported", "b": "supported", "c": "supported"}
    a = out.set_index("claim").loc["a", "evidence"]
    assert "genetic: 12/12 layers significant" in a and "r=-0.60 [-0.80, -0.40]" in a and "n=14" in a


def test_not_supported():
    assert _verdicts(NOT_SUPPORTED) == {"a": "not supported", "b": "not supported", "c": "not supported"}


def test_mixed():
    assert _verdicts(MIXED) == {"a": "supported", "b": "mixed", "c": "mixed"}
    only_some = _table({"syntactic": [(-0.6, SIG)] * 2 + [(-0.1, NONE)] * 10}, [(0.0, NONE)] * 12)
    assert _verdicts(only_some)["a"] == "mixed"


def test_a_majority_with_flipping_signs_is_not_support():
    flips = [(-0.6 if i % 2 else 0.6, SIG) for i in range(12)]
    assert _verdicts(_table({"syntactic": flips}, [(0.0, NONE)] * 12))["a"] == "mixed"


def test_b_needs_every_genetic_layer():
    one_gap = [(-0.6, SIG)] * 11 + [(-0.1, NONE)]
    table = _table({"genetic": one_gap, "syntactic": _deepening(), "geographic": _deepening()}, [(0, NONE)] * 12)
    assert _verdicts(table)["b"] == "mixed"
    flat = _table({"genetic": [(-0.6, SIG)] * 12, "syntactic": _deepening(sig_top=False),
                   "geographic": _deepening(sig_top=False)}, [(0, NONE)] * 12)
    assert _verdicts(flat)["b"] == "mixed"  # deeper |r| alone, without a significant deep layer, does not count


def test_robustness_counts_agreeing_variants():
    good = SUPPORTED[SUPPORTED["x"].str.startswith("distance")]
    bad = NOT_SUPPORTED[NOT_SUPPORTED["x"].str.startswith("distance")].assign(database="urielplus")
    extra = good.assign(pooling="mean")
    table = pd.concat([good, bad, extra, SUPPORTED[SUPPORTED["x"] == "impact"]], ignore_index=True)
    out = C.evaluate_claims(table).set_index("claim")
    assert out.loc["a", "verdict"] == "supported"
    assert out.loc["a", "robustness"].startswith("2/3 variants")
    assert "urielplus/cls not supported" in out.loc["a", "robustness"]
    assert out.loc["c", "robustness"].startswith("1/1 variants")


def test_primary_variant_choice_and_missing_rows():
    table = SUPPORTED.assign(method="spearman")
    out = C.evaluate_claims(table).set_index("claim")
    assert set(out["verdict"]) == {"not evaluated"}
    assert _verdicts(table, primary=dict(method="spearman"))["a"] == "supported"


def test_bad_input():
    with pytest.raises(ValueError, match="p_adj"):
        C.evaluate_claims(SUPPORTED.drop(columns="p_adj"))
    with pytest.raises(ValueError, match="alpha"):
        C.evaluate_claims(SUPPORTED, alpha=5)


@pytest.mark.parametrize("gap, ctrl, verdict", [
    ((0.04, 0.01, 0.07), (0.03, 0.005, 0.05), "supported"),
    ((0.04, 0.01, 0.07), (0.01, -0.02, 0.04), "mixed"),
    ((0.02, -0.01, 0.05), (0.01, -0.02, 0.04), "mixed"),
    ((-0.01, -0.04, 0.02), (0.01, -0.02, 0.04), "not supported"),
])
def test_claim_d(gap, ctrl, verdict):
    summary = {"gap_change": dict(zip(("estimate", "ci_low", "ci_high"), gap)),
               "targeted_vs_control": dict(zip(("estimate", "ci_low", "ci_high"), ctrl)), "n": "14 targets, 3 seeds"}
    out = C.claim_d(summary)
    assert list(out.columns) == C.COLUMNS and out["claim"].item() == "d"
    assert out["verdict"].item() == verdict
    assert "14 targets" in out["evidence"].item()


def test_claim_d_rejects_incomplete_summary():
    with pytest.raises(ValueError, match="targeted_vs_control"):
        C.claim_d({"gap_change": {"estimate": 0.1, "ci_low": 0.0, "ci_high": 0.2}})
