"""Zero-shot transfer accuracy: tidy tables, intervals and published context."""

from __future__ import annotations

from typing import Mapping, NamedTuple

import numpy as np
import pandas as pd
from scipy import stats as st

from xldrift.analysis.bootstrap import seed_item_mean_ci
from xldrift.model.frozen import FrozenLayers

ACCURACY_COLUMNS = ["model", "task", "source", "target", "seed", "condition", "accuracy", "n"]


def correct_matrix(frames: list[pd.DataFrame]) -> np.ndarray:
    """Stack per-seed prediction frames (same items, same order) into (n_seeds, n_items) 0/1."""
    ids = frames[0]["id"].to_numpy()
    for f in frames[1:]:
        if not np.array_equal(f["id"].to_numpy(), ids):
            raise ValueError("prediction frames of different seeds cover different items")
    return np.stack([f["correct"].to_numpy(dtype=float) for f in frames])


def accuracy_table(runs: pd.DataFrame, predictions: Mapping[str, Mapping[str, pd.DataFrame]], *,
                   model: str, task: str) -> pd.DataFrame:
    """One row per (run, target): ``model, task, source, target, seed, condition, accuracy, n`` (+ frozen_layers).

    Args:
        runs: checkpoints table with ``checkpoint, source, seed, condition`` (and ``frozen_layers``).
        predictions: ``{checkpoint: {target: frame with id, label, pred, correct}}``.
    """
    rows = []
    for r in runs.itertuples():
        for target, df in predictions[r.checkpoint].items():
            rows.append({"model": model, "task": task, "source": r.source, "target": target, "seed": r.seed,
                         "condition": r.condition, "accuracy": float(df["correct"].mean()), "n": len(df),
                         "frozen_layers": FrozenLayers.parse(getattr(r, "frozen_layers", "")).text()})
    return pd.DataFrame(rows, columns=ACCURACY_COLUMNS + ["frozen_layers"])


def accuracy_summary(runs: pd.DataFrame, predictions: Mapping[str, Mapping[str, pd.DataFrame]], *,
                     n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per (source, condition, target): accuracy pooled over seeds with a bootstrap CI, and the seed spread."""
    rows = []
    for (source, condition), grp in runs.groupby(["source", "condition"], sort=False):
        targets = predictions[grp["checkpoint"].iloc[0]].keys()
        for t in targets:
            c = correct_matrix([predictions[ck][t] for ck in grp["checkpoint"]])
            lo, hi = seed_item_mean_ci(c, n_boot=n_boot, seed=seed)
            per_seed = c.mean(axis=1)
            rows.append({"source": source, "condition": condition, "target": t, "accuracy": float(c.mean()),
                         "ci_low": lo, "ci_high": hi, "seed_sd": float(per_seed.std(ddof=1)) if len(per_seed) > 1
                         else np.nan, "n_items": c.shape[1], "n_seeds": c.shape[0]})
    return pd.DataFrame(rows)


class Comparison(NamedTuple):
    table: pd.DataFrame
    text: str


def compare_published(ours: pd.Series, published: pd.DataFrame, model: str = "mBERT") -> Comparison:
    """Our accuracy per target next to a published model's, with their rank agreement.

    Args:
        ours: accuracy indexed by target code (fractions).
        published: ``model, language, accuracy`` (percent).
    """
    pub = published[published["model"] == model].set_index("language")["accuracy"] / 100
    common = [t for t in ours.index if t in pub.index]
    table = pd.DataFrame({"target": common, "ours": ours[common].to_numpy(), model: pub[common].to_numpy()})
    table["rank ours"] = table["ours"].rank(ascending=False).astype(int)
    table[f"rank {model}"] = table[model].rank(ascending=False).astype(int)
    table = table.sort_values(f"rank {model}")
    if len(common) < 4:
        return Comparison(table, f"only {len(common)} languages in common with {model}: no rank correlation")
    if table["ours"].nunique() == 1:
        return Comparison(table, "every language has the same accuracy here (the model has not learned the task): "
                                 "no rank correlation")
    rho, p = st.spearmanr(table["ours"], table[model])
    text = (f"Spearman rho between our per-language accuracy and {model}'s = {rho:.2f} (p = {p:.3g}, "
            f"n = {len(common)} languages, source included).")
    return Comparison(table, text)
