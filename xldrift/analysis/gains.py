"""Gain statistics of the freezing intervention and the verdict on claim (d).

All conditions are evaluated on the same items and trained with the same
seeds, so the bootstrap is paired (Efron & Tibshirani 1993; paired over items
as in Koehn 2004): one replicate draws item indices and seed indices once and
applies them to every condition and target. Statistics over the close and
distant halves of the languages also resample languages within each half.
Gain against distance: Spearman (1904) with a permutation p
(:func:`xldrift.analysis.stats.correlate`). The verdict rule is
:func:`xldrift.analysis.claims.claim_d`'s; results on fewer than :data:`MIN_SEEDS`
seeds are flagged ``underpowered``.

:func:`xldrift.analysis.bootstrap.gain_ci_independent_seeds` is not used for the gains: it
resamples the seeds of the two systems independently, while here seed ``s`` of
every condition shares its head initialisation and data order with seed ``s``
of ``full`` and is resampled together with it.
"""

from __future__ import annotations

import logging
import numbers
import warnings
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd

from xldrift.analysis import claims, stats
from xldrift.analysis.bootstrap import paired_accuracy_replicates
from xldrift.model.frozen import normalise_column

logger = logging.getLogger(__name__)

CONTROLS = ("random", "lowest")
MIN_SEEDS = 3


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


@dataclass(frozen=True)
class Correctness:
    """0/1 correctness of every layer set, target, seed and item, aligned for paired resampling.

    Attributes:
        values: ``(n_sets, n_targets, n_seeds, n_items)``.
        sets: ``(condition, frozen_layers label)`` per set; exactly one ``full``.
        targets, seeds: labels of axes 1 and 2.
    """

    values: np.ndarray
    sets: tuple[tuple[str, str], ...]
    targets: tuple[str, ...]
    seeds: tuple[int, ...]

    def conditions(self) -> list[str]:
        """Conditions in first-seen order."""
        return list(dict.fromkeys(c for c, _ in self.sets))


def correctness(runs: pd.DataFrame, predictions: Mapping[str, Mapping[str, pd.DataFrame]]) -> Correctness:
    """Stack one source's predictions into a :class:`Correctness`.

    Args:
        runs: ``checkpoint, condition, seed, frozen_layers`` (one source), with a ``full`` condition.
        predictions: ``{checkpoint: {target: frame with id, correct}}``.

    Raises:
        ValueError: a set lacks a seed of another (seeds must be paired), a
        target is missing, or item ids differ between runs of a target.
    """
    runs = runs.assign(frozen_layers=normalise_column(runs["frozen_layers"]))
    if "full" not in set(runs["condition"]):
        raise ValueError(f"runs need a 'full' condition; got {sorted(set(runs['condition']))}")
    seeds = tuple(sorted(int(s) for s in runs["seed"].unique()))
    sets = tuple(dict.fromkeys(zip(runs["condition"], runs["frozen_layers"])))
    targets = tuple(predictions[runs["checkpoint"].iloc[0]])
    by_key = {(r.condition, r.frozen_layers, int(r.seed)): r.checkpoint for r in runs.itertuples()}
    missing = [(c, f, s) for c, f in sets for s in seeds if (c, f, s) not in by_key]
    if missing:
        raise ValueError(f"seeds must be paired across conditions; missing (condition, layers, seed): {missing}")
    ids = {t: predictions[by_key[(*sets[0], seeds[0])]][t]["id"].to_numpy() for t in targets}
    if len({len(v) for v in ids.values()}) != 1:
        raise ValueError(f"every target needs the same number of items; got { {t: len(v) for t, v in ids.items()} }")
    values = np.empty((len(sets), len(targets), len(seeds), len(next(iter(ids.values())))))
    for i, (c, f) in enumerate(sets):
        for k, s in enumerate(seeds):
            pred = predictions[by_key[(c, f, s)]]
            for j, t in enumerate(targets):
                if t not in pred or not np.array_equal(pred[t]["id"].to_numpy(), ids[t]):
                    raise ValueError(f"{c} [{f}] seed {s}: target {t!r} missing or on other items than the first run")
                values[i, j, k] = pred[t]["correct"].to_numpy(float)
    return Correctness(values, sets, targets, seeds)


def _interval(draws: np.ndarray, alpha: float) -> tuple[float, float]:
    lo, hi = np.quantile(draws, [alpha / 2, 1 - alpha / 2], axis=0)
    return float(lo), float(hi)


def _check_boot(n_boot: int, alpha: float) -> None:
    if not _is_int(n_boot) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")


def paired_gain(correct: Any, correct_full: Any, *, n_boot: int = 1000, seed: int = 0,
                alpha: float = 0.05) -> dict[str, float]:
    """Accuracy gain of a condition over ``full`` on one target, with a paired bootstrap CI.

    Each replicate draws item indices and seed indices once and uses them for
    both arrays (same items, same seeds: Efron & Tibshirani 1993; Koehn 2004).

    Args:
        correct, correct_full: 0/1 correctness ``(n_seeds, n_items)``, rows the same seeds.

    Returns:
        ``dict(gain, ci_low, ci_high, n_seeds, n_items)``.
    """
    _check_boot(n_boot, alpha)
    a, b = np.atleast_2d(np.asarray(correct, float)), np.atleast_2d(np.asarray(correct_full, float))
    if a.shape != b.shape or a.ndim != 2 or a.size == 0:
        raise ValueError(f"need two (n_seeds, n_items) arrays of the same shape; got {a.shape} and {b.shape}")
    if not (np.isin(a, (0, 1)).all() and np.isin(b, (0, 1)).all()):
        raise ValueError("correctness arrays must hold only 0/1 values")
    reps = paired_accuracy_replicates(np.stack([a, b])[:, None], n_boot, seed)[:, :, 0]
    lo, hi = _interval(reps[:, 0] - reps[:, 1], alpha)
    return dict(gain=float(a.mean() - b.mean()), ci_low=lo, ci_high=hi, n_seeds=a.shape[0], n_items=a.shape[1])


def _by_condition(corr: Correctness, acc: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy ``(..., n_targets)`` per condition, averaging a condition's layer sets (random draws)."""
    return {c: acc[..., [i for i, (ci, _) in enumerate(corr.sets) if ci == c], :].mean(-2) for c in corr.conditions()}


def gain_table(corr: Correctness, *, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> pd.DataFrame:
    """Gain of every condition over ``full`` per target (random draws averaged), with paired bootstrap CIs.

    Returns:
        ``condition, target, accuracy, accuracy_full, gain, ci_low, ci_high, n_sets, n_seeds, n_items``.
    """
    _check_boot(n_boot, alpha)
    point = _by_condition(corr, corr.values.mean((2, 3)))
    reps = _by_condition(corr, paired_accuracy_replicates(corr.values, n_boot, seed))
    rows = []
    for c in corr.conditions():
        for j, t in enumerate(corr.targets):
            lo, hi = _interval(reps[c][:, j] - reps["full"][:, j], alpha) if c != "full" else (0.0, 0.0)
            rows.append(dict(condition=c, target=t, accuracy=point[c][j], accuracy_full=point["full"][j],
                             gain=point[c][j] - point["full"][j], ci_low=lo, ci_high=hi,
                             n_sets=sum(ci == c for ci, _ in corr.sets), n_seeds=len(corr.seeds),
                             n_items=corr.values.shape[-1]))
    return pd.DataFrame(rows)


def split_by_distance(distance: pd.Series, source: str | None = None) -> tuple[list[str], list[str]]:
    """Close and distant halves of the targets, split at the median distance (source excluded).

    Distant = distance >= median; if that leaves no close language (ties at the
    top), distant = distance > median instead.

    Raises:
        ValueError: fewer than two languages, or all at the same distance.
    """
    d = pd.Series(distance, dtype=float).drop(labels=[source] if source in distance.index else []).dropna()
    if len(d) < 2:
        raise ValueError(f"need at least two target languages besides the source to split; got {list(d.index)}")
    m = d.median()
    distant = d >= m
    if distant.all():
        distant = d > m
    if not distant.any():
        raise ValueError(f"all {len(d)} targets are at the same distance ({m}); close and distant halves are undefined")
    return sorted(d.index[~distant], key=d.get), sorted(d.index[distant], key=d.get)


def gap_table(corr: Correctness, distance: pd.Series, *, source: str | None = None, n_boot: int = 1000,
              seed: int = 0, alpha: float = 0.05, resample_languages: bool = True) -> pd.DataFrame:
    """Mean gain on the distant half minus the close half, for each condition and for targeted vs each control.

    For ``"<a> - <b>"`` the gain is accuracy(a) - accuracy(b) per target;
    ``gap_change`` = mean gain over the distant half - mean gain over the
    close half (> 0: the transfer gap to distant languages narrowed). The CI
    resamples items and seeds (paired, shared by all conditions) and, with
    ``resample_languages``, the languages within each half (Efron & Tibshirani 1993).
    A condition with several layer sets (random draws) is their mean; the
    draws themselves are not resampled, so its interval is conditional on them.

    Args:
        corr: see :func:`correctness`.
        distance: distance of each target to the source (index: language).
        source: excluded from the halves.

    Returns:
        ``comparison, condition, baseline, close, distant, gap_change, ci_low,
        ci_high, n_close, n_distant, close_languages, distant_languages``.
    """
    _check_boot(n_boot, alpha)
    known = distance.reindex(list(corr.targets)).dropna()
    if len(known) < len(corr.targets) - (source in corr.targets):
        logger.warning("no distance for %s; left out of the halves", sorted(set(corr.targets) - set(known.index)))
    close, distant = split_by_distance(known, source)
    ci, di = ([corr.targets.index(t) for t in half] for half in (close, distant))
    point = _by_condition(corr, corr.values.mean((2, 3)))
    reps = _by_condition(corr, paired_accuracy_replicates(corr.values, n_boot, seed))
    rng = np.random.default_rng(seed + 1)
    picks = [rng.choice(h, (n_boot, len(h))) if resample_languages else np.tile(h, (n_boot, 1)) for h in (ci, di)]
    conds = corr.conditions()
    pairs = [(c, "full") for c in conds if c != "full"]
    pairs += [("targeted", c) for c in CONTROLS if c in conds and "targeted" in conds]
    rows = []
    for a, b in pairs:
        g, g_reps = point[a] - point[b], reps[a] - reps[b]
        boot = np.take_along_axis(g_reps, picks[1], 1).mean(1) - np.take_along_axis(g_reps, picks[0], 1).mean(1)
        lo, hi = _interval(boot, alpha)
        rows.append(dict(comparison=f"{a} - {b}", condition=a, baseline=b, close=g[ci].mean(), distant=g[di].mean(),
                         gap_change=g[di].mean() - g[ci].mean(), ci_low=lo, ci_high=hi, n_close=len(ci),
                         n_distant=len(di), close_languages=",".join(close), distant_languages=",".join(distant)))
    return pd.DataFrame(rows)


def gain_distance(gains: pd.DataFrame, distance: pd.Series, *, source: str | None = None, n_perm: int = 1000,
                  n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Spearman correlation of each condition's gain with distance to the source, permutation p.

    Args:
        gains: :func:`gain_table` output.
        distance: distance per target (index: language).

    Returns:
        ``condition, rho, p_perm, ci_low, ci_high, n, note``, from
        :func:`xldrift.analysis.stats.correlate`; where rho is undefined (fewer than 4
        targets, or a constant gain) the values are NaN and ``note`` says why.
    """
    rows = []
    for c, g in gains[gains["condition"] != "full"].groupby("condition", sort=False):
        g = g.set_index("target")["gain"]
        common = [t for t in g.index if t != source and t in distance.index and np.isfinite(distance[t])]
        with warnings.catch_warnings(record=True) as caught:  # an undefined cell becomes a note in the table
            warnings.simplefilter("always", RuntimeWarning)
            res = stats.correlate(distance[common].to_numpy(float), g[common].to_numpy(float), method="spearman",
                                  n_perm=n_perm, n_boot=n_boot, seed=seed)
        note = "; ".join(str(w.message).split(";")[0] for w in caught if issubclass(w.category, RuntimeWarning))
        rows.append(dict(condition=c, rho=res["r"], p_perm=res["p_perm"], ci_low=res["ci_low"],
                         ci_high=res["ci_high"], n=res["n"], note=note))
    return pd.DataFrame(rows, columns=["condition", "rho", "p_perm", "ci_low", "ci_high", "n", "note"])


def verdict_d(gaps: pd.DataFrame, *, n_seeds: int, n_targets: int, source: str = "",
              correlation: pd.DataFrame | None = None, min_seeds: int = MIN_SEEDS,
              baseline_learned: bool = True) -> pd.DataFrame:
    """Claim (d), "targeted freezing narrows the transfer gap to distant languages", as a claims-table row.

    Evidence: ``gap_change`` of ``targeted - full`` (must exceed 0), and the
    least favourable ``targeted - <control>`` gap change (targeted must beat
    every control, or the layer choice adds nothing over freezing any k
    blocks). The verdict rule is :func:`xldrift.analysis.claims.claim_d`'s.

    Args:
        gaps: :func:`gap_table` output.
        n_seeds, n_targets: what the statistics rest on.
        source: the source language (for the evidence text).
        correlation: optional :func:`gain_distance` output, quoted as robustness.
        min_seeds: fewer seeds set ``underpowered``.
        baseline_learned: False when ``full`` is not above chance on the
            source; the verdict is then ``not evaluated`` (nothing to narrow).

    Returns:
        One row: ``claim, statement, verdict, evidence, robustness, underpowered``.
    """
    if not _is_int(n_seeds) or n_seeds < 1:
        raise ValueError(f"n_seeds must be a positive integer, got {n_seeds!r}")
    underpowered = n_seeds < min_seeds
    by = gaps.set_index("comparison") if len(gaps) else pd.DataFrame()
    controls = [f"targeted - {c}" for c in CONTROLS if f"targeted - {c}" in by.index]

    def part(row: pd.Series) -> dict[str, float]:
        return {"estimate": float(row["gap_change"]), "ci_low": float(row["ci_low"]), "ci_high": float(row["ci_high"])}

    n = f"source {source}, " if source else ""
    n += f"{n_targets} targets ({int(by['n_close'].iloc[0])} close, {int(by['n_distant'].iloc[0])} distant), " \
        if len(by) else f"{n_targets} targets, "
    n += f"{n_seeds} seed{'s' if n_seeds != 1 else ''}"
    if "targeted - full" not in by.index or not controls or not baseline_learned:
        why = ("the full baseline is not above chance on the source" if not baseline_learned else
               "no targeted - full comparison" if "targeted - full" not in by.index else
               "no targeted - control comparison")
        row = pd.DataFrame([dict(claim="d", statement=claims.STATEMENTS["d"], verdict=claims.NOT_EVALUATED,
                                 evidence=f"{why}; {n}", robustness="n/a")], columns=claims.COLUMNS)
        return row.assign(underpowered=underpowered)
    worst = min(controls, key=lambda c: by.loc[c, "gap_change"])
    robust = [f"{c}: {by.loc[c, 'gap_change']:+.3g} [{by.loc[c, 'ci_low']:+.3g}, {by.loc[c, 'ci_high']:+.3g}]"
              for c in controls]
    t = by.loc["targeted - full"]
    robust.append(f"targeted gain: close {t['close']:+.3g}, distant {t['distant']:+.3g}")
    if correlation is not None and "targeted" in set(correlation["condition"]):
        rc = correlation.set_index("condition").loc["targeted"]
        robust.append(f"Spearman(gain, distance) {rc['rho']:+.2f}, p_perm {rc['p_perm']:.3g}, n {int(rc['n'])}"
                      if np.isfinite(rc["rho"]) else f"Spearman(gain, distance) undefined, n {int(rc['n'])}")
    summary = {"gap_change": part(t), "targeted_vs_control": part(by.loc[worst]),
               "n": n + (f" (UNDERPOWERED: fewer than {min_seeds} seeds)" if underpowered else ""),
               "robustness": "; ".join(robust)}
    row = claims.claim_d(summary)
    row["evidence"] = row["evidence"].str.replace("targeted - control", f"least favourable control ({worst})",
                                                  regex=False)
    return row.assign(underpowered=underpowered)
