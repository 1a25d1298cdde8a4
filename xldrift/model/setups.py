"""A measured comparison of fine-tuning setups around the study's own (notebook 02).

The study departs from the paper's recipe (Philippy et al. 2023: a [CLS] head,
every weight trained, lr 2e-5) because the embedded encoder is a small 4-bit
e5 fine-tuned on a few thousand English pairs rather than mBERT on MultiNLI.
This module makes that choice checkable: starting from the profile's setup
("chosen"), it changes one factor at a time (the classifier head, whether the
word-embedding matrix is frozen, the learning rate) and adds the paper's
combination, fine-tunes each with the same items and seeds, and tabulates the
source-language and mean zero-shot accuracy.

Every run goes through :func:`xldrift.model.finetune.finetune` and
:func:`xldrift.model.evaluate.evaluate_languages`, so it is cached like any other.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from xldrift.study.config import StudyConfig

PAPER_LR = 2e-5  # Philippy et al. (2023), following Devlin et al. (2019)
FACTORS = ("head_pooling", "freeze_word_embeddings", "learning_rate")


@dataclass(frozen=True)
class Setup:
    """One fine-tuning setup: a name, what differs from the chosen one, the overrides."""

    name: str
    changed: str
    overrides: Mapping[str, Any] = field(default_factory=dict)


def variants(params: Any) -> list[Setup]:
    """The chosen setup, one-factor-at-a-time variants of it, and the paper's recipe.

    Args:
        params: resolved notebook parameters with ``head_pooling``,
            ``freeze_word_embeddings`` and ``learning_rate``.

    Returns:
        Setups whose effective settings are all distinct, the chosen one first.
    """
    chosen = {f: getattr(params, f) for f in FACTORS}
    other_head = "cls" if chosen["head_pooling"] == "mean" else "mean"
    other_lr = PAPER_LR if chosen["learning_rate"] != PAPER_LR else 1e-4
    candidates = [
        Setup("chosen", "-", {}),
        Setup(f"{other_head} head", "head", {"head_pooling": other_head}),
        Setup("frozen embeddings" if not chosen["freeze_word_embeddings"] else "all weights trained",
              "word embeddings", {"freeze_word_embeddings": not chosen["freeze_word_embeddings"]}),
        Setup(f"lr {other_lr:g}", "learning rate", {"learning_rate": other_lr}),
        Setup("paper recipe", "head, word embeddings, learning rate",
              {"head_pooling": "cls", "freeze_word_embeddings": False, "learning_rate": PAPER_LR}),
    ]
    seen, out = set(), []
    for s in candidates:
        key = tuple(sorted({**chosen, **s.overrides}.items()))
        if key not in seen:
            seen.add(key)
            out.append(s)
    return out


def _settings(params: StudyConfig, setup: Setup) -> StudyConfig:
    return dataclasses.replace(params, **setup.overrides)


def run(params: StudyConfig, source: str, train: pd.DataFrame, val: pd.DataFrame,
        eval_items: Mapping[str, pd.DataFrame], *, seeds: list[int], force: bool = False,
        progress: bool = False) -> pd.DataFrame:
    """Fine-tune and evaluate every setup of :func:`variants` for each seed.

    Args:
        params: the study's config (see :meth:`xldrift.model.finetune.FinetuneConfig.from_study`).
        source: the source language; ``train`` / ``val`` are its items.
        eval_items: ``{target: items}``, the source included.
        seeds: one run per seed and setup.

    Returns:
        One row per (setup, seed): ``setup, changed, head_pooling,
        freeze_word_embeddings, learning_rate, seed, checkpoint,
        trainable_parameters, steps, seconds_per_step, val_accuracy,
        source_accuracy, n_source, target_mean_accuracy, n_targets`` where the
        target mean is over the non-source languages (each on its own items).
    """
    from xldrift.model import evaluate, finetune

    if source not in eval_items:
        raise ValueError(f"eval_items must include the source language {source!r}; got {sorted(eval_items)}")
    fingerprint = finetune.data_fingerprint(train, val)
    rows = []
    for setup in variants(params):
        settings = _settings(params, setup)
        for seed in seeds:
            fcfg = finetune.FinetuneConfig.from_study(settings, source=source, seed=seed, fingerprint=fingerprint)
            ckpt = finetune.finetune(fcfg, train, val, force=force, progress=progress)
            record = finetune.run_record(ckpt, condition=setup.name)
            preds = evaluate.evaluate_languages(ckpt, eval_items, batch_size=settings.eval_batch_size,
                                                max_length=settings.max_length, force=force, progress=progress)
            acc = {t: float(df["correct"].mean()) for t, df in preds.items()}
            others = [a for t, a in acc.items() if t != source]
            rows.append({"setup": setup.name, "changed": setup.changed,
                         **{f: getattr(settings, f) for f in FACTORS}, "seed": seed,
                         "checkpoint": record["checkpoint"], "trainable_parameters": record["trainable_parameters"],
                         "steps": record["steps"], "seconds_per_step": record["seconds_per_step"],
                         "val_accuracy": record["final_val_accuracy"], "source_accuracy": acc[source],
                         "n_source": len(preds[source]),
                         "target_mean_accuracy": float(np.mean(others)) if others else np.nan,
                         "n_targets": len(others)})
    return pd.DataFrame(rows)


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per setup: mean accuracies over seeds, their range, and the paired difference from "chosen".

    Differences are taken seed by seed (same items, same seed) and averaged;
    ``n_seeds`` says how many pairs stand behind each.
    """
    chosen = table[table["setup"] == "chosen"].set_index("seed")
    rows = []
    for name, grp in table.groupby("setup", sort=False):
        g = grp.set_index("seed")
        paired = g.index.intersection(chosen.index)
        row = {"setup": name, "changed": grp["changed"].iloc[0],
               **{f: grp[f].iloc[0] for f in FACTORS},
               "trainable_parameters": int(grp["trainable_parameters"].iloc[0]),
               "seconds_per_step": float(grp["seconds_per_step"].mean()), "n_seeds": len(grp)}
        for col in ("val_accuracy", "source_accuracy", "target_mean_accuracy"):
            row[col] = float(grp[col].mean())
            row[f"{col}_min"], row[f"{col}_max"] = float(grp[col].min()), float(grp[col].max())
            row[f"{col}_vs_chosen"] = (float((g.loc[paired, col] - chosen.loc[paired, col]).mean())
                                       if len(paired) else np.nan)
        rows.append(row)
    return pd.DataFrame(rows)


def reading(summ: pd.DataFrame, chance: float) -> str:
    """A short, number-backed sentence per setup, for the notebook's markdown-like output."""
    chosen = summ[summ["setup"] == "chosen"].iloc[0]
    lines = [f"Chosen setup ({chosen['head_pooling']} head, word embeddings "
             f"{'frozen' if chosen['freeze_word_embeddings'] else 'trained'}, lr {chosen['learning_rate']:g}): "
             f"source accuracy {chosen['source_accuracy']:.3f}, mean target accuracy "
             f"{chosen['target_mean_accuracy']:.3f} over {int(chosen['n_seeds'])} seed(s); chance {chance:.3f}."]
    for r in summ[summ["setup"] != "chosen"].itertuples():
        lines.append(f"- {r.setup} (changes {r.changed}): source {r.source_accuracy:.3f} "
                     f"({r.source_accuracy_vs_chosen:+.3f} vs chosen), targets {r.target_mean_accuracy:.3f} "
                     f"({r.target_mean_accuracy_vs_chosen:+.3f}), {r.seconds_per_step:.2f} s/step, "
                     f"n = {int(r.n_seeds)} seed(s).")
    return "\n".join(lines)


def plot(table: pd.DataFrame, chance: float, title: str = "Fine-tuning setups compared"):
    """Source and mean-target accuracy per setup: one dot per seed, a bar at the mean."""
    import matplotlib.pyplot as plt

    order = list(dict.fromkeys(table["setup"]))
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.55 * len(order) + 1.6), sharey=True)
    for ax, col, label in ((axes[0], "source_accuracy", "source-language accuracy"),
                           (axes[1], "target_mean_accuracy", "mean zero-shot accuracy (other languages)")):
        means = table.groupby("setup")[col].mean().reindex(order)
        ax.barh(range(len(order)), means.to_numpy(), color=["tab:blue" if s == "chosen" else "0.75" for s in order])
        for i, s in enumerate(order):
            vals = table.loc[table["setup"] == s, col].to_numpy()
            ax.plot(vals, np.full(len(vals), i), "k.", ms=6)
        ax.axvline(chance, ls="--", c="grey", lw=1)
        ax.set(xlabel=label, xlim=(min(chance, np.nanmin(table[col])) - 0.05, 1))
    axes[0].set_yticks(range(len(order)), order)
    axes[0].invert_yaxis()
    fig.suptitle(f"{title} (bars: mean over seeds; dots: seeds; dashed: chance)", fontsize=10)
    fig.tight_layout()
    return fig


__all__ = ["FACTORS", "PAPER_LR", "Setup", "variants", "run", "summary", "reading", "plot"]
