"""Tests for xldrift.analysis.bootstrap: each bootstrap on data with a known answer."""

from __future__ import annotations

import math

import numpy as np
import pytest

from xldrift.analysis import bootstrap as B


def test_block_sizes_cover_the_total():
    assert sum(B.block_sizes(10_000, 1_000)) == 10_000
    assert max(B.block_sizes(10_000, 1_000)) == B.CHUNK_VALUES // 1_000
    assert B.block_sizes(3, 10**9) == [1, 1, 1] and B.block_sizes(0, 5) == []


def test_seed_item_mean_ci_contains_the_mean_and_resamples_seeds():
    rng = np.random.default_rng(0)
    correct = (rng.random((3, 400)) < 0.7).astype(float)
    low, high = B.seed_item_mean_ci(correct, n_boot=300)
    assert low < correct.mean() < high and high - low < 0.15
    assert B.seed_item_mean_ci(np.ones(20), n_boot=50) == (1.0, 1.0)
    with pytest.raises(ValueError, match="at least one item"):
        B.seed_item_mean_ci(np.empty((1, 0)))


def test_paired_accuracy_replicates_share_one_draw():
    rng = np.random.default_rng(1)
    values = (rng.random((1, 2, 2, 300)) < 0.6).astype(float)
    twice = np.concatenate([values, values])  # two identical conditions
    reps = B.paired_accuracy_replicates(twice, n_boot=100, seed=3)
    assert reps.shape == (100, 2, 2)
    np.testing.assert_array_equal(reps[:, 0], reps[:, 1])  # the same draw for every condition
    assert abs(reps.mean() - values.mean()) < 0.02


def test_item_mean_ci_contains_estimate_and_shrinks():
    rng = np.random.default_rng(0)
    widths = {}
    for n in (100, 2500):
        correct = rng.random(n) < 0.7
        p = correct.mean()
        low, high = B.item_mean_ci(correct, n_boot=2000, seed=1)
        assert low < p < high
        # the percentile interval of a proportion approaches the normal one, 2 * 1.96 * sqrt(p(1-p)/n)
        normal = 2 * 1.96 * math.sqrt(p * (1 - p) / n)
        assert (high - low) == pytest.approx(normal, rel=0.15)
        widths[n] = high - low
    assert widths[2500] < widths[100] / 3
    assert B.item_mean_ci(np.ones(10)) == (1.0, 1.0)
    with pytest.raises(ValueError, match="non-empty"):
        B.item_mean_ci([])
    with pytest.raises(ValueError, match="NaN"):
        B.item_mean_ci([1.0, np.nan])


def test_gain_ci_independent_seeds():
    rng = np.random.default_rng(11)
    a = (rng.uniform(size=(3, 400)) < 0.6).astype(int)
    same = B.gain_ci_independent_seeds(a, a, n_boot=300)
    assert same["gain"] == 0 and same["ci_low"] <= 0 <= same["ci_high"]
    res = B.gain_ci_independent_seeds(np.zeros((2, 50)), np.ones((4, 50)), n_boot=200)
    assert res["gain"] == 1 and res["ci_low"] == pytest.approx(1) and res["ci_high"] == pytest.approx(1)
    b = a.copy()
    flip = rng.uniform(size=b.shape) < 0.2
    b[flip] = 1  # b is never worse than a on any item
    res = B.gain_ci_independent_seeds(a, b, n_boot=1000)
    assert res["gain"] == pytest.approx(b.mean() - a.mean())
    assert 0 < res["ci_low"] < res["gain"] < res["ci_high"]
    assert (res["n_items"], res["n_seeds_a"], res["n_seeds_b"]) == (400, 3, 3)
    with pytest.raises(ValueError, match="0/1"):
        B.gain_ci_independent_seeds(a * 0.5, a)
    with pytest.raises(ValueError, match="n_items"):
        B.gain_ci_independent_seeds(a, a[:, :10])


def test_mean_difference_ci():
    a, b = np.array([3.0, 4.0, 5.0, 6.0]), np.array([1.0, 1.5, 2.0])
    res = B.mean_difference_ci(a, b, n_boot=2000)
    assert res["diff"] == pytest.approx(4.5 - 1.5)
    assert res["ci_low"] < res["diff"] < res["ci_high"] and res["ci_low"] > 0
    assert (res["n_a"], res["n_b"]) == (4, 3)
