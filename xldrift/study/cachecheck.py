"""Verified cache entries: sizes and SHA-256 recorded when written, checked when read.

A cache entry is either a folder (a fine-tuned checkpoint, whose
``manifest.json`` lists every file with its size and SHA-256 under ``files``)
or a single file (predictions ``.csv``, representations ``.safetensors``),
whose record is a small JSON sidecar ``<file>.sha256`` written right after it.

Reading an entry checks the sizes every time (a ``stat`` per file) and the
SHA-256 once per process and entry state (path, size, modification time,
inode): a notebook that reads the same checkpoint twice hashes it once. An
entry that fails is moved aside to ``<cache>/.quarantine/`` and the person
running the study is told in one line (:func:`xldrift.study.runlog.notice`) which
file was wrong and how; the caller then recomputes it, or, where it cannot
(a notebook that only reads), raises :class:`CacheEntryError` naming the
notebook that makes it.

Entries written before records existed are checked for structure instead
(a safetensors file's length against its header; a predictions table against
its items) and, when sound, given a record.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import struct
from pathlib import Path
from typing import Any, Callable, Iterable

from xldrift.study import io, paths, runlog

logger = logging.getLogger(__name__)

SIDECAR = ".sha256"
CHUNK = 1 << 22

_verified: set[tuple] = set()


class CacheEntryError(RuntimeError):
    """A cache entry failed verification where it cannot be recomputed."""


# ----------------------------------------------------------------- hashing
def file_digest(path: Path) -> str:
    """SHA-256 hex digest of a file, read in 4 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def describe(files: Iterable[Path], root: Path) -> dict[str, dict[str, Any]]:
    """``{path relative to root: {"size": bytes, "sha256": hex}}`` of ``files``."""
    out = {}
    for f in sorted(files):
        out[f.relative_to(root).as_posix()] = {"size": f.stat().st_size, "sha256": file_digest(f)}
    return out


def _signature(files: dict[str, dict[str, Any]], root: Path) -> tuple:
    sig = []
    for rel in sorted(files):
        st = (root / rel).stat()
        sig.append((rel, st.st_size, st.st_mtime_ns, st.st_ino))
    return (str(root.resolve()), tuple(sig))


def problem(files: dict[str, dict[str, Any]], root: Path, *, deep: bool = True) -> str | None:
    """What is wrong with the files recorded in ``files``, or None when they match.

    Args:
        files: a record from :func:`describe`.
        root: the folder the record's paths are relative to.
        deep: also compare SHA-256 (once per process and file state); sizes only when False.
    """
    for rel, want in sorted(files.items()):
        f = root / rel
        if not f.is_file():
            return f"{f}: missing"
        size = f.stat().st_size
        if size != want["size"]:
            return f"{f}: {size:,} bytes where {want['size']:,} were written (truncated or overwritten)"
    if not deep:
        return None
    sig = _signature(files, root)
    if sig in _verified:
        return None
    for rel, want in sorted(files.items()):
        if file_digest(root / rel) != want["sha256"]:
            return f"{root / rel}: content differs from what was written (SHA-256 mismatch)"
    _verified.add(sig)
    return None


def _trust(files: dict[str, dict[str, Any]], root: Path) -> None:
    """Mark files just recorded by this process as verified (no need to hash them again)."""
    _verified.add(_signature(files, root))


def safetensors_problem(path: Path) -> str | None:
    """Whether a safetensors file is complete: its length must match its header.

    The header (an 8-byte little-endian length, then JSON) gives every
    tensor's byte range; a cut file is shorter than the last range's end.
    """
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return f"{path}: {size} bytes, too short for a safetensors header"
            (n,) = struct.unpack("<Q", head)
            if n > size - 8:
                return f"{path}: header of {n:,} bytes does not fit in the file's {size:,} (truncated)"
            header = json.loads(f.read(n))
    except (OSError, ValueError) as err:
        return f"{path}: unreadable safetensors header ({err})"
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end != size:
        return f"{path}: {size:,} bytes where the header describes {8 + n + end:,} (truncated)"
    return None


# ----------------------------------------------------------------- moving aside
def quarantine(path: Path, reason: str, *, recompute: bool = True) -> Path:
    """Move a damaged entry (file or folder, with its sidecar) to ``<cache>/.quarantine/``.

    Tells the person running the study in one line. Returns the new location.
    """
    path = Path(path)
    stamp = f"{dt.datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}"
    try:
        rel = path.resolve().relative_to(paths.cache_dir().resolve())
        dest = paths.cache_dir() / ".quarantine" / rel.parent / f"{rel.name}.{stamp}"
    except ValueError:
        dest = path.with_name(f".quarantine-{path.name}.{stamp}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        shutil.move(str(path), str(dest))
    except FileNotFoundError:
        pass  # another process moved it first
    side = _sidecar(path)
    if side.exists():
        try:
            shutil.move(str(side), str(dest.with_name(dest.name + SIDECAR)))
        except FileNotFoundError:
            pass
    then = "recomputing it" if recompute else "it must be made again"
    runlog.notice(f"damaged cache entry: {reason}; moved aside to {dest}, {then}")
    return dest


def was_quarantined(path: Path) -> bool:
    """Whether a copy of the entry at ``path`` was moved aside as damaged."""
    try:
        rel = Path(path).resolve().relative_to(paths.cache_dir().resolve())
    except ValueError:
        return False
    folder = paths.cache_dir() / ".quarantine" / rel.parent
    return folder.is_dir() and any(folder.glob(f"{rel.name}.*"))


# ----------------------------------------------------------------- single files
def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR)


def seal_file(path: Path) -> None:
    """Record the size and SHA-256 of a finished cache file in its sidecar."""
    path = Path(path)
    record = describe([path], path.parent)
    io.write_json(record, _sidecar(path))
    _trust(record, path.parent)


def file_record(path: Path) -> dict[str, dict[str, Any]] | None:
    """The sidecar record of ``path``, or None if it has none (made before records existed)."""
    side = _sidecar(Path(path))
    try:
        record = json.loads(side.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and Path(path).name in record else None


def check_file(path: Path, legacy: Callable[[Path], str | None] | None = None, *, deep: bool = True) -> str | None:
    """What is wrong with a cache file, or None when it may be used.

    Args:
        path: an existing cache file.
        legacy: structural check for a file without a record; when it passes
            the file is given one.
        deep: compare SHA-256 too (sizes only when False).
    """
    path = Path(path)
    record = file_record(path)
    if record is not None:
        return problem(record, path.parent, deep=deep)
    if legacy is not None:
        why = legacy(path)
        if why is None and deep:
            seal_file(path)
        return why
    return None


def usable_file(path: Path, legacy: Callable[[Path], str | None] | None = None) -> bool:
    """True if ``path`` exists and verifies; a damaged file is moved aside (and False)."""
    path = Path(path)
    if not path.is_file():
        return False
    why = check_file(path, legacy)
    if why is None:
        return True
    quarantine(path, why)
    return False


def require_file(path: Path, what: str, producer: str) -> None:
    """Verify a cache file that the caller only reads; raise if it is missing or damaged.

    Raises:
        CacheEntryError: naming the file, the fault and the notebook that makes it.
    """
    path = Path(path)
    if not path.is_file():
        raise CacheEntryError(f"{what} {path} is not in the cache; run {producer} to make it")
    legacy = safetensors_problem if path.suffix == ".safetensors" else None
    why = check_file(path, legacy)
    if why is not None:
        dest = quarantine(path, why, recompute=False)
        raise CacheEntryError(f"{what} {path} is damaged ({why}); moved aside to {dest}; run {producer} again "
                              f"to make it")


# ----------------------------------------------------------------- folders (checkpoints)
def seal_dir(directory: Path) -> dict[str, Any]:
    """``{"files": record}`` of every file in a folder but its manifest, for the manifest."""
    directory = Path(directory)
    files = [f for f in directory.rglob("*") if f.is_file() and f.name != io.MANIFEST]
    record = describe(files, directory)
    _trust(record, directory)
    return {"files": record}


def check_dir(directory: Path, *, deep: bool = True) -> str | None:
    """What is wrong with a complete cache folder, or None.

    A folder whose manifest predates file records is checked for structure
    (every safetensors file complete) and, when sound and ``deep``, given one.
    """
    directory = Path(directory)
    manifest = io.read_manifest(directory)
    if manifest is None:
        return f"{directory / io.MANIFEST}: missing or unreadable"
    files = manifest.get("files")
    if isinstance(files, dict):
        return problem(files, directory, deep=deep)
    for f in sorted(directory.rglob("*.safetensors")):
        why = safetensors_problem(f)
        if why is not None:
            return why
    if deep:
        io.write_manifest(directory, {**manifest, **seal_dir(directory)})
    return None


def usable_dir(directory: Path) -> bool:
    """True if a complete folder entry verifies; a damaged one is moved aside (and False)."""
    directory = Path(directory)
    if not io.is_complete(directory):
        return False
    why = check_dir(directory)
    if why is None:
        return True
    quarantine(directory, why)
    return False


def require_dir(directory: Path, what: str, producer: str) -> None:
    """Verify a complete folder entry that the caller only reads.

    Raises:
        CacheEntryError: missing, incomplete or damaged, naming what to run.
    """
    directory = Path(directory)
    if not io.is_complete(directory):
        raise CacheEntryError(f"{what} {directory} is not in the cache (or incomplete); run {producer} to make it")
    why = check_dir(directory)
    if why is not None:
        dest = quarantine(directory, why, recompute=False)
        raise CacheEntryError(f"{what} {directory} is damaged ({why}); moved aside to {dest}; run {producer} "
                              f"again to make it")
