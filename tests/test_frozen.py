"""Tests for xldrift.model.frozen and xldrift.representations.pooling: the values tables and notebooks share."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from xldrift.model.frozen import FrozenLayers, normalise_column
from xldrift.representations.pooling import POOLINGS, layers_for


def test_frozen_layers_sorted_unique_and_text_round_trips():
    layers = FrozenLayers((3, 1, np.int64(3)))
    assert layers.blocks == (1, 3) and layers.text() == "1,3" and layers.describe() == "1,3"
    assert FrozenLayers().text() == "" and FrozenLayers().describe() == "none"
    for blocks in [(), (2,), (1, 4, 6)]:
        assert FrozenLayers.parse(FrozenLayers(blocks).text()) == FrozenLayers(blocks)
    assert FrozenLayers.of([4, 1]) == FrozenLayers((1, 4)) and FrozenLayers.of(layers) is layers


def test_parse_reads_what_pandas_makes_of_the_column():
    # one block per row with an empty cell: pandas reads the column as float with NaN
    col = pd.read_csv(io.StringIO("frozen_layers\n\n3\n2\n"), skip_blank_lines=False)["frozen_layers"]
    assert normalise_column(col) == ["", "3", "2"]
    mixed = pd.read_csv(io.StringIO('frozen_layers\n""\n"1,3"\n2\n'))["frozen_layers"]
    assert normalise_column(mixed) == ["", "1,3", "2"]
    assert FrozenLayers.parse(None) == FrozenLayers() and FrozenLayers.parse(np.int64(5)).blocks == (5,)


@pytest.mark.parametrize("bad", ["1;3", "a", 2.5, True, [1, 2]])
def test_parse_rejects_other_forms(bad):
    with pytest.raises(ValueError, match="frozen layers"):
        FrozenLayers.parse(bad)


def test_poolings_and_their_scored_layers():
    assert POOLINGS == ("cls", "mean")
    assert list(layers_for("cls", 4)) == [1, 2, 3] and list(layers_for("mean", 4)) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="cls, mean"):
        layers_for("max", 4)
