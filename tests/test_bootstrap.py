"""Tests for xldrift.bootstrap: each bootstrap on data with a known answer."""

from __future__ import annotations

import numpy as np
import pytest

from xldrift import bootstrap as B


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
