"""The on-disk cache of per-layer representations, one file per (model state, language).

Cache: one safetensors file per (model state, language) under
``representations_cache()/<state>/<lang>-<key>.safetensors``, the key hashing
the item ids, the texts, ``max_length``, the poolings and the storage dtype.
Files are written atomically with their metadata (shapes, key, model state,
a fingerprint of the weights) in the safetensors header, and their size and
SHA-256 beside them (``<file>.sha256``), verified when read; a damaged file is
moved aside and recomputed, and one process computes an entry while another
that needs it waits (:mod:`xldrift.study.cachecheck`, :mod:`xldrift.study.locks`). A language of at
least ``chunk_min_items`` items is computed in chunks of ``chunk_size`` items,
each saved atomically, then merged: a run killed mid-language loses at most
one chunk, and because the chunking is the same whether or not a run was
interrupted, a resumed run gives bit-identical arrays.

Storage dtype: float32 (the default). float16 would halve the disk (15
languages x 13 layers x 2 poolings x 5,010 items x 384 dims take 3.0 GB per
model state in float32, 1.5 GB in float16), but its 11-bit significand moves
linear CKA (Kornblith et al. 2019) far beyond the study's 1e-6 determinism
budget: on multilingual-e5-small with 2,000 XNLI pairs, CKA between every pair
of layers (values 0.23-0.98, 144 pairs, both poolings) changed by a median
1.7e-6 and up to 9.5e-5 when both inputs were rounded to float16
(``bench/bench_extract.py``, section ``storage``). ``dtype=np.float16``
remains available for exploratory runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from xldrift.study import cachecheck, locks, paths
from xldrift.representations.extract import check_items, check_model, check_options, encode_inputs, forward_items
from xldrift.model.fingerprint import weights_fingerprint
from xldrift.study.io import atomic_path, stable_hash
from xldrift.representations.pooling import POOLINGS

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
_META_KEY = "xldrift"

Loader = Callable[[], tuple[Any, torch.nn.Module]]


def _state_dir(state: str) -> Path:
    if not isinstance(state, str) or not state.strip():
        raise ValueError(f"state must be a non-empty string naming the model state, got {state!r}")
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", state).strip("._") or "state"
    if safe != state:  # two ids that sanitise alike must not share a folder
        safe = f"{safe}-{stable_hash(state, 6)}"
    return paths.representations_cache() / safe


def _cache_key(df: pd.DataFrame, max_length: int, poolings: Sequence[str], dtype: Any) -> str:
    text = hashlib.sha256()
    text_b = df["text_b"] if "text_b" in df.columns else [None] * len(df)
    for a, b in zip(df["text_a"], text_b):
        text.update(f"{a}\x1f{b if isinstance(b, str) else chr(0)}\x1e".encode())
    return stable_hash({"format": FORMAT_VERSION, "ids": df["id"].tolist(), "max_length": int(max_length),
                        "poolings": sorted(poolings), "dtype": np.dtype(dtype).name, "text": text.hexdigest()})


def cache_path(state: str, lang: str, df: pd.DataFrame, *, poolings: Sequence[str] = POOLINGS,
               max_length: int = 128, dtype: Any = np.float32) -> Path:
    """Where :func:`extract_cached` stores one (model state, language) entry."""
    if not isinstance(lang, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", lang):
        raise ValueError(f"lang must be a language code of letters, digits, '_' or '-', got {lang!r}")
    poolings = check_options(poolings, 1, max_length, dtype)
    return _state_dir(state) / f"{lang}-{_cache_key(df, max_length, poolings, dtype)}.safetensors"


def _write(path: Path, arrays: Mapping[str, np.ndarray], meta: dict[str, Any]) -> None:
    from safetensors.numpy import save_file

    meta = {**meta, "shape": {p: list(a.shape) for p, a in arrays.items()}}
    with atomic_path(path) as tmp:
        save_file({p: np.ascontiguousarray(a) for p, a in arrays.items()}, str(tmp),
                  metadata={_META_KEY: json.dumps(meta, sort_keys=True, default=str)})
    cachecheck.seal_file(path)


def load_representations(path: str | Path, poolings: Sequence[str] | None = None
                         ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a cache file: ``({pooling: (L+1, n_items, hidden)}, metadata)``.

    The file is verified against its recorded size and SHA-256 first.

    Raises:
        CacheEntryError: the file is missing or damaged (it is moved aside; notebook 03 makes it again).
    """
    from safetensors import safe_open

    cachecheck.require_file(Path(path), "representations file", "notebook 03")

    with safe_open(str(path), framework="np") as f:
        meta = json.loads((f.metadata() or {}).get(_META_KEY, "{}"))
        return {p: f.get_tensor(p) for p in (f.keys() if poolings is None else poolings)}, meta


def _read(path: Path, *, key: str, poolings: Sequence[str], n: int, weights: str | None = None
          ) -> dict[str, np.ndarray] | None:
    """A cache file's arrays if it is the expected entry, else None (to recompute)."""
    if not cachecheck.usable_file(path, cachecheck.safetensors_problem):
        return None  # absent, or damaged and moved aside (with a notice)
    try:
        arrays, meta = load_representations(path, poolings)
    except Exception as err:  # a damaged file is recomputed, never trusted
        cachecheck.quarantine(path, f"{path}: unreadable ({type(err).__name__}: {err})")
        return None
    if meta.get("key") != key or (weights is not None and meta.get("weights") != weights):
        return None
    return arrays if all(a.ndim == 3 and a.shape[1] == n for a in arrays.values()) else None


class _LazyModel:
    """Calls the loader at most once, on first use, and fingerprints the weights."""

    def __init__(self, load_fn: Loader):
        if not callable(load_fn):
            raise ValueError(f"load_fn must be a callable returning (tokenizer, model), got {load_fn!r}")
        self._load_fn, self.pair, self.fingerprint = load_fn, None, ""

    def get(self) -> tuple[Any, torch.nn.Module]:
        if self.pair is None:
            from xldrift.model.loading import compute_device

            tokenizer, model = self._load_fn()
            self.fingerprint = weights_fingerprint(model)
            self.pair = (tokenizer, model.to(compute_device()).eval())
        return self.pair


def state_fingerprints(state: str) -> set[str]:
    """Weight fingerprints recorded in a state's finished cache files (empty if none).

    Two states whose sets intersect were extracted with the same weights.
    """
    found = set()
    for f in sorted(_state_dir(state).glob("*.safetensors")):
        try:
            found.add(load_representations(f, poolings=[])[1].get("weights", ""))
        except Exception:  # unreadable files are ignored here and recomputed on use
            continue
    return found - {""}


def _run_chunked(run: Callable[..., dict[str, np.ndarray]], path: Path, meta: dict[str, Any],
                 chunk_size: int, bar: tqdm) -> dict[str, np.ndarray]:
    """Compute in fixed item chunks, each saved atomically, reusing chunks already on disk."""
    chunk_dir = path.with_suffix(".chunks")
    parts = []
    for start in range(0, meta["n_items"], chunk_size):
        stop = min(start + chunk_size, meta["n_items"])
        f = chunk_dir / f"{start:07d}-{stop:07d}.safetensors"
        part = _read(f, key=meta["key"], poolings=meta["poolings"], n=stop - start, weights=meta["weights"])
        if part is None:
            part = run(np.arange(start, stop), bar=bar)
            _write(f, part, {**meta, "start": start, "stop": stop})
        else:
            bar.update(stop - start)
        parts.append(part)
    return {p: np.concatenate([q[p] for q in parts], axis=1) for p in meta["poolings"]}


def _cached_one(state: str, lazy: _LazyModel, lang: str, df: pd.DataFrame, *, poolings: tuple[str, ...],
                batch_size: int, max_length: int, dtype: Any, force: bool, progress: bool,
                chunk_size: int, chunk_min_items: int) -> tuple[dict[str, np.ndarray], float | None]:
    """One (state, language) entry; also returns the compute seconds (None when cached)."""
    path = cache_path(state, lang, df, poolings=poolings, max_length=max_length, dtype=dtype)
    key, n = path.stem.rsplit("-", 1)[1], len(df)
    if not force and (arrays := _read(path, key=key, poolings=poolings, n=n)) is not None:
        return arrays, None
    # one process computes an entry; another that needs it waits here, then reads it
    with locks.entry_lock(path, "representations"):
        if not force and (arrays := _read(path, key=key, poolings=poolings, n=n)) is not None:
            return arrays, None
        return _compute_one(state, lazy, lang, df, path, key, poolings=poolings, batch_size=batch_size,
                            max_length=max_length, dtype=dtype, force=force, progress=progress,
                            chunk_size=chunk_size, chunk_min_items=chunk_min_items)


def _compute_one(state: str, lazy: _LazyModel, lang: str, df: pd.DataFrame, path: Path, key: str, *,
                 poolings: tuple[str, ...], batch_size: int, max_length: int, dtype: Any, force: bool,
                 progress: bool, chunk_size: int, chunk_min_items: int) -> tuple[dict[str, np.ndarray], float]:
    """Compute and write one entry; the caller holds its entry lock."""
    n = len(df)
    tokenizer, model = lazy.get()
    check_model(model, max_length)
    other = state_fingerprints(state) - {lazy.fingerprint}
    if other and not force:
        raise ValueError(f"cached representations of state {state!r} were made with other weights "
                         f"({sorted(other)}); delete {path.parent} or give this model its own state id")
    if force:
        shutil.rmtree(path.with_suffix(".chunks"), ignore_errors=True)
    t0 = time.perf_counter()
    enc = encode_inputs(tokenizer, df, max_length)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    meta = dict(format=FORMAT_VERSION, state=state, lang=lang, key=key, n_items=n, poolings=list(poolings),
                dtype=np.dtype(dtype).name, max_length=int(max_length), weights=lazy.fingerprint,
                ids_hash=stable_hash(df["id"].tolist()))

    def run(rows: np.ndarray, bar: tqdm) -> dict[str, np.ndarray]:
        return forward_items(model, enc, rows, pad_id=pad_id, poolings=poolings, batch_size=batch_size,
                    sort_by_length=True, dtype=dtype, bar=bar)

    with tqdm(total=n, unit="item", desc=f"{lang}", disable=not progress, leave=False) as bar:
        if n < chunk_min_items:
            arrays = run(np.arange(n), bar)
        else:
            arrays = _run_chunked(run, path, meta, chunk_size, bar)
    _write(path, arrays, meta)
    shutil.rmtree(path.with_suffix(".chunks"), ignore_errors=True)
    return arrays, time.perf_counter() - t0


def extract_languages(state: str, load_fn: Loader, items: Mapping[str, pd.DataFrame], *,
                      poolings: Sequence[str] = POOLINGS, batch_size: int = 64, max_length: int = 128,
                      dtype: Any = np.float32, force: bool = False, progress: bool = True,
                      chunk_size: int = 512, chunk_min_items: int = 2000) -> dict[str, dict[str, np.ndarray]]:
    """:func:`xldrift.representations.extract.extract` for several languages through the on-disk cache, loading the model at most once.

    Args:
        state: an id of the model state (``"e5-small-q4"`` for pre, the
            checkpoint's directory name for post); names the cache folder.
        load_fn: returns ``(tokenizer, model)``; called only when something is
            not cached, so a fully cached run never loads the model.
        items: ``{lang: DataFrame}`` (columns ``id``, ``text_a``, optional
            ``text_b``); every frame is validated before any work.
        poolings, batch_size, max_length, dtype: as in :func:`xldrift.representations.extract.extract`.
        force: recompute even if cached.
        progress: show progress bars (languages, items).
        chunk_size: items per resumable chunk for a language of at least
            ``chunk_min_items`` items; smaller languages are one unit of work.

    Returns:
        ``{lang: {pooling: array (n_layers + 1, n_items, hidden)}}``, items in ``df`` order.
    """
    poolings = check_options(poolings, batch_size, max_length, dtype, chunk_size, chunk_min_items)
    if not items:
        raise ValueError("items is empty; pass {lang: DataFrame} for at least one language")
    for lang, df in items.items():
        check_items(df, f"items of {lang!r}")
        cache_path(state, lang, df, poolings=poolings, max_length=max_length, dtype=dtype)
    lazy, out = _LazyModel(load_fn), {}
    for lang in tqdm(list(items), desc=f"extract {state}", unit="lang", disable=not progress or len(items) < 2):
        out[lang], seconds = _cached_one(state, lazy, lang, items[lang], poolings=poolings,
                                         batch_size=batch_size, max_length=max_length, dtype=dtype,
                                         force=force, progress=progress, chunk_size=chunk_size,
                                         chunk_min_items=chunk_min_items)
        if seconds is None:
            logger.info("%s/%s: cached", state, lang)
        else:
            logger.info("%s/%s: %d items in %.1f s (%.1f items/s)", state, lang, len(items[lang]),
                        seconds, len(items[lang]) / seconds)
    return out


def extract_cached(state: str, load_fn: Loader, lang: str, df: pd.DataFrame, *,
                   poolings: Sequence[str] = POOLINGS, batch_size: int = 64, max_length: int = 128,
                   dtype: Any = np.float32, force: bool = False, progress: bool = True,
                   chunk_size: int = 512, chunk_min_items: int = 2000) -> dict[str, np.ndarray]:
    """One language through the cache: ``{pooling: (n_layers + 1, n_items, hidden)}``.

    Arguments as in :func:`extract_languages`, with ``lang`` and its ``df``.
    """
    return extract_languages(state, load_fn, {lang: df}, poolings=poolings, batch_size=batch_size,
                             max_length=max_length, dtype=dtype, force=force, progress=progress,
                             chunk_size=chunk_size, chunk_min_items=chunk_min_items)[lang]


def disk_usage(state: str | None = None) -> int:
    """Bytes used by the representation cache, for one state or all of them."""
    root = _state_dir(state) if state is not None else paths.representations_cache()
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) if root.exists() else 0


def sanity_table(index: pd.DataFrame, poolings: Sequence[str]) -> pd.DataFrame:
    """Per (state, pooling): shape, finiteness and spread at layer 0 and the last layer.

    Args:
        index: the notebook's representation index with ``state, kind, target, path``.

    Returns:
        One row per (state, pooling) with the number of languages, the array
        shape, whether every value is finite, and the mean per-dimension
        standard deviation over items at layer 0 and at the last layer (0 at
        layer 0 for ``cls``: the same start token at the same position).
    """
    rows = []
    for (kind, state), grp in index.groupby(["kind", "state"], sort=False):
        arrays = [load_representations(p, poolings)[0] for p in grp["path"]]
        for pooling in poolings:
            stack = [a[pooling] for a in arrays]
            rows.append({"kind": kind, "state": state, "pooling": pooling, "languages": len(stack),
                         "shape (layers, items, hidden)": str(stack[0].shape),
                         "all finite": bool(all(np.isfinite(a).all() for a in stack)),
                         "std layer 0": float(np.mean([a[0].std(axis=0).mean() for a in stack])),
                         "std last layer": float(np.mean([a[-1].std(axis=0).mean() for a in stack]))})
    return pd.DataFrame(rows)
