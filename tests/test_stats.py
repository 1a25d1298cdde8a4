"""Correlation statistics on toy data whose answers are known independently."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from xldrift.analysis import stats as S


def _distance_design(rng, n_lang=12):
    """All ordered pairs of n_lang languages; x, y = distances between two independent point sets."""
    langs = [f"l{i}" for i in range(n_lang)]
    pairs = [(a, b) for a in range(n_lang) for b in range(n_lang) if a != b]
    p1, p2 = rng.normal(size=(n_lang, 2)), rng.normal(size=(n_lang, 2))
    return pd.DataFrame({
        "source": [langs[a] for a, _ in pairs], "target": [langs[b] for _, b in pairs],
        "x": [np.linalg.norm(p1[a] - p1[b]) for a, b in pairs],
        "y": [np.linalg.norm(p2[a] - p2[b]) for a, b in pairs]})


@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_correlate_matches_scipy(method):
    rng = np.random.default_rng(1)
    x = rng.normal(size=20)
    y = 0.5 * x + rng.normal(size=20)
    res = S.correlate(x, y, method=method, n_perm=2000, n_boot=500)
    ref = (st.pearsonr if method == "pearson" else st.spearmanr)(x, y)
    assert res["r"] == pytest.approx(ref.statistic, abs=1e-12)
    assert res["p"] == pytest.approx(ref.pvalue, abs=1e-12)
    assert res["n"] == 20
    assert res["ci_low"] < res["r"] < res["ci_high"]


def test_perfectly_monotone_data():
    x = np.arange(10.0)
    y = np.exp(x)  # monotone but far from linear
    res = S.correlate(x, y, method="spearman", n_perm=5000, n_boot=500)
    assert res["r"] == pytest.approx(1.0)
    # only the identity (and reversal) reach |r| = 1: 2 of 10! orderings
    assert res["p_perm"] <= 2 / 5001
    assert res["ci_low"] == pytest.approx(1.0) and res["ci_high"] == pytest.approx(1.0)
    assert S.correlate(x, y, method="pearson", n_perm=0, n_boot=0)["r"] < 0.9


def test_permutation_p_matches_exact_enumeration():
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    y = np.array([2.0, 1.0, 4.0, 3.0, 6.0, 5.0])
    r = np.corrcoef(x, y)[0, 1]
    null = [np.corrcoef(x, y[list(p)])[0, 1] for p in itertools.permutations(range(6))]
    exact = np.mean(np.abs(null) >= abs(r) - 1e-12)
    res = S.correlate(x, y, n_perm=20000, n_boot=0)
    assert res["p_perm"] == pytest.approx(exact, abs=0.01)


def test_permutation_p_close_to_t_test_for_normal_data():
    rng = np.random.default_rng(3)
    x = rng.normal(size=40)
    y = 0.3 * x + rng.normal(size=40)
    res = S.correlate(x, y, n_perm=10000, n_boot=0)
    assert res["p_perm"] == pytest.approx(res["p"], abs=0.02)


def test_independent_data_rejects_at_nominal_rate():
    rng = np.random.default_rng(4)
    ps = [S.correlate(rng.normal(size=25), rng.normal(size=25), n_perm=499, n_boot=0, seed=i)["p_perm"]
          for i in range(200)]
    assert 0.01 <= np.mean(np.array(ps) < 0.05) <= 0.10
    assert np.median(ps) > 0.3


def test_too_few_observations_and_nans_give_nan_with_n():
    with pytest.warns(RuntimeWarning, match="fewer than 4"):
        res = S.correlate([1.0, 2.0, np.nan, 4.0], [1.0, 3.0, 2.0, np.nan])
    assert res["n"] == 2 and np.isnan(res["r"]) and np.isnan(res["p_perm"])
    res = S.correlate([1.0, 2.0, np.nan, 4.0, 5.0, 7.0], [1.0, 3.0, 2.0, 5.0, 4.0, 9.0], n_perm=100, n_boot=50)
    assert res["n"] == 5 and np.isfinite(res["r"])
    with pytest.warns(RuntimeWarning, match="constant"):
        assert np.isnan(S.correlate([1.0, 1.0, 1.0, 1.0, 1.0], [1.0, 2.0, 3.0, 4.0, 5.0])["r"])


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="method"):
        S.correlate([1, 2, 3, 4], [1, 2, 3, 4], method="kendall")
    with pytest.raises(ValueError, match="same length"):
        S.correlate([1, 2, 3, 4], [1, 2, 3])


def test_mantel_excludes_same_language_pairs():
    df = pd.DataFrame({"source": ["a", "a", "b"], "target": ["a", "b", "a"], "x": [0, 1, 1], "y": [1, 2, 2]})
    with pytest.raises(ValueError, match="same-language"):
        S.mantel_correlate(df)


def test_mantel_with_one_source_is_the_ordinary_test():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=14), rng.normal(size=14)
    df = pd.DataFrame({"source": "en", "target": [f"t{i}" for i in range(14)], "x": x, "y": y})
    m, c = S.mantel_correlate(df, n_perm=20000, n_boot=0), S.correlate(x, y, n_perm=20000, n_boot=0)
    assert m["r"] == pytest.approx(c["r"]) and m["p"] == pytest.approx(c["p"])
    assert m["p_perm"] == pytest.approx(c["p_perm"], abs=0.015)


def test_mantel_controls_false_positives_that_the_naive_p_does_not():
    rng = np.random.default_rng(0)
    naive = mantel = 0
    for sim in range(100):
        res = S.mantel_correlate(_distance_design(rng), n_perm=499, n_boot=0, seed=sim)
        naive += res["p"] < 0.05
        mantel += res["p_perm"] < 0.05
    assert mantel <= 10  # nominal 5 of 100
    assert naive >= 20  # pairs sharing languages make the analytic p far too small


def test_mantel_detects_a_real_relation_and_its_ci_covers_r():
    rng = np.random.default_rng(6)
    df = _distance_design(rng)
    df["y"] = df["x"] + rng.normal(scale=0.3, size=len(df))
    res = S.mantel_correlate(df, method="spearman", n_perm=2000, n_boot=500)
    assert res["r"] > 0.6 and res["p_perm"] < 0.01
    assert res["ci_low"] < res["r"] < res["ci_high"] and res["ci_low"] > 0
    assert res["n"] == 12 * 11


def test_holm_and_bh_hand_worked():
    p = [0.01, 0.04, 0.03, 0.005]
    # Holm: sorted 0.005*4, 0.01*3, 0.03*2, max(0.04*1, 0.06)
    np.testing.assert_allclose(S.adjust_pvalues(p, "holm"), [0.03, 0.06, 0.06, 0.02])
    # BH: sorted 0.005*4/1, 0.01*4/2, 0.03*4/3, 0.04*4/4, then running minimum from the top
    np.testing.assert_allclose(S.adjust_pvalues(p, "bh"), [0.02, 0.04, 0.04, 0.02])
    with_nan = S.adjust_pvalues([0.01, np.nan, 0.04, 0.03, 0.005], "holm")
    assert np.isnan(with_nan[1])
    np.testing.assert_allclose(np.delete(with_nan, 1), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(S.adjust_pvalues([0.5, 0.6], "holm"), [1.0, 1.0])
    with pytest.raises(ValueError, match="holm"):
        S.adjust_pvalues(p, "bonferroni")


def test_partial_spearman_removes_a_confounder():
    rng = np.random.default_rng(7)
    z = rng.normal(size=60)
    x, y = z + 0.3 * rng.normal(size=60), z + 0.3 * rng.normal(size=60)
    assert S.correlate(x, y, method="spearman", n_perm=0, n_boot=0)["r"] > 0.7
    res = S.partial_spearman(x, y, z, n_perm=2000, n_boot=300)
    assert abs(res["r"]) < 0.3 and res["p_perm"] > 0.05
    # the same number from the textbook formula on Spearman coefficients
    rxy, rxz, ryz = (st.spearmanr(a, b).statistic for a, b in ((x, y), (x, z), (y, z)))
    assert res["r"] == pytest.approx((rxy - rxz * ryz) / np.sqrt((1 - rxz**2) * (1 - ryz**2)), abs=1e-10)


def test_partial_spearman_keeps_a_direct_relation():
    rng = np.random.default_rng(8)
    z = rng.normal(size=60)
    x = z + rng.normal(size=60)
    y = x + 0.3 * rng.normal(size=60)
    res = S.partial_spearman(x, y, z, n_perm=2000, n_boot=300)
    assert res["r"] > 0.6 and res["p_perm"] < 0.01 and res["ci_low"] > 0


def _pairs_frame(rng, with_same: bool) -> pd.DataFrame:
    targets = [f"t{i}" for i in range(10)]
    rows = []
    for layer in (1, 2):
        dist = rng.uniform(size=10)
        for kind in ("genetic", "syntactic"):
            for t, d in zip(targets, dist):
                rows.append(dict(x=f"distance:{kind}", y="impact", layer=layer, pooling="cls", metric="linear_cka",
                                 database="lang2vec", source="en", target=t, x_value=d,
                                 y_value=d + rng.normal(scale=0.2)))
            if with_same:  # distance 0 and extreme impact would dominate if kept
                rows.append(dict(x=f"distance:{kind}", y="impact", layer=layer, pooling="cls", metric="linear_cka",
                                 database="lang2vec", source="en", target="en", x_value=0.0, y_value=-50.0))
    return pd.DataFrame(rows)


def test_correlation_table_excludes_same_language_pairs():
    clean = _pairs_frame(np.random.default_rng(9), with_same=False)
    dirty = _pairs_frame(np.random.default_rng(9), with_same=True)
    assert (dirty["source"] == dirty["target"]).any()
    a = S.correlation_table(clean, n_perm=500, n_boot=100)
    b = S.correlation_table(dirty, n_perm=500, n_boot=100)
    pd.testing.assert_frame_equal(a, b)
    assert list(a.columns) == S.COLUMNS
    assert set(a["n"]) == {10}
    assert len(a) == 2 * 2 * 2  # kinds x layers x methods


def test_correlation_table_adjusts_within_each_family():
    table = S.correlation_table(_pairs_frame(np.random.default_rng(10), with_same=False), n_perm=500, n_boot=50)
    for _, fam in table.groupby("method"):  # one family per method here: 2 kinds x 2 layers
        np.testing.assert_allclose(fam["p_adj"], S.adjust_pvalues(fam["p_perm"], "holm"))
        assert (fam["p_adj"] >= fam["p_perm"]).all()


def test_pair_table_builds_the_three_families_and_averages_seeds():
    langs = ["en", "de", "th"]
    distances = pd.DataFrame([("en", "de", "genetic", "lang2vec", 0.4), ("en", "th", "genetic", "lang2vec", 1.0),
                              ("de", "th", "genetic", "lang2vec", 1.0)],
                             columns=["lang_a", "lang_b", "kind", "database", "value"])
    impact = pd.DataFrame([(s, t, 1, "cls", "linear_cka", seed, 0.1 * seed) for s in langs for t in langs
                           for seed in (1, 3)], columns=["source", "target", "layer", "pooling", "metric", "seed", "value"])
    accuracy = pd.DataFrame([(s, t, 0.8) for s in langs for t in langs], columns=["source", "target", "value"])
    out = S.pair_table(distances, impact, accuracy, covariate={"en": 2.0, "de": 1.0, "th": 0.5})
    assert (out["source"] != out["target"]).all()
    assert set(zip(out["x"], out["y"])) == {("distance:genetic", "impact"), ("impact", "accuracy"),
                                            ("distance:genetic", "accuracy")}
    fam1 = out[out["y"].eq("impact")]
    assert len(fam1) == 6 and np.allclose(fam1["y_value"], 0.2)  # mean of seeds 1 and 3 times 0.1
    th_de = fam1[(fam1["source"] == "th") & (fam1["target"] == "de")]
    assert th_de["x_value"].item() == 1.0  # distances are mirrored
    assert out.loc[out["target"] == "de", "z"].eq(1.0).all()
    fam3 = out[out["y"].eq("accuracy") & out["x"].str.startswith("distance")]
    assert fam3["layer"].isna().all() and fam3["database"].eq("lang2vec").all()


def test_mantel_tolerates_a_missing_pair():
    df = _distance_design(np.random.default_rng(12))
    df["y"] = df["x"] + np.random.default_rng(13).normal(scale=0.3, size=len(df))
    df = df.drop(index=[0, 5]).reset_index(drop=True)  # two pairs a database could not compare
    res = S.mantel_correlate(df, method="spearman", n_perm=500, n_boot=100)
    assert res["n"] == 12 * 11 - 2 and res["p_perm"] < 0.01 and res["ci_low"] < res["r"] < res["ci_high"]


def test_correlation_table_adds_partial_rows_with_a_covariate():
    pairs = _pairs_frame(np.random.default_rng(14), with_same=False)
    pairs["z"] = pairs["target"].map({f"t{i}": float(i) for i in range(10)})
    table = S.correlation_table(pairs, n_perm=200, n_boot=50)
    assert set(table["method"]) == {"pearson", "spearman", "partial_spearman"}
    part = table[table["method"] == "partial_spearman"]
    assert len(part) == 4 and part["r"].between(-1, 1).all()
