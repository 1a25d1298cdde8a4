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

Inputs come from notebook 03's index (:mod:`xldrift.representations.index`).
Every representation is centred (and its self-term or kernel computed) once
per layer and pooling (:class:`xldrift.analysis.metrics.PreparedStack`), then reused
by the drift of every seed and by the alignment with the source. What the
tables say is in :mod:`xldrift.analysis.drift_summary`; the UMAP view in
:mod:`xldrift.analysis.projection`.

The ``cls`` vector at layer 0 (the embeddings output) is the same for every
input, so no similarity is defined there: ``cls`` starts at layer 1, ``mean``
at layer 0. Any other failure of a metric raises, naming the state, language
and layer; nothing is silently NaN.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from xldrift.analysis import metrics as M
from xldrift.study.io import write_csv
from xldrift.representations.pooling import layers_for
from xldrift.representations.cache import load_representations
from xldrift.representations.index import read_meta, table_key, update_meta

logger = logging.getLogger(__name__)

DRIFT_COLUMNS = ["model", "task", "source", "target", "seed", "layer", "pooling", "metric", "similarity"]
ALIGNMENT_COLUMNS = ["model", "task", "source", "target", "seed", "layer", "pooling", "metric", "state", "similarity"]
#: ``seed`` of the ``pre`` rows of the alignment table: the pre-trained state has no fine-tuning seed.
PRE_SEED = -1


def _load(row: Any, pooling: str, metrics: Sequence[str]) -> M.PreparedStack:
    arrays, _ = load_representations(row.path, [pooling])
    label = f"{row.kind} {row.state} [{row.target}, {pooling}]"
    return M.PreparedStack(arrays[pooling], label, metrics)


def measure(index: pd.DataFrame, *, model: str, task: str, metrics: Sequence[str], poolings: Sequence[str],
            progress: bool = False, blas_threads: int | None = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Compute the drift and alignment tables.

    Loops pooling -> target -> layer. The source languages' representations
    are prepared once per pooling and kept (alignment compares every target
    with them); each target's are prepared once and shared by its drift and
    its alignment.

    Args:
        index: from :func:`xldrift.representations.index.read_index`.
        model: model name written into the tables.
        task: task name written into the tables.
        metrics: keys of :data:`xldrift.analysis.metrics.SIMILARITIES`.
        poolings: subset of :data:`xldrift.representations.pooling.POOLINGS`.
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
        M.lookup(m)  # an unknown name fails here, before any loading
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
                        drift.append({**key, "seed": seed, "similarity": t_pre.similarity(t_post, layer, m)})
                        if target == source:
                            continue
                        align.append({**key, "seed": seed, "state": "post",
                                      "similarity": source_post[(source, seed)].similarity(t_post, layer, m)})
                        if seed == min(sd for s, sd in runs if s == source):  # pre does not depend on the seed
                            align.append({**key, "seed": PRE_SEED, "state": "pre",
                                          "similarity": source_pre[source].similarity(t_pre, layer, m)})
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
    if not force and read_meta(results).get("key") == key and all(f.is_file() for f in files):
        logger.info("reusing %s and %s (key %s)", *files, key)
        return pd.read_csv(files[0]), pd.read_csv(files[1]), True
    start = time.perf_counter()
    update_meta(results, key=None)  # until both tables are written, neither may be reused
    drift, align = measure(index, model=model, task=task, metrics=metrics, poolings=poolings, progress=progress)
    write_csv(drift, files[0])
    write_csv(align, files[1])
    update_meta(results, key=key, seconds=round(time.perf_counter() - start, 2), drift_rows=len(drift),
                 alignment_rows=len(align))
    return drift, align, False
