"""Interruption, determinism and failing notebooks, on the smoke profile.

These run the real runner in subprocesses (minutes in all), so they are marked slow.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xldrift import paths

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _env(out: Path, cache: Path) -> dict[str, str]:
    cache.mkdir(parents=True, exist_ok=True)
    models = cache / "models"
    if not models.exists():  # share the converted base model; everything else starts empty
        models.symlink_to(paths.models_cache())
    return {**os.environ, "XLDRIFT_OUT": str(out), "XLDRIFT_CACHE": str(cache)}


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "run_study.py"), "--profile", "smoke", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=1800)


def _kill_when(env: dict[str, str], args: list[str], ready, timeout: float = 900) -> None:
    """Start the runner, SIGKILL its whole process group as soon as ``ready()`` is true."""
    proc = subprocess.Popen([sys.executable, str(ROOT / "run_study.py"), "--profile", "smoke", *args], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    t0 = time.time()
    try:
        while not ready():
            assert proc.poll() is None, "the run finished before the moment to interrupt it"
            assert time.time() - t0 < timeout, "never reached the moment to interrupt"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _tables(out: Path) -> dict[str, pd.DataFrame]:
    res = out / "results" / "smoke"
    return {n: pd.read_csv(res / f"{n}.csv") for n in ("accuracy", "drift", "alignment")}


def _assert_same(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> None:
    for name in a:
        x, y = a[name], b[name]
        assert list(x.columns) == list(y.columns) and len(x) == len(y), name
        num = [c for c in x.columns if c in ("accuracy", "similarity")]
        keys = [c for c in x.columns if c not in num]
        x, y = x.sort_values(keys).reset_index(drop=True), y.sort_values(keys).reset_index(drop=True)
        pd.testing.assert_frame_equal(x[keys], y[keys], check_dtype=False)
        np.testing.assert_allclose(x[num].to_numpy(float), y[num].to_numpy(float), atol=1e-6, rtol=0)


def test_killed_runs_resume_and_equal_an_uninterrupted_run(tmp_path):
    # reference: one uninterrupted run from an empty cache
    ref = _run(_env(tmp_path / "outA", tmp_path / "cacheA"))
    assert ref.returncode == 0, ref.stderr[-3000:]
    reference = _tables(tmp_path / "outA")

    # SIGKILL in the middle of fine-tuning (its temporary checkpoint folder exists), then re-run
    env = _env(tmp_path / "outB", tmp_path / "cacheB")
    ckpts = tmp_path / "cacheB" / "checkpoints"
    _kill_when(env, [], lambda: ckpts.is_dir() and any(p.name.startswith(".tmp-") for p in ckpts.iterdir()))
    assert not any(p.name.startswith("xnli-") for p in ckpts.iterdir()), "a killed fine-tuning left a checkpoint"
    done = _run(env)
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_same(reference, _tables(tmp_path / "outB"))

    # SIGKILL in the middle of extraction (some languages written, not all), then re-run 03-04
    reps = tmp_path / "cacheB" / "representations"
    for f in reps.rglob("*.safetensors"):
        f.unlink()
    _kill_when(env, ["--only", "03", "--rerun"], lambda: reps.is_dir() and 0 < len(list(reps.rglob("*.safetensors"))))
    n_before = len(list(reps.rglob("*.safetensors")))
    assert n_before < 12, "extraction finished before it could be interrupted"
    done = _run(env, "--only", "03,04", "--rerun")  # 03's copy from the first run is up to date
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_same(reference, _tables(tmp_path / "outB"))


def test_a_failing_notebook_is_named_and_kept_apart(tmp_path):
    out = tmp_path / "out"
    env = _env(out, tmp_path / "cache")
    executed = out / "notebooks" / "executed" / "smoke"
    executed.mkdir(parents=True)
    other = executed / "01_data.ipynb"
    other.write_text('{"earlier": "run"}')
    # notebook 02 needs items.csv from 01, which this fresh output folder lacks
    proc = _run(env, "--only", "02")
    assert proc.returncode == 1
    assert "FAILED: 02_finetune.ipynb, cell" in proc.stderr and "FileNotFoundError" in proc.stderr
    assert (executed / "02_finetune.FAILED.ipynb").is_file()
    assert not (executed / "02_finetune.ipynb").exists()
    assert other.read_text() == '{"earlier": "run"}'
