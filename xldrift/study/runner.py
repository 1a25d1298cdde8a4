"""Run the notebook sequence with papermill, after validating every parameter.

``run_study.py --profile NAME [--set key=value ...] [--only 03,04] [--rerun]`` is
a thin front end to :func:`main`. The profile and the overrides are applied to
:class:`xldrift.study.config.StudyConfig` and validated once, in :func:`plan`, before
anything is executed or written; each notebook then receives the profile name
and the values that differ from the defaults, already checked. A bad value
stops the run with one line; a failing notebook stops it with the notebook and
cell named and its partially executed copy kept as ``<name>.FAILED.ipynb``.

Like ``make``, the runner skips a notebook whose executed copy is current
(:func:`xldrift.study.provenance.staleness`): its own notebook, the package modules
its kernel imported, its parameters, the files it read and the task data are
as they were when it ran, and the files it wrote are unchanged since. Each
notebook is judged when its turn comes, so a notebook re-runs only if
something it uses changed. ``--rerun`` executes regardless (each notebook
still reads the fine-tunings, predictions and representations it finds in
the cache). ``--status`` reports, per profile and notebook, current or stale
and why; ``--verify`` re-runs a profile cold into a scratch folder and
compares its tables with the committed ones (:mod:`xldrift.study.verify`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import difflib
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from xldrift.study import checks, config as params, io, locks, paths, provenance, runlog
from xldrift.study.config import StudyConfig

log = logging.getLogger(__name__)

NOTEBOOKS = paths.ROOT / "notebooks"
PROFILES = paths.ROOT / "profiles"
KERNEL = "xldrift"


def notebook_paths() -> list[Path]:
    """The source notebooks ``notebooks/0N_*.ipynb`` in order."""
    return sorted(NOTEBOOKS.glob("0[0-9]_*.ipynb"))


notebook_parameters = params.notebook_parameters
SCRATCH_PROFILE = params.SCRATCH_PROFILE


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILES.glob("*.yaml"))


def load_profile(name: str) -> dict[str, Any]:
    """The parameters of ``profiles/<name>.yaml`` (without its ``notebooks`` list, see :func:`profile_notebooks`)."""
    values = _profile_file(name)
    values.pop("notebooks", None)
    return values


def _profile_file(name: str) -> dict[str, Any]:
    f = PROFILES / f"{name}.yaml"
    if not f.is_file():
        raise params.ParamError(f"unknown profile {name!r}; available: {', '.join(available_profiles())}")
    return yaml.safe_load(f.read_text()) or {}


def profile_notebooks(name: str) -> list[str]:
    """The notebook numbers a profile runs: its ``notebooks:`` list, or every notebook."""
    listed = _profile_file(name).get("notebooks")
    every = [nb.name[:2] for nb in notebook_paths()]
    if listed is None:
        return every
    listed = [f"{int(x):02d}" if isinstance(x, int) else str(x) for x in listed]
    bad = [x for x in listed if x not in every]
    if bad:
        raise params.ParamError(f"profiles/{name}.yaml: unknown notebook(s) {bad} in 'notebooks'; valid: {', '.join(every)}")
    return listed


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


def git_commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=paths.ROOT, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=paths.ROOT,
                               capture_output=True, text=True).stdout.strip()
        return sha.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def plan(profile: str, sets: dict[str, Any], only: list[str] | None, *,
         check_model: bool = True) -> tuple[StudyConfig, list[Path]]:
    """Apply the profile and the ``--set`` overrides to the defaults; validate everything, once.

    Returns:
        The validated config and the notebooks to run.

    Raises:
        ParamError: any problem, before anything runs.
    """
    nbs = notebook_paths()
    if not nbs:
        raise params.ParamError(f"no notebooks found in {NOTEBOOKS}")
    merged: dict[str, Any] = {}
    settable = sorted(set(params.SCHEMA) - {"profile"})  # the profile is the file's name, never a value in it
    for origin, values in ((f"profiles/{profile}.yaml", load_profile(profile)), ("--set", sets)):
        for k, v in values.items():
            if k not in settable:
                near = difflib.get_close_matches(k, settable, n=1)
                hint = f"; did you mean {near[0]!r}?" if near else ""
                raise params.ParamError(f"{origin}: unknown parameter {k!r}{hint} (valid: {', '.join(settable)})")
            merged[k] = v
    cfg = StudyConfig.validated({**merged, "profile": profile})
    known = {nb.name[:2]: nb for nb in nbs}
    selected = profile_notebooks(profile)
    if only:
        bad = [o for o in only if o not in known]
        if bad:
            raise params.ParamError(f"--only: unknown notebook(s) {bad}; valid: {', '.join(known)}")
        outside = [o for o in only if o not in selected]
        if outside:
            raise params.ParamError(f"--only: profile {profile} runs notebooks {', '.join(selected)} only, not {outside}")
        selected = sorted(set(only))
    nbs = [known[o] for o in selected]
    if "06" in selected:  # only a run of the intervention needs its source among the fine-tuned ones
        cfg.intervention_language()
    if check_model:
        _check_model(cfg.model)
    return cfg, nbs


def _check_model(name: str) -> None:
    from xldrift.model import embedded

    try:
        if name in embedded.EMBEDDED:  # its package files, without importing torch
            embedded.check_files(name)
        else:
            from xldrift.model import loading

            loading.check_available(name)
    except embedded.ModelNotFoundError as e:
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
                if f.is_file() and f.name != "config.json" and not f.name.startswith(".tmp-"):
                    st = f.stat()
                    out[f.relative_to(paths.out_root()).as_posix()] = (st.st_mtime_ns, st.st_size)
    return out


def _digest(rel: str) -> str | None:
    return provenance.file_digest(paths.out_root() / rel)


def nb_parameters(nb: Path, cfg: StudyConfig) -> dict[str, Any]:
    """The fields of ``cfg`` that notebook ``nb`` uses (:data:`xldrift.study.config.NOTEBOOK_FIELDS`)."""
    return cfg.for_notebook(nb.name[:2])


def papermill_parameters(cfg: StudyConfig) -> dict[str, Any]:
    """What the runner injects into a notebook's ``parameters`` cell: the profile and the validated overrides.

    The notebook rebuilds ``cfg`` from them without validating again (``utils.setup``).
    """
    return {"profile": cfg.profile, "overrides": cfg.overrides()}


def staleness(profile: str, nb: Path, nb_params: dict[str, Any]) -> str | None:
    """Why ``nb``'s executed copy in ``profile`` must be (re)made, or None when it is current."""
    return provenance.staleness(paths.executed_dir(profile) / nb.name, nb, nb_params)


def execute(profile: str, cfg: StudyConfig, notebooks: list[Path], *, rerun: bool = False) -> int:
    """Execute the stale ``notebooks`` in order (all of them with ``rerun``); return an exit code.

    Each notebook is judged when its turn comes, after the earlier ones ran: a notebook whose
    inputs an earlier one rewrote with the same bytes stays current.
    """
    judged = [] if rerun else [(nb, staleness(profile, nb, nb_parameters(nb, cfg))
                                    or checks.cache_staleness(profile, nb)) for nb in notebooks]
    # a notebook that runs and reads cache entries that are gone makes their producer run too
    forced = checks.forced_by_cache(profile, notebooks, {nb.name[:2]: why for nb, why in judged}, rerun)
    if judged and all(why is None for _, why in judged):
        commits = sorted({provenance.short_commit((provenance.read_record(paths.executed_dir(profile) / nb.name) or {})
                                                  .get("commit")) for nb in notebooks})
        print(f"profile {profile}: all {len(notebooks)} notebooks are current (made at commit {', '.join(commits)}); "
              f"`make reproduce` (run_study.py --profile {profile} --verify) re-runs it cold in a scratch folder "
              "and compares the numbers, --rerun executes it here")
        return 0
    run_info: dict[str, Any] | None = None  # one record of the run, taken when its first notebook starts
    for nb in notebooks:
        why = ("--rerun" if rerun else staleness(profile, nb, nb_parameters(nb, cfg))
               or checks.cache_staleness(profile, nb) or forced.get(nb.name[:2]))
        if why is None:
            print(f"{nb.name}: current, skipped")
            continue
        print(f"{nb.name}: to run ({why})")
        if run_info is None:
            run_info = _run_info(profile, cfg)
        code = _execute(profile, cfg, [nb], run_info)
        if code:
            return code
    return 0


def _with_record_cells(nb_path: Path, dest: Path) -> None:
    """Write a copy of ``nb_path`` with the provenance cells injected first and last."""
    nb = json.loads(nb_path.read_text())

    def cell(source: str, tag: str) -> dict[str, Any]:
        return {"cell_type": "code", "execution_count": None, "id": tag, "metadata": {"tags": [tag]}, "outputs": [],
                "source": source.splitlines(keepends=True)}

    nb["cells"] = [cell(provenance.BEGIN_SOURCE, provenance.BEGIN_TAG), *nb["cells"],
                   cell(provenance.END_SOURCE, provenance.END_TAG)]
    dest.write_text(json.dumps(nb, indent=1, ensure_ascii=False))


def _without_record_cells(nb: dict[str, Any], *, completed: bool = True) -> dict[str, list[str]]:
    """Remove the injected cells from an executed notebook (in place); return what the last one reported.

    ``completed=False`` is for a notebook stopped by a failing cell: its last cell never ran.
    """
    tags = lambda c: c.get("metadata", {}).get("tags", [])  # noqa: E731
    end = [c for c in nb["cells"] if provenance.END_TAG in tags(c)]
    report = provenance.parse_end_output(end[0]["outputs"]) if end and completed else {"modules": [], "reads": []}
    nb["cells"] = [c for c in nb["cells"] if not {provenance.BEGIN_TAG, provenance.END_TAG} & set(tags(c))]
    for c in nb["cells"]:  # the injected first cell took execution count 1
        if c["cell_type"] == "code" and c.get("execution_count"):
            c["execution_count"] -= 1
            for o in c.get("outputs", []):
                if o.get("execution_count"):
                    o["execution_count"] -= 1
    return report


def _children_cpu_s() -> float:
    """User + system CPU seconds of the runner's finished child processes (its notebook kernels)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _cache_is_empty() -> bool:
    """True when the cache holds no model, checkpoint, prediction or representation yet (a cold run)."""
    folders = (paths.models_cache(), paths.checkpoints_cache(), paths.evaluations_cache(), paths.representations_cache())
    return not any(d.is_dir() and any(d.iterdir()) for d in folders)


def _run_info(profile: str, cfg: StudyConfig) -> dict[str, Any]:
    """What every executed copy of one runner invocation records alike; written to ``config.json`` too."""
    info = {"profile": profile, "commit": git_commit(), "cold_cache": _cache_is_empty(),
            "python": sys.version.split()[0], "started": dt.datetime.now().isoformat(timespec="seconds")}
    runlog.write_run_config(paths.results_dir(profile) / "config.json", info, cfg.as_dict())
    return info


def _execute(profile: str, cfg: StudyConfig, notebooks: list[Path], run_info: dict[str, Any] | None = None) -> int:
    import papermill as pm

    out_dir = paths.executed_dir(profile)
    out_dir.mkdir(parents=True, exist_ok=True)
    os.environ["XLDRIFT_HEADLESS"] = "1"
    os.environ["XLDRIFT_RUNNER"] = "1"  # lets the notebooks write a published profile
    # the kernel runs in notebooks/; utils.py and the package live in the repository root
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(paths.ROOT), os.environ.get("PYTHONPATH")]))
    run_info = run_info or _run_info(profile, cfg)
    notices = runlog.notices_file()
    for nb in notebooks:
        nb_params = nb_parameters(nb, cfg)
        target = out_dir / nb.name
        failed = out_dir / nb.name.replace(".ipynb", ".FAILED.ipynb")
        t0 = time.time()
        print(f"[{dt.datetime.now():%H:%M:%S}] {nb.name}: running", flush=True)
        before = _output_files(profile)
        cpu0 = _children_cpu_s()
        src = out_dir / f".tmp-{os.getpid()}-src-{nb.name}"
        tmp = out_dir / f".tmp-{os.getpid()}-{nb.name}"
        _with_record_cells(nb, src)
        runlog.set_current(nb.name)
        try:
            with runlog.Relay(notices, prefix=f"{nb.name}: "):
                pm.execute_notebook(
                    str(src), str(tmp), parameters=papermill_parameters(cfg), kernel_name=KERNEL, cwd=str(NOTEBOOKS),
                    progress_bar=False, log_output=False, report_mode=False,
                    kernel_manager_class=runlog.kernel_manager_class(notices.with_name("kernel.log")),
                )
        except pm.PapermillExecutionError as e:
            if e.ename == "KeyboardInterrupt":  # Ctrl-C reached the kernel first
                tmp.unlink(missing_ok=True)
                raise KeyboardInterrupt from None
            executed = json.loads(tmp.read_text())
            _without_record_cells(executed, completed=False)
            failed.write_text(json.dumps(executed, indent=1, ensure_ascii=False) + "\n")
            tmp.unlink(missing_ok=True)
            print(f"FAILED: {nb.name}, cell {e.cell_index - 1} (execution count {e.exec_count - 1}): "
                  f"{e.ename}: {e.evalue}\npartial copy kept at {failed}", file=sys.stderr)
            return 1
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        finally:
            src.unlink(missing_ok=True)
        written = [rel for rel, stat in _output_files(profile).items() if before.get(rel) != stat]
        executed = json.loads(tmp.read_text())
        report = _without_record_cells(executed)
        rec = provenance.record(nb, nb_params, report["modules"], report["reads"], written, profile)
        # CPU seconds of the kernel (a reaped child): with other jobs on the machine, wall time grows but this does not
        executed["metadata"]["xldrift"] = {**run_info, **rec, "duration_s": round(time.time() - t0, 1),
                                           "cpu_s": round(_children_cpu_s() - cpu0, 1)}
        tmp.write_text(json.dumps(executed, indent=1, ensure_ascii=False) + "\n")
        _relink(tmp)
        os.replace(tmp, target)
        if failed.exists():
            failed.unlink()
        print(f"[{dt.datetime.now():%H:%M:%S}] {nb.name}: done in {time.time() - t0:.0f} s", flush=True)
    return 0


def published_profiles() -> list[str]:
    """Profiles with executed copies under the output root's ``notebooks/executed/``."""
    d = paths.out_root() / "notebooks" / "executed"
    return sorted(p.name for p in d.iterdir() if p.is_dir() and any(p.glob("0[0-9]_*.ipynb"))) if d.is_dir() else []


def status(profiles: list[str] | None = None) -> list[dict[str, Any]]:
    """Per profile and notebook: current or stale, why, and the commit its executed copy ran at."""
    rows = []
    for profile in profiles or published_profiles():
        try:
            cfg, nbs = plan(profile, {}, None, check_model=False)
        except params.ParamError as e:
            rows.append({"profile": profile, "notebook": "-", "state": "invalid", "reason": str(e), "commit": "-"})
            continue
        for nb in nbs:
            executed = paths.executed_dir(profile) / nb.name
            why = staleness(profile, nb, nb_parameters(nb, cfg))
            rec = provenance.read_record(executed) or {}
            rows.append({"profile": profile, "notebook": nb.name[:2], "state": "current" if why is None else "stale",
                         "reason": why or "", "commit": provenance.short_commit(rec.get("commit")),
                         "ran": rec.get("started", "")[:10]})
    return rows


def print_status(rows: list[dict[str, Any]]) -> None:
    """The :func:`status` rows as an aligned table."""
    cols = ["profile", "notebook", "state", "commit", "ran", "reason"]
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols[:-1]}
    print("  ".join(c.ljust(widths.get(c, 0)) for c in cols))
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(widths.get(c, 0)) for c in cols))


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


def verify(profile: str, cfg: StudyConfig, nbs: list[Path], *, warm: bool = False) -> int:
    """Re-run ``profile`` into a scratch folder, cold unless ``warm``, and compare its tables with the committed ones.

    The scratch folder is ``$XLDRIFT_VERIFY_DIR`` or ``.reproduce/`` in the repository (git-ignored);
    a cold run also gets its own empty cache there, so every model is converted, fine-tuned,
    evaluated and extracted again.
    """
    from xldrift.study import verify as verify_mod

    committed = paths.results_dir(profile)
    if not committed.is_dir():
        print(f"error: no committed results for profile {profile} in {committed}", file=sys.stderr)
        return 2
    scratch = Path(os.environ.get("XLDRIFT_VERIFY_DIR") or paths.ROOT / ".reproduce").expanduser().resolve()
    for sub in ("results", "figures", "notebooks/executed"):
        shutil.rmtree(scratch / sub / profile, ignore_errors=True)
    os.environ["XLDRIFT_OUT"] = str(scratch)
    if not warm:
        cache = scratch / "cache"
        shutil.rmtree(cache, ignore_errors=True)
        os.environ["XLDRIFT_CACHE"] = str(cache)
    print(f"reproducing profile {profile} {'with the cache in ' + str(paths.cache_dir()) if warm else 'cold'} "
          f"into {scratch}")
    t0 = time.time()
    code = execute(profile, cfg, nbs, rerun=True)
    if code:
        return code
    print(f"reproduced in {(time.time() - t0) / 60:.1f} min")
    # float noise (summation order, another CPU's vector width) is reported apart from real differences
    noise = verify_mod.Tolerance(atol=1e-9)
    report = verify_mod.compare_dirs(paths.results_dir(profile), committed, default=noise)
    verify_mod.print_report(report, f"{scratch.name}/results/{profile}", f"the committed results/{profile}")
    print(f"'within tolerance': every number within {noise.atol:g} of the committed one (float noise); "
          "'differs': at least one number further away")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Run the xldrift notebooks for a profile.")
    ap.add_argument("--profile", default="default", help="profiles/<NAME>.yaml")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="override a parameter (YAML value), repeatable")
    ap.add_argument("--only", default=None, help="comma-separated notebook numbers, e.g. 03,04")
    ap.add_argument("--check", action="store_true", help="validate and print the plan, run nothing")
    ap.add_argument("--rerun", action="store_true",
                    help="execute every selected notebook, even those whose executed copies are current")
    ap.add_argument("--status", action="store_true",
                    help="print, per published profile and notebook, current or stale and why; run nothing")
    ap.add_argument("--verify", action="store_true",
                    help="re-run the profile cold into .reproduce/ and compare its tables with the committed ones")
    ap.add_argument("--warm", action="store_true", help="with --verify: reuse the cache in $XLDRIFT_CACHE")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.status:
        explicit = "--profile" in (argv if argv is not None else sys.argv)
        print_status(status([args.profile] if explicit else None))
        return 0
    try:
        cfg, nbs = plan(args.profile, parse_sets(args.sets), args.only.split(",") if args.only else None)
        checks.run_checks(args.profile, cfg.as_dict(), nbs, only=bool(args.only))
    except params.ParamError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"profile {args.profile}: {', '.join(nb.name for nb in nbs)}")
    if args.check:
        print(json.dumps(cfg.as_dict(), indent=1))
        return 0
    try:
        lock = locks.profile_lock(args.profile).acquire()
    except locks.LockedError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        ensure_kernel()
        if args.verify:
            return verify(args.profile, cfg, nbs, warm=args.warm)
        return execute(args.profile, cfg, nbs, rerun=args.rerun)
    except KeyboardInterrupt:
        runlog.stop_children()
        print(runlog.interrupted_line(), file=sys.stderr)
        return 130
    finally:
        lock.release()
