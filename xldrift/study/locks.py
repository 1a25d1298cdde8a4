"""Locks between processes: one per cache entry, one per profile output, and pid-tagged temporaries.

* :func:`entry_lock` serialises the making of one cache entry (a checkpoint, a
  language's representations or predictions). A second process that needs the
  same entry waits, then finds it finished and reuses it.
* :func:`profile_lock` lets one runner at a time write a profile's output
  folder; a second one is refused at once, told which process holds it.
* Temporary files and folders carry their owner's pid (``.tmp-<name>.<pid>.*``,
  see :mod:`xldrift.study.io`); :func:`stale_temps` lists those whose owner is gone,
  the only ones cleanup may delete.

The locks are ``flock`` locks on small files, released by the kernel when
their process ends however it ends, so a killed run never leaves a lock
behind. Lock files hold the owner's pid, start time and command line, to name
it in messages, and are never deleted (deleting a lock file another process is
waiting on would let a third one in).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import re
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

from xldrift.study import paths, runlog

_held = threading.local()  # lock files this thread holds: re-entrant per thread, contended between threads


class LockedError(RuntimeError):
    """Another live process holds a lock that must not be waited for."""


def _owner() -> dict[str, Any]:
    return {"pid": os.getpid(), "started": dt.datetime.now().isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else "python"}


def _read_owner(fd: int) -> dict[str, Any]:
    try:
        raw = os.pread(fd, 4096, 0)
        owner = json.loads(raw.decode() or "{}")
        return owner if isinstance(owner, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_owner(fd: int) -> None:
    blob = json.dumps(_owner()).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, blob, 0)


def describe_owner(owner: dict[str, Any]) -> str:
    """``process 123 (started 2026-01-01T10:00:00: run_study.py --profile smoke)``, as far as known."""
    if not owner.get("pid"):
        return "another process"
    extra = ", ".join(x for x in (f"started {owner['started']}" if owner.get("started") else "",
                                  owner.get("command", "")) if x)
    return f"process {owner['pid']}" + (f" ({extra})" if extra else "")


def lock_file_for(entry: Path) -> Path:
    """The lock file of a cache entry: ``<cache>/.locks/<hash>-<name>.lock``."""
    entry = Path(entry).resolve()
    tag = hashlib.sha256(str(entry).encode()).hexdigest()[:12]
    return paths.cache_dir() / ".locks" / f"{tag}-{entry.name}.lock"


@contextlib.contextmanager
def entry_lock(entry: Path, what: str) -> Iterator[None]:
    """Hold the lock of one cache entry, waiting (with one notice) while another process holds it.

    Re-entrant within a process. The caller re-checks the cache after
    acquiring: the process it waited for has usually just made the entry.

    Args:
        entry: the cache entry's path (need not exist yet).
        what: what the entry is, for the waiting notice ("fine-tuned checkpoint").
    """
    lock = lock_file_for(entry)
    key = str(lock)
    held: set[str] = _held.__dict__.setdefault("keys", set())
    if key in held:
        yield
        return
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            runlog.notice(f"waiting for {describe_owner(_read_owner(fd))}, which is making the {what} "
                          f"{Path(entry).name}; it will be reused when done")
            fcntl.flock(fd, fcntl.LOCK_EX)
        _write_owner(fd)
        held.add(key)
        try:
            yield
        finally:
            held.discard(key)
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


class ProfileLock:
    """The lock of one profile's output folder, held until :meth:`release` or process exit."""

    def __init__(self, profile: str):
        self.profile = profile
        self.path = paths.executed_dir(profile) / ".runner.lock"
        self._fd: int | None = None

    def acquire(self) -> "ProfileLock":
        """Take the lock now or raise :class:`LockedError` naming the process that holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_owner(fd)
            os.close(fd)
            raise LockedError(
                f"profile {self.profile!r} is being run into {paths.out_root()} by {describe_owner(owner)}; "
                f"wait for it to finish, or give this run another output folder (XLDRIFT_OUT)") from None
        _write_owner(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        """Give the lock back (idempotent)."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "ProfileLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def profile_lock(profile: str) -> ProfileLock:
    """A :class:`ProfileLock` for ``profile`` (not yet acquired)."""
    return ProfileLock(profile)


# ----------------------------------------------------------------- temporaries
def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def temp_owner(name: str, target: str) -> int | None:
    """The pid in a temporary's name ``.tmp-<target>.<pid>.<random>``, or None if it carries none."""
    m = re.fullmatch(re.escape(f".tmp-{target}.") + r"(\d+)\..+", name)
    return int(m.group(1)) if m else None


def stale_temps(target: Path) -> list[Path]:
    """Temporaries of ``target`` left by processes that no longer run.

    A temporary without a pid in its name comes from a version that did not
    tag them; it counts as stale only when the caller holds ``target``'s entry
    lock, which every writer of that version's successors takes.
    """
    target = Path(target)
    out = []
    if not target.parent.is_dir():
        return out
    for pattern in (f".tmp-{target.name}.*", f".{target.name}.*.tmp"):
        for p in sorted(target.parent.glob(pattern)):
            pid = temp_owner(p.name, target.name)
            if pid is None or (pid != os.getpid() and not pid_alive(pid)):
                out.append(p)
    return out
