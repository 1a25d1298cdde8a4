"""Inputs, covariates and readings of the correlation study, on small tables built by hand."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from xldrift.analysis import correlation as C  # noqa: E402
from xldrift import plots
from xldrift.analysis import claims, stats  # noqa: E402
from xldrift.analysis import pretraining as PT  # noqa: E402

TARGETS = ["t%02d" % i for i in range(14)]


def _drift(seeds=(0,), metrics=("linear_cka",), poolings=("cls",), layers=(1, 2, 3), targets=("en", "de", "sw")):
    rows = [dict(model="m", task="xnli", source="en", target=t, seed=s, layer=la, pooling=p, metric=m,
                 similarity=0.9 - 0.01 * la - 0.1 * s)
            for s in seeds for t in targets for la in layers for p in poolings for m in metrics]
    return pd.DataFrame(rows)


def _accuracy(values: dict[str, list[float]], condition="full"):
    return pd.DataFrame([dict(model="m", task="xnli", source="en", target=t, seed=i, condition=condition,
                              accuracy=v, n=100) for t, vs in values.items() for i, v in enumerate(vs)])


# -- inputs ------------------------------------------------------------------------
def test_impact_is_one_minus_similarity_and_filters():
    drift = _drift(metrics=("linear_cka", "rbf_cka"), poolings=("cls", "mean"))
    imp = C.impact_table(drift, poolings=["cls"], metrics=["rbf_cka"], targets=["de", "sw"])
    assert set(imp["pooling"]) == {"cls"} and set(imp["metric"]) == {"rbf_cka"} and set(imp["target"]) == {"de", "sw"}
    merged = imp.merge(drift, on=["source", "target", "seed", "layer", "pooling", "metric"])
    np.testing.assert_allclose(merged["value"], 1 - merged["similarity"])


def test_impact_table_names_what_is_missing():
    with pytest.raises(ValueError, match=r"no metric \['procrustes'\].*linear_cka"):
        C.impact_table(_drift(), poolings=["cls"], metrics=["procrustes"])
    with pytest.raises(ValueError, match=r"no target \['fr'\]"):
        C.impact_table(_drift(), poolings=["cls"], metrics=["linear_cka"], targets=["de", "fr"])
    with pytest.raises(ValueError, match="lacks column"):
        C.impact_table(_drift().drop(columns="similarity"), poolings=["cls"], metrics=["linear_cka"])


def test_accuracy_keeps_full_fine_tuning_only():
    acc = pd.concat([_accuracy({"de": [0.6]}), _accuracy({"de": [0.1]}, condition="targeted")])
    out = C.accuracy_inputs(acc)
    assert out["value"].tolist() == [0.6]
    with pytest.raises(ValueError, match="condition 'full'"):
        C.accuracy_inputs(_accuracy({"de": [0.1]}, condition="targeted"))


def test_model_name_must_be_unique():
    assert C.model_name(_drift(), _accuracy({"de": [0.5]})) == "m"
    with pytest.raises(ValueError, match="one model"):
        C.model_name(_drift(), _accuracy({"de": [0.5]}).assign(model="other"))


def test_seed_spread_matches_hand_computed_sd():
    drift = _drift(seeds=(0, 1))  # impact differs by exactly 0.1 between the two seeds
    imp, acc = C.seed_spread(C.impact_table(drift, poolings=["cls"], metrics=["linear_cka"]),
                             C.accuracy_inputs(_accuracy({"de": [0.5, 0.7], "sw": [0.4, 0.4]})))
    assert imp["n_seeds"].iloc[0] == 2
    assert imp["median_sd"].iloc[0] == pytest.approx(0.1 / math.sqrt(2))
    de = acc.set_index("target").loc["de"]
    assert (de["mean"], de["sd"], de["min"], de["max"]) == pytest.approx((0.6, math.sqrt(0.02), 0.5, 0.7))
    one = C.seed_spread(C.impact_table(_drift(), poolings=["cls"], metrics=["linear_cka"]),
                        C.accuracy_inputs(_accuracy({"de": [0.5]})))
    assert np.isnan(one[1]["sd"].iloc[0]) and one[0]["n_seeds"].iloc[0] == 1


# -- covariates --------------------------------------------------------------------
@pytest.mark.parametrize("name, corpus", [
    ("e5-small-q4", "cc100"), ("intfloat/multilingual-e5-small", "cc100"), ("xlm-roberta-base", "cc100"),
    ("FacebookAI/xlm-roberta-large", "cc100"), ("bert-base-multilingual-cased", "wikipedia"),
    ("bert-base-uncased", None), ("/models/my-encoder", None)])
def test_pretraining_corpus_by_model_name(name, corpus):
    assert PT.pretraining_corpus(name) == corpus


def test_pretraining_covariate_lookup_and_macrolanguage():
    languages = pd.DataFrame({"code": ["en", "sw", "xx", "swh_Latn"], "iso639_3": ["eng", "swh", "xyz", "swh"]})
    sizes = pd.DataFrame({"iso639_3": ["eng"], "task_code": ["en"], "cc100_gib": [300.0], "wiki_articles_k": [6000.0]})
    xlmr = pd.DataFrame({"iso639_3": ["swa"], "cc100_gib": [1.6]})
    size, what = PT.pretraining_covariate("xlm-roberta-base", languages, sizes, xlmr)
    assert size["en"] == 300.0 and size["sw"] == 1.6 and size["swh_Latn"] == 1.6 and np.isnan(size["xx"])
    assert "CC-100" in what
    wiki, what = PT.pretraining_covariate("bert-base-multilingual-cased", languages, sizes, xlmr)
    assert wiki["en"] == 6000.0 and np.isnan(wiki["sw"]) and "Wikipedia" in what  # CC-100 table not used for mBERT
    none, what = PT.pretraining_covariate("bert-base-uncased", languages, sizes, xlmr)
    assert none.empty and "no pretraining-size table" in what


def test_committed_covariate_covers_every_xnli_language():
    from xldrift.data import languages
    from xldrift.study import paths

    table = languages.language_table(sorted(languages.XNLI_LANGUAGES), "xnli")
    sizes = pd.read_csv(paths.ROOT / "data" / "pretraining_size.csv")
    for model in ("e5-small-q4", "bert-base-multilingual-cased"):
        size, _ = PT.pretraining_covariate(model, table, sizes)
        assert size.notna().all() and (size > 0).all(), model


# -- coverage ----------------------------------------------------------------------
def test_exclusions_lists_gaps_and_checks_they_are_really_excluded():
    coverage = pd.DataFrame([
        dict(task_code="ur", iso639_3="urd", kind="phonological", database="urielplus", status="excluded",
             used_code="", partner="", reason="no phonological data for urd"),
        dict(task_code="de", iso639_3="deu", kind="phonological", database="urielplus", status="ok",
             used_code="deu", partner="", reason="")])
    distances = pd.DataFrame([dict(lang_a="en", lang_b="de", kind="phonological", database="urielplus", value=0.3)])
    out = C.exclusions(coverage, distances)
    assert out["task_code"].tolist() == ["ur"]
    leaked = pd.concat([distances, distances.assign(lang_b="ur")])
    with pytest.raises(ValueError, match="ur is excluded"):
        C.exclusions(coverage, leaked)


# -- selections ----------------------------------------------------------------------
def test_strongest_takes_largest_absolute_r_lower_layer_on_ties():
    corr = pd.DataFrame({"x": ["a"] * 4 + ["b"] * 2, "layer": [1, 2, 3, 4, 1, 2],
                         "r": [0.2, -0.7, 0.7, np.nan, np.nan, np.nan]})
    best = C.strongest(corr)
    assert best["x"].tolist() == ["a"] and best["layer"].tolist() == [2]


def test_primary_variant_prefers_the_papers_choices():
    assert C.primary_variant(["mean", "cls"], ["rbf_cka", "linear_cka"], ["urielplus"]) == dict(
        database="urielplus", pooling="cls", metric="linear_cka", method="pearson")
    assert C.primary_variant(["mean"], ["rbf_cka"], ["lang2vec"])["pooling"] == "mean"


# -- what the numbers allow -------------------------------------------------------------
def test_distinct_permutations_and_p_floor():
    assert claims.distinct_permutations(1, 6) == 120  # the 5 targets permuted, the source fixed
    assert claims.distinct_permutations(15, 15) == math.factorial(15)
    assert claims.distinct_permutations(2, 5) == 2 * 6
    p, holm = claims.smallest_p(1, 6, 10_000, 72, "holm")
    assert p == pytest.approx(1 / 120) and holm == pytest.approx(72 / 120)
    assert claims.smallest_p(1, 6, 10_000, 200, "holm")[1] == 1.0  # capped
    p, bh = claims.smallest_p(1, 6, 10_000, 72, "bh")
    assert bh == p
    p, holm = claims.smallest_p(1, 15, 999, 10, "holm")
    assert p == pytest.approx(1 / 1000) and holm == pytest.approx(0.01)
    with pytest.raises(ValueError, match="holm, bh"):
        claims.smallest_p(1, 6, 100, 3, "bonferroni")


def test_permutation_p_respects_the_floor():
    x = np.arange(5.0)  # a perfect relation among 5 languages: the floor binds
    res = stats.correlate(x, 2 * x + 1, n_perm=5000, n_boot=0)
    floor, _ = claims.smallest_p(1, 6, 5000, 1, "holm")
    assert res["p_perm"] >= floor * 0.9
    assert res["p_perm"] < 5 * floor  # and it is reached: only the identity and the reversal are as extreme


def _pairs(values_y, values_x, kinds=("genetic",), layers=(1, 2, 3), database="lang2vec", z=None):
    """A pair table for one source and len(TARGETS) targets."""
    rows = []
    for kind in kinds:
        for layer in layers:
            for i, t in enumerate(TARGETS):
                rows.append(dict(x=f"distance:{kind}", y="impact", layer=layer, pooling="cls", metric="linear_cka",
                                 database=database, source="en", target=t, x_value=values_x[i],
                                 y_value=values_y(layer)[i], z=np.nan if z is None else z[i]))
    return pd.DataFrame(rows)


def test_undefined_cells_say_why():
    rng = np.random.default_rng(0)
    x = rng.random(len(TARGETS))
    pairs = pd.concat([_pairs(lambda la: np.full(len(TARGETS), 0.5), x, layers=(1,)),
                       _pairs(lambda la: rng.random(len(TARGETS)), x, kinds=("syntactic",), layers=(2,)).head(3)])
    with pytest.warns(RuntimeWarning, match="undefined"):
        corr = stats.correlation_table(pairs, n_perm=100, n_boot=0, partial=False)
    out = C.undefined_cells(pairs, corr).set_index("reason")["cells"]
    assert out["y constant (0.5 for every pair)"] == 2  # pearson and spearman
    assert out[f"fewer than {stats.MIN_N} pairs"] == 2


def test_family_sizes_counts_cells_and_pairs():
    x = np.linspace(0, 1, len(TARGETS))
    pairs = _pairs(lambda la: x * la, x, kinds=("genetic", "syntactic"), layers=(1, 2, 3))
    out = C.family_sizes(pairs)
    assert out.to_dict("records") == [dict(x="distance", y="impact", cells=6, pairs_per_cell=len(TARGETS))]


# -- verdicts, partial, readings --------------------------------------------------------------
@pytest.fixture(scope="module")
def study():
    """Genetic distance drives impact at every layer in lang2vec; URIEL+ distances are noise."""
    rng = np.random.default_rng(1)
    x = rng.random(len(TARGETS))
    noise = rng.random(len(TARGETS))
    layers = tuple(range(1, 7))
    pairs = pd.concat([_pairs(lambda la: x + 0.05 * rng.standard_normal(len(TARGETS)), x, layers=layers),
                       _pairs(lambda la: x + 0.05 * rng.standard_normal(len(TARGETS)), noise, layers=layers,
                              database="urielplus")])
    corr = stats.correlation_table(pairs, n_perm=2000, n_boot=200, partial=False)
    return pairs, corr


def test_verdicts_follow_the_built_in_relation(study):
    _, corr = study
    grid = claims.verdict_grid(corr, 0.05).set_index(["database", "method"])
    assert grid.loc[("lang2vec", "pearson"), "a"] == "supported"
    assert grid.loc[("lang2vec", "spearman"), "a"] == "supported"
    assert grid.loc[("urielplus", "pearson"), "a"] == "not supported"


def test_findings_quote_the_table(study):
    _, corr = study
    variant = dict(database="lang2vec", pooling="cls", metric="linear_cka", method="pearson")
    from xldrift.analysis import claims

    verdicts = claims.evaluate_claims(corr, primary=variant)
    lines = C.findings(corr, verdicts, claims.verdict_grid(corr, 0.05), variant, 0.05, "holm")
    first = lines[0]
    rows = C.select(corr, y="impact", x_prefix="distance:", **variant)
    assert f"{int((rows['p_adj'] < 0.05).sum())} of {len(rows)} cells significant" in first
    assert f"n = {len(TARGETS)}" in first
    assert any("Claim (a)" in line and "supported" in line for line in lines)
    assert not any("not testable" in line for line in lines)
    capped = C.findings(corr, verdicts, claims.verdict_grid(corr, 0.05), variant, 0.05, "holm", p_adj_floor=0.6)
    assert any("not testable at this size" in line for line in capped)


def test_partial_spearman_removes_a_shared_cause():
    rng = np.random.default_rng(2)
    z = rng.random(len(TARGETS))  # exposure drives both distance-like x and impact y
    x = z + 0.05 * rng.standard_normal(len(TARGETS))
    pairs = _pairs(lambda la: z + 0.05 * rng.standard_normal(len(TARGETS)), x, layers=(1, 2), z=z)
    corr = stats.correlation_table(pairs, n_perm=200, n_boot=100)
    out = C.partial_comparison(corr, dict(database="lang2vec", pooling="cls", metric="linear_cka"))
    row = out.iloc[0]
    assert row["spearman"] > 0.8 and abs(row["partial"]) < row["spearman"] - 0.4
    assert row["n"] == row["n_partial"] == len(TARGETS)


# -- figures --------------------------------------------------------------------------
def test_heatmap_marks_use_the_given_p_and_blank_undefined_cells():
    rows = []
    for db in ("lang2vec", "urielplus"):
        for pooling in ("cls", "mean"):
            for kind in ("genetic", "syntactic"):
                for layer in (1, 2):
                    sig = kind == "genetic" and layer == 2
                    rows.append(dict(x=f"distance:{kind}", y="impact", layer=layer, pooling=pooling, metric="m",
                                     database=db, method="pearson", r=np.nan if layer == 1 and kind == "syntactic"
                                     else 0.5, p=0.001, p_adj=0.004 if sig else 0.3, n=14))
    fig = plots.correlation_heatmap(pd.DataFrame(rows), title="t")
    images = [ax for ax in fig.axes if ax.images]
    assert len(images) == 4
    texts = [t.get_text() for t in images[0].texts]
    assert texts.count("0.50**") == 1 and texts.count("0.50") == 2 and len(texts) == 3  # NaN cell unlabelled
    plt.close(fig)


def test_scatter_and_curves_draw_one_panel_per_row(study):
    pairs, corr = study
    best = C.strongest(C.select(corr, y="impact", x_prefix="distance:", method="pearson"))
    fig = plots.strongest_scatter(pairs, best)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == len(best) == 1
    assert len(visible[0].texts) == len(TARGETS)  # every target labelled
    plt.close(fig)
    fig = plots.strongest_scatter(pairs, best.iloc[:0])
    assert [t.get_text() for ax in fig.axes for t in ax.texts][0].startswith("no cell has a finite r")
    plt.close(fig)
    fig = plots.r_by_layer(C.select(corr, y="impact", x_prefix="distance:", method="pearson"))
    assert len(fig.axes) == 2 and all(len(ax.lines) >= 1 for ax in fig.axes)
    plt.close(fig)
