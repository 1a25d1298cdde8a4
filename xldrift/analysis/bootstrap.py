"""Every bootstrap of the study, each named for what it resamples (Efron & Tibshirani 1993).

- :func:`item_mean_ci`: interval of the mean of per-item scores, items resampled.
- :func:`seed_item_mean_ci`: interval of mean accuracy over a ``(n_seeds, n_items)``
  matrix, seeds and items resampled (notebook 06's check that the baseline learned).
- :func:`gain_ci_independent_seeds`: accuracy gain of one system over another on
  the same items (items paired, Koehn 2004), the two systems' seeds drawn independently.
- :func:`mean_difference_ci`: difference of the means of two independent samples.
- :func:`paired_accuracy_replicates`: replicates of the intervention's accuracies in
  which every condition and target shares one draw of items and seeds.

The correlation intervals of :func:`xldrift.analysis.stats.correlate` resample languages
within the Mantel design and stay with it.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

#: Values per vectorised block, to bound memory.
CHUNK_VALUES = 4_000_000


def block_sizes(total: int, width: int) -> list[int]:
    """Split ``total`` replicates into blocks of at most :data:`CHUNK_VALUES` / ``width`` (at least 1).

    Args:
        total: number of replicates (or permutations).
        width: values each replicate needs.

    Returns:
        Block sizes summing to ``total``.
    """
    step = max(1, CHUNK_VALUES // max(width, 1))
    return [min(step, total - i) for i in range(0, total, step)]


def item_mean_ci(correct: Any, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> tuple[float, float]:
    """Percentile bootstrap interval for the mean of per-item scores.

    Items are resampled with replacement ``n_boot`` times; the interval is the
    ``alpha/2`` and ``1 - alpha/2`` quantiles of the resampled means (Efron &
    Tibshirani 1993, "An Introduction to the Bootstrap", ch. 13).

    Args:
        correct: per-item scores ``(n_items,)``, e.g. 0/1 correctness.
        n_boot: number of resamples.
        seed: seed of the resampling generator.
        alpha: 1 - coverage.

    Returns:
        ``(low, high)``.
    """
    x = np.asarray(correct, dtype=float)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"correct must be a non-empty 1-D array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("correct contains NaN or infinite values")
    if not isinstance(n_boot, numbers.Integral) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    chunk = max(1, 2_000_000 // x.size)  # bounds memory at ~16 MB of indices
    for s in range(0, n_boot, chunk):
        k = min(chunk, n_boot - s)
        means[s:s + k] = x[rng.integers(0, x.size, size=(k, x.size))].mean(axis=1)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def seed_item_mean_ci(correct: np.ndarray, n_boot: int = 1000, seed: int = 0,
                      alpha: float = 0.05) -> tuple[float, float]:
    """Percentile CI of mean accuracy, resampling items and (if several) seeds.

    One replicate draws seeds (rows) and items (columns) with replacement,
    one item at a time in a Python loop: slower than :func:`item_mean_ci`,
    kept as it is so that notebook 06's intervals keep their values.

    Args:
        correct: (n_seeds, n_items) or (n_items,) array of 0/1.
        n_boot: number of resamples.
        seed: seed of the resampling generator.
        alpha: 1 - coverage.

    Returns:
        (low, high) of the ``1 - alpha`` interval (Efron & Tibshirani 1993).
    """
    c = np.atleast_2d(np.asarray(correct, dtype=float))
    if c.size == 0:
        raise ValueError("seed_item_mean_ci needs at least one item")
    rng = np.random.default_rng(seed)
    n_s, n_i = c.shape
    means = np.empty(n_boot)
    for b in range(n_boot):
        rows = rng.integers(0, n_s, n_s) if n_s > 1 else np.zeros(1, int)
        cols = rng.integers(0, n_i, n_i)
        means[b] = c[np.ix_(rows, cols)].mean()
    return float(np.quantile(means, alpha / 2)), float(np.quantile(means, 1 - alpha / 2))


def gain_ci_independent_seeds(correct_a: Any, correct_b: Any, *, n_boot: int = 2_000, seed: int = 0) -> dict:
    """Accuracy gain of system b over system a with a two-level bootstrap CI.

    Items (the same test items for both systems) and seeds (training runs,
    independent between systems) are resampled with replacement (Efron &
    Tibshirani 1993; paired over items as in Koehn 2004).

    Args:
        correct_a: 0/1 correctness ``(n_seeds_a, n_items)``.
        correct_b: 0/1 correctness ``(n_seeds_b, n_items)``.
        n_boot: number of resamples.
        seed: seed of the resampling generator.

    Returns:
        ``dict(gain, ci_low, ci_high, n_items, n_seeds_a, n_seeds_b)``; gain =
        mean accuracy of b minus that of a, 95% percentile CI.
    """
    a, b = np.atleast_2d(np.asarray(correct_a, float)), np.atleast_2d(np.asarray(correct_b, float))
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or a.shape[1] == 0:
        raise ValueError(f"need (n_seeds, n_items) arrays with the same n_items; got {a.shape} and {b.shape}")
    if not (np.isin(a, (0, 1)).all() and np.isin(b, (0, 1)).all()):
        raise ValueError("correct_a and correct_b must hold only 0/1 values")
    rng = np.random.default_rng(seed)
    n_items = a.shape[1]
    gains = []
    for size in block_sizes(n_boot, n_items):
        w = rng.multinomial(n_items, np.full(n_items, 1 / n_items), size=size) / n_items  # (size, n_items)
        acc_a, acc_b = w @ a.T, w @ b.T  # (size, n_seeds)
        pick_a = rng.integers(0, a.shape[0], acc_a.shape)
        pick_b = rng.integers(0, b.shape[0], acc_b.shape)
        gains.append(np.take_along_axis(acc_b, pick_b, 1).mean(1) - np.take_along_axis(acc_a, pick_a, 1).mean(1))
    gains = np.concatenate(gains) if gains else np.array([np.nan])
    lo, hi = np.percentile(gains, [2.5, 97.5]) if n_boot else (np.nan, np.nan)
    return dict(gain=float(b.mean() - a.mean()), ci_low=float(lo), ci_high=float(hi),
                n_items=n_items, n_seeds_a=a.shape[0], n_seeds_b=b.shape[0])


def mean_difference_ci(a: Any, b: Any, *, n_boot: int = 2_000, seed: int = 0) -> dict:
    """Difference of means ``mean(a) - mean(b)`` of two independent samples, with a bootstrap CI.

    Used e.g. for the gain on distant languages minus the gain on close ones
    (each language one observation; Efron & Tibshirani 1993).

    Args:
        a, b: the two samples, any shape (flattened; non-finite values dropped).
        n_boot: number of resamples.
        seed: seed of the resampling generator.

    Returns:
        ``dict(diff, ci_low, ci_high, n_a, n_b)``.
    """
    a, b = np.asarray(a, float).ravel(), np.asarray(b, float).ravel()
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size == 0 or b.size == 0:
        raise ValueError(f"both samples need at least one finite value; got {a.size} and {b.size}")
    rng = np.random.default_rng(seed)
    diffs = (a[rng.integers(0, a.size, (n_boot, a.size))].mean(1)
             - b[rng.integers(0, b.size, (n_boot, b.size))].mean(1))
    lo, hi = np.percentile(diffs, [2.5, 97.5]) if n_boot else (np.nan, np.nan)
    return dict(diff=float(a.mean() - b.mean()), ci_low=float(lo), ci_high=float(hi), n_a=a.size, n_b=b.size)


def paired_accuracy_replicates(values: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Bootstrap accuracies in which every condition and target shares one resample of items and seeds.

    Seed ``s`` of every condition shares its head initialisation and data
    order, and every condition is evaluated on the same items, so a replicate
    draws item weights and seed weights once (multinomial counts, Efron &
    Tibshirani 1993; paired over items as in Koehn 2004) and applies them to
    all of ``values``.

    Args:
        values: 0/1 correctness ``(n_sets, n_targets, n_seeds, n_items)``.
        n_boot: number of replicates.
        seed: seed of the resampling generator.

    Returns:
        Accuracies ``(n_boot, n_sets, n_targets)``.
    """
    rng = np.random.default_rng(seed)
    n_sets, n_targets, n_seeds, n_items = values.shape
    flat = values.reshape(-1, n_items)
    out = np.empty((n_boot, n_sets, n_targets))
    for start in range(0, n_boot, 256):
        b = min(256, n_boot - start)
        w_items = rng.multinomial(n_items, np.full(n_items, 1 / n_items), size=b) / n_items  # (b, n_items)
        w_seeds = rng.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), size=b) / n_seeds  # (b, n_seeds)
        acc = (flat @ w_items.T).reshape(n_sets, n_targets, n_seeds, b)
        out[start:start + b] = np.einsum("ktsb,bs->bkt", acc, w_seeds)
    return out
