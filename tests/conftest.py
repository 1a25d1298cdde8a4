"""Shared fixtures: tiny copies of the task data, built in a temporary folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from xldrift.data import tasks as data

@pytest.fixture(autouse=True)
def _fresh_data_cache():
    data._load_cached.cache_clear()
    yield
    data._load_cached.cache_clear()


@pytest.fixture
def tiny_xnli(tmp_path, monkeypatch) -> Path:
    """An XNLI folder with 3 languages, 30 dev rows and 60 test rows each (real text)."""
    root = tmp_path / "data"
    (root / "xnli").mkdir(parents=True)
    for lang in ("en", "de", "sw"):
        for split, n in (("dev", 30), ("test", 60)):
            lines = data._read_text(data.data_file("xnli", lang, split)).splitlines(keepends=True)[:n]
            (root / "xnli" / f"{split}-{lang}.tsv").write_text("".join(lines), encoding="utf-8")
    monkeypatch.setenv("XLDRIFT_DATA", str(root))
    data._load_cached.cache_clear()
    return root
