"""Distances on known language pairs, coverage policy and database agreement."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from scipy.spatial import distance as spd

from xldrift.analysis import typology as T

CODES = {"en": "eng", "de": "deu", "th": "tha", "ar": "arb", "ur": "urd", "sw": "swh"}


@pytest.fixture(scope="module")
def english():
    """Distances from English and the coverage report (loads both databases once)."""
    return T.compute_distances(CODES, "en", cache=False)


def _value(table, a, b, kind, db):
    row = table[(table.lang_a == a) & (table.lang_b == b) & (table.kind == kind) & (table.database == db)]
    assert len(row) == 1, (a, b, kind, db)
    return row["value"].item()


def test_table_shape_and_range(english):
    table, _ = english
    assert list(table.columns) == ["lang_a", "lang_b", "kind", "database", "value"]
    assert set(table["lang_a"]) == {"en"} and "en" not in set(table["lang_b"])
    assert table["value"].between(0, 1).all()
    assert set(table["kind"]) == set(T.KINDS) and set(table["database"]) == set(T.DATABASES)


def test_a_language_is_at_distance_zero_from_itself():
    table = T.distance_table({"zh_Hans": "zho", "zh_Hant": "zho", "de": "deu"}, "zh_Hans", cache=False)
    same = table.loc[table.lang_b == "zh_Hant", "value"]
    assert len(same) == 2 * len(T.KINDS) and (same == 0).all()
    db = T.urielplus_db()
    for kind in T.KINDS:
        # URIEL+ takes arccos of a float32 cosine, so a language is ~1e-4 from itself
        assert db.new_distance(kind, ["deu", "deu"]) == pytest.approx(0, abs=1e-3)
    vec = T._lang2vec_vectors(["deu"], "syntax_knn")["deu"]
    assert T._cosine_distance(vec, vec) == pytest.approx(0, abs=1e-12)


def test_symmetric(english):
    table, _ = english
    from_german = T.distance_table({"en": "eng", "de": "deu", "th": "tha"}, "de", cache=False)
    for kind in T.KINDS:
        for db in T.DATABASES:
            assert _value(from_german, "de", "en", kind, db) == pytest.approx(_value(table, "en", "de", kind, db))
    both = T.distance_table({"en": "eng", "de": "deu", "th": "tha"}, ["en", "de"], cache=False, kinds=["genetic"])
    assert _value(both, "en", "de", "genetic", "urielplus") == _value(both, "de", "en", "genetic", "urielplus")
    assert len(both) == 2 * 2 * 2  # two sources x two targets each x two databases


def test_german_is_closer_to_english_than_thai(english):
    table, _ = english
    for db in T.DATABASES:
        for kind in ("genetic", "geographic", "syntactic"):
            assert _value(table, "en", "de", kind, db) < _value(table, "en", "th", kind, db), (kind, db)
        assert _value(table, "en", "th", "genetic", db) == 1.0  # no shared family node


def test_lang2vec_definition_is_cosine_distance_of_get_features(english):
    table, _ = english
    import lang2vec.lang2vec as l2v

    feats = l2v.get_features(["eng", "tha"], "syntax_knn+phonology_knn+inventory_knn")
    expected = spd.cosine(np.array(feats["eng"], float), np.array(feats["tha"], float))
    assert _value(table, "en", "th", "featural", "lang2vec") == pytest.approx(expected, abs=1e-12)
    geo = l2v.get_features(["eng", "deu"], "geo")
    assert _value(table, "en", "de", "geographic", "lang2vec") == pytest.approx(
        spd.cosine(np.array(geo["eng"], float), np.array(geo["deu"], float)), abs=1e-12)


def test_urielplus_values_are_new_distance(english):
    table, _ = english
    db = T.urielplus_db()
    assert _value(table, "en", "de", "genetic", "urielplus") == pytest.approx(float(db.new_distance("genetic", ["eng", "deu"])))
    # Standard Arabic has no URIEL+ phonology: the macrolanguage stands in
    assert _value(table, "en", "ar", "phonological", "urielplus") == pytest.approx(
        float(db.new_distance("phonological", ["eng", "ara"])))


def test_coverage_fallback_and_exclusion_are_explicit(english):
    table, coverage = english
    def status(code, kind, db):
        return coverage[(coverage.task_code == code) & (coverage.kind == kind) & (coverage.database == db)].iloc[0]
    assert status("ar", "phonological", "urielplus")[["status", "used_code"]].tolist() == ["fallback", "ara"]
    assert status("ar", "inventory", "urielplus")["status"] == "fallback"
    assert status("ur", "phonological", "urielplus")["status"] == "excluded"
    assert status("ur", "phonological", "lang2vec")["status"] == "ok"
    missing = table[(table.lang_b == "ur") & (table.kind == "phonological") & (table.database == "urielplus")]
    assert missing.empty
    report = T.coverage_report(CODES, "en", cache=False, databases=["urielplus"], kinds=["phonological"],
                               policy="exclude")
    assert set(report["task_code"]) == {"ar", "ur"} and set(report["status"]) == {"excluded"}


def test_unknown_codes(caplog):
    codes = {"en": "eng", "de": "deu", "xx": "qqq"}
    with pytest.raises(ValueError, match="qqq"):
        T.compute_distances(codes, "en", cache=False, strict=True, kinds=["syntactic"])
    with caplog.at_level(logging.WARNING, logger="xldrift.analysis.typology"):
        table, coverage = T.compute_distances(codes, "en", cache=False, kinds=["syntactic"])
    assert "xx" not in set(table["lang_b"])
    row = coverage[coverage.task_code == "xx"]
    assert set(row["status"]) == {"excluded"} and row["reason"].str.contains("not in database").all()
    assert "qqq" in caplog.text


@pytest.mark.parametrize("kwargs, match", [
    (dict(codes={"en": "EN"}), "three lower-case"),
    (dict(kinds=["lexical"]), "unknown kinds"),
    (dict(databases=["wals"]), "unknown databases"),
    (dict(policy="impute"), "unknown policy"),
    (dict(source="fr"), "not in codes"),
])
def test_bad_input(kwargs, match):
    args = dict(codes={"en": "eng", "de": "deu"}, source="en")
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        T.compute_distances(args.pop("codes"), args.pop("source"), cache=False, **args)


def test_cache_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("XLDRIFT_CACHE", str(tmp_path))
    args = dict(codes={"en": "eng", "de": "deu", "ur": "urd"}, source="en", databases=["urielplus"],
                kinds=["phonological", "syntactic"])
    first = T.compute_distances(**args)
    assert any((tmp_path / "distances").iterdir())
    second = T.compute_distances(**args)
    for a, b in zip(first, second):
        pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True), check_dtype=False)


def test_database_agreement():
    rng = np.random.default_rng(0)
    rows = []
    for kind in ("genetic", "syntactic"):
        for a, b in [("en", "de"), ("en", "th"), ("de", "th"), ("en", "sw"), ("de", "sw")]:
            v = rng.uniform()
            rows += [(a, b, kind, "lang2vec", v), (a, b, kind, "urielplus", v if kind == "genetic" else -v)]
            rows.append((b, a, kind, "lang2vec", v))  # the mirrored row must not count twice
    out = T.database_agreement(pd.DataFrame(rows, columns=["lang_a", "lang_b", "kind", "database", "value"]))
    out = out.set_index("kind")
    assert out.loc["genetic", "rho"] == pytest.approx(1.0) and out.loc["syntactic", "rho"] == pytest.approx(-1.0)
    assert (out["n"] == 5).all()


def test_iso_from_flores():
    assert T.iso_from_flores("eng_Latn") == "eng"
    with pytest.raises(ValueError, match="Flores"):
        T.iso_from_flores("en")


def test_all_zero_family_vectors_count_as_missing():
    codes = {"sv": "swe", "nb": "nob", "eu": "eus", "de": "deu"}
    table, coverage = T.compute_distances(codes, "sv", cache=False, kinds=["genetic"])
    cov = coverage.set_index(["task_code", "database"])
    for db in T.DATABASES:
        assert cov.loc[("nb", db), "status"] == "fallback" and cov.loc[("nb", db), "used_code"] == "nor"
        assert "all zeros" in cov.loc[("nb", db), "reason"]
        assert cov.loc[("eu", db), "status"] == "excluded"  # an isolate: no family node at all
        # Norwegian is now closer to Swedish than German is
        assert _value(table, "sv", "nb", "genetic", db) < _value(table, "sv", "de", "genetic", db)
    assert "eu" not in set(table["lang_b"])


def test_top_level_families_from_uriel_genetic_features():
    fam = T.top_families(["eng", "deu", "hin", "arb", "swh", "tur", "fin", "eus", "qqq"])
    assert fam["eng"] == fam["deu"] == fam["hin"] == "Indo-European"
    assert fam["arb"] == "Afro-Asiatic" and fam["tur"] == "Turkic" and fam["fin"] == "Uralic"
    assert fam["swh"] == "Atlantic-Congo"  # Glottolog's name for the family WALS calls Niger-Congo
    assert fam["eus"] == "" and fam["qqq"] == "", "an isolate and an unknown code have no family"


def test_sib200_language_table_names_one_family_per_language():
    from xldrift.data import languages

    table = languages.language_table(["eng_Latn", "swh_Latn", "zul_Latn", "eus_Latn", "jpn_Jpan"], "sib200")
    fam = dict(zip(table["code"], table["family"]))
    assert fam["eng_Latn"] == "Indo-European" and fam["jpn_Jpan"] == "Japonic"
    assert fam["swh_Latn"] == fam["zul_Latn"] == "Atlantic-Congo", "XNLI's naming must not split a family"
    assert fam["eus_Latn"] == ""
