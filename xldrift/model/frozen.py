"""Frozen encoder blocks: one value, one text form, one parser.

A fine-tuning run freezes a set of encoder blocks, numbered 1..L like the
hidden states (0, the embeddings output, is never a block). Tables store the
set as text, ``"1,3"``, and ``""`` when nothing is frozen; a CSV read back by
pandas may turn that column into numbers (``3``, ``3.0``) or NaN, so every
reader goes through :meth:`FrozenLayers.parse` and every writer through
:meth:`FrozenLayers.text`.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np


@dataclass(frozen=True)
class FrozenLayers:
    """A set of frozen encoder blocks, sorted and without duplicates.

    Attributes:
        blocks: block numbers, ascending; ``()`` when nothing is frozen.
    """

    blocks: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        # integers of any kind (numpy included) become plain ints so that equal sets compare and hash equal
        object.__setattr__(self, "blocks", tuple(sorted({int(b) for b in self.blocks})))

    @classmethod
    def of(cls, layers: Iterable[int] | FrozenLayers) -> FrozenLayers:
        """The set ``layers`` (any iterable of integers, or a :class:`FrozenLayers`)."""
        return layers if isinstance(layers, FrozenLayers) else cls(tuple(layers))

    def text(self) -> str:
        """The table form: ``(3, 1)`` -> ``"1,3"``; nothing frozen -> ``""``."""
        return ",".join(str(b) for b in self.blocks)

    def describe(self) -> str:
        """The text form for people: ``"none"`` when nothing is frozen."""
        return self.text() or "none"

    @classmethod
    def parse(cls, value: Any) -> FrozenLayers:
        """Read the table form back, as written by :meth:`text` or as pandas read it.

        Args:
            value: ``"1,3"``, ``""``, None or NaN (nothing frozen), or a single
                block as an integer or an integral float (a column whose
                cells each hold one block is read as numbers).

        Raises:
            ValueError: anything else, e.g. ``"1;3"`` or ``2.5``.
        """
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return cls()
        if isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, bool):
            return cls((int(value),))
        if isinstance(value, (numbers.Real, np.floating)) and not isinstance(value, bool) and float(value).is_integer():
            return cls((int(value),))
        if isinstance(value, str):
            parts = [p.strip() for p in value.split(",")] if value.strip() else []
            if all(p.isdigit() for p in parts):
                return cls(tuple(int(p) for p in parts))
        raise ValueError(f"frozen layers must read like '1,3' (or '' for none); got {value!r}")


def normalise_column(values: Iterable[Any]) -> list[str]:
    """A ``frozen_layers`` column, as read from a table, in its canonical text form.

    Args:
        values: cells of the column, ``(n_rows,)``.

    Returns:
        One text per cell (:meth:`FrozenLayers.text` of :meth:`FrozenLayers.parse`).
    """
    return [FrozenLayers.parse(v).text() for v in values]
