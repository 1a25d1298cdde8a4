"""What each executed notebook was made from, and whether it still is current.

An executed copy (``notebooks/executed/<profile>/0N_*.ipynb``) records, in its
metadata under ``xldrift``:

``notebook``
    a fingerprint of its own source notebook (cell types, sources and tags);
``parameters``
    the parameters it ran with: the fields of :class:`xldrift.study.config.StudyConfig`
    that :data:`xldrift.study.config.NOTEBOOK_FIELDS` lists for it, and their values;
``modules``
    ``{module: fingerprint}`` of every module of the package (and ``utils``)
    that its kernel actually imported;
``inputs``
    ``{file: SHA-256[:16]}`` of the result and figure files it opened for
    reading (found with an audit hook in the kernel), and one digest per task
    data folder it read;
``outputs``
    ``{file: SHA-256[:16]}`` of the result and figure files it wrote;
``commit``
    the git commit the run started from.

It is *stale* when any of these differ from what the same run would use now
(:func:`staleness`). A module's fingerprint is taken from its syntax tree with
docstrings, comments and blank lines removed (:func:`code_text`), so editing
prose leaves the notebooks that import it current, while any change to code
does not. Nothing else counts:
a change to notebook 05 re-runs 05, and 06 only if a file 06 reads changed.
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import tokenize
from pathlib import Path
from typing import Any

from xldrift.study import paths

RECORD_VERSION = 2
BEGIN_TAG = "xldrift-record-begin"
END_TAG = "xldrift-record-end"
_END_MARK = "XLDRIFT-RECORD "

# Injected before the notebook's first cell: remember every file the kernel opens for reading.
BEGIN_SOURCE = """\
import os as _xl_os, sys as _xl_sys
_xl_reads = set()
def _xl_audit(event, args):
    if event == "open" and isinstance(args[0], (str, _xl_os.PathLike)):
        mode, flags = args[1], args[2]
        reading = ("r" in mode and "+" not in mode) if isinstance(mode, str) else \\
            not (flags & (_xl_os.O_WRONLY | _xl_os.O_RDWR))
        if reading:
            _xl_reads.add(_xl_os.path.abspath(_xl_os.fspath(args[0])))
_xl_sys.addaudithook(_xl_audit)
"""

# Appended after the notebook's last cell: print what was imported and read, for the runner to collect.
END_SOURCE = f"""\
import json as _xl_json
print({_END_MARK!r} + _xl_json.dumps({{
    "modules": sorted(m for m in _xl_sys.modules if m in ("utils", "xldrift") or m.startswith("xldrift.")),
    "reads": sorted(_xl_reads),
}}))
"""


def _digest_bytes(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()[:16]


def file_digest(path: Path) -> str | None:
    """SHA-256 (16 hex digits) of a file, or None when it does not exist."""
    return _digest_bytes(path.read_bytes()) if path.is_file() else None


def notebook_fingerprint(nb_path: Path) -> str:
    """Fingerprint of a source notebook: its cells' types, sources and tags (not outputs or metadata)."""
    h = hashlib.sha256()
    for c in json.loads(nb_path.read_text())["cells"]:
        h.update(c["cell_type"].encode() + b"\0" + "".join(c["source"]).encode() + b"\0")
        h.update(json.dumps(c.get("metadata", {}).get("tags", [])).encode())
    return h.hexdigest()[:16]


def code_text(source: str) -> str:
    """A module's code without docstrings, comments, blank lines or trailing spaces.

    Works on the text (not on ``ast.dump``, whose output changes between Python versions), so the
    same file gives the same fingerprint on every supported Python.
    """
    lines = source.splitlines()
    keep = [True] * len(lines)
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if not (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body):
            continue
        first = body[0]
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
            start, end = first.lineno - 1, first.end_lineno - 1
            alone = not lines[start][: first.col_offset].strip() and (len(body) > 1 or node.__class__ is ast.Module)
            if alone:
                for i in range(start, end + 1):
                    keep[i] = False
    comments: dict[int, int] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0] - 1] = tok.start[1]
    out = []
    for i, line in enumerate(lines):
        if keep[i]:
            line = line[: comments[i]] if i in comments else line
            if line.strip():
                out.append(line.rstrip())
    return "\n".join(out)


def module_file(name: str) -> Path | None:
    """The source file of ``utils`` or an ``xldrift`` module in this checkout, or None if there is none."""
    if name == "utils":
        f = paths.ROOT / "utils.py"
    else:
        parts = name.split(".")
        base = paths.ROOT.joinpath(*parts)
        f = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
    return f if f.is_file() else None


def module_fingerprint(name: str) -> str | None:
    """Fingerprint of a module's code (:func:`code_text`); None if the module is gone."""
    f = module_file(name)
    if f is None:
        return None
    return _digest_bytes(code_text(f.read_text()).encode())


def data_inputs(reads: list[str]) -> dict[str, str]:
    """``{"data/<task>": digest}`` for each shipped task-data folder the kernel read from.

    The digest covers the manifest entries of the whole folder, so any change to that task's
    shipped files makes the notebook stale (conservative: data change rarely). Only the
    repository's ``data/`` is tracked; a folder in ``$XLDRIFT_DATA`` is the user's own.
    """
    from xldrift.data import tasks as data

    root = data.SHIPPED.resolve()
    tasks = sorted({Path(r).relative_to(root).parts[0] for r in reads
                    if Path(r).is_relative_to(root) and len(Path(r).relative_to(root).parts) > 1})
    return {f"data/{t}": data_digest(t) for t in tasks if t in data.TASKS}


def data_digest(task: str) -> str | None:
    """Digest of the manifest entries of ``data/<task>/`` (None without a manifest)."""
    from xldrift.data import tasks as data

    if not data.MANIFEST.is_file():
        return None
    entries = sorted((rel, d) for rel, d in data.read_manifest().items() if rel.startswith(f"{task}/"))
    return _digest_bytes(json.dumps(entries).encode())


def record(nb_path: Path, nb_params: dict[str, Any], modules: list[str], reads: list[str],
           written: list[str], profile: str) -> dict[str, Any]:
    """The provenance record of one executed notebook.

    Args:
        nb_path: the source notebook.
        nb_params: the parameters it ran with.
        modules: names of the package modules (and ``utils``) its kernel imported.
        reads: absolute paths of every file the kernel opened for reading.
        written: result/figure files (relative to the output root) that the run wrote.
        profile: the profile, whose result and figure folders are tracked.
    """
    out_root = paths.out_root().resolve()
    tracked = (paths.results_dir(profile).resolve(), paths.figures_dir(profile).resolve())
    inputs = {}
    for r in reads:
        p = Path(r)
        if any(p.is_relative_to(d) for d in tracked) and p.name != "config.json" and p.is_file():
            rel = p.relative_to(out_root).as_posix()
            if rel not in written:
                inputs[rel] = file_digest(p)
    return {
        "record_version": RECORD_VERSION,
        "notebook": notebook_fingerprint(nb_path),
        "parameters": json.loads(json.dumps(nb_params)),
        "modules": {m: module_fingerprint(m) for m in sorted(modules) if module_file(m) is not None},
        "inputs": dict(sorted(inputs.items())),
        "data": data_inputs(reads),
        "outputs": {rel: file_digest(out_root / rel) for rel in sorted(written)},
    }


def read_record(executed: Path) -> dict[str, Any] | None:
    """The ``xldrift`` metadata of an executed copy, or None if there is none readable."""
    try:
        return json.loads(executed.read_text())["metadata"].get("xldrift")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def staleness(executed: Path, nb_path: Path, nb_params: dict[str, Any]) -> str | None:
    """Why an executed copy no longer matches what a run would make now, or None if it is current.

    The first difference found is named: the notebook, a parameter, a module (by file), an input
    file the notebook read, the task data, or an output file changed since the run.
    """
    rec = read_record(executed)
    if rec is None:
        return "no executed copy"
    if rec.get("record_version") != RECORD_VERSION:
        return f"recorded before per-notebook tracking (ran at {short_commit(rec.get('commit'))})"
    if rec.get("notebook") != notebook_fingerprint(nb_path):
        return f"notebooks/{nb_path.name} changed"
    now = json.loads(json.dumps(nb_params))
    if rec.get("parameters") != now:
        changed = sorted(k for k in set(now) | set(rec.get("parameters", {}))
                         if now.get(k) != rec.get("parameters", {}).get(k))
        return f"parameters changed: {', '.join(changed)}"
    recorded = rec.get("modules", {})
    gone = [m for m in recorded if module_file(m) is None]
    edited = [m for m, fp in recorded.items() if m not in gone and module_fingerprint(m) != fp]
    if edited or gone:
        return code_change(edited, gone)
    for rel, digest in rec.get("inputs", {}).items():
        now_digest = file_digest(paths.out_root() / rel)
        if now_digest != digest:
            return f"input {rel} {'missing' if now_digest is None else 'changed'}"
    for key, digest in rec.get("data", {}).items():
        if data_digest(key.split("/", 1)[1]) != digest:
            return f"task data {key}/ changed"
    for rel, digest in rec.get("outputs", {}).items():
        now_digest = file_digest(paths.out_root() / rel)
        if now_digest != digest:
            return f"output {rel} {'missing' if now_digest is None else 'changed since the run'}"
    return None


def code_change(edited: list[str], gone: list[str], shown: int = 3) -> str:
    """Why recorded modules no longer match: the files of those edited, the names of those gone.

    A module is gone when no file of that name exists any more: it was removed, or moved when
    the package was reorganised (a copy made before ``xldrift/`` was grouped by stage recorded
    ``xldrift.stats``, now ``xldrift.analysis.stats``).

    Args:
        edited: dotted names of recorded modules whose code changed.
        gone: dotted names of recorded modules with no file now.
        shown: how many gone modules to name before counting the rest.

    Returns:
        e.g. ``code changed: xldrift/analysis/stats.py`` or ``modules xldrift.claims, xldrift.io and
        4 more no longer exist (moved or removed since the run)``; both joined by ``; ``, the gone first.
    """
    parts = []
    if gone:  # first: a module that moved explains the rest (its package's files changed too)
        names = ", ".join(gone[:shown]) + (f" and {len(gone) - shown} more" if len(gone) > shown else "")
        verb = "no longer exists" if len(gone) == 1 else "no longer exist"
        parts.append(f"module{'s' if len(gone) > 1 else ''} {names} {verb} (moved or removed since the run)")
    if edited:
        parts.append("code changed: " + ", ".join(module_file(m).relative_to(paths.ROOT).as_posix() for m in edited))
    return "; ".join(parts)


def short_commit(commit: str | None) -> str:
    """The first 7 hex digits of a commit id, keeping a ``+dirty`` mark."""
    if not commit or commit == "unknown":
        return "unknown"
    sha, _, dirty = commit.partition("+")
    return sha[:7] + (f"+{dirty}" if dirty else "")


def parse_end_output(outputs: list[dict[str, Any]]) -> dict[str, list[str]]:
    """The modules and reads the injected last cell printed."""
    for o in outputs:
        text = "".join(o.get("text", "")) if o.get("output_type") == "stream" else ""
        for line in text.splitlines():
            if line.startswith(_END_MARK):
                return json.loads(line[len(_END_MARK):])
    raise RuntimeError("the executed notebook did not report its modules and reads")
