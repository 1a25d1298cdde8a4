"""What a run tells the person at the terminal, and what it records about itself.

Notebooks execute in a kernel whose output lands in the executed copy, not in
the terminal that started the runner. :func:`notice` is how package code (a
damaged cache entry moved aside, a wait for another process's lock) reaches
that terminal anyway: it logs a warning, which shows in the notebook, and
appends the same line to the file named by ``$XLDRIFT_NOTICES``, which the
runner relays to its standard error while the notebook runs (:class:`Relay`).

The runner's record of a run, ``results/<profile>/config.json``, is updated
with :func:`write_run_config`, which keeps the per-notebook parameter records
of notebooks the run did not execute.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any, TextIO

from xldrift.study import io

logger = logging.getLogger(__name__)

NOTICES_ENV = "XLDRIFT_NOTICES"


def notice(message: str) -> None:
    """Tell the person running the study one line, wherever the code runs.

    Args:
        message: one line (newlines are replaced by spaces).
    """
    line = " ".join(str(message).split())
    logger.warning(line)
    target = os.environ.get(NOTICES_ENV)
    if target:
        try:
            # one write of one line with O_APPEND: lines of concurrent writers never interleave
            fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, (line + "\n").encode())
            finally:
                os.close(fd)
        except OSError:
            pass  # the warning above is still in the notebook


def notices_file() -> Path:
    """Create this run's notices file and point ``$XLDRIFT_NOTICES`` (inherited by kernels) at it.

    It lives in a private temporary folder, with the kernels' own log
    (:func:`kernel_manager_class`), removed when the runner exits.
    """
    import atexit
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix=f"xldrift-run-{os.getpid()}-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    path = folder / "notices.log"
    path.touch()
    os.environ[NOTICES_ENV] = str(path)
    return path


def kernel_manager_class(log: Path) -> type:
    """A Jupyter kernel manager whose kernels write their own stderr to ``log``, not to the terminal.

    What a notebook prints reaches its executed copy either way; what the
    kernel process itself logs (transport warnings, its shutdown after Ctrl-C)
    would otherwise interleave with the runner's lines.
    """
    from jupyter_client.manager import AsyncKernelManager

    class QuietKernelManager(AsyncKernelManager):
        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
            with open(log, "ab") as sink:  # the child keeps its own copy of the descriptor
                kw.setdefault("stderr", sink)
                kw.setdefault("stdout", sink)
                await super()._async_launch_kernel(kernel_cmd, **kw)

    return QuietKernelManager


class Relay:
    """Copy the lines appended to a notices file to ``stream`` as they arrive.

    Used as a context manager around a notebook's execution; the lines left
    when it exits are printed before it returns.
    """

    def __init__(self, path: Path, stream: TextIO | None = None, prefix: str = "", interval: float = 0.5):
        self.path, self.stream, self.prefix, self.interval = Path(path), stream, prefix, interval
        self._offset = self.path.stat().st_size if self.path.is_file() else 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._lock = threading.Lock()

    def __enter__(self) -> "Relay":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.pump()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.pump()

    def pump(self) -> None:
        """Print every complete line appended since the last call."""
        with self._lock:
            try:
                with self.path.open("rb") as f:
                    f.seek(self._offset)
                    chunk = f.read()
            except OSError:
                return
            complete = chunk[: chunk.rfind(b"\n") + 1]
            self._offset += len(complete)
            stream = self.stream or sys.stderr
            for line in complete.decode(errors="replace").splitlines():
                print(f"{self.prefix}{line}", file=stream, flush=True)


def write_run_config(path: Path, run_info: dict[str, Any], values: dict[str, Any],
                     notebooks: list[str] | None = None) -> None:
    """Record a run in ``config.json`` without losing what earlier runs recorded.

    The top level describes the latest run (``run_info``, its parameters and
    the notebooks it was asked to execute); ``notebooks`` keeps, per notebook,
    the parameters it last ran with (written by the notebook itself), so an
    ``--only`` run or an interrupted one leaves the records of the others alone.

    Args:
        path: ``results/<profile>/config.json``.
        run_info: profile, commit, source hash, Python version, start time.
        values: the run's validated parameters.
        notebooks: file names of the notebooks this run executes, when known.
    """
    try:
        previous = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        previous = {}
    record = {**run_info, "parameters": values, **({"notebooks_run": notebooks} if notebooks is not None else {})}
    if isinstance(previous.get("notebooks"), dict):
        record["notebooks"] = previous["notebooks"]
    io.write_json(record, path)


_current: dict[str, Any] = {}


def set_current(what: str | None) -> None:
    """Remember what the runner is doing now (named if the run is interrupted)."""
    _current["what"] = what


def stop_children(timeout: float = 5.0) -> None:
    """Kill this process's child processes (the notebook kernel) and wait for them.

    After Ctrl-C the kernel would otherwise outlive the runner and print its
    own shutdown warnings below the runner's last line.
    """
    try:
        import psutil  # ipykernel's dependency, so present wherever notebooks run
    except ImportError:
        return
    children = psutil.Process().children(recursive=True)
    for child in children:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(children, timeout=timeout)


def interrupted_line() -> str:
    """The one line printed on Ctrl-C: what was interrupted and how to resume."""
    what = _current.get("what")
    where = f" while running {what}" if what else ""
    return (f"interrupted{where}; notebooks that finished and cache entries already written are kept, "
            "so running the same command again resumes")
