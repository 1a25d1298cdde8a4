"""The setup comparison of notebook 02: which variants, and their summary."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from xldrift.model import setups


def _params(**kw):
    base = dict(head_pooling="mean", freeze_word_embeddings=True, learning_rate=1e-4)
    return SimpleNamespace(**{**base, **kw})


def test_variants_change_one_factor_each_plus_the_paper_recipe():
    names = [s.name for s in setups.variants(_params())]
    assert names == ["chosen", "cls head", "all weights trained", "lr 2e-05", "paper recipe"]
    by_name = {s.name: s for s in setups.variants(_params())}
    assert by_name["paper recipe"].overrides == {"head_pooling": "cls", "freeze_word_embeddings": False,
                                                 "learning_rate": setups.PAPER_LR}
    assert all(len(s.overrides) == 1 for s in setups.variants(_params()) if s.name not in ("chosen", "paper recipe"))


def test_variants_are_deduplicated_when_the_chosen_setup_is_the_papers():
    names = [s.name for s in setups.variants(_params(head_pooling="cls", freeze_word_embeddings=False,
                                                     learning_rate=2e-5))]
    assert "paper recipe" not in names and len(names) == 4
    assert "lr 0.0001" in names


def test_summary_pairs_differences_by_seed():
    rows = []
    for seed, (chosen, other) in enumerate([(0.60, 0.50), (0.70, 0.58)]):
        for name, acc in (("chosen", chosen), ("cls head", other)):
            rows.append({"setup": name, "changed": "-" if name == "chosen" else "head", "head_pooling": "mean",
                         "freeze_word_embeddings": True, "learning_rate": 1e-4, "seed": seed,
                         "trainable_parameters": 10, "seconds_per_step": 1.0, "val_accuracy": acc,
                         "source_accuracy": acc, "target_mean_accuracy": acc - 0.1})
    summ = setups.summary(pd.DataFrame(rows)).set_index("setup")
    assert summ.loc["cls head", "source_accuracy_vs_chosen"] == pytest.approx(-0.11)
    assert summ.loc["cls head", "n_seeds"] == 2
    assert summ.loc["chosen", "source_accuracy_min"] == pytest.approx(0.60)
    text = setups.reading(summ.reset_index(), chance=1 / 3)
    assert "-0.110 vs chosen" in text and "n = 2 seed(s)" in text
