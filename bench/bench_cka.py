"""Benchmark: our linear CKA against the n x n Gram-matrix form of the paper's code.

Linear CKA (Kornblith et al. 2019) can be computed from ``d x d`` products,
``||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)`` after centring the columns
(``xldrift.analysis.metrics.linear_cka``), or from ``n x n`` Gram matrices. Three forms
are timed on the same float64 inputs:

- ``gram`` (the baseline of the target): the procedure of the reference
  functions of Kornblith et al. that the paper's code calls,
  ``cka(gram_linear(X), gram_linear(Y))``, re-implemented here step by step:
  ``K = X X^T``; centring first checks that ``K`` is symmetric (an
  ``allclose`` of ``K`` against ``K^T`` over all ``n^2`` entries), copies it,
  subtracts the column means and the row means (with half the grand mean
  added back to each); HSIC is the dot product of the flattened centred
  matrices, divided by both Frobenius norms.
- ``gram_lean``: a stricter baseline, the same Gram form written for speed
  (centring in place, no symmetry check, no copies).
- ``feature``: ``xldrift.analysis.metrics.linear_cka``: one centred float64 copy per
  input, a symmetric rank-k update (BLAS syrk) per input for the self-terms
  and one general product (gemm) for ``Y^T X``.

Flops, counting a multiply-add as 2 and exploiting symmetry as BLAS does
(syrk computes one triangle): ``gram`` and ``gram_lean`` spend ``2 n^2 d`` in
BLAS (two ``n x n`` syrk) plus O(n^2) memory passes (``gram``: about ten per
matrix, for the symmetry check, copy, centring, dot and norm); ``feature``
spends ``n d^2 + n d^2 + 2 n d^2 = 4 n d^2``. The pure flop ratio is therefore
``n / (2 d)``: 6.5 at n = 5,010, d = 384, and 3.3 at d = 768; anything beyond it
comes from the Gram form's memory passes.

Many comparisons share a representation (drift of every seed against one
pre-trained state; alignment of every target with the source), and
``xldrift.analysis.metrics.prepare`` does an input's share once: the bench also times
``prepare`` (centring + syrk, ``n d^2``) and a comparison of two prepared
inputs (one gemm, ``2 n d^2``), and projects the paper's drift grid (15
sources x 15 targets x 13 layers, n = 5,010, d = 768) for every form: with
preparation, each pre-trained state is prepared once per (target, layer) and
each fine-tuned one once.

Each figure is the median of ``repeats`` runs (the forms alternate within a
repeat, after one warm-up), with one BLAS thread and with two, set through
threadpoolctl for every BLAS library loaded (numpy's and scipy's). The load
average is recorded around each setting: on a shared machine, other jobs
slow the memory-bound Gram passes and the BLAS calls differently.

Run: ``python bench/bench_cka.py [repeats]`` (prints JSON).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xldrift.analysis.metrics import linear_cka, prepare  # noqa: E402

N_ITEMS = 5010
DIMS = (384, 768)
GRID = {"sources": 15, "targets": 15, "layers": 13}
THREADS = {"1_thread": 1, "2_threads": 2}
SPEED_TARGET = 30.0
TOLERANCE = 1e-6


# -- the baselines ------------------------------------------------------------
def _reference_centre(gram: np.ndarray) -> np.ndarray:
    """Centre an ``(n, n)`` Gram matrix the way the reference code does: check, copy, subtract means."""
    if not np.allclose(gram, gram.T):
        raise ValueError("the Gram matrix must be symmetric")
    centred = gram.copy()
    col_means = np.mean(centred, 0, dtype=np.float64)
    col_means -= np.mean(col_means) / 2  # row and column subtraction together remove the grand mean once
    centred -= col_means[:, None]
    centred -= col_means[None, :]
    return centred


def reference_gram_cka(X: np.ndarray, Y: np.ndarray) -> float:
    """Linear CKA by the reference procedure the paper's code calls (the target's baseline).

    Args:
        X: float64, shape ``(n_items, d1)``.
        Y: float64, shape ``(n_items, d2)``.

    Returns:
        ``<HKH, HLH> / (||HKH||_F ||HLH||_F)`` with ``K = X X^T``, ``L = Y Y^T``.
    """
    kc, lc = _reference_centre(X.dot(X.T)), _reference_centre(Y.dot(Y.T))
    hsic = kc.ravel().dot(lc.ravel())
    return float(hsic / (np.linalg.norm(kc) * np.linalg.norm(lc)))


def lean_gram_cka(X: np.ndarray, Y: np.ndarray) -> float:
    """Linear CKA from ``n x n`` Gram matrices, centred in place, no checks or copies (stricter baseline)."""
    k, l = X @ X.T, Y @ Y.T
    for g in (k, l):
        # H G H without forming H: subtract row and column means, add back the grand mean.
        means = g.mean(axis=0)
        g -= means[:, None]
        g -= means[None, :]
        g += means.mean()
    return float(np.vdot(k, l) / (np.linalg.norm(k) * np.linalg.norm(l)))


def correlated_pair(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``X`` standard normal ``(n, d)`` plus an offset, ``Y = X W + noise`` (CKA far from 0 and 1)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) + 2.0
    W = rng.standard_normal((d, d)) / np.sqrt(d)
    return X, X @ W + rng.standard_normal((n, d))


# -- machine ------------------------------------------------------------------
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
    return {
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                                "MKL_NUM_THREADS")},
        "blas": [{k: p.get(k) for k in ("internal_api", "version", "num_threads", "architecture", "threading_layer",
                                         "filepath")} for p in threadpool_info() if p.get("user_api") == "blas"],
    }


# -- timing -------------------------------------------------------------------
def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def flops(n: int, d: int) -> dict[str, float]:
    """BLAS flops of each form (multiply-add = 2; syrk counts one triangle)."""
    return {"feature": 4.0 * n * d * d, "gram": 2.0 * n * n * d, "gram_lean": 2.0 * n * n * d,
            "prepare": 1.0 * n * d * d, "prepared_pair": 2.0 * n * d * d}


def compare(d: int, repeats: int, n: int = N_ITEMS) -> dict[str, Any]:
    """Time the three forms, and the prepared path, on one ``(n, d)`` pair; check that they agree."""
    X, Y = correlated_pair(n, d)
    pairs = [(prepare(X), prepare(Y)) for _ in range(repeats + 1)]  # fresh ones: a pair remembers its cross term
    forms: dict[str, Callable[[int], Any]] = {
        "gram": lambda r: reference_gram_cka(X, Y),
        "gram_lean": lambda r: lean_gram_cka(X, Y),
        "feature": lambda r: linear_cka(X, Y),
        "prepare": lambda r: prepare(Y),
        "prepared_pair": lambda r: linear_cka(*pairs[r]),
    }
    values = {name: fn(repeats) for name, fn in forms.items()}  # warm-up: thread pools, page faults
    seconds: dict[str, list[float]] = {name: [] for name in forms}
    cka: dict[str, list[float]] = {"gram": [], "gram_lean": [], "feature": []}
    for r in range(repeats):
        for name, fn in forms.items():
            value, secs = _timed(lambda: fn(r))
            seconds[name].append(secs)
            if name in cka:
                cka[name].append(value)
    med = {name: statistics.median(ts) for name, ts in seconds.items()}
    ours = cka["feature"] + [values["prepared_pair"]]
    diff = {base: max(abs(a - b) for a in ours for b in cka[base]) for base in ("gram", "gram_lean")}
    fl = flops(n, d)
    return {
        "n": n, "d": d,
        "cka": {name: vals[0] for name, vals in cka.items()},
        "max_abs_diff": max(diff.values()), "max_abs_diff_by_baseline": diff,
        f"equal_to_{TOLERANCE:g}": max(diff.values()) <= TOLERANCE,
        "seconds": seconds, "median_s": med,
        "speed_ratio": med["gram"] / med["feature"],
        "speed_ratio_lean": med["gram_lean"] / med["feature"],
        "meets_speed_target": med["gram"] / med["feature"] >= SPEED_TARGET,
        "meets_speed_target_lean": med["gram_lean"] / med["feature"] >= SPEED_TARGET,
        "flop_ratio_gram_over_feature": fl["gram"] / fl["feature"],
        "gflops": {name: fl[name] / med[name] / 1e9 for name in med},
    }


def project_grid(median_s: dict[str, float], alignment: bool = False) -> dict[str, dict[str, float]]:
    """Time of the paper's grid for each form, from per-call medians at its size.

    Drift: one CKA per (source, target, layer). With ``alignment``, also the
    source-vs-target CKA of every ordered pair of distinct languages per layer,
    in the pre-trained and in the fine-tuned state. Without preparation every
    CKA is a full call; with it, each pre-trained representation (per target
    and layer) and each fine-tuned one is prepared once, and every CKA is then
    one prepared comparison.
    """
    s, t, layers = GRID["sources"], GRID["targets"], GRID["layers"]
    n_cka = s * t * layers + (2 * s * (t - 1) * layers if alignment else 0)
    n_prepared = t * layers + s * t * layers
    secs = {form: median_s[form] * n_cka for form in ("gram", "gram_lean", "feature")}
    secs["feature_prepared"] = n_prepared * median_s["prepare"] + n_cka * median_s["prepared_pair"]
    return {"n_cka": n_cka, **{form: {"seconds": x, "hours": x / 3600} for form, x in secs.items()}}


def run(repeats: int = 5) -> dict[str, Any]:
    """Compare the forms for each d in :data:`DIMS`, with 1 and 2 BLAS threads, and project the grid.

    Args:
        repeats: timed runs of each form per d and thread setting; medians are reported.

    Returns:
        A JSON-ready dict (machine, per-setting and per-d comparisons, load
        averages, grid projection from the d = 768 medians).
    """
    start = time.perf_counter()
    results, grid, grid_all, load = {}, {}, {}, {}
    for setting, threads in THREADS.items():
        before = os.getloadavg()
        with threadpool_limits(limits=threads, user_api="blas"):
            results[setting] = {str(d): compare(d, repeats) for d in DIMS}
        load[setting] = {"loadavg_before": before, "loadavg_after": os.getloadavg()}
        grid[setting] = project_grid(results[setting]["768"]["median_s"])
        grid_all[setting] = project_grid(results[setting]["768"]["median_s"], alignment=True)
    return {
        "machine": {**machine_info(), "loadavg_1min_start": load["1_thread"]["loadavg_before"][0],
                    "loadavg_1min_end": load["2_threads"]["loadavg_after"][0]},
        "load": load, "repeats": repeats, "speed_target": SPEED_TARGET,
        "results": results,
        "grid_projection": {**GRID, "n": N_ITEMS, "d": 768, "n_cka": GRID["sources"] * GRID["targets"] * GRID["layers"],
                            **grid},
        "grid_projection_drift_and_alignment": {**GRID, "n": N_ITEMS, "d": 768, **grid_all},
        "total_runtime_s": time.perf_counter() - start,
    }


if __name__ == "__main__":
    print(json.dumps(run(*[int(a) for a in sys.argv[1:2]]), indent=2))
