"""The index of representations that notebook 03 writes, and the keys of the tables made from it.

``representations.csv`` has one row per model state and target language, with
the cache file of its pooled per-layer arrays ``(n_layers + 1, n_items,
hidden)`` (:mod:`xldrift.representations.cache`). Tables computed from it
(notebook 04's drift, alignment and UMAP tables) are reused while
:func:`table_key` (the index content, its files' versions and the options)
is unchanged; the keys are kept in :data:`META_FILE` beside the tables.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from xldrift.study.io import stable_hash, write_json

INDEX_COLUMNS = ("kind", "state", "target", "path", "n_layers", "n_items", "hidden", "source", "seed")
#: Version of the tables' content; part of the cache key.
FORMAT_VERSION = 1
META_FILE = "drift_meta.json"


def read_index(path: str | Path) -> pd.DataFrame:
    """Read and check notebook 03's ``representations.csv``.

    Args:
        path: the index file.

    Returns:
        The index, ``seed`` as a nullable integer (empty for ``pre``).

    Raises:
        ValueError: a missing column, an unknown ``kind``, a target without
            exactly one ``pre`` state, a ``post`` row without source or seed,
            states that disagree on items or layers, or a missing file.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no representation index at {path}; run notebook 03 first")
    index = pd.read_csv(path)
    missing = [c for c in INDEX_COLUMNS if c not in index.columns]
    if missing:
        raise ValueError(f"{path} lacks column(s) {missing}; expected {list(INDEX_COLUMNS)}")
    bad_kind = sorted(set(index["kind"]) - {"pre", "post"})
    if bad_kind or index.empty:
        raise ValueError(f"{path}: kind must be 'pre' or 'post' and the index non-empty; got {bad_kind or 'no rows'}")
    pre_counts = index[index["kind"] == "pre"].groupby("target").size()
    wrong = sorted(set(index["target"]) - set(pre_counts[pre_counts == 1].index))
    if wrong:
        raise ValueError(f"{path}: every target needs exactly one 'pre' row; not so for {wrong}")
    post = index[index["kind"] == "post"]
    if post.empty or post[["source", "seed"]].isna().any().any():
        raise ValueError(f"{path}: needs 'post' rows, each with a source language and a seed")
    for col in ("n_items", "n_layers"):
        if index[col].nunique() != 1:
            raise ValueError(f"{path}: all states must share {col}; got {sorted(index[col].unique())}")
    absent = [p for p in index["path"] if not Path(p).is_file()]
    if absent:
        raise ValueError(f"{path}: {len(absent)} representation file(s) missing, e.g. {absent[0]}; re-run notebook 03")
    index = index.copy()
    index["seed"] = index["seed"].astype("Int64")
    return index


def table_key(index: pd.DataFrame, *, model: str, task: str, metrics: Sequence[str], poolings: Sequence[str]) -> str:
    """Hash of everything that determines the tables: the index content, its files' versions and the options."""
    rows = index[list(INDEX_COLUMNS)].astype(str).sort_values(list(INDEX_COLUMNS)).values.tolist()
    # A re-extraction rewrites a file under the same name: its size and mtime say so.
    stamps = sorted((str(p), Path(p).stat().st_size, Path(p).stat().st_mtime_ns) for p in index["path"])
    return stable_hash({"index": rows, "files": stamps, "model": model, "task": task, "metrics": list(metrics),
                        "poolings": list(poolings), "version": FORMAT_VERSION})


def read_meta(results: Path) -> dict[str, Any]:
    """The bookkeeping of the tables made from the index in ``results`` (:data:`META_FILE`; empty if none)."""
    path = results / META_FILE
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError:
        return {}


def update_meta(results: Path, **values: Any) -> None:
    """Merge ``values`` into :data:`META_FILE` of ``results`` (written atomically)."""
    write_json({**read_meta(results), **values}, results / META_FILE)
