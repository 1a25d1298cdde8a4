"""Zero-shot evaluation of fine-tuned checkpoints, with cached predictions and CIs.

Predictions of a checkpoint on a language's items are cached under
``paths.evaluations_cache()/<checkpoint name>/<lang>-<hash>.csv`` (columns
``id, label, pred, correct``), the hash covering the items, their texts, the
maximum length and the checkpoint's run id, so re-runs skip finished work and
a retrained checkpoint never reuses stale predictions. Each file's size and
SHA-256 are recorded beside it (``<file>.sha256``) and checked when it is read,
and its rows must be exactly the items asked for; a file that fails either is
moved aside and recomputed (:mod:`xldrift.study.cachecheck`).
"""

from __future__ import annotations

import logging
import numbers
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm
from transformers import DataCollatorWithPadding

from xldrift.study import cachecheck, io, locks, paths
from xldrift.model.classifier import EncoderClassifier, check_frame, encode
from xldrift.model.finetune import load_classifier, set_threads
from xldrift.model.loading import compute_device

logger = logging.getLogger(__name__)

PREDICTION_COLUMNS = ["id", "label", "pred", "correct"]


def predict_logits(model: EncoderClassifier, tokenizer: Any, df: pd.DataFrame, *, batch_size: int = 64,
                   max_length: int = 128, progress: bool = True, sort_by_length: bool = True) -> np.ndarray:
    """Classifier logits for every row of ``df``, in ``df`` order.

    Rows are batched by length (less padding, same results up to float
    rounding) and the logits put back in the original order.

    Args:
        model: a classifier (left in the train/eval mode it came in).
        tokenizer: its tokenizer.
        df: rows with ``text_a`` and ``text_b`` (``None`` for single texts).
        batch_size, max_length: inference batch size and truncation length.
        progress: show a progress bar.
        sort_by_length: batch rows of similar length together.

    Returns:
        float32 array ``(n_items, num_labels)``.
    """
    if not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not isinstance(max_length, numbers.Integral) or max_length < 8:
        raise ValueError(f"max_length must be an integer >= 8, got {max_length!r}")
    check_frame(df, "df")
    feats = encode(tokenizer, df, max_length)
    lengths = np.array([len(f["input_ids"]) for f in feats])
    order = np.argsort(lengths, kind="stable") if sort_by_length else np.arange(len(feats))
    collate = DataCollatorWithPadding(tokenizer)
    device = next(model.parameters()).device
    out = np.empty((len(feats), model.num_labels), dtype=np.float32)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            starts = range(0, len(order), batch_size)
            for s in tqdm(starts, desc="predict", disable=not progress, leave=False):
                idx = order[s:s + batch_size]
                batch = {k: v.to(device) for k, v in collate([feats[i] for i in idx]).items()}
                out[idx] = model(**batch).logits.float().cpu().numpy()
    finally:
        model.train(was_training)
    return out


def predict(model: EncoderClassifier, tokenizer: Any, df: pd.DataFrame, *, batch_size: int = 64,
            max_length: int = 128, progress: bool = True) -> np.ndarray:
    """Predicted label ids ``(n_items,)`` in ``df`` order (argmax of :func:`predict_logits`)."""
    logits = predict_logits(model, tokenizer, df, batch_size=batch_size, max_length=max_length,
                            progress=progress)
    return logits.argmax(-1).astype(np.int64)


def accuracy(pred: Any, gold: Any) -> float:
    """Fraction of items whose predicted label equals the gold label."""
    pred, gold = np.asarray(pred), np.asarray(gold)
    if pred.shape != gold.shape or pred.ndim != 1:
        raise ValueError(f"pred and gold must be 1-D of equal length, got shapes {pred.shape} and {gold.shape}")
    if pred.size == 0:
        raise ValueError("accuracy of zero items is undefined")
    return float((pred == gold).mean())


def _cache_file(ckpt_dir: Path, lang: str, df: pd.DataFrame, max_length: int, run_id: str) -> Path:
    content = pd.util.hash_pandas_object(df[["text_a", "text_b", "label"]].astype(object), index=False)
    key = io.stable_hash({"ids": df["id"].astype(int).tolist(), "content": content.to_numpy().tolist(),
                          "max_length": max_length, "run_id": run_id})
    return paths.evaluations_cache() / ckpt_dir.name / f"{lang}-{key}.csv"


def evaluate_cached(ckpt_dir: str | Path, lang: str, df: pd.DataFrame, *, batch_size: int = 64,
                    max_length: int = 128, force: bool = False, progress: bool = True,
                    loaded: tuple[Any, EncoderClassifier] | None = None) -> pd.DataFrame:
    """Predictions of a checkpoint on one language's items, cached on disk.

    Args:
        ckpt_dir: a complete checkpoint from :func:`xldrift.model.finetune.finetune`.
        lang: language code (part of the cache file name).
        df: the language's items (``id, text_a, text_b, label``).
        batch_size, max_length: inference settings.
        force: recompute even when cached.
        progress: show a progress bar.
        loaded: an already loaded ``(tokenizer, model)`` of this checkpoint.

    Returns:
        DataFrame ``id, label, pred, correct`` in ``df`` order.
    """
    return evaluate_languages(ckpt_dir, {lang: df}, batch_size=batch_size, max_length=max_length,
                              force=force, progress=progress, loaded=loaded)[lang]


def evaluate_languages(ckpt_dir: str | Path, frames: Mapping[str, pd.DataFrame], *, batch_size: int = 64,
                       max_length: int = 128, force: bool = False, progress: bool = True,
                       loaded: tuple[Any, EncoderClassifier] | None = None) -> dict[str, pd.DataFrame]:
    """:func:`evaluate_cached` for several languages, loading the model at most once.

    The checkpoint is loaded only if some language is not cached yet.

    Returns:
        ``{lang: DataFrame(id, label, pred, correct)}`` in the order of ``frames``.
    """
    ckpt_dir = Path(ckpt_dir)
    manifest = io.read_manifest(ckpt_dir)
    if manifest is None:
        raise ValueError(f"{ckpt_dir} is not a complete fine-tuned checkpoint (no manifest.json)")
    num_labels = int(manifest["num_labels"])
    for lang, df in frames.items():
        check_frame(df, f"items of {lang!r}", num_labels)
        if "id" not in df.columns:
            raise ValueError(f"items of {lang!r} lack the 'id' column")
    results: dict[str, pd.DataFrame] = {}
    for lang, df in tqdm(frames.items(), desc="languages", disable=not progress or len(frames) < 2):
        target = _cache_file(ckpt_dir, lang, df, max_length, manifest.get("run_id", ""))
        if not force and (cached := _read_cached(target, df, num_labels)) is not None:
            results[lang] = cached
            continue
        with locks.entry_lock(target, "predictions"):
            if not force and (cached := _read_cached(target, df, num_labels)) is not None:
                results[lang] = cached
                continue
            if loaded is None:
                set_threads()
                tokenizer, model = load_classifier(ckpt_dir)
                loaded = tokenizer, model.to(compute_device())
            tokenizer, model = loaded
            pred = predict(model, tokenizer, df, batch_size=batch_size, max_length=max_length, progress=progress)
            label = df["label"].astype(int).to_numpy()
            table = pd.DataFrame({"id": df["id"].astype(int).to_numpy(), "label": label, "pred": pred,
                                  "correct": pred == label})
            io.write_csv(table, target)
            cachecheck.seal_file(target)
        logger.info("%s on %s: accuracy %.4f over %d items", ckpt_dir.name, lang, table["correct"].mean(),
                     len(table))
        results[lang] = table
    return results


def prediction_problem(table: pd.DataFrame, df: pd.DataFrame, num_labels: int) -> str | None:
    """Why a predictions table does not hold exactly ``df``'s items, or None when it does.

    The table must have the columns ``id, label, pred, correct``, one row per
    item of ``df`` in its order with the same ids and labels, predictions in
    ``[0, num_labels)`` and ``correct == (pred == label)``.
    """
    if list(table.columns) != PREDICTION_COLUMNS:
        return f"columns {list(table.columns)}, expected {PREDICTION_COLUMNS}"
    if len(table) != len(df):
        return f"{len(table)} rows for {len(df)} items"
    ids = df["id"].astype(int).to_numpy()
    try:
        got = {c: table[c].to_numpy(dtype=np.int64) for c in ("id", "label", "pred")}
    except (TypeError, ValueError):
        return "non-integer ids, labels or predictions"
    bad = np.flatnonzero(got["id"] != ids)
    if bad.size:
        return f"row {bad[0] + 1} holds item {got['id'][bad[0]]}, expected {ids[bad[0]]}"
    bad = np.flatnonzero(got["label"] != df["label"].astype(int).to_numpy())
    if bad.size:
        return f"row {bad[0] + 1} (item {ids[bad[0]]}) has label {got['label'][bad[0]]}, the data say otherwise"
    if ((got["pred"] < 0) | (got["pred"] >= num_labels)).any():
        return f"predictions outside 0..{num_labels - 1}"
    if table["correct"].dtype != bool or not (table["correct"].to_numpy() == (got["pred"] == got["label"])).all():
        return "the 'correct' column does not equal pred == label"
    return None


def _read_cached(target: Path, df: pd.DataFrame, num_labels: int) -> pd.DataFrame | None:
    """The cached predictions at ``target`` if they verify and hold ``df``'s items; else None.

    A file that fails (size or SHA-256 against its record, unreadable, or rows
    that are not the items) is moved aside with a notice, to be recomputed.
    """
    if not target.is_file():
        return None
    why = cachecheck.check_file(target)
    table = None
    if why is None:
        try:
            table = pd.read_csv(target)
        except (OSError, ValueError, pd.errors.ParserError) as err:
            why = f"unreadable ({type(err).__name__}: {err})"
    if why is None:
        why = prediction_problem(table, df, num_labels)
        why = None if why is None else f"{target}: {why}"
    if why is not None:
        cachecheck.quarantine(target, why if str(target) in why else f"{target}: {why}")
        return None
    if cachecheck.file_record(target) is None:
        cachecheck.seal_file(target)  # made before records existed, and sound
    return table
