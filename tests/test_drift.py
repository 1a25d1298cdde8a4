"""Tests for xldrift.analysis.drift on small synthetic representation files."""

from __future__ import annotations

import os
import sys
import types

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import save_file

from xldrift.analysis import drift as D
from xldrift.analysis import drift_summary as S
from xldrift.analysis import projection as P
from xldrift.representations import index as R
from xldrift.analysis import metrics as M
from xldrift import plots

N_ITEMS, HIDDEN, N_LAYERS = 40, 8, 4  # N_LAYERS counts the embeddings as layer 0
TARGETS = ("en", "de", "sw")
SEEDS = (0, 1)
OPTS = dict(model="tiny", task="xnli", metrics=["linear_cka", "debiased_cka", "rbf_cka"], poolings=["cls", "mean"])


def _gram_cka(X: np.ndarray, Y: np.ndarray) -> float:
    """Linear CKA from centred n x n Gram matrices, written here independently."""
    H = np.eye(len(X)) - 1.0 / len(X)
    K, L = H @ X @ X.T @ H, H @ Y @ Y.T @ H
    return float(np.sum(K * L) / np.sqrt(np.sum(K * K) * np.sum(L * L)))


def _stack(rng: np.random.Generator, base: np.ndarray) -> dict[str, np.ndarray]:
    """cls and mean stacks (N_LAYERS, N_ITEMS, HIDDEN); cls layer 0 is one vector for every item."""
    cls = base.copy()
    cls[0] = rng.standard_normal(HIDDEN)
    return {"cls": cls.astype(np.float32), "mean": base.astype(np.float32)}


@pytest.fixture
def reps(tmp_path):
    """An index like notebook 03's: en source, 2 seeds; de is left unchanged by fine-tuning."""
    rng = np.random.default_rng(0)
    rows, arrays = [], {}
    shared = rng.standard_normal((N_LAYERS, N_ITEMS, HIDDEN))
    for t in TARGETS:
        pre = shared + 0.5 * rng.standard_normal((N_LAYERS, N_ITEMS, HIDDEN)) + 3.0
        states = [("pre", "base", None, None, pre)]
        for seed in SEEDS:
            # drift grows with depth; de does not move at all
            scale = 0.0 if t == "de" else 1.0
            noise = rng.standard_normal(pre.shape) * (np.arange(N_LAYERS) * 0.6 * scale)[:, None, None]
            states.append(("post", f"ft-s{seed}", "en", seed, pre + noise))
        for kind, state, source, seed, stack in states:
            path = tmp_path / f"{state}-{t}.safetensors"
            arrays[(state, t)] = _stack(np.random.default_rng(1), stack)  # same cls layer-0 vector in every state
            save_file(arrays[(state, t)], str(path))
            rows.append(dict(kind=kind, state=state, target=t, path=str(path), n_layers=N_LAYERS, n_items=N_ITEMS,
                             hidden=HIDDEN, source=source, seed=seed))
    index = pd.DataFrame(rows)
    index.to_csv(tmp_path / "representations.csv", index=False)
    return R.read_index(tmp_path / "representations.csv"), arrays


def test_read_index_rejects_bad_tables(tmp_path, reps):
    index, _ = reps
    cases = {
        "missing column": (index.drop(columns="hidden"), r"lacks column.*hidden"),
        "no pre for sw": (index[~((index["kind"] == "pre") & (index["target"] == "sw"))], r"exactly one 'pre'.*sw"),
        "post without seed": (index.assign(seed=pd.NA), r"each with a source language and a seed"),
        "bad kind": (index.assign(kind="mid"), r"kind must be 'pre' or 'post'"),
        "items differ": (index.assign(n_items=range(len(index))), r"share n_items"),
        "file gone": (index.assign(path=index["path"] + ".gone"), r"file\(s\) missing.*re-run notebook 03"),
    }
    for name, (bad, pattern) in cases.items():
        bad.to_csv(tmp_path / f"{name}.csv", index=False)
        with pytest.raises(ValueError, match=pattern):
            R.read_index(tmp_path / f"{name}.csv")
    with pytest.raises(ValueError, match="run notebook 03"):
        R.read_index(tmp_path / "absent.csv")


def test_tables_shape_layers_and_values(reps):
    index, arrays = reps
    drift, align = D.measure(index, **OPTS)
    assert list(drift.columns) == D.DRIFT_COLUMNS and list(align.columns) == D.ALIGNMENT_COLUMNS
    n_scored = (N_LAYERS - 1) + N_LAYERS  # cls skips layer 0, mean keeps it
    assert len(drift) == len(TARGETS) * len(SEEDS) * n_scored * 3
    assert 0 not in set(drift.loc[drift["pooling"] == "cls", "layer"])
    assert 0 in set(drift.loc[drift["pooling"] == "mean", "layer"])
    assert drift["similarity"].notna().all() and align["similarity"].notna().all()
    # every linear CKA equals a Gram-form CKA of the right pair of arrays
    for r in drift[drift["metric"] == "linear_cka"].itertuples():
        pre = arrays[("base", r.target)][r.pooling][r.layer].astype(np.float64)
        post = arrays[(f"ft-s{r.seed}", r.target)][r.pooling][r.layer].astype(np.float64)
        assert r.similarity == pytest.approx(_gram_cka(pre, post), abs=1e-9)
    # the other metrics equal the registry on the raw arrays (prepared reuse changes nothing)
    some = drift[(drift["metric"] != "linear_cka") & (drift["layer"] == 2)]
    for r in some.itertuples():
        pre = arrays[("base", r.target)][r.pooling][r.layer]
        post = arrays[(f"ft-s{r.seed}", r.target)][r.pooling][r.layer]
        assert r.similarity == pytest.approx(M.similarity(r.metric, pre, post), abs=1e-12)
    # a language fine-tuning left untouched has similarity 1 everywhere
    assert np.allclose(drift.loc[drift["target"] == "de", "similarity"], 1.0, atol=1e-9)


def test_alignment_rows(reps):
    index, arrays = reps
    _, align = D.measure(index, **OPTS)
    assert "en" not in set(align["target"])
    pre, post = align[align["state"] == "pre"], align[align["state"] == "post"]
    assert set(pre["seed"]) == {D.PRE_SEED} and set(post["seed"]) == set(SEEDS)
    assert len(pre) * len(SEEDS) == len(post)  # pre is not repeated per seed
    assert not pre.duplicated(["target", "layer", "pooling", "metric"]).any()
    r = post[(post["metric"] == "linear_cka") & (post["target"] == "sw")].iloc[0]
    src = arrays[(f"ft-s{r.seed}", "en")][r.pooling][r.layer].astype(np.float64)
    tgt = arrays[(f"ft-s{r.seed}", "sw")][r.pooling][r.layer].astype(np.float64)
    assert r.similarity == pytest.approx(_gram_cka(src, tgt), abs=1e-9)
    r = pre[(pre["metric"] == "linear_cka") & (pre["target"] == "de")].iloc[0]
    src = arrays[("base", "en")][r.pooling][r.layer].astype(np.float64)
    tgt = arrays[("base", "de")][r.pooling][r.layer].astype(np.float64)
    assert r.similarity == pytest.approx(_gram_cka(src, tgt), abs=1e-9)


def test_constant_layer_raises_with_context(reps, tmp_path):
    index, arrays = reps
    bad = {k: v.copy() for k, v in arrays[("ft-s1", "sw")].items()}
    bad["mean"][2] = bad["mean"][2, 0]  # every item the same at layer 2
    path = tmp_path / "bad.safetensors"
    save_file(bad, str(path))
    index = index.copy()
    index.loc[(index["state"] == "ft-s1") & (index["target"] == "sw"), "path"] = str(path)
    with pytest.raises(ValueError, match=r"post ft-s1 \[sw, mean\].*layer 2.*constant"):
        D.measure(index, **OPTS)


def test_tables_are_cached_by_index_content(reps, tmp_path, monkeypatch):
    index, _ = reps
    out = tmp_path / "results"
    drift, align, reused = D.drift_tables(index, out, **OPTS)
    assert not reused and (out / "drift.csv").is_file() and (out / "alignment.csv").is_file()
    calls = []
    real = D.measure
    monkeypatch.setattr(D, "measure", lambda *a, **k: calls.append(1) or real(*a, **k))
    again, _, reused = D.drift_tables(index, out, **OPTS)
    assert reused and not calls
    pd.testing.assert_frame_equal(again, drift, check_dtype=False)
    D.drift_tables(index, out, **OPTS, force=True)
    D.drift_tables(index[index["target"] != "sw"], out, **OPTS)  # different index: recomputed
    D.drift_tables(index, out, **{**OPTS, "metrics": ["linear_cka"]})  # different options: recomputed
    assert len(calls) == 3
    assert D.drift_tables(index, out, **OPTS)[2] is False and D.drift_tables(index, out, **OPTS)[2] is True
    path = index["path"].iloc[0]
    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 10**9))  # a file re-extracted
    assert D.drift_tables(index, out, **OPTS)[2] is False
    assert len(calls) == 5


def test_half_window_and_layer_summary():
    impact = pd.DataFrame({"source": "en", "pooling": "cls", "target": np.repeat(["a", "b"], 4),
                           "layer": np.tile([1, 2, 3, 4], 2),
                           "impact": [0.0, 0.05, 0.1, 0.85, 0.0, 0.15, 0.1, 0.85]})
    s = S.layer_summary(impact).iloc[0]
    # mean profile 0, 0.1, 0.1, 0.85: layer 4 alone holds 0.85 / 1.05 of the total
    assert (s.peak_layer, s.half_first, s.half_last) == (4, 4, 4)
    assert s.half_share == pytest.approx(0.85 / 1.05)
    assert s.spread_layer == 2  # |0.05 - 0.15| is the only disagreement
    prof = pd.Series([0.3, 0.3, 0.3, 0.1], index=[0, 1, 2, 3])
    assert S._half_window(prof) == (0, 1, pytest.approx(0.6))


def test_findings_read_the_tables(reps):
    index, _ = reps
    drift, align = D.measure(index, **OPTS)
    impact, change = S.mean_impact(drift, "linear_cka"), S.alignment_change(align, "linear_cka")
    text = " ".join(S.findings(impact, change, "linear_cka"))
    # drift grows with depth in the fixture, and de never moves
    assert f"peaks at layer {N_LAYERS - 1}" in text
    assert "least: de (0)" in text
    versus = S.drift_vs_alignment(impact, change)
    assert set(versus["pooling"]) == {"cls", "mean"} and (versus["cells"] > 0).all()
    key = S.key_numbers(impact, change)
    assert len(key) == 2 and set(key["least_moved"]) == {"de"} and set(key["peak_layer"]) == {N_LAYERS - 1}


def test_drift_vs_alignment_rank_correlation():
    cells = pd.DataFrame({"source": "en", "target": list("abcd"), "pooling": "mean", "layer": 1})
    impact = cells.assign(impact=[0.1, 0.2, 0.3, 0.4])
    change = cells.assign(change=[0.3, 0.1, 0.0, -0.2], pre=0.5, post=0.5)
    v = S.drift_vs_alignment(impact, change).iloc[0]
    assert v.spearman == pytest.approx(-1.0) and v.share_alignment_up == pytest.approx(0.5)


def test_umap_layers_are_checked_never_replaced():
    assert P.umap_layers([12, 6, 1, 6], 13, "cls") == [1, 6, 12]
    assert P.umap_layers([0, 6, 12], 13, "mean") == [0, 6, 12]
    assert P.umap_layers([], 13, "cls") == [12]
    with pytest.raises(ValueError, match=r"\[99\] are not scored for mean pooling; valid: 0..12"):
        P.umap_layers([6, 99], 13, "mean")
    with pytest.raises(ValueError, match=r"\[0\] are not scored for cls pooling; valid: 1..12"):
        P.umap_layers([0, 6], 13, "cls")


def test_umap_points_plumbing(reps, monkeypatch):
    index, arrays = reps

    class FirstTwo:  # stands in for umap.UMAP: keeps the first two features
        def __init__(self, **kwargs):
            self.kwargs = kwargs

        def fit_transform(self, X):
            return X[:, :2]

    monkeypatch.setitem(sys.modules, "umap", types.SimpleNamespace(UMAP=FirstTwo))
    pts = P.umap_points(index, [1, 3], "mean", max_points=30)
    k = 30 // len(TARGETS)
    assert len(pts) == 2 * 2 * len(TARGETS) * k
    r = pts[(pts["state"] == "post") & (pts["layer"] == 3) & (pts["target"] == "sw")].iloc[0]
    assert r.x == pytest.approx(arrays[("ft-s0", "sw")]["mean"][3, int(r["item"]), 0])


def test_figures_render(reps):
    index, _ = reps
    drift, align = D.measure(index, **OPTS)
    impact = S.mean_impact(drift, "linear_cka")
    change = S.alignment_change(align, "linear_cka")
    fam = {"en": "Indo-European", "de": "Indo-European", "sw": "Niger-Congo"}
    fig = plots.drift_profile(impact, fam, "linear_cka", "en")
    assert len(fig.axes) == 4
    assert len(plots.drift_heatmap(impact, "linear_cka", "en").axes) == 8  # 2 x 2 panels + colorbars
    assert len(plots.alignment_vs_drift(change, impact, "linear_cka", "en", "mean").axes) == 6  # 3 panels + colorbars
    pts = pd.DataFrame({"state": ["pre", "post"] * 3, "layer": 1, "target": ["en", "de", "sw"] * 2,
                        "x": np.arange(6.0), "y": np.arange(6.0)})
    assert len(plots.umap_panels(pts, fam, "cls").axes) == 2
