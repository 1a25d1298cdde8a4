"""The data layer: one schema, parallelism asserted, clear errors."""

from __future__ import annotations

import pytest

from xldrift.data import languages, splits, tasks as data


def test_xnli_schema_and_groups():
    df = data.load_split("xnli", "en", "test")
    assert list(df.columns) == ["id", "group", "text_a", "text_b", "label"]
    assert len(df) == 5010
    assert df["group"].nunique() == 1670
    # every premise group holds one hypothesis of each label
    assert (df.groupby("group")["label"].apply(lambda s: sorted(s) == [0, 1, 2])).all()


def test_all_xnli_languages_are_parallel():
    frames = data.load_parallel("xnli", list(languages.XNLI_LANGUAGES), "test")
    assert len(frames) == 15
    assert {len(f) for f in frames.values()} == {5010}


def test_sib200_schema():
    df = data.load_split("sib200", "swh_Latn", "test")
    assert len(df) == 204 and set(df["label"]) <= set(range(7))
    assert df["text_b"].isna().all()


def test_truncated_file_is_named(tiny_xnli):
    f = tiny_xnli / "xnli" / "test-de.tsv"
    f.write_text("".join(f.read_text(encoding="utf-8").splitlines(keepends=True)[:50]), encoding="utf-8")
    with pytest.raises(data.DataError, match=r"test-de.tsv.*50 rows"):
        data.load_parallel("xnli", ["en", "de"], "test")


def test_non_parallel_labels_name_first_bad_row(tiny_xnli):
    f = tiny_xnli / "xnli" / "test-sw.tsv"
    rows = f.read_text(encoding="utf-8").splitlines(keepends=True)
    p, h, lab = rows[7].rstrip("\n").split("\t")
    rows[7] = "\t".join([p, h, "neutral" if lab != "neutral" else "entailment"]) + "\n"
    f.write_text("".join(rows), encoding="utf-8")
    with pytest.raises(data.DataError, match=r"test-sw.tsv: row 8 differs.*label"):
        data.load_parallel("xnli", ["en", "sw"], "test")


def test_malformed_row_and_bad_label(tiny_xnli):
    f = tiny_xnli / "xnli" / "dev-de.tsv"
    rows = f.read_text(encoding="utf-8").splitlines(keepends=True)
    rows[3] = "only one field\n"
    f.write_text("".join(rows), encoding="utf-8")
    with pytest.raises(data.DataError, match=r"dev-de.tsv: row 4 has 1 fields"):
        data.load_split("xnli", "de", "dev")


def test_xldrift_data_pointing_nowhere(monkeypatch, tmp_path):
    monkeypatch.setenv("XLDRIFT_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(data.DataError, match="XLDRIFT_DATA"):
        data.data_root("xnli")


def test_unknown_task_and_split():
    with pytest.raises(ValueError, match="valid: xnli, sib200"):
        data.load_split("mnli", "en", "dev")
    with pytest.raises(ValueError, match="valid: dev, test"):
        data.load_split("xnli", "en", "train")


def test_language_table_maps_to_uriel_codes():
    iso = languages.to_iso639_3(["ar", "sw", "zh", "en"], "xnli")
    assert iso == {"ar": "arb", "sw": "swh", "zh": "cmn", "en": "eng"}
    assert languages.sib200_language("arb_Arab").family == "Afro-Asiatic"
    with pytest.raises(ValueError, match="unknown XNLI language 'xx'"):
        languages.language_table(["xx"], "xnli")


def test_items_are_disjoint_random_groups_and_seeded():
    items = splits.select_items("xnli", "en", n_train=3000, n_val=60, n_eval=300, n_drift=150, seed=1)
    groups = {r: set(zip(g["split"], g["group"])) for r, g in items.groupby("role")}
    for a in groups:
        for b in groups:
            if a < b:
                assert not groups[a] & groups[b], (a, b)
    ev = items[items.role == "eval"]
    assert len(ev) == 300 and ev["label"].value_counts().nunique() == 1  # whole groups -> balanced labels
    # spread over the genre-ordered file, not a contiguous slice
    assert ev["id"].max() - ev["id"].min() > 4000
    extra = items[(items.role == "train") & (items.split == "test")]
    assert len(extra) > 0  # 3000 > dev items available
    again = splits.select_items("xnli", "en", n_train=3000, n_val=60, n_eval=300, n_drift=150, seed=1)
    assert items.equals(again)
    other = splits.select_items("xnli", "en", n_train=3000, n_val=60, n_eval=300, n_drift=150, seed=2)
    assert not items.equals(other)


def test_items_for_returns_parallel_texts():
    items = splits.select_items("xnli", "en", n_train=30, n_val=9, n_eval=30, n_drift=15, seed=0)
    en = splits.items_for("xnli", "en", items, "eval")
    de = splits.items_for("xnli", "de", items, "eval")
    assert en["id"].tolist() == de["id"].tolist() == items[items.role == "eval"]["id"].tolist()
    assert (en["text_a"] != de["text_a"]).all()


def test_sizes_that_do_not_fit_are_refused():
    with pytest.raises(ValueError, match="exceed the 5010 test items"):
        splits.select_items("xnli", "en", n_train=30, n_val=9, n_eval=5010, n_drift=30, seed=0)


def test_sib200_items():
    items = splits.select_items("sib200", "eng_Latn", n_train=701, n_val=99, n_eval=204, n_drift=1004, seed=0)
    counts = items.groupby("role").size().to_dict()
    assert counts == {"train": 701, "val": 99, "eval": 204, "drift": 1004}


def test_sib200_drift_items_from_three_files_have_unique_parallel_ids():
    # Drift draws from train, dev and test, whose row ids all start at 0.
    items = splits.select_items("sib200", "eng_Latn", n_train=701, n_val=99, n_eval=204, n_drift=1004, seed=0)
    eng = splits.items_for("sib200", "eng_Latn", items, "drift")
    fra = splits.items_for("sib200", "fra_Latn", items, "drift")
    assert len(eng) == 1004 and eng["id"].is_unique
    assert set(eng["split"]) == {"train", "dev", "test"}
    assert eng["id"].tolist() == fra["id"].tolist() and eng["label"].tolist() == fra["label"].tolist()
    n_train = len(data.load_split("sib200", "eng_Latn", "train"))
    first_dev = eng[eng["split"] == "dev"]["id"].min()
    assert first_dev >= n_train  # shifted past the train file
    # single-file roles keep their row ids
    ev = splits.items_for("sib200", "eng_Latn", items, "eval")
    assert ev["id"].tolist() == items[items["role"] == "eval"]["id"].tolist()


def test_shipped_data_matches_its_manifest(monkeypatch):
    """Every file under data/xnli and data/sib200 is listed in the manifest, and every listed file is intact."""
    monkeypatch.delenv("XLDRIFT_DATA", raising=False)
    listed = set(data.read_manifest())
    on_disk = {p.relative_to(data.SHIPPED).as_posix() for task in data.TASKS
               for p in (data.SHIPPED / task).rglob("*") if p.is_file()}
    assert on_disk == listed, f"not in the manifest: {sorted(on_disk - listed)[:5]}; missing: {sorted(listed - on_disk)[:5]}"
    assert len(listed) == 15 * 2 + 205 * 4  # XNLI dev/test x 15; SIB-200 train/dev/test/labels x 205
    data.verify_manifest.cache_clear()
    assert data.verify_manifest() == len(listed)
    root, where = data.data_root("xnli")
    assert root == data.SHIPPED and where.startswith("data/")


def test_altered_shipped_file_is_named_with_both_digests(tmp_path):
    root = tmp_path / "data"
    rel = "xnli/dev-de.tsv.gz"
    (root / "xnli").mkdir(parents=True)
    (root / rel).write_bytes((data.SHIPPED / rel).read_bytes())
    expected = data.read_manifest()[rel]
    (root / data.MANIFEST.name).write_text(f"{expected}  {rel}\n")
    assert data.verify_manifest(root=root) == 1
    data.verify_manifest.cache_clear()
    (root / rel).write_bytes((root / rel).read_bytes()[:-10])
    with pytest.raises(data.DataError, match=rf"data/{rel} has been altered: SHA-256 expected {expected}, found [0-9a-f]{{64}}"):
        data.verify_manifest(root=root)
    data.verify_manifest.cache_clear()
    (root / rel).unlink()
    with pytest.raises(data.DataError, match=rf"data/{rel} is missing"):
        data.verify_manifest(root=root)
    data.verify_manifest.cache_clear()


def test_compressed_and_plain_files_read_the_same(tmp_path, monkeypatch):
    """A user folder in $XLDRIFT_DATA may hold plain TSVs; the shipped copy is gzip; both give one frame."""
    shipped = data.load_split("sib200", "fin_Latn", "dev")
    (tmp_path / "sib200" / "fin_Latn").mkdir(parents=True)
    for split in ("dev", "test"):
        plain = data._read_text(data.SHIPPED / "sib200" / "fin_Latn" / f"{split}.tsv.gz")
        (tmp_path / "sib200" / "fin_Latn" / f"{split}.tsv").write_text(plain, encoding="utf-8")
    monkeypatch.setenv("XLDRIFT_DATA", str(tmp_path))
    data._load_cached.cache_clear()
    assert data.load_split("sib200", "fin_Latn", "dev").equals(shipped)
    assert data.available_languages("sib200") == ["fin_Latn"]
