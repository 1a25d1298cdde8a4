"""A 2-D UMAP view of item representations, pre and post fine-tuning (notebook 04).

All target languages share one embedding per (model state, layer), so the
plot shows whether languages form separate clusters (McInnes, Healy &
Melville 2018). The points are reused from ``umap.csv`` while the index and
the options are unchanged (:func:`xldrift.representations.index.table_key`).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from xldrift.study.io import stable_hash, write_csv
from xldrift.representations.pooling import layers_for
from xldrift.representations.cache import load_representations
from xldrift.representations.index import read_meta, table_key, update_meta


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
        stacks = {r.target: load_representations(r.path, [pooling])[0][pooling][list(layers)][:, items]
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
    if not force and read_meta(results).get("umap_key") == key and path.is_file():
        return pd.read_csv(path), True
    points = umap_points(index, layers, pooling, max_points=max_points, progress=progress)
    write_csv(points, path)
    update_meta(results, umap_key=key)
    return points, False
