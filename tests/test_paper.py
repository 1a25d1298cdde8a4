"""The paper's reading: precomputed distances, placeholder rows, pair conventions, AVG rows, the step table."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from xldrift.analysis import claims, correlation, paper, precomputed, stats


def _table(langs: list[str], value) -> pd.DataFrame:
    """A long distance table over every unordered pair, ``value(a, b)`` per kind."""
    rows = [(a, b, k, value(a, b, k)) for a, b in itertools.combinations(sorted(langs), 2)
            for k in ("syntactic", "genetic", "geographic")]
    return pd.DataFrame(rows, columns=["iso_a", "iso_b", "kind", "value"])


FAMILIES = {"aaa": "F1", "bbb": "F1", "ccc": "F2", "ddd": "F3", "eee": "F2"}


def _normal(a, b, k):
    i, j = sorted(FAMILIES).index(a), sorted(FAMILIES).index(b)
    if k == "genetic":
        return 0.3 if FAMILIES[a] == FAMILIES[b] else 1.0
    return round(0.1 + 0.07 * abs(i - j) + 0.01 * (i + j), 4)


def test_placeholders_flag_zero_to_unrelated_and_constant_rows_only():
    def value(a, b, k):
        if k == "syntactic" and {a, b} == {"aaa", "ddd"}:
            return 0.0  # unrelated (F1 vs F3) at zero distance
        if k == "syntactic" and {a, b} == {"aaa", "bbb"}:
            return 0.0  # related: not a placeholder
        if k == "geographic" and "ccc" in (a, b):
            return 1.0  # one value to every language
        return _normal(a, b, k)

    flags = precomputed.placeholders(_table(list(FAMILIES), value), FAMILIES)
    got = set(zip(flags["kind"], flags["language"], flags["rule"]))
    assert got == {("syntactic", "aaa", "zero to unrelated"), ("syntactic", "ddd", "zero to unrelated"),
                   ("geographic", "ccc", "constant row")}


def test_placeholders_leave_a_normal_table_and_a_lone_family_alone():
    # genetic: ddd has no relative, so 1.0 to everyone is right; geographic zero between families is not checked
    def value(a, b, k):
        return 0.0 if k == "geographic" and {a, b} == {"ccc", "ddd"} else _normal(a, b, k)

    assert precomputed.placeholders(_table(list(FAMILIES), value), FAMILIES).empty
    # aaa at 1.0 from everyone, its relative bbb included: both rows become constant with a relative at 1.0
    # (as ara and heb in the committed table)
    flags = precomputed.placeholders(_table(list(FAMILIES), lambda a, b, k: 1.0 if k == "genetic" and "aaa" in (a, b)
                                            else _normal(a, b, k)), FAMILIES)
    assert set(zip(flags["kind"], flags["language"])) == {("genetic", "aaa"), ("genetic", "bbb")}


def test_committed_table_loads_covers_xnli_and_reports_the_rest():
    t = precomputed.load_table()
    assert {"eng", "fra", "ara", "swa", "zho"} <= set(precomputed.table_languages(t))
    assert set(t["kind"]) == set(precomputed.KINDS)
    codes = {"en": "eng", "fr": "fra", "ar": "arb", "xx": "qqq"}
    cov = precomputed.coverage(codes, t).set_index("task_code")
    assert cov.loc["en", "status"] == "exact" and cov.loc["ar", "used_code"] == "ara"
    assert cov.loc["ar", "status"] == "macrolanguage" and cov.loc["xx", "status"] == "not covered"
    d, _ = precomputed.distances(codes, "en", t)
    assert set(d["lang_b"]) == {"fr", "ar"} and (d["database"] == precomputed.DATABASE).all()
    row = t[(t["iso_a"] == "eng") & (t["iso_b"] == "fra") & (t["kind"] == "syntactic")]
    assert d[(d["lang_b"] == "fr") & (d["kind"] == "syntactic")]["value"].item() == row["value"].item()
    with pytest.raises(ValueError, match="no precomputed distances"):
        precomputed.distances(codes, "xx", t)


def test_load_table_rejects_bad_values(tmp_path):
    bad = tmp_path / "t.csv"
    pd.DataFrame({"iso_a": ["aaa"], "iso_b": ["bbb"], "kind": ["syntactic"], "value": [1.5]}).to_csv(bad, index=False)
    with pytest.raises(ValueError, match="outside"):
        precomputed.load_table(bad)


def _toy(n_targets: int = 14, seed: int = 0):
    rng = np.random.default_rng(seed)
    langs = ["en"] + [f"t{i:02d}" for i in range(n_targets)]
    dist = pd.DataFrame([("en", t, k, "db", rng.uniform(0.1, 1)) for t in langs[1:] for k in ("syntactic", "genetic")],
                        columns=["lang_a", "lang_b", "kind", "database", "value"])
    impact = pd.DataFrame([("en", t, layer, "cls", "linear_cka", rng.uniform()) for t in langs for layer in (0, 1, 2, 3)],
                          columns=["source", "target", "layer", "pooling", "metric", "value"])
    acc = pd.DataFrame([("en", t, 0.9 if t == "en" else rng.uniform(0.4, 0.7)) for t in langs],
                       columns=["source", "target", "value"])
    return dist, impact, acc


def test_paper_convention_keeps_the_same_language_point_in_the_accuracy_families_only():
    dist, impact, acc = _toy()
    pairs = stats.pair_table(dist, impact, acc)
    same = paper.same_language_pairs(impact, acc, {"db": ["syntactic", "genetic"]})
    assert (same["source"] == same["target"]).all() and (same.loc[same["x"] != "impact", "x_value"] == 0).all()
    t = paper.paper_table(pairs, same, {}, "db", methods=["pearson"])
    ia = t[(t["x"] == "impact") & (t["layer"] == 1)].iloc[0]
    di = t[(t["x"] == "distance:syntactic") & (t["y"] == "impact") & (t["layer"] == 1)].iloc[0]
    da = t[(t["x"] == "distance:syntactic") & (t["y"] == "accuracy")].iloc[0]
    assert (ia["n"], ia["same_language"]) == (15, 1)
    assert (di["n"], di["same_language"]) == (14, 0)
    assert (da["n"], da["same_language"]) == (15, 1)
    # the value is scipy's Pearson r over the 15 points, the same-language one included
    g = pd.concat([pairs, same])
    g = g[(g["x"] == "impact") & (g["layer"] == 1)]
    assert ia["r"] == pytest.approx(np.corrcoef(g["x_value"], g["y_value"])[0, 1])
    # without the convention (our reading) the cell has 14 pairs
    ours = stats.correlation_table(pairs[(pairs["x"] == "impact") & (pairs["layer"] == 1)], methods=["pearson"],
                                   n_perm=99, n_boot=0)
    assert ours["n"].item() == 14


def test_avg_row_is_the_correlation_with_impact_averaged_over_layers_1_up():
    dist, impact, acc = _toy()
    pairs = paper.add_layer_mean(stats.pair_table(dist, impact, acc))
    avg = pairs[(pairs["y"] == paper.AVG) & (pairs["x"] == "distance:genetic")].set_index("target")
    expected = impact[impact["layer"] >= 1].groupby("target")["value"].mean()
    assert np.allclose(avg["y_value"], expected.loc[avg.index])
    assert avg["layer"].isna().all() and len(avg) == 14
    corr = stats.correlation_table(pairs[(pairs["y"] == paper.AVG) | (pairs["x"] == paper.AVG)], methods=["pearson"],
                                   n_perm=199, n_boot=50)
    row = corr[(corr["x"] == "distance:genetic") & (corr["y"] == paper.AVG)].iloc[0]
    assert row["n"] == 14 and np.isfinite(row["p_perm"]) and row["ci_low"] <= row["r"] <= row["ci_high"]


def test_placeholder_languages_are_dropped_per_kind():
    dist, impact, acc = _toy()
    pairs = stats.pair_table(dist, impact, acc)
    t = paper.paper_table(pairs, paper.same_language_pairs(impact, acc, {"db": ["syntactic"]}),
                          {"syntactic": ["t00", "t01"]}, "db", methods=["pearson"])
    dropped = t[t["languages"] == "without placeholders"]
    assert set(dropped["x"]) == {"distance:syntactic"}
    assert (dropped.loc[dropped["y"] == "impact", "n"] == 12).all()


def test_steps_end_at_the_corrected_reading():
    dist, impact, acc = _toy()
    pre = dist.assign(database=precomputed.DATABASE, value=dist["value"] ** 2)
    pairs = stats.pair_table(pd.concat([dist.assign(database="db"), pre]), impact, acc)
    same = paper.same_language_pairs(impact, acc, {precomputed.DATABASE: ["syntactic", "genetic"]})
    variant = dict(database="db", pooling="cls", metric="linear_cka", method="pearson")
    s = paper.steps(pairs, same, {}, variant, covered=["en"] + [f"t{i:02d}" for i in range(14)], n_perm=199)
    assert list(s["step"]) == ["0", "0b", "1", "2", "3", "4", "5", "6", "7"]
    assert s.iloc[0]["database"] == precomputed.DATABASE and s.iloc[0]["same_language"] == "kept"
    corrected = stats.correlation_table(pairs[pairs["database"].isin(["db"]) | (pairs["x"] == "impact")],
                                        methods=["pearson"], partial=False, n_perm=199, n_boot=0)
    want = claims.evaluate_claims(corrected, primary=variant).set_index("claim")["verdict"]
    assert [s.iloc[-1][c] for c in "abc"] == [want[c] for c in "abc"]
    assert s.iloc[0]["n"].endswith("/ 15") and s.iloc[-1]["n"].endswith("/ 14")


def test_starred_marks_by_unadjusted_p():
    rows = pd.DataFrame({"x": ["distance:syntactic"] * 3, "layer": [1, 2, np.nan], "r": [-0.9, 0.1, -0.5],
                         "p": [0.001, 0.6, 0.03], "languages": "all"})
    out = correlation.starred(rows)
    assert list(out.columns[-3:]) == ["1", "2", "AVG"]
    assert out.iloc[0][["1", "2", "AVG"]].tolist() == ["-0.90**", "+0.10", "-0.50*"]


def test_report_does_not_flag_the_source_of_a_star_table_and_effect_gives_both_readings():
    fam = {"en": "F1", "de": "F1", "xx": "F2", "yy": "F3", "zz": "F4", "ww": "F5"}
    star = pd.DataFrame([("en", t, "syntactic", "db", 0.0 if t == "xx" else 0.2 + 0.1 * i)
                         for i, t in enumerate(["de", "xx", "yy", "zz", "ww"])],
                        columns=["lang_a", "lang_b", "kind", "database", "value"])
    pre = precomputed.load_table()
    cov = precomputed.coverage({"en": "eng"}, pre)
    flags = correlation.placeholder_report(pre, cov, star, fam, sources=["en"])
    mine = flags[flags["database"] == "db"]
    assert set(zip(mine["kind"], mine["language"])) == {("syntactic", "xx")}
    assert correlation.flagged_by_database(flags)["db"] == {"syntactic": ["xx"]}
    # without the sources argument both ends of the zero are flagged
    both = correlation.placeholder_report(pre, cov, star, fam)
    assert set(both.loc[both["database"] == "db", "language"]) == {"en", "xx"}

    dist, impact, acc = _toy()
    pairs = stats.pair_table(dist, impact, acc)
    variant = dict(pooling="cls", metric="linear_cka")
    eff = correlation.placeholder_effect(pairs, {"db": {"genetic": ["t00", "t01", "t02"]}}, variant, n_perm=99)
    assert set(eff["x"]) == {"distance:genetic"} and set(eff["y"]) == {"impact", "accuracy"}
    assert (eff["n_all"] == 14).all() and (eff["n_without"] == 11).all()
    assert not np.allclose(eff["r_all"], eff["r_without"])


def test_side_by_side_heatmap_has_one_colour_scale_and_an_avg_column():
    import matplotlib

    matplotlib.use("Agg")
    from xldrift import plots

    rows = pd.DataFrame({"x": ["distance:syntactic"] * 3 + ["distance:genetic"] * 3, "layer": [1, 2, np.nan] * 2,
                         "r": [-0.9, 0.2, -0.5, 0.1, -0.3, 0.0], "p": [0.001, 0.5, 0.03, 0.7, 0.2, 0.9], "n": 14})
    fig = plots.paper_vs_corrected([("paper", rows, "p"), ("ours", rows.assign(p_adj=rows["p"] * 20), "p_adj")])
    heat = [ax for ax in fig.axes if ax.images]
    assert len(heat) == 2
    assert [t.get_text() for t in heat[0].get_xticklabels()] == ["1", "2", "AVG"]
    assert {im.norm.vmin for ax in heat for im in ax.images} == {-1} and {im.norm.vmax for ax in heat for im in ax.images} == {1}
    texts = [t.get_text() for t in heat[0].texts]
    assert "-0.90**" in texts and "-0.50*" in texts
    assert "-0.90*" in [t.get_text() for t in heat[1].texts]  # p_adj 0.02: one star by the right panel's rule
    with pytest.raises(ValueError, match="at least one panel"):
        plots.paper_vs_corrected([])
