"""Absolute drift and cross-lingual alignment of representations, layer by layer.

Two questions about fine-tuning on a source language (Philippy, Guo &
Haddadan 2023 ask the first):

- **Absolute drift**: how far does each target language's representation
  space move? The similarity of the target's ``pre`` and ``post``
  representations of the same items; impact = 1 - similarity (for linear CKA
  this is the paper's drift, Kornblith et al. 2019).
- **Alignment**: how similar are the source language's and a target's
  representations of the same (parallel) items, before and after
  fine-tuning? Earlier work measured this cross-lingual alignment; a space
  can move a lot while its alignment with the source barely changes.

Inputs come from notebook 03's index (``representations.csv``: one row per
model state and target language, with the cache file of its pooled
per-layer arrays ``(n_layers + 1, n_items, hidden)``). Every representation
is centred (and its self-term or kernel computed) once per layer and pooling
with :func:`xldrift.metrics.prepare`, then reused by the drift of every seed
and by the alignment with the source.

The ``cls`` vector at layer 0 (the embeddings output) is the same for every
input, so no similarity is defined there: ``cls`` starts at layer 1, ``mean``
at layer 0. Any other failure of a metric raises, naming the state, language
and layer; nothing is silently NaN.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from xldrift import extract
from xldrift import metrics as M
from xldrift.io import stable_hash, write_csv, write_json

logger = logging.getLogger(__name__)

INDEX_COLUMNS = ("kind", "state", "target", "path", "n_layers", "n_items", "hidden", "source", "seed")
DRIFT_COLUMNS = ["model", "task", "source", "target", "seed", "layer", "pooling", "metric", "similarity"]
ALIGNMENT_COLUMNS = ["model", "task", "source", "target", "seed", "layer", "pooling", "metric", "state", "similarity"]
#: ``seed`` of the ``pre`` rows of the alignment table: the pre-trained state has no fine-tuning seed.
PRE_SEED = -1
#: Version of the tables' content; part of the cache key.
FORMAT_VERSION = 1
META_FILE = "drift_meta.json"


# -- the index of representations ----------------------------------------------
def read_index(path: str | Path) -> pd.DataFrame:
    """Read and check notebook 03's ``representations.csv``.

    Args:
        path: the index file.

    Returns:
        The index, ``seed`` as a nullable integer (empty for ``pre``).

    Raises:
        ValueError: a missing column, an unknown ``kind``, a target without
            exactly one ``pre`` state, a ``post`` row without source or seed,
            states that disagree on items or layers, or a missing file.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no representation index at {path}; run notebook 03 first")
    index = pd.read_csv(path)
    missing = [c for c in INDEX_COLUMNS if c not in index.columns]
    if missing:
        raise ValueError(f"{path} lacks column(s) {missing}; expected {list(INDEX_COLUMNS)}")
    bad_kind = sorted(set(index["kind"]) - {"pre", "post"})
    if bad_kind or index.empty:
        raise ValueError(f"{path}: kind must be 'pre' or 'post' and the index non-empty; got {bad_kind or 'no rows'}")
    pre_counts = index[index["kind"] == "pre"].groupby("target").size()
    wrong = sorted(set(index["target"]) - set(pre_counts[pre_counts == 1].index))
    if wrong:
        raise ValueError(f"{path}: every target needs exactly one 'pre' row; not so for {wrong}")
    post = index[index["kind"] == "post"]
    if post.empty or post[["source", "seed"]].isna().any().any():
        raise ValueError(f"{path}: needs 'post' rows, each with a source language and a seed")
    for col in ("n_items", "n_layers"):
        if index[col].nunique() != 1:
            raise ValueError(f"{path}: all states must share {col}; got {sorted(index[col].unique())}")
    absent = [p for p in index["path"] if not Path(p).is_file()]
    if absent:
        raise ValueError(f"{path}: {len(absent)} representation file(s) missing, e.g. {absent[0]}; re-run notebook 03")
    index = index.copy()
    index["seed"] = index["seed"].astype("Int64")
    return index


def table_key(index: pd.DataFrame, *, model: str, task: str, metrics: Sequence[str], poolings: Sequence[str]) -> str:
    """Hash of everything that determines the tables: the index content, its files' versions and the options."""
    rows = index[list(INDEX_COLUMNS)].astype(str).sort_values(list(INDEX_COLUMNS)).values.tolist()
    # A re-extraction rewrites a file under the same name: its size and mtime say so.
    stamps = sorted((str(p), Path(p).stat().st_size, Path(p).stat().st_mtime_ns) for p in index["path"])
    return stable_hash({"index": rows, "files": stamps, "model": model, "task": task, "metrics": list(metrics),
                        "poolings": list(poolings), "version": FORMAT_VERSION})


def layers_for(pooling: str, n_layers: int) -> range:
    """Layers scored for ``pooling``: all ``n_layers`` for ``mean``; ``cls`` skips layer 0.

    The first token at layer 0 is the same embedding for every input, so its
    representation is constant and CKA is undefined there (not merely small).
    """
    return range(1 if pooling == "cls" else 0, n_layers)


# -- preparing and scoring -------------------------------------------------------
def _family(metric: str) -> str:
    return "rbf_cka" if metric == "rbf_cka" else "linear_cka"


class _Stack:
    """Prepared representations of one array stack, by (layer, metric family), made on first use."""

    def __init__(self, arrays: np.ndarray, label: str, metrics: Sequence[str]):
        self.arrays, self.label = arrays, label
        # Procrustes alone needs no self-term; any CKA does.
        self._linear = "procrustes" if all(m == "procrustes" for m in metrics if m != "rbf_cka") else "linear_cka"
        self._cache: dict[tuple[int, str], M.Prepared] = {}

    def get(self, layer: int, metric: str) -> M.Prepared:
        family = _family(metric)
        key = (layer, family)
        if key not in self._cache:
            how = family if family == "rbf_cka" else self._linear
            self._cache[key] = M.prepare(self.arrays[layer], how, name=f"{self.label} layer {layer}")
        return self._cache[key]


def _score(metric: str, a: _Stack, b: _Stack, layer: int) -> float:
    try:
        return M.similarity(metric, a.get(layer, metric), b.get(layer, metric))
    except M.RepresentationError as err:
        raise M.RepresentationError(f"{metric} of {a.label} vs {b.label}, layer {layer}: {err}") from err


def _load(row: Any, pooling: str, metrics: Sequence[str]) -> _Stack:
    arrays, _ = extract.load_representations(row.path, [pooling])
    label = f"{row.kind} {row.state} [{row.target}, {pooling}]"
    return _Stack(arrays[pooling], label, metrics)


def measure(index: pd.DataFrame, *, model: str, task: str, metrics: Sequence[str], poolings: Sequence[str],
            progress: bool = False, blas_threads: int | None = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Compute the drift and alignment tables.

    Loops pooling -> target -> layer. The source languages' representations
    are prepared once per pooling and kept (alignment compares every target
    with them); each target's are prepared once and shared by its drift and
    its alignment.

    Args:
        index: from :func:`read_index`.
        model: model name written into the tables.
        task: task name written into the tables.
        metrics: keys of :data:`xldrift.metrics.SIMILARITIES`.
        poolings: subset of ``("cls", "mean")``.
        progress: progress bar over (pooling, target).
        blas_threads: BLAS threads during the computation (None: as
            configured). One by default: the per-layer products are small
            (``n_items`` in the hundreds to thousands), and on a loaded
            2-core machine a second BLAS thread that has to wait for a core
            made each call about 9x slower (measured at n = 501, d = 384).

    Returns:
        ``(drift, alignment)`` with :data:`DRIFT_COLUMNS` and :data:`ALIGNMENT_COLUMNS`.
    """
    with threadpool_limits(limits=blas_threads, user_api="blas"):
        return _measure(index, model=model, task=task, metrics=metrics, poolings=poolings, progress=progress)


def _measure(index: pd.DataFrame, *, model: str, task: str, metrics: Sequence[str], poolings: Sequence[str],
             progress: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    for m in metrics:
        M._lookup(m)  # an unknown name fails here, before any loading
    n_layers = int(index["n_layers"].iloc[0])
    pre = {r.target: r for r in index[index["kind"] == "pre"].itertuples()}
    post = index[index["kind"] == "post"]
    runs = sorted({(r.source, int(r.seed)) for r in post.itertuples()})
    post_row = {(r.source, int(r.seed), r.target): r for r in post.itertuples()}
    missing = [(s, seed, t) for s, seed in runs for t in pre if (s, seed, t) not in post_row]
    missing += [(s, "pre", s) for s, _ in runs if s not in pre]
    if missing:
        raise ValueError(f"the index lacks representations for (source, seed, target): {missing[:5]}")
    drift, align = [], []
    steps = [(p, t) for p in poolings for t in pre]
    bar = tqdm(steps, desc="drift", disable=not progress)
    for pooling in poolings:
        layers = layers_for(pooling, n_layers)
        source_pre = {s: _load(pre[s], pooling, metrics) for s in dict.fromkeys(s for s, _ in runs)}
        source_post = {(s, seed): _load(post_row[(s, seed, s)], pooling, metrics) for s, seed in runs}
        for target in pre:
            t_pre = source_pre.get(target) or _load(pre[target], pooling, metrics)
            for source, seed in runs:
                t_post = (source_post[(source, seed)] if target == source
                          else _load(post_row[(source, seed, target)], pooling, metrics))
                for layer in layers:
                    for m in metrics:
                        key = dict(model=model, task=task, source=source, target=target, layer=layer,
                                   pooling=pooling, metric=m)
                        drift.append({**key, "seed": seed, "similarity": _score(m, t_pre, t_post, layer)})
                        if target == source:
                            continue
                        align.append({**key, "seed": seed, "state": "post",
                                      "similarity": _score(m, source_post[(source, seed)], t_post, layer)})
                        if seed == min(sd for s, sd in runs if s == source):  # pre does not depend on the seed
                            align.append({**key, "seed": PRE_SEED, "state": "pre",
                                          "similarity": _score(m, source_pre[source], t_pre, layer)})
            bar.update()
    bar.close()
    return pd.DataFrame(drift, columns=DRIFT_COLUMNS), pd.DataFrame(align, columns=ALIGNMENT_COLUMNS)


def drift_tables(index: pd.DataFrame, results: str | Path, *, model: str, task: str, metrics: Sequence[str],
                 poolings: Sequence[str], force: bool = False, progress: bool = False
                 ) -> tuple[pd.DataFrame, pd.DataFrame, bool]:
    """The drift and alignment tables, reused from ``results`` when they match the index.

    ``drift.csv`` and ``alignment.csv`` are reused when :data:`META_FILE`
    records the same :func:`table_key` (index content and options) and
    ``force`` is False; otherwise they are computed and written atomically,
    the meta file last.

    Returns:
        ``(drift, alignment, reused)``.
    """
    results = Path(results)
    key = table_key(index, model=model, task=task, metrics=metrics, poolings=poolings)
    files = results / "drift.csv", results / "alignment.csv"
    if not force and _meta(results).get("key") == key and all(f.is_file() for f in files):
        logger.info("reusing %s and %s (key %s)", *files, key)
        return pd.read_csv(files[0]), pd.read_csv(files[1]), True
    start = time.perf_counter()
    _update_meta(results, key=None)  # until both tables are written, neither may be reused
    drift, align = measure(index, model=model, task=task, metrics=metrics, poolings=poolings, progress=progress)
    write_csv(drift, files[0])
    write_csv(align, files[1])
    _update_meta(results, key=key, seconds=round(time.perf_counter() - start, 2), drift_rows=len(drift),
                 alignment_rows=len(align))
    return drift, align, False


def _meta(results: Path) -> dict[str, Any]:
    path = results / META_FILE
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError:
        return {}


def _update_meta(results: Path, **values: Any) -> None:
    write_json({**_meta(results), **values}, results / META_FILE)


# -- derived tables -----------------------------------------------------------------
def with_impact(drift: pd.DataFrame) -> pd.DataFrame:
    """``drift`` plus ``impact = 1 - similarity`` (the paper's drift for linear CKA)."""
    return drift.assign(impact=1.0 - drift["similarity"])


def mean_impact(drift: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Impact of ``metric`` averaged over seeds: ``source, target, pooling, layer, impact``."""
    d = with_impact(drift[drift["metric"] == metric])
    return d.groupby(["source", "target", "pooling", "layer"], as_index=False)["impact"].mean()


def alignment_change(alignment: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Post minus pre alignment with the source, averaged over seeds.

    Returns:
        ``source, target, pooling, layer, pre, post, change``.
    """
    a = alignment[alignment["metric"] == metric]
    keys = ["source", "target", "pooling", "layer"]
    pre = a[a["state"] == "pre"].groupby(keys)["similarity"].mean().rename("pre")
    post = a[a["state"] == "post"].groupby(keys)["similarity"].mean().rename("post")
    out = pd.concat([pre, post], axis=1).reset_index()
    return out.assign(change=out["post"] - out["pre"])


# -- what the tables say, as sentences computed from them --------------------------------
def _half_window(profile: pd.Series) -> tuple[int, int, float]:
    """Shortest run of consecutive layers holding at least half of the summed impact: (first, last, share)."""
    values, layers = profile.clip(lower=0).to_numpy(), profile.index.to_numpy()
    total = values.sum()
    best = (int(layers[0]), int(layers[-1]), 1.0)
    if total <= 0:
        return best
    for width in range(1, len(values) + 1):
        sums = np.convolve(values, np.ones(width), mode="valid")
        if sums.max() >= 0.5 * total:
            i = int(sums.argmax())
            return int(layers[i]), int(layers[i + width - 1]), float(sums[i] / total)
    return best


def layer_summary(impact: pd.DataFrame) -> pd.DataFrame:
    """Per (source, pooling): where drift peaks and concentrates, and where languages differ most.

    Args:
        impact: from :func:`mean_impact`.

    Returns:
        One row per (source, pooling): ``peak_layer``, ``peak_impact``,
        ``half_first``/``half_last``/``half_share`` (the shortest run of
        layers with half the summed mean impact), ``spread_layer`` (largest
        standard deviation across target languages) and ``relative_spread_layer``
        (largest standard deviation relative to the layer mean, among layers
        whose mean is at least a tenth of the peak: near-zero means make the
        ratio noise).
    """
    rows = []
    for (source, pooling), d in impact.groupby(["source", "pooling"]):
        by_layer = d.groupby("layer")["impact"]
        mean, std = by_layer.mean(), by_layer.std(ddof=0)
        first, last, share = _half_window(mean)
        rel = std / mean.where(mean >= 0.1 * mean.max())
        rows.append({"source": source, "pooling": pooling, "peak_layer": int(mean.idxmax()),
                     "peak_impact": float(mean.max()), "half_first": first, "half_last": last, "half_share": share,
                     "spread_layer": int(std.idxmax()), "relative_spread_layer": int(rel.fillna(-1).idxmax())})
    return pd.DataFrame(rows)


def language_ranking(impact: pd.DataFrame) -> pd.DataFrame:
    """Targets by mean impact over the scored layers, per (source, pooling), most moved first."""
    mean = impact.groupby(["source", "pooling", "target"], as_index=False)["impact"].mean()
    return mean.sort_values(["source", "pooling", "impact"], ascending=[True, True, False], ignore_index=True)


def drift_vs_alignment(impact: pd.DataFrame, change: pd.DataFrame) -> pd.DataFrame:
    """Per (source, pooling), over (target, layer) cells without the source itself.

    Returns:
        ``cells``, ``share_alignment_up`` (post > pre), ``mean_change``,
        ``mean_impact`` and ``spearman`` (rank correlation of alignment
        change with absolute drift across cells).
    """
    cells = change.merge(impact, on=["source", "target", "pooling", "layer"])
    rows = []
    for (source, pooling), d in cells.groupby(["source", "pooling"]):
        rho = d["change"].rank().corr(d["impact"].rank()) if len(d) > 2 else float("nan")
        rows.append({"source": source, "pooling": pooling, "cells": len(d),
                     "share_alignment_up": float((d["change"] > 0).mean()), "mean_change": float(d["change"].mean()),
                     "mean_impact": float(d["impact"].mean()), "spearman": float(rho)})
    return pd.DataFrame(rows)


def key_numbers(impact: pd.DataFrame, change: pd.DataFrame) -> pd.DataFrame:
    """One row per (source, pooling): peak and half-window of drift, most/least moved language, alignment vs drift."""
    ranking = language_ranking(impact).groupby(["source", "pooling"])["target"]
    out = layer_summary(impact).merge(drift_vs_alignment(impact, change), on=["source", "pooling"], how="left")
    out = out.merge(ranking.first().rename("most_moved").reset_index(), on=["source", "pooling"])
    out = out.merge(ranking.last().rename("least_moved").reset_index(), on=["source", "pooling"])
    return out[["source", "pooling", "peak_layer", "peak_impact", "half_first", "half_last", "most_moved",
                "least_moved", "share_alignment_up", "spearman"]]


def _num(v: float) -> str:
    """Three significant digits, and no "-0" for rounding noise around zero."""
    return f"{(0.0 if abs(v) < 5e-13 else v):.3g}"


def findings(impact: pd.DataFrame, change: pd.DataFrame, metric: str) -> list[str]:
    """Plain sentences that read the drift figures, computed from the tables.

    Args:
        impact: from :func:`mean_impact`.
        change: from :func:`alignment_change`.
        metric: the metric both were computed with (named in the sentences).
    """
    out = []
    ranking = language_ranking(impact)
    versus = drift_vs_alignment(impact, change).set_index(["source", "pooling"])
    def named(rank: pd.DataFrame) -> str:
        return ", ".join(f"{t} ({_num(v)})" for t, v in zip(rank["target"], rank["impact"]))

    for r in layer_summary(impact).itertuples():
        rank = ranking[(ranking["source"] == r.source) & (ranking["pooling"] == r.pooling)]
        k = max(1, min(3, len(rank) // 2))
        most, least = named(rank.head(k)), named(rank.tail(k).iloc[::-1])
        out.append(f"{r.pooling}, source {r.source}, {metric}: mean impact peaks at layer {r.peak_layer} "
                   f"({_num(r.peak_impact)}); layers {r.half_first}-{r.half_last} hold {r.half_share:.0%} of the "
                   f"summed impact. Languages differ most at layer {r.spread_layer} in absolute terms and at "
                   f"layer {r.relative_spread_layer} relative to the layer mean. Most moved: {most}; least: {least}.")
        if (r.source, r.pooling) in versus.index:
            v = versus.loc[(r.source, r.pooling)]
            out.append(f"{r.pooling}, source {r.source}: alignment with {r.source} rose in "
                       f"{v.share_alignment_up:.0%} of {int(v.cells)} (target, layer) cells (mean change "
                       f"{v.mean_change:+.2g}) while mean absolute impact was {_num(v.mean_impact)}; rank correlation "
                       f"of alignment change with absolute drift: {v.spearman:+.2f}.")
    return out


# -- UMAP of item representations ---------------------------------------------------------
def umap_layers(requested: Iterable[int], n_layers: int, pooling: str) -> list[int]:
    """``requested`` sorted and without duplicates; the last layer when nothing is requested.

    Raises:
        ValueError: a layer that is not scored for ``pooling`` (never silently replaced by another).
    """
    valid = layers_for(pooling, n_layers)
    requested = [int(layer) for layer in requested]
    bad = [layer for layer in requested if layer not in valid]
    if bad:
        raise ValueError(f"umap_layers {bad} are not scored for {pooling} pooling; valid: {valid.start}..{valid.stop - 1}")
    return sorted(set(requested)) or [valid.stop - 1]


def umap_points(index: pd.DataFrame, layers: Sequence[int], pooling: str, *, max_points: int = 900,
                seed: int = 0, progress: bool = False) -> pd.DataFrame:
    """2-D UMAP (McInnes, Healy & Melville 2018) of item representations, pre and post, per layer.

    All target languages share one embedding per (state, layer), so the plot
    shows whether languages form separate clusters. ``post`` is the first
    (source, seed) run. The same items are drawn for every language, at most
    ``max_points`` points per panel (UMAP's neighbour graph costs grow with
    the points; the numba compilation is a fixed ~20 s).

    Returns:
        ``state, layer, target, item, x, y``.
    """
    import umap  # slow import (numba); only here

    pre = index[index["kind"] == "pre"]
    post = index[index["kind"] == "post"]
    first = post.sort_values(["source", "seed"]).iloc[0]
    post = post[(post["source"] == first["source"]) & (post["seed"] == first["seed"])]
    n_items, targets = int(index["n_items"].iloc[0]), list(pre["target"])
    k = max(1, min(n_items, max_points // len(targets)))
    items = np.sort(np.random.default_rng(seed).choice(n_items, size=k, replace=False))
    frames = []
    for state, rows in (("pre", pre), ("post", post)):
        stacks = {r.target: extract.load_representations(r.path, [pooling])[0][pooling][list(layers)][:, items]
                  for r in rows.itertuples()}
        for i, layer in enumerate(tqdm(layers, desc=f"umap {state}", disable=not progress)):
            X = np.concatenate([stacks[t][i] for t in targets]).astype(np.float32)
            with warnings.catch_warnings():
                # separate language clusters are a finding here, not a fault of the embedding
                warnings.filterwarnings("ignore", message="Graph is not fully connected")
                # a fixed random_state runs single-threaded anyway; saying so avoids umap's warning
                xy = umap.UMAP(n_neighbors=min(15, len(X) - 1), random_state=0, n_jobs=1).fit_transform(X)
            frames.append(pd.DataFrame({"state": state, "layer": layer, "target": np.repeat(targets, k),
                                        "item": np.tile(items, len(targets)), "x": xy[:, 0], "y": xy[:, 1]}))
    return pd.concat(frames, ignore_index=True)


def umap_table(index: pd.DataFrame, results: str | Path, layers: Sequence[int], pooling: str, *,
               max_points: int = 900, force: bool = False, progress: bool = False) -> tuple[pd.DataFrame, bool]:
    """:func:`umap_points`, reused from ``results/umap.csv`` when index and options are unchanged.

    Returns:
        ``(points, reused)``.
    """
    results = Path(results)
    key = stable_hash({"index": table_key(index, model="", task="", metrics=[], poolings=[pooling]),
                       "layers": list(layers), "max_points": max_points})
    path = results / "umap.csv"
    if not force and _meta(results).get("umap_key") == key and path.is_file():
        return pd.read_csv(path), True
    points = umap_points(index, layers, pooling, max_points=max_points, progress=progress)
    write_csv(points, path)
    _update_meta(results, umap_key=key)
    return points, False
