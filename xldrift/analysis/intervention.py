"""Targeted layer freezing: which layers to freeze, the control sets, and whether it helped.

Philippy et al. (2023) suggest that what the correlation study finds can be
used to improve transfer to linguistically distant languages. Here that is
tested as an intervention with controls:

* **Selection** (:func:`select_layers`): from the correlation table, the ``k``
  encoder blocks (1..L; 0, the embeddings output, is never chosen) whose
  impact correlates most negatively (by default) with distance to the source.
* **Controls**: ``random`` -- draws of ``k`` random blocks other than the
  targeted set (:func:`random_layer_sets`); ``lowest`` -- blocks ``1..k``;
  ``full`` -- nothing frozen. Every condition uses the same seeds (paired).
* **Gain statistics and verdict** (:mod:`xldrift.analysis.gains`, re-exported here):
  gains over ``full`` with a paired bootstrap over items and seeds, gain
  against distance, distant-minus-close halves, targeted against each
  control, and claim (d) flagged ``underpowered`` below 3 seeds.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import numbers
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from xldrift.model.finetune import FinetuneConfig
from xldrift.model.frozen import normalise_column
# the statistics live in xldrift.analysis.gains; the notebook reads everything from here
from xldrift.analysis.gains import (CONTROLS, MIN_SEEDS, Correctness, correctness, gain_distance, gain_table,  # noqa: F401
                           gap_table, paired_gain, split_by_distance, verdict_d)
from xldrift.model.transfer import accuracy_table

logger = logging.getLogger(__name__)

CONDITIONS = ("full", "targeted", "random", "lowest")
DIRECTIONS = ("negative", "positive", "absolute")
COLUMNS = ["model", "task", "source", "target", "seed", "condition", "frozen_layers", "accuracy", "n"]
_EXHAUSTIVE = 200_000  # enumerate every k-subset below this many, sample above


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


# ------------------------------------------------------------------ selection
@dataclass(frozen=True)
class SelectionResult:
    """The chosen blocks, the candidate table they were chosen from, and the rule in words."""

    layers: tuple[int, ...]
    table: pd.DataFrame
    rule: str


def select_layers(correlations: pd.DataFrame, *, k: int, distance_kind: str, database: str,
                  pooling: str = "cls", metric: str = "linear_cka", method: str = "pearson", n_layers: int,
                  direction: str = "negative", y: str = "impact") -> SelectionResult:
    """Choose the ``k`` encoder blocks to freeze from a correlation table.

    Rule: among the rows with ``x == "distance:<distance_kind>"``, ``y``, and the
    given database, pooling, metric and method, keep blocks 1..``n_layers``
    with a finite r; rank them by r ascending (``direction="negative"``),
    descending (``"positive"``) or by |r| descending (``"absolute"``), ties
    broken by the lower block; take the first ``k``.

    Args:
        correlations: table from :func:`xldrift.analysis.stats.correlation_table`
            (columns ``x, y, layer, pooling, metric, database, method, r`` and
            optionally ``ci_low, ci_high, p_perm, p_adj, n``).
        k: number of blocks to freeze, 1..``n_layers``.
        distance_kind, database, pooling, metric, method: the cell family to read.
        n_layers: number of encoder blocks L.
        direction: which end of the correlation to take.
        y: the y variable (``impact``: drift of the target's representation space).

    Returns:
        :class:`SelectionResult`; its table has one row per candidate block
        with ``rank`` and ``selected``.

    Raises:
        ValueError: bad arguments, or fewer than ``k`` blocks with data (the
        message lists what the table holds).
    """
    if not _is_int(n_layers) or n_layers < 1:
        raise ValueError(f"n_layers must be a positive integer, got {n_layers!r}")
    if not _is_int(k) or not 1 <= k <= n_layers:
        raise ValueError(f"k must be an integer in 1..{n_layers} (the encoder blocks), got {k!r}")
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}; valid: {', '.join(DIRECTIONS)}")
    need = {"x", "y", "layer", "pooling", "metric", "database", "method", "r"}
    if not isinstance(correlations, pd.DataFrame) or not need <= set(correlations.columns):
        got = list(correlations.columns) if isinstance(correlations, pd.DataFrame) else type(correlations).__name__
        raise ValueError(f"correlations needs columns {sorted(need)}; got {got}")
    c = correlations
    want = {"x": f"distance:{distance_kind}", "y": y, "database": database, "pooling": pooling,
            "metric": metric, "method": method}
    sel = np.logical_and.reduce([c[col].astype(str).eq(v) for col, v in want.items()])
    rows = c[sel].copy()
    rows["layer"] = pd.to_numeric(rows["layer"], errors="coerce")
    rows["r"] = pd.to_numeric(rows["r"], errors="coerce")
    rows = rows[rows["layer"].between(1, n_layers) & np.isfinite(rows["r"])]
    if rows["layer"].duplicated().any():
        raise ValueError(f"correlations holds several rows per layer for {want}; expected one")
    if len(rows) < k:
        have = ", ".join(f"{col} in {sorted(map(str, c[col].dropna().unique()))}" for col in want)
        raise ValueError(f"only {len(rows)} encoder block(s) {sorted(rows['layer'].astype(int).tolist())} have a finite r "
                         f"for {want}, fewer than k={k}. The table holds: {have}")
    score = {"negative": rows["r"], "positive": -rows["r"], "absolute": -rows["r"].abs()}[direction]
    rows = rows.assign(layer=rows["layer"].astype(int), _score=score).sort_values(["_score", "layer"], kind="stable")
    rows["rank"] = np.arange(1, len(rows) + 1)
    rows["selected"] = rows["rank"] <= k
    layers = tuple(sorted(rows.loc[rows["selected"], "layer"].tolist()))
    keep = [col for col in ("layer", "r", "ci_low", "ci_high", "p_perm", "p_adj", "n", "rank", "selected")
            if col in rows]
    end = {"negative": "most negatively", "positive": "most positively", "absolute": "most strongly (|r|)"}[direction]
    rule = (f"the {k} encoder blocks (of 1..{n_layers}) whose {y} correlates {end} with {distance_kind} distance "
            f"to the source ({database}, {pooling} pooling, {metric}, {method} r); ties to the lower block")
    chosen_r = rows.loc[rows["selected"], "r"]
    wrong = int((chosen_r >= 0).sum()) if direction == "negative" else int((chosen_r <= 0).sum()) \
        if direction == "positive" else 0
    if wrong:
        rule += f". Note: {wrong} of the chosen blocks have r of the other sign"
    return SelectionResult(layers, rows[keep].sort_values("layer").reset_index(drop=True), rule)


# ------------------------------------------------------------------ control sets
def lowest_layers(k: int) -> tuple[int, ...]:
    """Blocks ``1..k``, the ``lowest-k`` control."""
    if not _is_int(k) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return tuple(range(1, k + 1))


def random_layer_sets(n_layers: int, k: int, draws: int, seed: int = 0,
                      exclude: Sequence[int] | Iterable[Sequence[int]] = ()) -> list[tuple[int, ...]]:
    """``draws`` distinct random sets of ``k`` blocks from 1..``n_layers``, none equal to an excluded set.

    The draws are a prefix of one seeded random order of all k-subsets, so
    asking for more draws keeps the earlier ones (and their cached checkpoints).

    Args:
        n_layers: number of encoder blocks L.
        k: blocks per set.
        draws: number of sets.
        seed: seed of the generator.
        exclude: one set (e.g. the targeted blocks) or several sets to skip.

    Returns:
        Sorted tuples, in draw order.
    """
    for name, v, low in (("n_layers", n_layers, 1), ("k", k, 1), ("draws", draws, 0)):
        if not _is_int(v) or v < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
    if k > n_layers:
        raise ValueError(f"k={k} exceeds the number of encoder blocks ({n_layers})")
    ex = list(exclude)
    sets = [ex] if ex and all(_is_int(x) for x in ex) else ex
    excluded = {tuple(sorted(int(x) for x in s)) for s in sets}
    total = math.comb(n_layers, k)
    available = total - sum(1 for s in excluded if len(s) == k and set(s) <= set(range(1, n_layers + 1)))
    if draws > available:
        raise ValueError(f"asked for {draws} random sets of {k} of {n_layers} blocks, but only {available} "
                         "distinct sets exist besides the excluded ones")
    rng = np.random.default_rng(seed)
    if total <= _EXHAUSTIVE:
        pool = [s for s in itertools.combinations(range(1, n_layers + 1), k) if s not in excluded]
        return [pool[i] for i in rng.permutation(len(pool))[:draws]]
    out: list[tuple[int, ...]] = []
    while len(out) < draws:  # sparse: rejection sampling terminates quickly
        s = tuple(sorted(int(x) + 1 for x in rng.choice(n_layers, k, replace=False)))
        if s not in excluded and s not in out:
            out.append(s)
    return out


def condition_sets(targeted: Sequence[int], *, n_layers: int, conditions: Sequence[str], draws: int,
                   seed: int = 0) -> list[tuple[str, tuple[int, ...]]]:
    """``(condition, frozen blocks)`` for ``full`` and each requested condition, with ``k = len(targeted)``."""
    unknown = [c for c in conditions if c not in CONDITIONS[1:]]
    if unknown:
        raise ValueError(f"unknown condition(s) {unknown}; valid: {', '.join(CONDITIONS[1:])}")
    k, targeted = len(targeted), tuple(sorted(targeted))
    out = [("full", ())]
    for c in conditions:
        if c == "targeted":
            out.append((c, targeted))
        elif c == "lowest":
            out.append((c, lowest_layers(k)))
        else:
            out += [(c, s) for s in random_layer_sets(n_layers, k, draws, seed, exclude=targeted)]
    if "lowest" in conditions and lowest_layers(k) == targeted:
        logger.warning("the targeted blocks are the lowest %d: the lowest-k control cannot differ from them", k)
    return out


def baseline_config(hparams: Mapping[str, Any], *, source: str, seed: int, frozen_layers: Sequence[int],
                    fingerprint: str) -> FinetuneConfig:
    """The fine-tuning config of notebook 02's baseline with other frozen blocks.

    Args:
        hparams: ``finetune_config.json`` (:func:`xldrift.model.finetune.hyperparameters`).
        source, seed, frozen_layers, fingerprint: the run; with ``frozen_layers=()``
            the key equals notebook 02's, so its cached checkpoint is reused.
    """
    fields = {f.name for f in dataclasses.fields(FinetuneConfig)}
    per_run = {"source", "seed", "frozen_layers", "data_fingerprint"}
    unknown = set(hparams) - fields
    if unknown or set(hparams) & per_run:
        raise ValueError(f"hparams must hold only shared settings {sorted(fields - per_run)}; "
                         f"unexpected: {sorted(unknown | (set(hparams) & per_run))}")
    return FinetuneConfig(**hparams, source=source, seed=seed, frozen_layers=tuple(frozen_layers),
                          data_fingerprint=fingerprint).validate()


# ------------------------------------------------------------------ tables
def distance_to_source(distances: pd.DataFrame, source: str, kind: str, database: str) -> pd.Series:
    """Distance of every other language to ``source`` (index: language), from ``distances.csv``."""
    need = {"lang_a", "lang_b", "kind", "database", "value"}
    if not need <= set(distances.columns):
        raise ValueError(f"distances needs columns {sorted(need)}; got {list(distances.columns)}")
    d = distances[distances["kind"].eq(kind) & distances["database"].eq(database)]
    a, b = d[d["lang_a"].eq(source)], d[d["lang_b"].eq(source)]
    out = pd.concat([pd.Series(a["value"].to_numpy(float), a["lang_b"]),
                     pd.Series(b["value"].to_numpy(float), b["lang_a"])])
    out = out[out.index != source]
    out = out[~out.index.duplicated()].dropna()
    if out.empty:
        raise ValueError(f"no {kind}/{database} distances from {source!r}; kinds {sorted(distances['kind'].unique())}, "
                         f"databases {sorted(distances['database'].unique())}")
    return out.rename(f"distance:{kind}")


def intervention_table(runs: pd.DataFrame, predictions: Mapping[str, Mapping[str, pd.DataFrame]], *,
                       model: str, task: str) -> pd.DataFrame:
    """One row per (run, target) with :data:`COLUMNS` (``frozen_layers`` as ``"1,2"`` text)."""
    t = accuracy_table(runs, predictions, model=model, task=task)
    t["frozen_layers"] = normalise_column(t["frozen_layers"])
    return t[COLUMNS]
