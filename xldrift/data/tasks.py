"""Task data in one schema, whatever the source.

A split of one language is a DataFrame with columns

    id     int  row index in the source file (parallel across languages)
    group  int  premise group (XNLI) or the row itself (SIB-200)
    text_a str  XNLI premise / SIB-200 sentence
    text_b str  XNLI hypothesis / None for SIB-200
    label  int  XNLI 0/1/2 = entailment/neutral/contradiction; SIB-200 0..6

Sources are tried in this order (the first that has the files wins, and the
choice is logged): ``$XLDRIFT_DATA`` (an error if set but missing), the copy
shipped in the repository's ``data/``, then the Hugging Face Hub
(``facebook/xnli``, ``Davlan/sib200``). A local file may be plain
(``test-en.tsv``) or gzip-compressed (``test-en.tsv.gz``); the shipped copy is
compressed and checked against ``data/MANIFEST.sha256`` before it is read
(:func:`verify_manifest`), so an altered file stops a run before any heavy work.
"""

from __future__ import annotations

import csv
import functools
import gzip
import hashlib
import io
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from xldrift.data import errors as datacheck
from xldrift.data.languages import XNLI_LANGUAGES
from xldrift.study.paths import ROOT

log = logging.getLogger(__name__)

TASKS = ("xnli", "sib200")
XNLI_LABELS = ("entailment", "neutral", "contradiction")
SIB200_LABELS = (
    "science/technology", "travel", "politics", "sports", "health", "entertainment", "geography",
)
SPLITS = {"xnli": ("dev", "test"), "sib200": ("train", "dev", "test")}
HUB_IDS = {"xnli": "facebook/xnli", "sib200": "Davlan/sib200"}
HUB_SPLITS = {"dev": "validation", "test": "test", "train": "train"}


SHIPPED = ROOT / "data"
MANIFEST = SHIPPED / "MANIFEST.sha256"


class DataError(ValueError):
    """Missing, truncated or non-parallel task data."""


def read_manifest(path: Path | None = None) -> dict[str, str]:
    """``{path relative to data/: SHA-256}`` from a ``sha256sum``-format manifest (default: the shipped one)."""
    path = SHIPPED / MANIFEST.name if path is None else path
    out = {}
    for line in path.read_text().splitlines():
        if line.strip():
            digest, rel = line.split(maxsplit=1)
            out[rel.strip()] = digest
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@functools.lru_cache(maxsize=4)
def verify_manifest(task: str | None = None, root: Path | None = None) -> int:
    """Check the shipped data files against ``MANIFEST.sha256``; return how many were checked.

    Hashes each file once per process (about 0.1 s for all 850 files).

    Args:
        task: check only ``<task>/`` files, or every file when None.

    Raises:
        DataError: naming the first missing or altered file with its expected and found digests.
    """
    root = SHIPPED if root is None else root
    expected = read_manifest(root / MANIFEST.name)
    checked = 0
    for rel, digest in sorted(expected.items()):
        if task is not None and not rel.startswith(f"{task}/"):
            continue
        f = root / rel
        if not f.is_file():
            raise DataError(f"data/{rel} is missing (listed in data/{MANIFEST.name} with SHA-256 {digest}); "
                            "restore it with `git checkout -- data/`")
        found = _sha256(f)
        if found != digest:
            raise DataError(f"data/{rel} has been altered: SHA-256 expected {digest}, found {found}; "
                            "restore it with `git checkout -- data/`")
        checked += 1
    return checked


def labels(task: str) -> tuple[str, ...]:
    """Label names of ``task`` in label-id order."""
    _check_task(task)
    return XNLI_LABELS if task == "xnli" else SIB200_LABELS


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid: {', '.join(TASKS)}")


def _has_task(root: Path, task: str) -> bool:
    return (root / task).is_dir() and any((root / task).iterdir())


def data_root(task: str) -> tuple[Path | None, str]:
    """Where ``task``'s files come from: ``(folder, description)``.

    Returns ``(None, 'hub')`` when no local copy exists.

    Raises:
        DataError: ``$XLDRIFT_DATA`` is set but does not hold the task.
    """
    _check_task(task)
    env = os.environ.get("XLDRIFT_DATA")
    if env:
        root = Path(env).expanduser()
        if not _has_task(root, task):
            raise DataError(
                f"XLDRIFT_DATA={env} does not contain a '{task}/' folder; "
                f"unset it to use the shipped copy in data/, or point it at a folder holding {task}/"
            )
        return root, f"$XLDRIFT_DATA ({root})"
    if _has_task(SHIPPED, task):
        verify_manifest(task, SHIPPED)
        return SHIPPED, f"data/ ({SHIPPED.resolve()})"
    return None, f"Hugging Face Hub ({HUB_IDS[task]})"


def available_languages(task: str) -> list[str]:
    """Language codes available for ``task`` from the resolved source."""
    root, _ = data_root(task)
    if task == "xnli":
        if root is None:
            return sorted(XNLI_LANGUAGES)
        return sorted({p.name.split(".")[0].split("-", 1)[1] for p in (root / "xnli").glob("test-*.tsv*")})
    if root is None:
        raise DataError("listing SIB-200 languages needs a local copy (data/sib200 or XLDRIFT_DATA)")
    return sorted(p.name for p in (root / "sib200").iterdir() if _existing(p / "test.tsv") is not None)


def _existing(path: Path) -> Path | None:
    """``path`` or its ``.gz`` sibling, whichever exists (plain first)."""
    for p in (path, path.with_name(path.name + ".gz")):
        if p.is_file():
            return p
    return None


def data_file(task: str, lang: str, split: str) -> Path | None:
    """The local file holding ``(task, lang, split)`` (plain or ``.gz``), or None for the Hub."""
    root, _ = data_root(task)
    if root is None:
        return None
    plain = root / "xnli" / f"{split}-{lang}.tsv" if task == "xnli" else root / "sib200" / lang / f"{split}.tsv"
    return _existing(plain) or plain


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise DataError(f"{path}: not a readable gzip file ({e})") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from None


def _read_tsv(path: Path, n_fields: int, header: bool) -> list[list[str]]:
    if not path.is_file():
        raise DataError(f"missing data file: {path}")
    text = _read_text(path)
    datacheck.inspect_text(path, text, header=header)  # empty, BOM, line endings: named before parsing
    with io.StringIO(text, newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    if header:
        rows = rows[1:]
    for i, r in enumerate(rows):
        if len(r) != n_fields:
            raise DataError(f"{path}: row {i + 1} has {len(r)} fields, expected {n_fields}: {r[:3]!r}")
    return rows


def _xnli_frame(rows: list[list[str]], path: object) -> pd.DataFrame:
    ids = {name: i for i, name in enumerate(XNLI_LABELS)}
    bad = next((i for i, r in enumerate(rows) if r[2] not in ids), None)
    if bad is not None:
        raise DataError(f"{path}: row {bad + 1} has label {rows[bad][2]!r}; valid: {', '.join(XNLI_LABELS)}")
    premise = [r[0] for r in rows]
    # A premise group is a run of rows sharing one premise (three hypotheses each).
    new_group = np.r_[True, np.array(premise[1:]) != np.array(premise[:-1])] if rows else np.array([], bool)
    return pd.DataFrame({
        "id": np.arange(len(rows)),
        "group": np.cumsum(new_group) - 1,
        "text_a": premise,
        "text_b": [r[1] for r in rows],
        "label": [ids[r[2]] for r in rows],
    })


def _sib_frame(rows: list[list[str]], path: object) -> pd.DataFrame:
    ids = {name: i for i, name in enumerate(SIB200_LABELS)}
    bad = next((i for i, r in enumerate(rows) if r[1] not in ids), None)
    if bad is not None:
        raise DataError(f"{path}: row {bad + 1} has category {rows[bad][1]!r}; valid: {', '.join(SIB200_LABELS)}")
    return pd.DataFrame({
        "id": np.arange(len(rows)),
        "group": np.arange(len(rows)),
        "text_a": [r[2] for r in rows],
        "text_b": None,
        "label": [ids[r[1]] for r in rows],
        "index_id": [int(r[0]) for r in rows],
    })


def _load_hub(task: str, lang: str, split: str) -> pd.DataFrame:
    """Load one split from the Hugging Face Hub (parquet; no script loader)."""
    import datasets  # imported lazily: slow, and unused offline

    try:
        ds = datasets.load_dataset(HUB_IDS[task], lang, split=HUB_SPLITS[split])
    except Exception as e:  # noqa: BLE001 - re-raised with what was tried
        raise DataError(
            f"no local copy of {task} and the Hub dataset {HUB_IDS[task]} ({lang}, {split}) could not be "
            f"loaded ({type(e).__name__}: {e}); set XLDRIFT_DATA to a folder with {task}/ files"
        ) from None
    if task == "xnli":
        rows = [[r["premise"], r["hypothesis"], XNLI_LABELS[r["label"]]] for r in ds]
        return _xnli_frame(rows, f"{HUB_IDS[task]}:{lang}:{split}")
    rows = [[str(r["index_id"]), r["category"], r["text"]] for r in ds]
    return _sib_frame(rows, f"{HUB_IDS[task]}:{lang}:{split}")


@functools.lru_cache(maxsize=512)
def _load_cached(task: str, lang: str, split: str, root_key: str) -> pd.DataFrame:
    path = data_file(task, lang, split)
    if path is None:
        return _load_hub(task, lang, split)
    if task == "xnli":
        return _xnli_frame(_read_tsv(path, 3, header=False), path)
    return _sib_frame(_read_tsv(path, 3, header=True), path)


def load_split(task: str, lang: str, split: str) -> pd.DataFrame:
    """One split of one language in the common schema (a fresh copy).

    Raises:
        ValueError: unknown task or split.
        DataError: the file is missing or malformed.
    """
    _check_task(task)
    if split not in SPLITS[task]:
        raise ValueError(f"unknown {task} split {split!r}; valid: {', '.join(SPLITS[task])}")
    root, _ = data_root(task)
    return _load_cached(task, lang, split, str(root)).copy()


def load_parallel(task: str, langs: list[str], split: str) -> dict[str, pd.DataFrame]:
    """Load ``split`` for every language and assert that they are parallel."""
    root, where = data_root(task)
    log.info("loading %s %s for %d languages from %s", task, split, len(langs), where)
    frames = {lang: load_split(task, lang, split) for lang in langs}
    check_parallel(frames, task, split)
    return frames


def check_parallel(frames: dict[str, pd.DataFrame], task: str, split: str) -> None:
    """Same row count, identical labels and premise-group boundaries everywhere.

    Raises:
        DataError: naming the file of the language that disagrees with the
            majority, the first row where it differs and what differs.
    """
    datacheck.check_parallel(frames, lambda lang: data_file(task, lang, split) or f"{HUB_IDS[task]}:{lang}:{split}",
                             task, split)
