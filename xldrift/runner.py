"""Run the notebook sequence with papermill, after validating every parameter.

``run_study.py --profile NAME [--set key=value ...] [--only 03,04] [--rerun]`` is
a thin front end to :func:`main`. Validation happens before anything is
executed or written; a failing notebook stops the run with the notebook and
cell named and its partially executed copy kept as ``<name>.FAILED.ipynb``.

Like ``make``, the runner skips a notebook whose executed copy is up to date
(:func:`staleness`): made from the same sources and parameters, with the
result and figure files it wrote, and the upstream files it could have read,
unchanged since. ``--rerun`` executes regardless (each notebook still reads
the fine-tunings, predictions and representations it finds in the cache).
"""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import difflib
import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from xldrift import checks, io, locks, params, paths, runlog

log = logging.getLogger(__name__)

NOTEBOOKS = paths.ROOT / "notebooks"
PROFILES = paths.ROOT / "profiles"
KERNEL = "xldrift"


def notebook_paths() -> list[Path]:
    """The source notebooks ``notebooks/0N_*.ipynb`` in order."""
    return sorted(NOTEBOOKS.glob("0[0-9]_*.ipynb"))


def notebook_parameters(path: Path) -> dict[str, Any]:
    """Names and default values of the cell tagged ``parameters`` in ``path``.

    Raises:
        ValueError: no such cell, or a value that is not a plain literal.
    """
    nb = json.loads(path.read_text())
    cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"{path.name}: expected one cell tagged 'parameters', found {len(cells)}")
    src = "".join(cells[0]["source"])
    out: dict[str, Any] = {}
    for node in ast.parse(src).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            raise ValueError(f"{path.name}: the parameters cell may only hold 'name = literal' lines")
        out[node.targets[0].id] = ast.literal_eval(node.value)
    return out


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILES.glob("*.yaml"))


def load_profile(name: str) -> dict[str, Any]:
    """The parameters of ``profiles/<name>.yaml``."""
    f = PROFILES / f"{name}.yaml"
    if not f.is_file():
        raise params.ParamError(f"unknown profile {name!r}; available: {', '.join(available_profiles())}")
    return yaml.safe_load(f.read_text()) or {}


def parse_sets(items: list[str]) -> dict[str, Any]:
    """``key=value`` pairs from the command line; values parsed as YAML."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise params.ParamError(f"--set expects key=value, got {item!r}")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise params.ParamError(f"--set {key}: cannot parse value {value!r}") from None
    return out


def source_hash(profile: str) -> str:
    """Hash of everything that determines an executed copy's content.

    Covers the notebooks' cell sources and tags (not their metadata), the
    package, ``utils.py``, the runner and the profile file.
    """
    h = hashlib.sha256()
    for nb in notebook_paths():
        cells = json.loads(nb.read_text())["cells"]
        h.update(nb.name.encode())
        for c in cells:
            h.update(c["cell_type"].encode() + "".join(c["source"]).encode())
            h.update(json.dumps(c.get("metadata", {}).get("tags", [])).encode())
    files = sorted((paths.ROOT / "xldrift").glob("*.py")) + [paths.ROOT / "utils.py", paths.ROOT / "run_study.py"]
    files.append(PROFILES / f"{profile}.yaml")
    for f in files:
        if f.is_file():
            h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()[:16]


def git_commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=paths.ROOT, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=paths.ROOT,
                               capture_output=True, text=True).stdout.strip()
        return sha.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def plan(profile: str, sets: dict[str, Any], only: list[str] | None) -> tuple[dict[str, Any], list[Path]]:
    """Merge notebook defaults, the profile and overrides; validate everything.

    Returns:
        The validated parameters and the notebooks to run.

    Raises:
        ParamError: any problem, before anything runs.
    """
    nbs = notebook_paths()
    if not nbs:
        raise params.ParamError(f"no notebooks found in {NOTEBOOKS}")
    declared: dict[str, Any] = {}
    for nb in nbs:
        for k, v in notebook_parameters(nb).items():
            declared.setdefault(k, v)
    merged = dict(declared)
    for origin, values in ((f"profiles/{profile}.yaml", load_profile(profile)), ("--set", sets)):
        for k, v in values.items():
            if k not in declared:
                near = difflib.get_close_matches(k, declared, n=1)
                hint = f"; did you mean {near[0]!r}?" if near else ""
                raise params.ParamError(f"{origin}: unknown parameter {k!r}{hint} (valid: {', '.join(sorted(declared))})")
            merged[k] = v
    merged["profile"] = profile
    merged = params.validate(merged)
    if only:
        known = {nb.name[:2]: nb for nb in nbs}
        bad = [o for o in only if o not in known]
        if bad:
            raise params.ParamError(f"--only: unknown notebook(s) {bad}; valid: {', '.join(known)}")
        nbs = [known[o] for o in sorted(set(only))]
    _check_model(merged["model"])
    return merged, nbs


def _check_model(name: str) -> None:
    from xldrift import models

    try:
        models.check_available(name)
    except models.ModelNotFoundError as e:
        raise params.ParamError(str(e)) from None


def _relink(nb_path: Path) -> None:
    """Fix the README link of executed copies, which sit three folders deeper."""
    nb = json.loads(nb_path.read_text())
    for c in nb["cells"]:
        if c["cell_type"] == "markdown":
            c["source"] = [s.replace("](../README.md)", "](../../../README.md)") for s in c["source"]]
    nb_path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def _output_files(profile: str) -> dict[str, tuple[int, int]]:
    """``{path relative to the output root: (mtime_ns, size)}`` of the profile's result and figure files.

    ``config.json`` is left out: the runner itself rewrites it on every run.
    """
    out: dict[str, tuple[int, int]] = {}
    for d in (paths.results_dir(profile), paths.figures_dir(profile)):
        if d.is_dir():
            for f in sorted(d.rglob("*")):
                if f.is_file() and f.name != "config.json":
                    st = f.stat()
                    out[f.relative_to(paths.out_root()).as_posix()] = (st.st_mtime_ns, st.st_size)
    return out


def _digest(rel: str) -> str | None:
    f = paths.out_root() / rel
    return hashlib.sha256(f.read_bytes()).hexdigest()[:16] if f.is_file() else None


def _record(executed: Path) -> dict[str, Any] | None:
    """The ``xldrift`` metadata of an executed copy, or None if there is none readable."""
    try:
        return json.loads(executed.read_text())["metadata"].get("xldrift")
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _upstream_outputs(out_dir: Path, nb: Path) -> list[str]:
    """Files recorded as written by the executed copies of the notebooks before ``nb``."""
    files: set[str] = set()
    for other in sorted(out_dir.glob("0[0-9]_*.ipynb")):
        if other.name < nb.name and ".FAILED." not in other.name:
            files.update((_record(other) or {}).get("outputs", {}))
    return sorted(files)


def staleness(profile: str, nb: Path, nb_params: dict[str, Any]) -> str | None:
    """Why ``nb``'s executed copy must be (re)made, or None when it is up to date.

    Up to date means: the copy exists and records the current
    :func:`source_hash`, the same parameters, and the files it wrote and the
    upstream notebooks' files it could read, each still there with the SHA-256
    it had when the run that made the copy last completed a notebook. Copies
    made before files were recorded are stale.
    """
    rec = _record(paths.executed_dir(profile) / nb.name)
    if rec is None:
        return "no executed copy"
    if rec.get("source_hash") != source_hash(profile):
        return "sources changed"
    if rec.get("parameters") != json.loads(json.dumps(nb_params)):
        return "parameters changed"
    if "outputs" not in rec or "inputs" not in rec:
        return "no record of its files"
    for kind in ("outputs", "inputs"):
        for rel, digest in rec[kind].items():
            now = _digest(rel)
            if now != digest:
                return f"{rel} {'missing' if now is None else 'changed'}"
    if sorted(rec["inputs"]) != _upstream_outputs(paths.executed_dir(profile), nb):
        return "upstream files changed"
    return None


def execute(profile: str, values: dict[str, Any], notebooks: list[Path], *, rerun: bool = False) -> int:
    """Execute ``notebooks`` in order, skipping up-to-date ones unless ``rerun``; return an exit code.

    Once a notebook runs, every later one runs too: its inputs may have changed.
    """
    pending: list[Path] = []
    for nb in notebooks:
        declared = notebook_parameters(nb)
        nb_params = {k: v for k, v in values.items() if k in declared}
        why = ("--rerun" if rerun else "an earlier notebook runs" if pending
               else staleness(profile, nb, nb_params) or checks.cache_staleness(profile, nb))
        if why is None:
            print(f"{nb.name}: up to date (same sources, parameters and files), skipped; --rerun to execute it")
        else:
            print(f"{nb.name}: to run ({why})")
            pending.append(nb)
    if not pending:
        return 0
    return _execute(profile, values, pending)


def _execute(profile: str, values: dict[str, Any], notebooks: list[Path]) -> int:
    import papermill as pm

    out_dir = paths.executed_dir(profile)
    out_dir.mkdir(parents=True, exist_ok=True)
    os.environ["XLDRIFT_HEADLESS"] = "1"
    # the kernel runs in notebooks/; utils.py and the package live in the repository root
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(paths.ROOT), os.environ.get("PYTHONPATH")]))
    run_info = {"profile": profile, "commit": git_commit(), "source_hash": source_hash(profile),
                "python": sys.version.split()[0], "started": dt.datetime.now().isoformat(timespec="seconds")}
    runlog.write_run_config(paths.results_dir(profile) / "config.json", run_info, values, [nb.name for nb in notebooks])
    notices = runlog.notices_file()
    done: list[Path] = []
    for nb in notebooks:
        declared = notebook_parameters(nb)
        nb_params = {k: v for k, v in values.items() if k in declared}
        target = out_dir / nb.name
        failed = out_dir / nb.name.replace(".ipynb", ".FAILED.ipynb")
        t0 = time.time()
        print(f"[{dt.datetime.now():%H:%M:%S}] {nb.name}: running", flush=True)
        inputs = {rel: _digest(rel) for rel in _upstream_outputs(out_dir, nb)}
        before = _output_files(profile)
        tmp = out_dir / f".tmp-{nb.name[:-6]}.{os.getpid()}.ipynb"
        runlog.set_current(nb.name)
        try:
            with runlog.Relay(notices, prefix=f"{nb.name}: "):
                pm.execute_notebook(
                    str(nb), str(tmp), parameters=nb_params, kernel_name=KERNEL, cwd=str(NOTEBOOKS),
                    progress_bar=False, log_output=False, report_mode=False,
                    kernel_manager_class=runlog.kernel_manager_class(notices.with_name("kernel.log")),
                )
        except pm.PapermillExecutionError as e:
            if e.ename == "KeyboardInterrupt":  # Ctrl-C reached the kernel first
                tmp.unlink(missing_ok=True)
                raise KeyboardInterrupt from None
            tmp.replace(failed)
            print(f"FAILED: {nb.name}, cell {e.cell_index} (execution count {e.exec_count}): "
                  f"{e.ename}: {e.evalue}\npartial copy kept at {failed}", file=sys.stderr)
            return 1
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        written = [rel for rel, stat in _output_files(profile).items() if before.get(rel) != stat]
        meta = json.loads(tmp.read_text())
        meta["metadata"]["xldrift"] = {**run_info, "parameters": nb_params, "duration_s": round(time.time() - t0, 1),
                                       "outputs": {rel: _digest(rel) for rel in written},
                                       "inputs": inputs}
        tmp.write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n")
        _relink(tmp)
        os.replace(tmp, target)
        if failed.exists():
            failed.unlink()
        done.append(target)
        print(f"[{dt.datetime.now():%H:%M:%S}] {nb.name}: done in {time.time() - t0:.0f} s", flush=True)
    return 0


def ensure_kernel() -> None:
    """Register this environment's kernel as ``xldrift`` if it is not already.

    Papermill must execute with the project's own interpreter, never whatever
    ``python3`` kernel a machine happens to have.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(KERNEL)
        if Path(spec.argv[0]).resolve() == Path(sys.executable).resolve():
            return
    except NoSuchKernel:
        pass
    subprocess.run([sys.executable, "-m", "ipykernel", "install", "--sys-prefix", "--name", KERNEL,
                    "--display-name", "xldrift (.venv)"], check=True, capture_output=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Run the xldrift notebooks for a profile.")
    ap.add_argument("--profile", default="default", help="profiles/<NAME>.yaml")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="override a parameter (YAML value), repeatable")
    ap.add_argument("--only", default=None, help="comma-separated notebook numbers, e.g. 03,04")
    ap.add_argument("--check", action="store_true", help="validate and print the plan, run nothing")
    ap.add_argument("--rerun", action="store_true",
                    help="execute every selected notebook, even those whose executed copies are up to date")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        values, nbs = plan(args.profile, parse_sets(args.sets), args.only.split(",") if args.only else None)
        checks.run_checks(args.profile, values, nbs, only=bool(args.only))
    except params.ParamError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"profile {args.profile}: {', '.join(nb.name for nb in nbs)}")
    if args.check:
        print(json.dumps(values, indent=1))
        return 0
    try:
        lock = locks.profile_lock(args.profile).acquire()
    except locks.LockedError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        ensure_kernel()
        return execute(args.profile, values, nbs, rerun=args.rerun)
    except KeyboardInterrupt:
        runlog.stop_children()
        print(runlog.interrupted_line(), file=sys.stderr)
        return 130
    finally:
        lock.release()
