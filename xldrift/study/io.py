"""Atomic file and directory writes, and small manifests.

Every cache entry and result table is written to a temporary sibling first and
then renamed into place, so an interrupted run never leaves a half-written file
that a later run would mistake for a finished one. Temporaries are named
``.tmp-<name>.<pid>.<random>``: cleanup can tell a live process's from a dead one's
(:func:`xldrift.study.locks.stale_temps`).
"""

from __future__ import annotations

import contextlib
import hashlib
import io as _stdio
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary file path that is renamed onto ``path`` on success.

    On an exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # keep the extension: some writers (papermill, pandas) decide the format from it
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.stem}.{os.getpid()}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp creates 0600; results are meant to be shared
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``path`` on success.

    The caller fills the directory; a ``manifest.json`` written last marks it
    complete (see :func:`is_complete`). On an exception the temporary directory
    is deleted and any existing ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{path.name}.{os.getpid()}.", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_manifest(directory: str | Path, info: dict[str, Any]) -> None:
    """Write ``manifest.json`` (the completion marker) into ``directory``."""
    with atomic_path(Path(directory) / MANIFEST) as tmp:
        tmp.write_text(json.dumps(info, indent=2, sort_keys=True, default=str))


def read_manifest(directory: str | Path) -> dict[str, Any] | None:
    """Return the manifest of a cache directory, or None if it is incomplete."""
    f = Path(directory) / MANIFEST
    if not f.is_file():
        return None
    try:
        return json.loads(f.read_text())
    except json.JSONDecodeError:
        return None


def is_complete(directory: str | Path) -> bool:
    """True when ``directory`` holds a readable manifest (was finished)."""
    return read_manifest(directory) is not None


def write_csv(df: pd.DataFrame, path: str | Path, *, keep_if_close: float | None = None) -> bool:
    """Write a table atomically (no index column).

    Args:
        df: the table.
        path: where to write it.
        keep_if_close: if given and ``path`` already holds a table with the same
            columns, rows and text cells whose numbers agree to this relative
            tolerance, write the file's own bytes again instead. Re-running on
            another platform changes the last bits of some floats (another
            BLAS or Python build); this keeps such a file, and whatever was
            recorded as reading it, byte for byte, while it still counts as
            written by this run.

    Returns:
        True if ``df`` was written, False if the earlier bytes were kept.
    """
    path = Path(path)
    if keep_if_close is not None and path.is_file() and _close_to_file(df, path, keep_if_close):
        log.info("%s: unchanged within relative tolerance %g; earlier bytes kept", path.name, keep_if_close)
        rewrite(path)
        return False
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    return True


def rewrite(path: str | Path) -> None:
    """Write a file's own bytes to it again, atomically (same content, new modification time)."""
    path = Path(path)
    blob = path.read_bytes()
    with atomic_path(path) as tmp:
        tmp.write_bytes(blob)


def _close_to_file(df: pd.DataFrame, path: Path, rtol: float) -> bool:
    """Whether ``df``, written and read back, equals the table in ``path`` up to ``rtol`` in its numbers."""
    new = pd.read_csv(_stdio.StringIO(df.to_csv(index=False)))
    old = pd.read_csv(path)
    if list(new.columns) != list(old.columns) or new.shape != old.shape:
        return False
    for col in new.columns:
        a, b = new[col], old[col]
        if a.dtype.kind == "f" or b.dtype.kind == "f":
            try:
                x, y = a.to_numpy(float), b.to_numpy(float)
            except (TypeError, ValueError):
                return False
            if not np.allclose(x, y, rtol=rtol, atol=1e-15, equal_nan=True):
                return False
        elif not a.astype(str).equals(b.astype(str)):
            return False
    return True


def write_json(obj: Any, path: str | Path) -> None:
    """Write JSON atomically, keys sorted, 2-space indent."""
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def stable_hash(obj: Any, length: int = 12) -> str:
    """A short, order-independent hash of a JSON-serialisable object.

    Used to key caches by everything that determines their content.
    """
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def require_columns(df: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    """Raise ``ValueError`` naming the table ``name`` unless ``df`` has every one of ``columns``."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{name} lacks column(s) {missing}; expected {list(columns)}")
