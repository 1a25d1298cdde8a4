"""Analyses over (source, target) pairs on toy grids whose answers are known by construction."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xldrift.analysis import pairs as P
from xldrift.analysis import stats as S

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_claims import MIXED, SUPPORTED  # noqa: E402

LANGS = ["a", "b", "c", "d", "e", "f"]


def test_ordered_pairs_exclude_the_diagonal():
    assert len(P.ordered_pairs(LANGS, LANGS)) == 6 * 5
    xnli = [f"l{i}" for i in range(15)]
    assert len(P.ordered_pairs(xnli, xnli)) == 210  # the paper's grid
    assert len(P.ordered_pairs(["a", "z"], ["a", "b", "c"])) == 2 + 3  # a source outside the targets pairs with all
    assert all(s != t for s, t in P.ordered_pairs(LANGS, LANGS))


def _accuracy():
    # accuracy = 0.5 + 0.1 * i(source) + 0.01 * j(target), seeds differ by +-0.02 around it
    rows = []
    for (i, s), (j, t) in itertools.product(enumerate("xy"), enumerate("xyz")):
        for seed, eps in ((0, -0.02), (1, 0.02)):
            rows.append({"source": s, "target": t, "seed": seed, "accuracy": 0.5 + 0.1 * i + 0.01 * j + eps})
    return pd.DataFrame(rows)


def test_accuracy_matrix_averages_seeds_and_margins_skip_the_diagonal():
    m = P.accuracy_matrix(_accuracy(), targets=["x", "y", "z"])
    assert m.shape == (3, 4) and list(m.index) == ["x", "y", P.MEAN] and list(m.columns) == ["x", "y", "z", P.MEAN]
    assert m.loc["x", "x"] == pytest.approx(0.5) and m.loc["y", "z"] == pytest.approx(0.62)
    # row x: targets y, z (not x): (0.51 + 0.52) / 2; row y: x, z: (0.60 + 0.62) / 2
    assert m.loc["x", P.MEAN] == pytest.approx(0.515) and m.loc["y", P.MEAN] == pytest.approx(0.61)
    # column x: from y only; column z: from x and y; the corner: the 4 off-diagonal cells
    assert m.loc[P.MEAN, "x"] == pytest.approx(0.60) and m.loc[P.MEAN, "z"] == pytest.approx(0.57)
    assert m.loc[P.MEAN, P.MEAN] == pytest.approx((0.51 + 0.52 + 0.60 + 0.62) / 4)


def test_accuracy_matrix_names_a_missing_cell():
    acc = _accuracy()
    with pytest.raises(ValueError, match=r"\('y', 'z'\)"):
        P.accuracy_matrix(acc[~((acc["source"] == "y") & (acc["target"] == "z"))], targets=["x", "y", "z"])


def test_impact_matrices_per_layer_and_spread_layers():
    rows = [{"source": s, "target": t, "layer": layer, "pooling": "cls", "metric": "linear_cka", "seed": seed,
             "value": layer / 10 + seed / 100} for s in "xy" for t in "xyz" for layer in range(1, 13) for seed in (0, 2)]
    mats = P.impact_matrices(pd.DataFrame(rows), pooling="cls", metric="linear_cka", layers=[1, 12])
    assert set(mats) == {1, 12} and mats[12].shape == (2, 3)
    assert np.allclose(mats[12].to_numpy(), 1.2 + 0.01)  # mean of the two seeds
    with pytest.raises(ValueError, match="layer"):
        P.impact_matrices(pd.DataFrame(rows), pooling="cls", metric="linear_cka", layers=[0])
    assert P.spread_layers(range(1, 13), 4) == [1, 5, 8, 12]
    assert P.spread_layers([3, 4], 4) == [3, 4]


def _grid(signs: dict[str, float], noise: float = 0.0, seed: int = 0):
    """Sources in ``signs`` x all of LANGS; impact = sign(source) * distance (+ noise), one layer."""
    rng = np.random.default_rng(seed)
    coords = dict(zip(LANGS, rng.normal(size=(len(LANGS), 2))))
    dist = [{"lang_a": a, "lang_b": b, "kind": "genetic", "database": "lang2vec",
             "value": float(np.linalg.norm(coords[a] - coords[b]))} for a, b in itertools.combinations(LANGS, 2)]
    dist = pd.DataFrame(dist)
    d = {(r.lang_a, r.lang_b): r.value for r in dist.itertuples()}
    d.update({(b, a): v for (a, b), v in list(d.items())})
    impact = [{"source": s, "target": t, "layer": 1, "pooling": "cls", "metric": "linear_cka",
               "value": sign * d[(s, t)] + noise * rng.normal()}
              for s, sign in signs.items() for t in LANGS if t != s]
    return S.pair_table(dist, pd.DataFrame(impact))


def test_correlation_over_pairs_has_n_pairs_and_mantel_p():
    pairs = _grid({"a": 1.0, "b": 1.0, "c": 1.0})
    corr = S.correlation_table(pairs, n_perm=999, n_boot=200, partial=False)
    counts = P.pair_counts(corr, ["a", "b", "c"], LANGS)
    assert (counts["n_pairs"] == 3 * 5).all() and (counts["n_max"] == 15).all()
    assert corr["r"].to_numpy() == pytest.approx(1.0)  # impact is the distance itself
    # 3! x 3! = 36 distinct label permutations (sources among sources): the identity alone is drawn about
    # 1/36 of the time, so p stays near or above 1/36 however many are drawn (999 draws: sd of 1/36 is ~0.005),
    # where an independent-pairs permutation of 15 values could reach 1/1000
    assert (corr["p_perm"] > 1 / 36 - 3 * np.sqrt(1 / 36 / 999)).all() and (corr["p_perm"] < 0.2).all()
    too_many = corr.assign(n=16)
    with pytest.raises(ValueError, match="15 ordered pairs"):
        P.pair_counts(too_many, ["a", "b", "c"], LANGS)


def test_per_source_correlations_and_their_spread():
    pairs = _grid({"a": 1.0, "b": -1.0, "c": 1.0})
    per = P.per_source_correlations(pairs, n_perm=200, n_boot=100, methods=("pearson",))
    assert set(per["source"]) == {"a", "b", "c"} and (per["n"] == 5).all()  # each source: its 5 other targets
    r = per.set_index("source")["r"]
    assert r["a"] == pytest.approx(1.0) and r["b"] == pytest.approx(-1.0) and r["c"] == pytest.approx(1.0)
    all_pairs = S.correlation_table(pairs, methods=("pearson",), n_perm=200, n_boot=100, partial=False)
    spread = P.source_spread(per, all_pairs=all_pairs).iloc[0]
    assert (spread["sources"], spread["positive"], spread["negative"], spread["n"]) == (3, 2, 1, "5")
    assert spread["r_min"] == pytest.approx(-1) and spread["r_max"] == pytest.approx(1)
    assert spread["r_mean"] == pytest.approx(1 / 3) and spread["r_sd"] == pytest.approx(np.std([1, -1, 1], ddof=1))
    assert spread["n_all_pairs"] == 15 and -1 < spread["r_all_pairs"] < 1  # the mixed signs pool to something between
    with pytest.raises(ValueError, match="same-language"):
        P.per_source_correlations(pd.concat([pairs, pairs.head(1).assign(target="a", source="a")]), n_perm=10, n_boot=10)


def test_compare_rows_and_direction_summary():
    a = SUPPORTED.copy()
    b = SUPPORTED.copy()
    b.loc[b.index[:3], "r"] *= -1  # three cells flip
    b["n"] = 210
    cmp = P.compare_rows(a, b, labels=("one", "two"))
    assert len(cmp) == len(a) and int((~cmp["same_direction"].astype(bool)).sum()) == 3
    assert (cmp["n_two"] == 210).all() and (cmp["n_one"] == 14).all()
    summ = P.direction_summary(cmp, labels=("one", "two"))
    row = summ.set_index(["family", "method"]).loc[("distance → impact", "pearson")]
    assert row["cells"] == 36 and row["same_direction"] == 33 and row["share"] == pytest.approx(33 / 36)


def test_compare_accuracy_excludes_the_source_and_ranks_targets():
    grid = pd.DataFrame({"source": "en", "target": ["en", "de", "fr", "sw"], "accuracy": [0.8, 0.6, 0.65, 0.4]})
    other = pd.DataFrame({"source": "en", "target": ["en", "de", "fr", "sw", "zh"], "value": [0.9, 0.7, 0.75, 0.5, 0.6]})
    table, summ = P.compare_accuracy(grid, other, "en", labels=("grid", "full"))
    assert list(table["target"]) == ["de", "fr", "sw"] and summ["n"] == 3
    assert summ["spearman"] == pytest.approx(1.0) and summ["mean_diff"] == pytest.approx(-0.1)
    with pytest.raises(ValueError, match="missing"):
        P.compare_accuracy(grid, other, "de")


def test_claims_and_selection_by_scope():
    out = P.claims_by_scope({"all pairs": SUPPORTED, "one source": MIXED}, primary={}).set_index("claim")
    assert out.loc["a", "all pairs"] == "supported" and out.loc["c", "one source"] == "mixed"
    assert bool(out.loc["c", "changed"]) and "all pairs evidence" in out.columns
    same = P.claims_by_scope({"x": SUPPORTED, "y": SUPPORTED}, primary={})
    assert not same["changed"].any()
    # genetic r is -0.6 at every layer in SUPPORTED: ties go to the lowest blocks; doubled r in blocks 10-12 wins there
    sel = P.selection_by_scope({"all": SUPPORTED, "en": MIXED.assign(r=MIXED["r"] * np.where(MIXED["layer"] > 9, 2, 1))},
                               k=3, distance_kind="genetic", database="lang2vec", n_layers=12)
    assert list(sel["blocks"]) == ["1,2,3", "10,11,12"] and list(sel["same_as_first"]) == [True, False]
    empty = P.selection_by_scope({"all": SUPPORTED, "none": SUPPORTED.assign(r=np.nan)}, k=3, distance_kind="genetic",
                                 database="lang2vec", n_layers=12)
    assert list(empty["blocks"]) == ["1,2,3", ""] and "finite r" in empty["note"].iloc[1]


def test_zero_shot_by_target_leaves_out_each_targets_own_source():
    acc = pd.DataFrame({"source": ["en", "en", "en", "de", "de", "de"], "target": ["en", "de", "sw", "en", "de", "sw"],
                        "accuracy": [0.9, 0.6, 0.4, 0.5, 0.8, 0.3]})
    got = P.zero_shot_by_target(acc)
    assert got.to_dict() == pytest.approx({"en": 0.5, "de": 0.6, "sw": 0.35})
    # one source: the source itself has no zero-shot row at all
    assert "en" not in P.zero_shot_by_target(acc[acc["source"] == "en"]).index
