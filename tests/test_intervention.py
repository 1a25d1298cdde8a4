"""Tests for xldrift.analysis.intervention (layer choice, control sets, tables) and xldrift.analysis.gains (statistics, verdict)."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
import transformers
from transformers import BertConfig, BertModel

from xldrift.analysis import claims
from xldrift.model import finetune as ft
from xldrift.analysis import intervention as iv
from xldrift.model.classifier import EncoderClassifier, freeze
from xldrift.study.config import StudyConfig

# ------------------------------------------------------------------ selection
# Genetic/lang2vec/cls/linear_cka/pearson r per layer 0..6. Layer 0 (embeddings) is the most negative
# but must never be chosen; layers 3 and 6 tie at -0.7, layers 2 and 4 at -0.5.
R = {0: -0.99, 1: 0.2, 2: -0.5, 3: -0.7, 4: -0.5, 5: 0.1, 6: -0.7}


def corr_table() -> pd.DataFrame:
    rows = []
    for layer, r in R.items():
        base = dict(x="distance:genetic", y="impact", layer=layer, pooling="cls", metric="linear_cka",
                    database="lang2vec", method="pearson", r=r, p=0.1, p_perm=0.1, ci_low=r - 0.2,
                    ci_high=r + 0.2, p_adj=0.2, n=14)
        rows.append(base)
        # distractors: other cells of the table, with extreme values that must not leak into the choice
        rows.append({**base, "database": "urielplus", "r": -1.0 if layer == 1 else 0.9})
        rows.append({**base, "method": "spearman", "r": -1.0 if layer == 5 else 0.9})
        rows.append({**base, "pooling": "mean", "r": -1.0 if layer == 4 else 0.9})
        rows.append({**base, "x": "distance:syntactic", "r": -1.0 if layer == 1 else 0.9})
        rows.append({**base, "x": "impact", "y": "accuracy", "database": np.nan, "r": -1.0})
    rows.append(dict(x="distance:genetic", y="accuracy", layer=np.nan, pooling=np.nan, metric=np.nan,
                     database="lang2vec", method="pearson", r=-0.9, p=0.1, p_perm=0.1, ci_low=-1, ci_high=0,
                     p_adj=0.1, n=14))
    return pd.DataFrame(rows)


def test_select_layers_rule_ties_and_layer_zero():
    kw = dict(distance_kind="genetic", database="lang2vec", n_layers=6)
    res = iv.select_layers(corr_table(), k=3, **kw)
    assert res.layers == (2, 3, 6)  # -0.7, -0.7, then the -0.5 tie goes to the lower block (2 before 4)
    assert list(res.table["layer"]) == [1, 2, 3, 4, 5, 6]
    assert set(res.table.loc[res.table["selected"], "layer"]) == {2, 3, 6}
    assert res.table.set_index("layer").loc[3, "rank"] == 1 and res.table.set_index("layer").loc[4, "rank"] == 4
    assert "genetic" in res.rule and "negatively" in res.rule and "lang2vec" in res.rule
    assert iv.select_layers(corr_table(), k=2, **kw).layers == (3, 6)
    assert iv.select_layers(corr_table(), k=2, direction="positive", **kw).layers == (1, 5)
    assert iv.select_layers(corr_table(), k=1, direction="absolute", **kw).layers == (3,)
    # the other cells are read when asked for
    assert iv.select_layers(corr_table(), k=1, distance_kind="genetic", database="urielplus", n_layers=6).layers == (1,)
    assert iv.select_layers(corr_table(), k=1, method="spearman", **kw).layers == (5,)
    assert iv.select_layers(corr_table(), k=1, pooling="mean", **kw).layers == (4,)


def test_select_layers_notes_wrong_sign():
    res = iv.select_layers(corr_table(), k=6, distance_kind="genetic", database="lang2vec", n_layers=6)
    assert res.layers == (1, 2, 3, 4, 5, 6) and "2 of the chosen blocks" in res.rule


def test_select_layers_too_few_layers_says_what_is_there():
    t = corr_table()
    t.loc[(t["layer"] == 2) & (t["database"] == "lang2vec"), "r"] = np.nan
    with pytest.raises(ValueError, match=r"only 5 encoder block\(s\) \[1, 3, 4, 5, 6\]"):
        iv.select_layers(t, k=6, distance_kind="genetic", database="lang2vec", n_layers=6)
    with pytest.raises(ValueError, match="database in .*lang2vec.*urielplus"):
        iv.select_layers(t, k=1, distance_kind="genetic", database="wals", n_layers=6)
    with pytest.raises(ValueError, match="k must be"):
        iv.select_layers(t, k=0, distance_kind="genetic", database="lang2vec", n_layers=6)
    with pytest.raises(ValueError, match="direction"):
        iv.select_layers(t, k=1, distance_kind="genetic", database="lang2vec", n_layers=6, direction="down")
    with pytest.raises(ValueError, match="columns"):
        iv.select_layers(t.drop(columns="r"), k=1, distance_kind="genetic", database="lang2vec", n_layers=6)


# ------------------------------------------------------------------ control sets
def test_random_layer_sets_distinct_excluding_targeted():
    targeted = (2, 3, 6)
    sets = iv.random_layer_sets(6, 3, 10, seed=1, exclude=targeted)
    assert len(sets) == len(set(sets)) == 10
    assert targeted not in sets
    assert all(len(s) == 3 and list(s) == sorted(set(s)) and set(s) <= set(range(1, 7)) for s in sets)
    assert iv.random_layer_sets(6, 3, 3, seed=1, exclude=targeted) == sets[:3]  # more draws keep the first ones
    every = iv.random_layer_sets(6, 3, math.comb(6, 3) - 1, seed=0, exclude=targeted)
    assert set(every) == set(itertools.combinations(range(1, 7), 3)) - {targeted}
    with pytest.raises(ValueError, match="only 19 distinct sets"):
        iv.random_layer_sets(6, 3, 20, seed=0, exclude=targeted)
    several = iv.random_layer_sets(4, 2, 4, seed=0, exclude=[(1, 2), (3, 4)])
    assert set(several) == {(1, 3), (1, 4), (2, 3), (2, 4)}


def test_random_layer_sets_sampled_when_too_many_to_list():
    sets = iv.random_layer_sets(48, 12, 20, seed=0, exclude=tuple(range(1, 13)))
    assert len(set(sets)) == 20 and all(len(s) == 12 and s == tuple(sorted(s)) for s in sets)
    assert all(1 <= x <= 48 for s in sets for x in s)


def test_lowest_and_condition_sets():
    assert iv.lowest_layers(3) == (1, 2, 3)
    with pytest.raises(ValueError):
        iv.lowest_layers(0)
    sets = iv.condition_sets((6, 2, 3), n_layers=6, conditions=["targeted", "random", "lowest"], draws=2)
    assert sets[0] == ("full", ()) and sets[1] == ("targeted", (2, 3, 6)) and sets[-1] == ("lowest", (1, 2, 3))
    assert [c for c, _ in sets].count("random") == 2
    with pytest.raises(ValueError, match="unknown condition"):
        iv.condition_sets((1,), n_layers=6, conditions=["frozen"], draws=1)


def test_targeted_blocks_really_freeze():
    """The blocks a condition names stay fixed through an optimiser step; the others move."""
    torch.manual_seed(0)
    enc = BertModel(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                               intermediate_size=64), add_pooling_layer=False)
    model = EncoderClassifier(enc, num_labels=3)
    frozen = iv.select_layers(corr_table(), k=2, distance_kind="genetic", database="lang2vec", n_layers=4).layers
    assert frozen == (2, 3)
    freeze(model, frozen)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ids = torch.randint(5, 100, (8, 10))
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=torch.arange(8) % 3)
    out.loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.5).step()
    moved = {}
    for n, p in model.named_parameters():
        block = int(n.split("encoder.layer.")[1].split(".")[0]) + 1 if "encoder.layer." in n else 0
        if block in frozen:
            assert p.grad is None and torch.equal(p, before[n]), n
        else:
            assert p.grad is not None, n
        moved[block] = moved.get(block, False) or not torch.equal(p, before[n])
    assert moved == {0: True, 1: True, 2: False, 3: False, 4: True}  # 0: embeddings and head


# ------------------------------------------------------------------ baseline config and tables
def test_baseline_config_reproduces_notebook_02_key(tmp_path):
    params = StudyConfig(model="some-model", task="xnli", epochs=2, learning_rate=1e-4, batch_size=32,
                         max_length=128, warmup_ratio=0.1, weight_decay=0.01, head_pooling="mean",
                         freeze_word_embeddings=True)
    (tmp_path / "hp.json").write_text(json.dumps(ft.hyperparameters(params)))
    hp = json.loads((tmp_path / "hp.json").read_text())  # the round trip notebook 06 makes
    full = ft.FinetuneConfig.from_study(params, source="en", seed=1, frozen_layers=(), fingerprint="fp")
    assert iv.baseline_config(hp, source="en", seed=1, frozen_layers=(), fingerprint="fp").key() == full.key()
    frozen = iv.baseline_config(hp, source="en", seed=1, frozen_layers=(3, 1), fingerprint="fp")
    assert frozen.frozen_layers == (1, 3) and frozen.key() != full.key()
    with pytest.raises(ValueError, match="seed"):
        iv.baseline_config({**hp, "seed": 0}, source="en", seed=1, frozen_layers=(), fingerprint="fp")


def test_distance_to_source_reads_both_orders():
    d = pd.DataFrame([("en", "de", "genetic", "lang2vec", 0.3), ("sw", "en", "genetic", "lang2vec", 1.0),
                      ("en", "sw", "syntactic", "lang2vec", 0.6), ("de", "sw", "genetic", "lang2vec", 1.0)],
                     columns=["lang_a", "lang_b", "kind", "database", "value"])
    got = iv.distance_to_source(d, "en", "genetic", "lang2vec")
    assert got.to_dict() == {"de": 0.3, "sw": 1.0}
    with pytest.raises(ValueError, match="kinds"):
        iv.distance_to_source(d, "en", "geographic", "lang2vec")


# ------------------------------------------------------------------ gain statistics
def test_paired_gain_identical_is_exactly_zero():
    rng = np.random.default_rng(0)
    full = rng.integers(0, 2, (3, 200))
    g = iv.paired_gain(full.copy(), full, n_boot=300)
    assert g["gain"] == 0 and g["ci_low"] <= 0 <= g["ci_high"]
    assert g["ci_low"] == g["ci_high"] == 0  # paired: every replicate compares the same items and seeds


def test_paired_gain_pairs_items_and_seeds():
    rng = np.random.default_rng(1)
    n = 200
    # seeds differ wildly (0.8 vs 0.3 accuracy); the condition fixes 20 of the wrong items in every seed
    full = np.stack([rng.random(n) < 0.8, rng.random(n) < 0.3]).astype(float)
    cond = full.copy()
    for s in range(2):
        cond[s, np.flatnonzero(full[s] == 0)[:20]] = 1
    g = iv.paired_gain(cond, full, n_boot=500, seed=0)
    assert g["gain"] == pytest.approx(0.1)
    # paired over items and seeds the gain is 20/200 per seed up to item resampling (SE ~ 0.02);
    # an unpaired resampling of seeds would span roughly +-0.3 and include 0
    assert 0.03 < g["ci_low"] < 0.1 < g["ci_high"] < 0.17
    with pytest.raises(ValueError, match="same shape"):
        iv.paired_gain(cond[:1], full)
    with pytest.raises(ValueError, match="0/1"):
        iv.paired_gain(cond * 2, full)


TARGETS = ["en", "de", "ru", "ar", "sw"]
DIST = pd.Series({"de": 0.1, "ru": 0.2, "ar": 0.8, "sw": 0.9})
N_ITEMS = 100


def synthetic(n_seeds: int = 1):
    """Predictions whose gains are known by construction (per target, as a fraction of the items).

    full: target j correct on the first 60 - 5j items. targeted: +20 items on ar and sw only.
    random (2 draws): identical to full. lowest: +10 items everywhere.
    """
    extra = {"full": {}, "targeted": {"ar": 20, "sw": 20}, "random": {}, "lowest": {t: 10 for t in TARGETS}}
    layers = {"full": [""], "targeted": ["2,3"], "random": ["1,4", "4,5"], "lowest": ["1,2"]}
    runs, preds = [], {}
    for c, sets in layers.items():
        for f in sets:
            for s in range(n_seeds):
                name = f"{c}-{f}-{s}"
                runs.append(dict(checkpoint=name, condition=c, seed=s, frozen_layers=f, source="en"))
                preds[name] = {}
                for j, t in enumerate(TARGETS):
                    k = 60 - 5 * j + extra[c].get(t, 0)
                    preds[name][t] = pd.DataFrame({"id": np.arange(N_ITEMS), "correct": np.arange(N_ITEMS) < k})
    return pd.DataFrame(runs), preds


def test_correctness_requires_paired_seeds():
    runs, preds = synthetic(n_seeds=2)
    corr = iv.correctness(runs, preds)
    assert corr.values.shape == (5, 5, 2, N_ITEMS) and corr.seeds == (0, 1)
    assert corr.conditions() == ["full", "targeted", "random", "lowest"]
    with pytest.raises(ValueError, match="paired"):
        iv.correctness(runs.drop(index=runs.index[(runs["condition"] == "lowest") & (runs["seed"] == 1)]), preds)
    with pytest.raises(ValueError, match="full"):
        iv.correctness(runs[runs["condition"] != "full"], preds)


def test_gain_table_known_gains():
    corr = iv.correctness(*synthetic())
    g = iv.gain_table(corr, n_boot=300).set_index(["condition", "target"])
    assert g.loc[("targeted", "sw"), "gain"] == pytest.approx(0.2)
    assert g.loc[("targeted", "de"), "gain"] == 0 and g.loc[("random", "ar"), "gain"] == 0
    assert g.loc[("lowest", "ru"), "gain"] == pytest.approx(0.1)
    assert g.loc[("random", "de"), "n_sets"] == 2
    assert g.loc[("targeted", "sw"), "ci_low"] > 0.1 and g.loc[("random", "sw"), "ci_high"] == 0
    assert g.loc[("full", "ar"), "accuracy"] == pytest.approx(0.45)


def test_split_by_distance():
    assert iv.split_by_distance(DIST) == (["de", "ru"], ["ar", "sw"])
    five = pd.Series({"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0, "e": 5.0, "src": 0.0})
    assert iv.split_by_distance(five, source="src") == (["a", "b"], ["c", "d", "e"])
    top_ties = pd.Series({"a": 0.5, "b": 0.7, "c": 1.0, "d": 1.0, "e": 1.0})
    assert iv.split_by_distance(top_ties) == (["a", "b"], ["c", "d", "e"])
    bottom_ties = pd.Series({"a": 0.0, "b": 0.0, "c": 0.0, "d": 1.0, "e": 1.0})
    assert iv.split_by_distance(bottom_ties) == (["a", "b", "c"], ["d", "e"])
    with pytest.raises(ValueError, match="same distance"):
        iv.split_by_distance(pd.Series({"a": 1.0, "b": 1.0}))


def test_gap_table_distant_minus_close():
    corr = iv.correctness(*synthetic())
    gaps = iv.gap_table(corr, DIST, source="en", n_boot=400).set_index("comparison")
    t = gaps.loc["targeted - full"]
    assert (t["close"], t["distant"], t["gap_change"]) == pytest.approx((0.0, 0.2, 0.2))
    assert t["ci_low"] > 0 and t["close_languages"] == "de,ru" and t["distant_languages"] == "ar,sw"
    assert gaps.loc["random - full", "gap_change"] == 0 and gaps.loc["random - full", "ci_high"] == 0
    assert gaps.loc["lowest - full", "gap_change"] == pytest.approx(0.0)
    assert gaps.loc["targeted - random", "gap_change"] == pytest.approx(0.2)
    lo = gaps.loc["targeted - lowest"]
    assert (lo["close"], lo["distant"], lo["gap_change"]) == pytest.approx((-0.1, 0.1, 0.2))


def test_gain_distance_spearman():
    corr = iv.correctness(*synthetic())
    gains = iv.gain_table(corr, n_boot=100)
    gains.loc[gains["condition"] == "targeted", "gain"] = gains["target"].map({"de": 0.0, "ru": 0.01, "ar": 0.1,
                                                                               "sw": 0.2, "en": -1.0})
    rho = iv.gain_distance(gains, DIST, source="en", n_perm=200, n_boot=100).set_index("condition")
    assert rho.loc["targeted", "rho"] == pytest.approx(1.0) and rho.loc["targeted", "n"] == 4
    assert rho.loc["targeted", "note"] == ""
    # random's gains are all 0: rho is undefined, reported as NaN with the reason
    assert np.isnan(rho.loc["random", "rho"]) and "constant" in rho.loc["random", "note"]


# ------------------------------------------------------------------ verdict
def gaps_frame(gap=(0.1, 0.05, 0.15), rand=(0.08, 0.02, 0.14), low=(0.05, 0.01, 0.09)) -> pd.DataFrame:
    rows = []
    for comp, (est, lo, hi) in (("targeted - full", gap), ("targeted - random", rand), ("targeted - lowest", low)):
        if est is not None:
            rows.append(dict(comparison=comp, gap_change=est, ci_low=lo, ci_high=hi, close=0.0, distant=est,
                             n_close=7, n_distant=7))
    return pd.DataFrame(rows)


@pytest.mark.parametrize("frame, verdict", [
    (gaps_frame(), claims.SUPPORTED),
    (gaps_frame(gap=(-0.05, -0.1, 0.0), rand=(-0.01, -0.05, 0.03), low=(-0.02, -0.06, 0.02)),
     claims.NOT_SUPPORTED),
    (gaps_frame(low=(0.05, -0.01, 0.11)), claims.MIXED),  # the weaker control is not beaten clearly
    (gaps_frame(low=(-0.02, -0.05, 0.01)), claims.MIXED),
    (gaps_frame(rand=(None, 0, 0), low=(None, 0, 0)), claims.NOT_EVALUATED),
])
def test_verdict_d(frame, verdict):
    row = iv.verdict_d(frame, n_seeds=3, n_targets=14, source="en")
    assert len(row) == 1 and row.loc[0, "verdict"] == verdict and row.loc[0, "claim"] == "d"
    assert list(row.columns) == claims.COLUMNS + ["underpowered"] and not row.loc[0, "underpowered"]


def test_verdict_d_uses_least_favourable_control_and_flags_underpowered():
    row = iv.verdict_d(gaps_frame(), n_seeds=1, n_targets=14, source="en")
    assert row.loc[0, "underpowered"] and "UNDERPOWERED" in row.loc[0, "evidence"]
    assert "targeted - lowest" in row.loc[0, "evidence"] and "+0.05" in row.loc[0, "evidence"]
    assert "7 close, 7 distant" in row.loc[0, "evidence"]


def test_verdict_d_not_evaluated_when_baseline_at_chance():
    row = iv.verdict_d(gaps_frame(), n_seeds=3, n_targets=14, baseline_learned=False)
    assert row.loc[0, "verdict"] == claims.NOT_EVALUATED and "not above chance" in row.loc[0, "evidence"]


def test_end_to_end_synthetic_verdict():
    corr = iv.correctness(*synthetic(n_seeds=3))
    gaps = iv.gap_table(corr, DIST, source="en", n_boot=300)
    row = iv.verdict_d(gaps, n_seeds=3, n_targets=4, source="en")
    assert row.loc[0, "verdict"] == claims.SUPPORTED and not row.loc[0, "underpowered"]
