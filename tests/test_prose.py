"""Tests for xldrift.analysis.prose: notebook 05's sentences say what its tables hold."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from xldrift.analysis import correlation, prose

sys.path.insert(0, str(Path(__file__).resolve().parent))
import golden  # noqa: E402


def test_seeds_say_whether_a_spread_exists():
    one = pd.DataFrame({"target": ["de", "sw"], "mean": [0.6, 0.5], "sd": [np.nan, np.nan], "n_seeds": [1, 1]})
    assert prose.seeds(one) == ["1 seed(s): no spread can be estimated; every correlation below rests on one "
                                "fine-tuning run."]
    three = one.assign(sd=[0.01, 0.02], n_seeds=3)
    assert prose.seeds(three) == ["3 seed(s): the largest accuracy sd over seeds is 0.020, the range of mean accuracy "
                                  "across targets 0.100."]


def test_genetic_ties_count_the_maximum_per_database():
    d = pd.DataFrame({"lang_a": "en", "lang_b": ["de", "sw", "zh", "de", "sw", "zh"], "kind": "genetic",
                      "database": ["lang2vec"] * 3 + ["urielplus"] * 3, "value": [0.2, 1.0, 1.0, 0.5, 0.7, 0.6]})
    assert prose.genetic_ties(d) == ["lang2vec: 2 of 3 genetic distances equal the maximum 1.0000",
                                     "urielplus: 1 of 3 genetic distances equal the maximum 0.7000"]


def test_coverage_gives_one_sentence_per_uncovered_cell():
    excluded = pd.DataFrame([dict(database="urielplus", kind="phonological", task_code="sw", iso639_3="swh",
                                  status="macrolanguage", partner="swa", reason="no phonological data for swh")])
    assert prose.coverage(excluded) == [
        "urielplus phonological: sw (swh) macrolanguage with swa: no phonological data for swh",
        "Nothing else is excluded."]
    assert prose.coverage(excluded.iloc[:0]) == ["Every language is covered in every kind and database."]


def test_covariate_names_the_targets_without_a_size():
    size = pd.Series({"de": 66.6, "sw": np.nan})
    assert prose.covariate("m", size, "CC-100 GiB", ["de", "sw", "zh"]) == [
        "Covariate for m: CC-100 GiB; known for 1 of 3 languages (missing: sw, zh; their pairs drop out of the partial "
        "correlations)."]
    assert prose.covariate("m", size, "CC-100 GiB", ["de"])[0].endswith("known for 1 of 1 languages.")


def test_same_language_rows_are_counted_in_impact_and_accuracy():
    impact = pd.DataFrame({"source": ["en", "en", "en"], "target": ["en", "de", "en"]})
    accuracy = pd.DataFrame({"source": ["en", "en"], "target": ["en", "sw"]})
    assert prose.same_language_rows(impact, accuracy)[0].startswith("3 same-language input rows")


def test_p_floor_says_whether_significance_is_attainable():
    low = prose.p_floor(1, 6, "120", 12, 0.008, 0.1, "holm", 0.05)[0]
    assert low.startswith("1 source(s), 6 languages: 120 distinct permutations, so p_perm >= about 0.008; with holm "
                          "over a family of 12 cells, p_adj >= about 0.1.")
    assert low.endswith("No cell can be significant at this size: read the tables as a check that the analysis runs, "
                        "not as evidence.")
    assert prose.p_floor(1, 15, "1,307,674,368,000", 12, 1e-4, 1.2e-3, "holm", 0.05)[0].endswith(
        "Significance is attainable at this size.")


def test_seen_distinguishes_unknown_all_seen_and_some_unseen():
    unknown = pd.Series([pd.NA, pd.NA], index=["de", "sw"], dtype="boolean")
    assert "is not shipped" in prose.seen_languages("m", unknown)[0]
    assert prose.seen_languages("m", pd.Series([True, True], index=["de", "sw"], dtype="boolean")) == [
        "All 2 targets are in m's pretraining corpus: the seen-only analysis equals the one above."]
    some = pd.Series([True, False, True], index=["de", "nqo", "sw"], dtype="boolean")
    assert prose.seen_languages("m", some)[0].startswith("2 targets are in m's pretraining corpus and 1 are not")


def test_placeholders_list_the_flagged_kinds_and_the_clean_databases():
    flags = pd.DataFrame({"database": ["urielplus"], "kind": ["syntactic"], "language": ["bem"], "task_codes": ["bem"]})
    flagged = {"urielplus": {"syntactic": ["bem"]}}
    assert prose.placeholders(flags, flagged, ["lang2vec", "urielplus"]) == [
        "urielplus: syntactic: bem", "1 flagged (kind, language) rows in all; none in lang2vec."]


def test_correlation_prose_reads_the_smoke_tables_section_by_section():
    read = {n: pd.read_csv(golden.GOLDEN / f"{n}.csv") for n in
            ("correlations", "claims", "verdict_grid", "claims_paper", "paper_steps", "placeholders", "distances")}
    read["placeholders"] = read["placeholders"].fillna({"task_codes": ""})  # as the notebook holds it, before writing
    variant = correlation.primary_variant(["cls", "mean"], ["linear_cka"], ["lang2vec", "urielplus"])
    flagged = correlation.flagged_by_database(read["placeholders"])
    targets = ["en", "de", "ru", "ar", "sw", "zh"]
    rows = pd.DataFrame({"source": "en", "target": targets})
    text = prose.correlation_prose(
        model="e5-small-q4", targets=targets, sources=["en"], databases=["lang2vec", "urielplus"], alpha=0.05,
        correction="holm", accuracy_spread=pd.DataFrame({"target": targets, "mean": 0.4, "sd": np.nan, "n_seeds": 1}),
        distances=read["distances"], excluded=pd.DataFrame(columns=["database", "kind", "task_code", "iso639_3",
                                                                      "status", "partner", "reason"]),
        size=pd.Series(1.0, index=targets), size_what="CC-100 GiB", impact=rows, accuracy=rows, n_languages=6,
        permutations="720", family=72, p_min=1 / 720, p_adj_min=0.1, seen=pd.Series(True, index=targets[1:]),
        corr=read["correlations"], verdicts=read["claims"], grid=read["verdict_grid"], variant=variant,
        flags=read["placeholders"], flagged=flagged, claims_paper=read["claims_paper"],
        paper_steps=read["paper_steps"])
    assert [t.split(" · ")[0] for t in text][:8] == ["2", "3", "4", "6", "7", "11", "11", "14"], "the notebook's order"
    assert text["Findings (primary variant, then the claims)"] == correlation.findings(
        read["correlations"], read["claims"], read["verdict_grid"], variant, 0.05, "holm", 0.1)
    assert text["The paper's reading"] == correlation.paper_findings(read["claims_paper"], read["claims"],
                                                                     read["paper_steps"], read["placeholders"])
    assert any("No cell can be significant" in s for s in text["11 · What this many languages allow"])
    assert text["7 · Pairs"] == ["2 same-language input rows (impact and accuracy of a source on itself) are not in "
                                 "any pair."]
    out = prose.render(text)
    assert out.count("\n- ") + out.startswith("- ") == sum(len(v) for v in text.values())
    assert all(f"{title}\n- " in out for title in text)
