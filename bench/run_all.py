"""Run every benchmark and write ``bench/results.json`` and the table in ``bench/README.md``.

Each figure is the median of several runs, and every speed-up is a ratio
against a baseline measured in the same run on the same machine.

    python bench/run_all.py [--quick] [--skip e2e]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))


def machine() -> dict:
    import torch

    cpu = "unknown"
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__, "threads": torch.get_num_threads(), "gpu": torch.cuda.is_available()}


def _run_profile(profile: str, out: Path, cache: Path, sets: list[str] = (), extra: list[str] = ()) -> dict:
    env = {**os.environ, "XLDRIFT_OUT": str(out), "XLDRIFT_CACHE": str(cache)}
    cmd = [sys.executable, str(ROOT / "run_study.py"), "--profile", profile, *extra]
    for s in sets:
        cmd += ["--set", s]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{profile} failed:\n{proc.stderr[-2000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"wall_s": round(wall, 1), "peak_rss_mb": round(max(peak, before) / 1024, 1)}


def end_to_end(profile: str = "smoke") -> dict:
    """Cold run (empty cache, model conversion included), an unchanged re-run, and a forced re-run.

    The unchanged re-run finds every executed copy up to date and skips it; the forced one
    (``--rerun``) executes every notebook again, each reading its fine-tunings, predictions
    and representations from the cache.
    """
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cold = _run_profile(profile, tmp / "out", tmp / "cache")
        warm = _run_profile(profile, tmp / "out", tmp / "cache")
        forced = _run_profile(profile, tmp / "out", tmp / "cache", extra=["--rerun"])
    return {"profile": profile, "cold": cold, "warm": warm, "forced": forced,
            "warm_over_cold": round(warm["wall_s"] / cold["wall_s"], 3),
            "forced_over_cold": round(forced["wall_s"] / cold["wall_s"], 3)}


def recorded_durations(profile: str) -> dict:
    """Per-notebook durations stamped into the committed executed copies of ``profile``, and the
    fine-tuning wall time recorded by each distinct checkpoint the profile used.

    A notebook that found its work in the cache records its re-run cost, so the notebook total
    understates a cold run; the fine-tunings' own wall times do not depend on the cache.
    """
    out: dict = {}
    for nb in sorted((ROOT / "notebooks" / "executed" / profile).glob("0*.ipynb")):
        meta = json.loads(nb.read_text())["metadata"].get("xldrift", {})
        if "duration_s" in meta:
            out[nb.stem] = meta["duration_s"]
    if out:
        out["total_s"] = round(sum(out.values()), 1)
    runs = _recorded_runs(profile)
    if runs:
        walls = [r.get("wall_seconds", r["steps"] * r["seconds_per_step"]) for r in runs.values()]
        rates = [float(r["seconds_per_step"]) for r in runs.values()]
        out["finetune"] = {"runs": len(runs), "steps": int(sum(r["steps"] for r in runs.values())),
                           "wall_s": round(float(sum(walls)), 1), "fastest_s_per_step": min(rates),
                           "slowest_s_per_step": max(rates)}
    return out


def cold_run(profile: str, root: Path | None = None) -> dict:
    """A run of ``profile`` (the committed one, or one under ``root``, e.g. ``.reproduce/``): per-notebook
    time and share, if it started cold.

    A run started cold when the runner found the cache empty (``cold_cache`` in each copy's record); only
    then are the durations a cold-run time. Copies from different runs are not added up.
    """
    records = []
    for nb in sorted(((root or ROOT) / "notebooks" / "executed" / profile).glob("0*.ipynb")):
        meta = json.loads(nb.read_text())["metadata"].get("xldrift", {})
        records.append((nb.stem, meta))
    if not records:
        return {}
    started = {m.get("started") for _, m in records}
    one_run = len(started) == 1
    cold = one_run and all(m.get("cold_cache") for _, m in records)
    durations = {name: m.get("duration_s") for name, m in records}
    cpu = {name: m.get("cpu_s") for name, m in records}
    total = sum(d for d in durations.values() if d)
    runs = _recorded_runs(profile, root)
    ft_wall = sum(float(r.get("wall_seconds", 0)) for r in runs.values())
    return {"profile": profile, "where": str((root or ROOT).relative_to(ROOT)) if (root or ROOT).is_relative_to(ROOT)
            else str(root), "one_run": one_run, "cold": cold, "started": min(s for s in started if s),
            "commit": records[0][1].get("commit"), "durations_s": durations, "total_s": round(total, 1),
            "notebooks_expected": len(_profile_notebooks(profile, records[0][1].get("commit"))),
            "shares": {k: round(v / total, 3) for k, v in durations.items() if v} if total else {},
            "cpu_s": cpu if all(v is not None for v in cpu.values()) else None,
            "finetune_runs": len(runs), "finetune_wall_s": round(ft_wall, 1),
            "finetune_share": round(ft_wall / total, 3) if total else None}


def _profile_notebooks(profile: str, commit: str | None = None) -> list[str]:
    """The notebooks a profile runs (``xldrift.study.runner.profile_notebooks``); at ``commit`` when git knows it.

    A run is complete when it executed the notebooks that existed at the commit it ran at; a notebook
    added since is not missing from it.
    """
    from xldrift.study import runner

    now = runner.profile_notebooks(profile)
    sha = (commit or "").split("+")[0]
    if sha:
        listed = subprocess.run(["git", "ls-tree", "--name-only", sha, "notebooks/"], cwd=ROOT,
                                capture_output=True, text=True)
        if listed.returncode == 0 and listed.stdout.strip():
            then = {Path(f).name[:2] for f in listed.stdout.split() if Path(f).name[:2].isdigit()}
            return [nb for nb in now if nb in then]
    return now


def _recorded_runs(profile: str, root: Path | None = None) -> dict[str, dict]:
    """``{checkpoint: row}`` for each distinct fine-tuning the profile's committed results record."""
    import pandas as pd

    runs: dict[str, dict] = {}
    for table in ("checkpoints", "intervention_runs", "setup_comparison"):
        f = (root or ROOT) / "results" / profile / f"{table}.csv"
        if f.is_file():
            for row in pd.read_csv(f).to_dict("records"):
                runs.setdefault(row["checkpoint"], row)
    return runs


def _recorded_rates(profile: str) -> list[float]:
    """Seconds per step of each distinct fine-tuning the profile's committed results record."""
    return [float(r["seconds_per_step"]) for r in _recorded_runs(profile).values()]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    ap.add_argument("--skip", nargs="*", default=[], choices=["cka", "extract", "finetune", "e2e", "scale", "cache", "projection"],
                    help="sections not to measure (the projection is always recomputed from what is recorded)")
    ap.add_argument("--cold-note", default="", help="a sentence on the conditions of that run (e.g. the machine's load)")
    ap.add_argument("--cold-from", type=Path, default=None,
                    help="time the default profile from the executed copies under this folder (e.g. .reproduce)")
    args = ap.parse_args()
    repeats = 3 if args.quick else 5
    # Sections not measured this time are kept from the last run, each with its own machine and date.
    previous = json.loads((HERE / "results.json").read_text()) if (HERE / "results.json").is_file() else {}
    results: dict = {**previous, "machine": machine(), "when": time.strftime("%Y-%m-%d %H:%M")}
    stamp = {"machine": results["machine"], "when": results["when"]}
    if "cka" not in args.skip:
        import bench_cka

        results["cka"] = {**bench_cka.run(repeats=repeats), "measured": stamp}
    if "extract" not in args.skip:
        import bench_extract

        results["extract"] = {**bench_extract.run(n_items=2000, repeats=max(2, repeats - 2)), "measured": stamp}
    if "finetune" not in args.skip:
        import bench_finetune

        results["finetune"] = {**bench_finetune.run(n_steps=6, repeats=max(2, repeats - 2)), "measured": stamp}
    if "scale" not in args.skip:
        import bench_scale

        results["scale"] = {**bench_scale.run(), "measured": stamp}
    if "cache" not in args.skip:
        import bench_cache

        rate = (results.get("extract") or {}).get("ours", {}).get("items_per_s")
        results["cache"] = {**bench_cache.run(repeats=repeats, extraction_items_per_s=rate), "measured": stamp}
    if "e2e" not in args.skip:
        results["end_to_end"] = {"smoke": end_to_end("smoke"), "measured": stamp,
                                 "default_recorded": recorded_durations("default"),
                                 "full_recorded": recorded_durations("full")}
    kept = results.get("default_cold") or {}
    partial = len(kept.get("durations_s") or {}) < kept.get("notebooks_expected", 0)  # a run that was in progress
    if args.cold_from or not kept.get("cold") or partial:
        # the committed run, or a reproduction (`make reproduce` writes .reproduce/); kept until a cold one replaces it
        fresh = cold_run("default", args.cold_from.resolve() if args.cold_from else None)
        if fresh.get("cold") or not results.get("default_cold"):
            results["default_cold"] = {**fresh, "measured": stamp, "note": args.cold_note}
    rates = [] if "projection" in args.skip else _recorded_rates("default")
    if "projection" in args.skip:
        pass  # keep the projection of the last run (its rates were measured on an idle machine)
    elif not rates and (previous.get("projection") or {}).get("finetune_s_per_step"):
        # the default profile's results are not committed (e.g. between re-runs): the rates it recorded last time
        rates = previous["projection"]["finetune_s_per_step"]
    items_per_s = (results.get("extract") or {}).get("ours", {}).get("items_per_s")
    if rates and items_per_s and "projection" not in args.skip:
        import bench_project

        step_ratio = (results.get("finetune") or {}).get("step_ratio")
        reference = (results.get("extract") or {}).get("tokens", {}).get("mean_length")
        task_tokens = {task: round(bench_project.mean_tokens(task), 2) for task in ("xnli", "sib200")}
        metric_timings = (results.get("scale") or {}).get("metrics")
        results["projection"] = {**bench_project.project(["default", "full", "grid", "sib200-lite", "sib200"], rates,
                                                         items_per_s, step_ratio, reference, task_tokens,
                                                         metric_timings),
                                 "measured": stamp}
    (HERE / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    import report

    report.write(results, HERE / "README.md")
    print(json.dumps(results, indent=1, default=str)[:4000])


if __name__ == "__main__":
    main()
