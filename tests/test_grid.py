"""Several fine-tuning sources: the grid profiles, shared items, the intervention's source, resuming a killed run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from xldrift.data import splits
from xldrift.study import config as params, paths, runner

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))


def test_grid_profiles_validate_and_name_every_xnli_language_as_source():
    values, nbs = runner.plan("grid", {}, None, check_model=False)
    targets = params.resolve_targets(values)
    assert sorted(values.source_languages) == sorted(targets) and len(targets) == 15
    assert values.intervention_source == "en" and [nb.name[:2] for nb in nbs][-1] == "07"
    smoke, _ = runner.plan("smoke-grid", {}, None, check_model=False)
    assert smoke.source_languages == ["en", "de"] and len(smoke.target_languages) == 5


def test_the_intervention_source_must_be_fine_tuned_but_only_when_06_runs():
    with pytest.raises(params.ParamError, match="intervention_source='en' is not among source_languages"):
        runner.plan("grid", {"source_languages": ["de"]}, None, check_model=False)
    # one source per job (README, Scaling out): notebook 02 alone needs no intervention source
    values, nbs = runner.plan("grid", {"source_languages": ["de"]}, ["02"], check_model=False)
    assert [nb.name[:2] for nb in nbs] == ["02"] and values.source_languages == ["de"]
    assert params.check_intervention_source({"intervention_source": "de", "source_languages": ["en", "de"]}) == "de"
    # "" is the task's English, so the single-source profiles need not name it
    assert params.check_intervention_source({"task": "sib200", "intervention_source": "",
                                             "source_languages": ["eng_Latn"]}) == "eng_Latn"
    with pytest.raises(params.ParamError, match="'en' is not among"):
        params.check_intervention_source({"task": "xnli", "intervention_source": "", "source_languages": ["de"]})


def test_every_source_trains_on_the_same_items():
    kw = dict(n_train=60, n_val=15, n_eval=30, n_drift=24, seed=3)
    shared = splits.select_shared_items("xnli", ["de", "en", "sw"], **kw)
    # the ids come from the parallel files, so listing another source first changes nothing
    assert shared.equals(splits.select_items("xnli", "en", **kw))
    assert shared.equals(splits.select_shared_items("xnli", ["sw", "en"], **kw))
    de = splits.items_for("xnli", "de", shared, "train")
    en = splits.items_for("xnli", "en", shared, "train")
    assert list(de["id"]) == list(en["id"]) and (de["text_a"] != en["text_a"]).mean() > 0.9  # translations
    with pytest.raises(ValueError, match="at least one source"):
        splits.select_shared_items("xnli", [], **kw)


def test_projection_counts_the_grid_per_source_and_the_intervention_once():
    import bench_project

    grid = bench_project.counts("grid")
    # 15 sources x 1 seed, plus the targeted condition on English only
    assert grid["fine_tunings"] == 15 + 1 and grid["sources"] == 15
    assert grid["eval_items"] == grid["fine_tunings"] * 15 * 300
    assert grid["extract_items"] == (1 + 15) * 15 * 300  # the pre-trained state and every source's model
    layers = 12 + 13  # [CLS] 1..12, mean 0..12
    # drift of every (source, target) + alignment with each source after and before fine-tuning
    assert grid["cka_comparisons"] == {"linear_cka": 15 * 15 * layers + 2 * 15 * 14 * layers}
    smoke = bench_project.counts("smoke-grid")
    assert smoke["fine_tunings"] == 2 + 3 and smoke["cka_comparisons"]["linear_cka"] == 2 * 5 * layers + 2 * 2 * 4 * layers


def test_layer_seconds_interpolate_on_a_power_law():
    import bench_project

    timings = {"m": {"100": {"layer_s": 1.0}, "400": {"layer_s": 4.0}, "1600": {"layer_s": 32.0}}}
    got = bench_project.layer_seconds(timings, 200)["m"]
    assert got == pytest.approx(2.0)  # slope 1 between 100 and 400
    assert bench_project.layer_seconds(timings, 800)["m"] == pytest.approx(4.0 * 2 ** 1.5)  # slope 1.5 above 400
    assert bench_project.layer_seconds(timings, 3200)["m"] == pytest.approx(32.0 * 2 ** 1.5)  # extrapolated


# -- resuming a killed grid run -------------------------------------------------------------
def _complete(cache: Path) -> dict[str, int]:
    """Finished cache entries -> mtime (ns): checkpoints (their manifest), predictions, representations."""
    out = {}
    for pattern in ("checkpoints/*/manifest.json", "evaluations/*/*.csv", "representations/*/*.safetensors"):
        for f in cache.glob(pattern):
            if not any(part.startswith(".") for part in f.relative_to(cache).parts):  # temporaries are hidden
                out[str(f.relative_to(cache))] = f.stat().st_mtime_ns
    return out


def _run_until(cmd: list[str], env: dict, log: Path, done, timeout: float = 1500) -> int | None:
    """Start the runner; kill it (and its kernel) once ``done()`` holds. Returns its exit code if it ended first."""
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        start = time.time()
        while time.time() - start < timeout:
            if proc.poll() is not None:
                return proc.returncode
            if done():
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return None
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError(f"timed out; log:\n{log.read_text()[-3000:]}")


@pytest.mark.slow
def test_a_killed_smoke_grid_resumes_without_redoing_finished_work(tmp_path):
    cache, out = tmp_path / "cache", tmp_path / "out"
    cache.mkdir()
    if paths.models_cache().is_dir():  # the converted base model is not what this test is about
        (cache / "models").symlink_to(paths.models_cache())
    env = {**os.environ, "XLDRIFT_CACHE": str(cache), "XLDRIFT_OUT": str(out), "XLDRIFT_HEADLESS": "1"}
    cmd = [sys.executable, str(ROOT / "run_study.py"), "--profile", "smoke-grid"]
    main_runs = 2  # en and de, one seed

    # 1. killed inside notebook 02, once the first fine-tuning is complete and before the second is
    rc = _run_until(cmd, env, tmp_path / "run1.log",
                    lambda: any(k.startswith("checkpoints/") for k in _complete(cache)))
    assert rc is None, "the run ended before it could be killed in notebook 02"
    first = _complete(cache)
    assert sum(k.startswith("checkpoints/") for k in first) == 1 < main_runs
    assert "02_finetune.ipynb: running" in (tmp_path / "run1.log").read_text()

    # 2. killed inside notebook 03, once the first representations are complete
    rc = _run_until(cmd, env, tmp_path / "run2.log",
                    lambda: any(k.startswith("representations/") for k in _complete(cache)))
    assert rc is None, "the run ended before it could be killed in notebook 03"
    second = _complete(cache)
    assert {k: second[k] for k in first} == first, "a finished fine-tuning was redone"
    assert sum(k.startswith("checkpoints/") for k in second) == main_runs
    assert sum(k.startswith("evaluations/") for k in second) == main_runs * 5  # every main run on its 5 targets
    assert "01_data.ipynb: current, skipped" in (tmp_path / "run2.log").read_text()  # it finished in run 1

    # 3. runs to the end, reusing everything finished before
    rc = _run_until(cmd, env, tmp_path / "run3.log", lambda: False)
    log3 = (tmp_path / "run3.log").read_text()
    assert rc == 0, log3[-3000:]
    assert "02_finetune.ipynb: current, skipped" in log3  # it finished in run 2
    third = _complete(cache)
    assert {k: third[k] for k in second} == second, "a finished fine-tuning, evaluation or extraction was redone"
    res = out / "results" / "smoke-grid"
    checkpoints = pd.read_csv(res / "checkpoints.csv")
    assert sorted(checkpoints["source"]) == ["de", "en"]
    # one checkpoint per key: 2 sources + English's targeted, lowest and random runs
    assert sum(k.startswith("checkpoints/") for k in third) == main_runs + 3
    executed = sorted(p.name[:2] for p in (out / "notebooks" / "executed" / "smoke-grid").glob("0*.ipynb"))
    assert executed == ["01", "02", "03", "04", "05", "06", "07"]
    # the pair tables: 2 sources x 5 targets - 2 same-language pairs = 8 ordered pairs
    counts = pd.read_csv(res / "pairs_counts.csv")
    assert (counts["n_pairs"] == 8).all() and (counts["n_max"] <= 8).all()
    assert pd.read_csv(res / "correlations.csv")["n"].max() == 8
    by_source = pd.read_csv(res / "correlations_by_source.csv")
    assert set(by_source["source"]) == {"en", "de"} and by_source["n"].max() == 4  # 4 other targets each
    matrix = pd.read_csv(res / "pairs_accuracy_matrix.csv").set_index("source")
    assert matrix.shape == (3, 6) and matrix.drop(index="mean (zero-shot)").notna().all().all()
    figures = {p.name for p in (out / "figures" / "smoke-grid").glob("*.png")}
    for source in ("en", "de"):  # written once per source, none overwriting another
        assert {f"drift_layers_{source}.png", f"drift_heatmap_{source}.png"} <= figures
    assert json.loads((res / "config.json").read_text())["notebooks"]["06"]["intervention_source"] == "en"
