"""Benchmark: linear CKA in feature space against the n x n Gram-matrix form.

Linear CKA (Kornblith et al. 2019) can be computed from ``d x d`` products,
``||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)`` after centring the columns
(``xldrift.metrics.linear_cka``, O(n d^2)), or from ``n x n`` Gram matrices
``K = X X^T``, ``L = Y Y^T`` double-centred, ``<K, L> / (||K|| ||L||)``, the
way the reference implementation of Kornblith et al. computes it (O(n^2 d),
two ``n x n`` float64 matrices). The baseline here is our own, lean version of that Gram form
(in-place centring, no symmetry check, no extra copies), so the ratio is not
flattered by a slow baseline.

Both run on the same float64 inputs (``Y = X W + noise`` with a fixed seed, so
CKA is far from 0) at the study's size, n = 5,010 items, for d = 384 and 768.
Reported per d: both values and their difference, the median of ``repeats``
timed runs of each (alternated, after one warm-up), their ratio against the
30x target, and the GFLOP/s each reached (counting ``4 n d^2`` for the
feature form and ``2 n^2 d`` for the Gram form: symmetric products only fill
half the matrix). From the d = 768 timings: the projected time of the paper's
whole drift grid, 15 sources x 15 targets x 13 layers of CKA. Everything is
measured with BLAS as configured and again with one BLAS thread (when
threadpoolctl is installed).

Run: ``python bench/bench_cka.py [repeats]`` (prints JSON).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xldrift.metrics import linear_cka  # noqa: E402

N_ITEMS = 5010
DIMS = (384, 768)
GRID = {"sources": 15, "targets": 15, "layers": 13}
SPEED_TARGET = 30.0
TOLERANCE = 1e-6


def gram_linear_cka(X: np.ndarray, Y: np.ndarray) -> float:
    """Linear CKA from ``n x n`` Gram matrices (the reference form; the baseline).

    Args:
        X: float64, shape ``(n_items, d1)``.
        Y: float64, shape ``(n_items, d2)``.

    Returns:
        ``<HKH, HLH>_F / (||HKH||_F ||HLH||_F)`` with ``K = X X^T``, ``L = Y Y^T``.
    """
    k, l = X @ X.T, Y @ Y.T
    for g in (k, l):
        # H G H without forming H: subtract row and column means, add back the grand mean.
        means = g.mean(axis=0)
        g -= means[:, None]
        g -= means[None, :]
        g += means.mean()
    return float(np.vdot(k, l) / (np.linalg.norm(k) * np.linalg.norm(l)))


def correlated_pair(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``X`` standard normal ``(n, d)`` and ``Y = X W + noise`` (W scaled to keep variances equal)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    W = rng.standard_normal((d, d)) / np.sqrt(d)
    return X, X @ W + rng.standard_normal((n, d))


def _timed(fn: Callable[..., float], *args: Any) -> tuple[float, float]:
    start = time.perf_counter()
    value = fn(*args)
    return value, time.perf_counter() - start


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def machine_info() -> dict[str, Any]:
    """numpy/BLAS versions, threads and CPU, for reading the timings."""
    info: dict[str, Any] = {
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                                "MKL_NUM_THREADS")},
    }
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [{k: p.get(k) for k in ("internal_api", "version", "num_threads", "architecture",
                                                "threading_layer")} for p in threadpool_info()]
    except ImportError:
        config = np.show_config(mode="dicts")
        info["blas"] = config.get("Build Dependencies", {}).get("blas", {})
    return info


def compare(d: int, repeats: int, n: int = N_ITEMS) -> dict[str, Any]:
    """Time both forms on one ``(n, d)`` pair and check that they agree."""
    X, Y = correlated_pair(n, d)
    values: dict[str, list[float]] = {"feature": [], "gram": []}
    seconds: dict[str, list[float]] = {"feature": [], "gram": []}
    linear_cka(X, Y), gram_linear_cka(X, Y)  # warm-up: thread pool, page faults of the n x n buffers
    for _ in range(repeats):
        for form, fn in (("gram", gram_linear_cka), ("feature", linear_cka)):
            value, secs = _timed(fn, X, Y)
            values[form].append(value)
            seconds[form].append(secs)
    med = {form: statistics.median(ts) for form, ts in seconds.items()}
    diff = max(abs(a - b) for a in values["feature"] for b in values["gram"])
    flops = {"feature": 4.0 * n * d * d, "gram": 2.0 * n * n * d}
    return {
        "n": n, "d": d,
        "cka_feature": values["feature"][0], "cka_gram": values["gram"][0],
        "max_abs_diff": diff, f"equal_to_{TOLERANCE:g}": diff <= TOLERANCE,
        "seconds": seconds, "median_s": med,
        "speed_ratio": med["gram"] / med["feature"],
        "meets_speed_target": med["gram"] / med["feature"] >= SPEED_TARGET,
        "flop_ratio_gram_over_feature": flops["gram"] / flops["feature"],
        "gflops": {form: flops[form] / med[form] / 1e9 for form in med},
    }


def _thread_settings() -> dict[str, Callable[[], contextlib.AbstractContextManager]]:
    """BLAS as configured, plus one BLAS thread when threadpoolctl can set it.

    On a machine shared with other jobs, multi-threaded BLAS timings swing with
    the other load; single-threaded ones are steadier and show the algorithms.
    """
    settings: dict[str, Callable[[], contextlib.AbstractContextManager]] = {"default": contextlib.nullcontext}
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return settings
    settings["1_thread"] = lambda: threadpool_limits(limits=1, user_api="blas")
    return settings


def run(repeats: int = 5) -> dict[str, Any]:
    """Compare both forms for each d in :data:`DIMS` and project the drift grid.

    Args:
        repeats: timed runs of each form per d and thread setting; medians
            are reported.

    Returns:
        A JSON-ready dict (machine, per-setting and per-d comparisons, grid
        projection from the d = 768 medians).
    """
    start, load_start = time.perf_counter(), os.getloadavg()[0]
    n_cka = GRID["sources"] * GRID["targets"] * GRID["layers"]
    results, grid = {}, {}
    for setting, limit in _thread_settings().items():
        with limit():
            results[setting] = {str(d): compare(d, repeats) for d in DIMS}
        per_cka = results[setting]["768"]["median_s"]
        grid[setting] = {form: {"seconds": t * n_cka, "hours": t * n_cka / 3600} for form, t in per_cka.items()}
    return {
        "machine": {**machine_info(), "loadavg_1min_start": load_start, "loadavg_1min_end": os.getloadavg()[0]},
        "repeats": repeats, "speed_target": SPEED_TARGET,
        "results": results,
        "grid_projection": {**GRID, "n": N_ITEMS, "d": 768, "n_cka": n_cka, **grid},
        "total_runtime_s": time.perf_counter() - start,
    }


if __name__ == "__main__":
    print(json.dumps(run(*[int(a) for a in sys.argv[1:2]]), indent=2))
