"""The figures' shared style: when a figure switches to its many-language form, family colours, named extremes.

Figures with one mark per language switch, above :data:`MANY` languages (the
200-language SIB-200 profiles), from per-language bars and legends to sorted
profiles with the extremes named and colours per language family, so that
they keep a fixed, readable size.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

MANY = 40  # languages above which per-language bars, ticks and legends give way to summaries
N_FAMILIES = 9  # families shown by colour when there are many languages; the rest are "other"


def named_extremes(ax, values, labels, *, k: int = 5, fmt: str = ".2f", high: str = "highest", low: str = "lowest",
                    loc: tuple[float, float] = (0.98, 0.97), ha: str = "right") -> None:
    """List the ``k`` highest and ``k`` lowest ``values`` with their labels in a box in the axes' corner."""
    s = pd.Series(np.asarray(values, float), index=list(labels)).dropna().sort_values()
    def line(part: pd.Series) -> str:
        return ", ".join(f"{name} {format(v, fmt)}" for name, v in part.items())

    text = f"{high}: {line(s.iloc[::-1].head(k))}\n{low}: {line(s.head(k))}"
    ax.text(*loc, text, transform=ax.transAxes, ha=ha, va="top", fontsize=7,
            bbox=dict(boxstyle="round", fc="white", ec="0.8", alpha=0.9))


def thin_ticks(ax, labels, axis: str = "x", max_ticks: int = MANY) -> None:
    """Label at most ``max_ticks`` of the positions ``0..len(labels)-1``, evenly spaced."""
    step = max(1, math.ceil(len(labels) / max_ticks))
    pos = list(range(0, len(labels), step))
    names = [labels[i] for i in pos]
    if axis == "x":
        ax.set_xticks(pos, names, rotation=90, fontsize=6)
    else:
        ax.set_yticks(pos, names, fontsize=6)


def family_groups(targets: list[str], families: dict[str, str], n: int = N_FAMILIES) -> dict[str, str]:
    """Each target's family, keeping the ``n`` commonest among ``targets`` and calling the rest ``other``.

    Ties in frequency are broken by name, so the grouping is deterministic.
    """
    fams = pd.Series([families.get(t) or "unknown" for t in targets])
    counts = fams.value_counts()
    keep = set(sorted(counts.index, key=lambda f: (-counts[f], f))[:n])
    return {t: (f if f in keep else "other") for t, f in zip(targets, fams)}


def family_colours(groups: dict[str, str]) -> dict[str, tuple]:
    """A colour per family group (commonest first), grey for ``other``."""
    counts = pd.Series(list(groups.values())).value_counts()
    names = sorted((f for f in counts.index if f != "other"), key=lambda f: (-counts[f], f))
    palette = plt.get_cmap("tab10")
    out = {f: palette(i % 10) for i, f in enumerate(names)}
    out["other"] = (0.6, 0.6, 0.6, 1.0)
    return out

