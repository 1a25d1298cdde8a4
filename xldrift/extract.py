"""Per-layer sentence representations of an encoder, pooled and cached.

For each item (an XNLI premise-hypothesis pair encoded as one pair sequence,
exactly as the classifier sees the task, or a single SIB-200 sentence) we keep
every layer: layer 0 is the embeddings output, layers 1..L the outputs of the
transformer blocks. Two poolings are stored (Philippy et al. 2023 use the
first token; mean pooling is the usual alternative, Reimers & Gurevych 2019):

- ``cls``: the first token's vector. At layer 0 it is the same for every
  input (same token, same position, same segment), so similarity metrics
  are undefined there; report layer 0 for ``mean`` only.
- ``mean``: the mean over the non-padding tokens (attention mask).

Speed: one forward pass per batch returns all layers
(``output_hidden_states=True``), under ``torch.inference_mode``; items are
sorted by length and padded per batch only to the longest item, then put back
in the DataFrame's order. Pooling happens inside the batch loop, so memory is
O(n_items x layers x hidden), never O(n_items x seq_len x ...). On 2 CPU
cores with multilingual-e5-small this encodes about 70 XNLI pairs/s, 3.6x the
paper's approach (padding to 128, file order) at about 79% of the machine's
fp32 matmul peak (``bench/bench_extract.py``).

Cache: one safetensors file per (model state, language) under
``representations_cache()/<state>/<lang>-<key>.safetensors``, the key hashing
the item ids, the texts, ``max_length``, the poolings and the storage dtype.
Files are written atomically with their metadata (shapes, key, model state,
a fingerprint of the weights) in the safetensors header, and their size and
SHA-256 beside them (``<file>.sha256``), verified when read; a damaged file is
moved aside and recomputed, and one process computes an entry while another
that needs it waits (:mod:`xldrift.cachecheck`, :mod:`xldrift.locks`). A language of at
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
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from xldrift import cachecheck, locks, paths
from xldrift.io import atomic_path, stable_hash

logger = logging.getLogger(__name__)

POOLINGS: tuple[str, ...] = ("cls", "mean")
STORAGE_DTYPES: tuple[str, ...] = ("float32", "float16")
FORMAT_VERSION = 1
_META_KEY = "xldrift"

Loader = Callable[[], tuple[Any, torch.nn.Module]]


# ----------------------------------------------------------------- validation
def _check_items(df: pd.DataFrame, what: str = "df") -> None:
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"{what} must be a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in ("id", "text_a") if c not in df.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {missing}; expected id, text_a and optionally text_b")
    if len(df) == 0:
        raise ValueError(f"{what} has no rows; extraction needs at least one item")
    bad = [i for i, t in enumerate(df["text_a"]) if not isinstance(t, str) or not t.strip()]
    if bad:
        raise ValueError(f"{what}: text_a must be non-empty strings; row {bad[0]} is {df['text_a'].iloc[bad[0]]!r}")
    if "text_b" in df.columns:
        bad = [i for i, t in enumerate(df["text_b"]) if not pd.isna(t) and not (isinstance(t, str) and t.strip())]
        if bad:
            raise ValueError(f"{what}: text_b must be a non-empty string or None; row {bad[0]} is "
                             f"{df['text_b'].iloc[bad[0]]!r}")
    if df["id"].duplicated().any():
        dup = df["id"][df["id"].duplicated()].iloc[0]
        raise ValueError(f"{what}: item ids must be unique; id {dup!r} repeats")


def _check_args(poolings: Sequence[str], batch_size: int, max_length: int, dtype: Any,
                chunk_size: int = 1, chunk_min_items: int = 1) -> tuple[str, ...]:
    """Validate the extraction options; returns the poolings as a de-duplicated tuple."""
    poolings = tuple(dict.fromkeys((poolings,) if isinstance(poolings, str) else poolings))
    unknown = [p for p in poolings if p not in POOLINGS]
    if unknown or not poolings:
        raise ValueError(f"unknown pooling(s) {unknown or list(poolings)}; valid: {list(POOLINGS)}")
    for name, value, low in (("batch_size", batch_size, 1), ("max_length", max_length, 2),
                             ("chunk_size", chunk_size, 1), ("chunk_min_items", chunk_min_items, 1)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = repr(dtype)
    if name not in STORAGE_DTYPES:
        raise ValueError(f"storage dtype must be one of {list(STORAGE_DTYPES)}, got {name}")
    return poolings


def _check_model(model: torch.nn.Module, max_length: int) -> None:
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if limit is not None and max_length > limit:
        raise ValueError(f"max_length={max_length} exceeds the model's {limit} positions")


# ----------------------------------------------------------------- tokenising
def encode_inputs(tokenizer: Any, df: pd.DataFrame, max_length: int) -> dict[str, list[list[int]]]:
    """Tokenise the items, as pairs where ``text_b`` is present, without padding.

    Args:
        tokenizer: a Hugging Face tokenizer.
        df: items with ``text_a`` and optionally ``text_b`` (None/NaN = single text).
        max_length: truncation length in tokens, special tokens included.

    Returns:
        ``{"input_ids": [ids per item]}`` plus ``"token_type_ids"`` when the
        tokenizer produces them, in the order of ``df``.
    """
    _check_items(df)
    if not isinstance(max_length, (int, np.integer)) or max_length < 2:
        raise ValueError(f"max_length must be an int >= 2, got {max_length!r}")
    text_a = df["text_a"].tolist()
    text_b = df["text_b"] if "text_b" in df.columns else pd.Series([None] * len(df), index=df.index)
    has_b = text_b.notna().to_numpy()
    kwargs = dict(truncation=True, max_length=int(max_length), padding=False, return_attention_mask=False)
    out: dict[str, list[Any]] = {}
    # a fast tokenizer takes either all singles or all pairs, so mixed frames go in two calls
    for mask, pair in ((has_b, True), (~has_b, False)):
        rows = np.flatnonzero(mask)
        if len(rows) == 0:
            continue
        a = [text_a[i] for i in rows]
        enc = tokenizer(a, [text_b.iloc[i] for i in rows], **kwargs) if pair else tokenizer(a, **kwargs)
        for name in ("input_ids", "token_type_ids"):
            if name in enc:
                col = out.setdefault(name, [None] * len(df))
                for r, ids in zip(rows, enc[name]):
                    col[r] = list(ids)
    return out


# ----------------------------------------------------------------- forward pass
def _collate(enc: Mapping[str, list[list[int]]], rows: np.ndarray, pad_id: int,
             device: torch.device) -> dict[str, torch.Tensor]:
    """Pad the given items to the longest among them (ids with ``pad_id``, the rest with 0)."""
    width = max(len(enc["input_ids"][r]) for r in rows)
    batch = {name: np.full((len(rows), width), pad_id if name == "input_ids" else 0, dtype=np.int64)
             for name in [*enc, "attention_mask"]}
    for j, r in enumerate(rows):
        n = len(enc["input_ids"][r])
        batch["attention_mask"][j, :n] = 1
        for name in enc:
            batch[name][j, :n] = enc[name][r]
    return {k: torch.from_numpy(v).to(device) for k, v in batch.items()}


def _pool(hidden: Sequence[torch.Tensor], mask: torch.Tensor, poolings: Iterable[str]) -> dict[str, torch.Tensor]:
    """Pool each layer's ``(batch, seq, hidden)`` states to ``(layers, batch, hidden)``."""
    out = {}
    for p in poolings:
        if p == "cls":
            out[p] = torch.stack([h[:, 0] for h in hidden])
        else:
            m = mask.to(hidden[0].dtype)
            count = m.sum(1, keepdim=True)
            # a (batch, 1, seq) x (batch, seq, hidden) product skips the masked temporary
            out[p] = torch.stack([torch.bmm(m.unsqueeze(1), h).squeeze(1) / count for h in hidden])
    return out


def _run(model: torch.nn.Module, enc: Mapping[str, list[list[int]]], rows: np.ndarray, *, pad_id: int,
         poolings: tuple[str, ...], batch_size: int, sort_by_length: bool, dtype: Any,
         bar: tqdm | None) -> dict[str, np.ndarray]:
    """Forward the items ``rows`` of ``enc``; arrays ``(L+1, len(rows), hidden)`` in ``rows`` order."""
    lens = np.array([len(enc["input_ids"][r]) for r in rows])
    order = np.argsort(-lens, kind="stable") if sort_by_length else np.arange(len(rows))
    device = next(model.parameters()).device
    out: dict[str, np.ndarray] = {}
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(rows), batch_size):
            pos = order[start:start + batch_size]
            batch = _collate(enc, rows[pos], pad_id, device)
            hidden = model(**batch, output_hidden_states=True).hidden_states
            for p, t in _pool(hidden, batch["attention_mask"], poolings).items():
                if p not in out:
                    out[p] = np.empty((t.shape[0], len(rows), t.shape[2]), dtype=dtype)
                out[p][:, pos] = t.float().cpu().numpy()
            if bar is not None:
                bar.update(len(pos))
    return out


def extract(model: torch.nn.Module, tokenizer: Any, df: pd.DataFrame, *,
            poolings: Sequence[str] = POOLINGS, batch_size: int = 64, max_length: int = 128,
            sort_by_length: bool = True, progress: bool = True,
            dtype: Any = np.float32) -> dict[str, np.ndarray]:
    """Pooled hidden states of every layer for every item.

    Args:
        model: a base encoder (e.g. ``BertModel``) returning ``hidden_states``;
            put in eval mode.
        tokenizer: its tokenizer.
        df: items (columns ``id``, ``text_a``, optional ``text_b``).
        poolings: any of ``"cls"``, ``"mean"``.
        batch_size: items per forward pass.
        max_length: truncation length in tokens.
        sort_by_length: batch items of similar length together (less padding).
        progress: show a progress bar.
        dtype: storage dtype of the returned arrays (float32 or float16).

    Returns:
        ``{pooling: array (n_layers + 1, n_items, hidden)}`` in ``df`` order;
        index 0 is the embeddings output.
    """
    poolings = _check_args(poolings, batch_size, max_length, dtype)
    _check_model(model, max_length)
    enc = encode_inputs(tokenizer, df, max_length)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    with tqdm(total=len(df), unit="item", disable=not progress, desc="extract") as bar:
        return _run(model, enc, np.arange(len(df)), pad_id=pad_id, poolings=poolings, batch_size=batch_size,
                    sort_by_length=sort_by_length, dtype=dtype, bar=bar)


# ----------------------------------------------------------------- weights
def _encoder_params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The floating-point tensors that produce the hidden states (no pooler, no task head)."""
    base = getattr(model, "base_model", model)
    return {k: v for k, v in base.state_dict().items()
            if torch.is_floating_point(v) and not k.startswith("pooler.")}


def assert_weights_differ(model_a: torch.nn.Module, model_b: torch.nn.Module, *, atol: float = 0.0) -> float:
    """Check that two model states share an architecture but not their weights.

    Guards against measuring "drift" between a checkpoint and itself (the
    paper's released code loaded the pre-trained state from the fine-tuned
    checkpoint, so all its drifts were zero). Task heads and poolers are
    ignored: only the encoder that produces the hidden states is compared.

    Args:
        model_a, model_b: the two states (base encoders or task models).
        atol: differences up to this value count as identical.

    Returns:
        The largest absolute parameter difference.

    Raises:
        ValueError: different parameter names/shapes, or max difference <= atol.
    """
    a, b = _encoder_params(model_a), _encoder_params(model_b)
    if a.keys() != b.keys():
        only_a, only_b = sorted(a.keys() - b.keys()), sorted(b.keys() - a.keys())
        raise ValueError(f"the two models differ in architecture: only in the first {only_a[:3]}, "
                         f"only in the second {only_b[:3]}")
    worst = 0.0
    for name, ta in a.items():
        tb = b[name]
        if ta.shape != tb.shape:
            raise ValueError(f"parameter {name} has shape {tuple(ta.shape)} vs {tuple(tb.shape)}")
        # row blocks keep the temporary small for the 96M-parameter embedding matrix
        for xa, xb in zip(ta.detach().reshape(ta.shape[0] if ta.dim() else 1, -1).split(8192),
                          tb.detach().reshape(tb.shape[0] if tb.dim() else 1, -1).split(8192)):
            worst = max(worst, (xa.float() - xb.float().to(xa.device)).abs().max().item())
    if not worst > atol:
        raise ValueError(f"the two model states have identical weights (max |difference| = {worst:g} <= "
                         f"atol={atol:g}): the 'pre' state was probably loaded from the fine-tuned checkpoint")
    return worst


def weights_fingerprint(model: torch.nn.Module) -> str:
    """A short hash of the encoder weights (same tensors as :func:`assert_weights_differ`)."""
    h = hashlib.blake2b(digest_size=8)
    for name, t in sorted(_encoder_params(model).items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


# ----------------------------------------------------------------- cache
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
    poolings = _check_args(poolings, 1, max_length, dtype)
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
            from xldrift.models import compute_device

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
    _check_model(model, max_length)
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
        return _run(model, enc, rows, pad_id=pad_id, poolings=poolings, batch_size=batch_size,
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
    """:func:`extract` for several languages through the on-disk cache, loading the model at most once.

    Args:
        state: an id of the model state (``"e5-small-q4"`` for pre, the
            checkpoint's directory name for post); names the cache folder.
        load_fn: returns ``(tokenizer, model)``; called only when something is
            not cached, so a fully cached run never loads the model.
        items: ``{lang: DataFrame}`` (columns ``id``, ``text_a``, optional
            ``text_b``); every frame is validated before any work.
        poolings, batch_size, max_length, dtype: as in :func:`extract`.
        force: recompute even if cached.
        progress: show progress bars (languages, items).
        chunk_size: items per resumable chunk for a language of at least
            ``chunk_min_items`` items; smaller languages are one unit of work.

    Returns:
        ``{lang: {pooling: array (n_layers + 1, n_items, hidden)}}``, items in ``df`` order.
    """
    poolings = _check_args(poolings, batch_size, max_length, dtype, chunk_size, chunk_min_items)
    if not items:
        raise ValueError("items is empty; pass {lang: DataFrame} for at least one language")
    for lang, df in items.items():
        _check_items(df, f"items of {lang!r}")
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
