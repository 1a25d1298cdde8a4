"""Fine-tune an encoder with a small classification head, cached by everything that shapes it.

The head reads one vector per item from the encoder's last layer -- the mean
over non-padding tokens (default) or the first token -- and maps it through
dropout and a linear layer to the labels. Training uses the Hugging Face
``Trainer`` (AdamW, linear schedule with warm-up, gradient clipping, dynamic
padding) and keeps the last epoch, as Philippy et al. (2023) do. AdamW runs as
PyTorch's fused kernel where it has one (CPU, CUDA): the same update as the
for-loop implementation the Trainer would otherwise pick on CPU (parameters
agree to ~1e-7 after several steps), at a fraction of its cost, which matters
because AdamW updates all 96 M word-embedding parameters of the embedded model
at every step (``bench/bench_finetune.py``).

A checkpoint directory holds ``encoder/`` (the fine-tuned base encoder, loadable
like any pre-trained one), ``tokenizer/``, ``head.safetensors``,
``history.csv`` and ``manifest.json`` (written last: its presence marks the
checkpoint complete).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import numbers
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd
import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import PrinterCallback

from xldrift.study import cachecheck, io, locks, paths
# re-exported: these lived here before xldrift.model.classifier existed
from xldrift.model.classifier import EncoderClassifier, check_frame, encode, encoder_blocks, freeze  # noqa: F401
from xldrift.model.frozen import FrozenLayers
from xldrift.representations.pooling import POOLINGS

if TYPE_CHECKING:
    from xldrift.study.config import StudyConfig

logger = logging.getLogger(__name__)

HEAD_FILE = "head.safetensors"
# the notebooks that fine-tune checkpoints, named when a damaged one must be made again
PRODUCERS = "notebook 02 (or 06 for frozen-layer runs)"
HISTORY_FILE = "history.csv"
THREADS_ENV = "XLDRIFT_THREADS"


def set_threads() -> int:
    """Set torch's intra-op threads from ``$XLDRIFT_THREADS``, else the usable CPUs.

    Returns:
        The number of threads now in use.
    """
    env = os.environ.get(THREADS_ENV)
    if env is not None:
        if not env.strip().isdigit() or int(env) < 1:
            raise ValueError(f"{THREADS_ENV}={env!r} is not a positive integer")
        n = int(env)
    else:
        # The affinity mask, not os.cpu_count(), is what a container really grants.
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(n)
    return n


def _device_type() -> str:
    from xldrift.model.loading import compute_device  # models imports transformers' Auto classes

    return compute_device().type


def optimizer_name(device_type: str) -> str:
    """The Trainer's ``optim`` for a device: fused AdamW on CPU and CUDA, the for-loop AdamW elsewhere."""
    return "adamw_torch_fused" if device_type in ("cpu", "cuda") else "adamw_torch"


# ------------------------------------------------------------------ config
@dataclass(frozen=True, kw_only=True)
class FinetuneConfig:
    """Everything that determines a fine-tuned checkpoint; its hash keys the cache.

    The settings the study chooses have no default here: their defaults live in
    :class:`xldrift.study.config.StudyConfig`, and :meth:`from_study` derives a config
    from it. Only settings the study never sets keep one (gradient clipping,
    dropout, no frozen blocks). ``frozen_layers`` are encoder blocks numbered
    1..L (hidden-state index).
    """

    model: str
    task: str
    source: str
    seed: int
    epochs: int
    learning_rate: float
    batch_size: int
    max_length: int
    warmup_ratio: float
    weight_decay: float
    max_grad_norm: float = 1.0
    pooling: str
    dropout: float = 0.1
    freeze_word_embeddings: bool
    frozen_layers: tuple[int, ...] = ()
    data_fingerprint: str = ""
    num_labels: int = 3

    @classmethod
    def from_study(cls, cfg: StudyConfig, *, source: str, seed: int, frozen_layers: Sequence[int] = (),
                   fingerprint: str) -> FinetuneConfig:
        """The validated fine-tuning config of one run of the study.

        Args:
            cfg: the study's config; its ``model, task, epochs, learning_rate, batch_size,
                max_length, warmup_ratio, weight_decay, head_pooling, freeze_word_embeddings``
                become this run's settings, and the task decides the number of labels.
            source, seed, frozen_layers: this run's source language, seed and frozen blocks.
            fingerprint: :func:`data_fingerprint` of the run's training and validation items.

        Raises:
            ValueError: a setting is out of range (see :meth:`validate`).
        """
        from xldrift.data.tasks import labels

        return cls(
            model=cfg.model, task=cfg.task, source=source, seed=seed, epochs=cfg.epochs,
            learning_rate=cfg.learning_rate, batch_size=cfg.batch_size, max_length=cfg.max_length,
            warmup_ratio=cfg.warmup_ratio, weight_decay=cfg.weight_decay, pooling=cfg.head_pooling,
            freeze_word_embeddings=cfg.freeze_word_embeddings, frozen_layers=tuple(frozen_layers),
            data_fingerprint=fingerprint, num_labels=len(labels(cfg.task)),
        ).validate()

    def __post_init__(self) -> None:
        # numpy scalars would hash as strings and split one config into two keys
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, np.generic):
                object.__setattr__(self, f.name, v.item())
        layers = self.frozen_layers
        if isinstance(layers, (list, tuple, set, frozenset, np.ndarray)) and all(
            isinstance(x, numbers.Integral) and not isinstance(x, bool) for x in layers
        ):
            object.__setattr__(self, "frozen_layers", tuple(sorted({int(x) for x in layers})))

    def key(self) -> str:
        """Short stable hash of every field."""
        return io.stable_hash(asdict(self))

    def validate(self) -> FinetuneConfig:
        """Raise one ``ValueError`` listing every out-of-range field; return self."""
        problems = []

        def is_int(v: Any) -> bool:
            return isinstance(v, numbers.Integral) and not isinstance(v, bool)

        def is_num(v: Any) -> bool:
            return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)

        for name in ("model", "task", "source", "data_fingerprint"):
            v = getattr(self, name)
            if not isinstance(v, str) or not v.strip():
                problems.append(f"{name} must be a non-empty string, got {v!r}")
        for name, low in (("seed", 0), ("epochs", 1), ("batch_size", 1), ("max_length", 8), ("num_labels", 2)):
            v = getattr(self, name)
            if not is_int(v) or v < low:
                problems.append(f"{name} must be an integer >= {low}, got {v!r}")
        checks = (
            ("learning_rate", lambda v: 0 < v < 1, "in (0, 1)"),
            ("warmup_ratio", lambda v: 0 <= v < 1, "in [0, 1)"),
            ("weight_decay", lambda v: 0 <= v < 1, "in [0, 1)"),
            ("max_grad_norm", lambda v: v > 0, "> 0"),
            ("dropout", lambda v: 0 <= v < 1, "in [0, 1)"),
        )
        for name, ok, valid in checks:
            v = getattr(self, name)
            if not is_num(v) or not ok(v):
                problems.append(f"{name} must be a number {valid}, got {v!r}")
        if self.pooling not in POOLINGS:
            problems.append(f"pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}")
        if not isinstance(self.freeze_word_embeddings, bool):
            problems.append(f"freeze_word_embeddings must be True or False, got {self.freeze_word_embeddings!r}")
        layers = self.frozen_layers
        if not isinstance(layers, tuple) or not all(is_int(x) and x >= 1 for x in layers):
            problems.append(f"frozen_layers must be integers >= 1 (encoder blocks 1..L), got {layers!r}")
        if problems:
            raise ValueError("invalid fine-tuning config: " + "; ".join(problems))
        return self


def data_fingerprint(*frames: pd.DataFrame | None) -> str:
    """Hash of the items (ids, texts, labels) of the given frames, in order."""
    parts = []
    for df in frames:
        if df is None:
            parts.append(None)
            continue
        cols = [c for c in ("id", "text_a", "text_b", "label") if c in df.columns]
        hashed = pd.util.hash_pandas_object(df[cols].astype(object), index=False)
        parts.append([len(df), cols, io.stable_hash(hashed.to_numpy().tolist(), length=16)])
    return io.stable_hash(parts)


def hyperparameters(study: StudyConfig) -> dict[str, Any]:
    """The fine-tuning settings shared by every run of a notebook (no source, seed, layers or data)."""
    cfg = asdict(FinetuneConfig.from_study(study, source="-", seed=0, fingerprint="-"))
    for per_run in ("source", "seed", "frozen_layers", "data_fingerprint"):
        cfg.pop(per_run)
    return cfg


def run_record(ckpt_dir: str | Path, condition: str) -> dict[str, Any]:
    """One row describing a finished checkpoint, for a notebook's ``checkpoints.csv``.

    ``frozen_layers`` is the text form of :class:`xldrift.model.frozen.FrozenLayers` (``""`` when nothing is frozen).
    """
    m = io.read_manifest(ckpt_dir)
    if m is None:
        raise ValueError(f"{ckpt_dir} is not a complete fine-tuned checkpoint (no manifest.json)")
    c = m["config"]
    return {"checkpoint": Path(ckpt_dir).name, "source": c["source"], "seed": c["seed"], "condition": condition,
            "frozen_layers": FrozenLayers.of(c["frozen_layers"]).text(), "train_items": m["train_items"],
            "trainable_parameters": m["parameters"]["trainable"], "steps": m["steps"],
            "seconds_per_step": m["seconds_per_step"], "wall_seconds": m["wall_seconds"],
            "final_val_accuracy": m["final_val_accuracy"]}


def checkpoint_dir(cfg: FinetuneConfig) -> Path:
    """``<checkpoints cache>/<task>-<source>-s<seed>-<key>``."""
    return paths.checkpoints_cache() / f"{cfg.task}-{cfg.source}-s{cfg.seed}-{cfg.key()}"


# ------------------------------------------------------------------ training
class _StepTimer(TrainerCallback):
    """Sums the wall time of optimisation steps only (evaluation excluded)."""

    def __init__(self) -> None:
        self.seconds, self._start = 0.0, 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.seconds += time.perf_counter() - self._start


class _EpochLogger(TrainerCallback):
    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        logger.info("epoch %.0f step %d: validation accuracy %.4f", state.epoch or 0, state.global_step,
                    (metrics or {}).get("eval_accuracy", float("nan")))


def _accuracy_metric(pred: transformers.EvalPrediction) -> dict[str, float]:
    logits = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
    return {"accuracy": float((np.asarray(logits).argmax(-1) == np.asarray(pred.label_ids)).mean())}


def history_frame(log_history: list[dict[str, Any]]) -> pd.DataFrame:
    """Trainer log entries -> one row per training log or evaluation.

    Columns ``epoch, step, train_loss, val_accuracy, lr`` (NaN where an entry
    does not carry the value).
    """
    rows = [{"epoch": e.get("epoch"), "step": e.get("step"), "train_loss": e.get("loss"),
             "val_accuracy": e.get("eval_accuracy"), "lr": e.get("learning_rate")}
            for e in log_history if "loss" in e or "eval_accuracy" in e]
    return pd.DataFrame(rows, columns=["epoch", "step", "train_loss", "val_accuracy", "lr"], dtype=float)


def history(ckpt_dir: str | Path) -> pd.DataFrame:
    """Read a checkpoint's ``history.csv`` (see :func:`history_frame`)."""
    return pd.read_csv(Path(ckpt_dir) / HISTORY_FILE)


read_history = history


def _train(cfg: FinetuneConfig, model: EncoderClassifier, tokenizer: Any, train_df: pd.DataFrame,
           val_df: pd.DataFrame | None, progress: bool,
           callbacks: Sequence[TrainerCallback]) -> tuple[Trainer, float]:
    """Run the Trainer; return it and the summed step seconds."""
    train = encode(tokenizer, train_df, cfg.max_length, labels=True)
    val = encode(tokenizer, val_df, cfg.max_length, labels=True) if val_df is not None else None
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    device = _device_type()
    timer = _StepTimer()
    with tempfile.TemporaryDirectory(prefix="xldrift-trainer-") as scratch:
        args = TrainingArguments(
            output_dir=scratch, num_train_epochs=cfg.epochs, learning_rate=cfg.learning_rate,
            per_device_train_batch_size=cfg.batch_size, per_device_eval_batch_size=cfg.batch_size,
            warmup_steps=cfg.warmup_ratio,  # a float < 1 is read as a ratio of all steps
            lr_scheduler_type="linear", weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm,
            optim=optimizer_name(device), eval_strategy="epoch" if val is not None else "no",
            logging_strategy="steps", logging_steps=max(1, min(10, steps_per_epoch * cfg.epochs // 20)),  # ~20+ points per curve
            save_strategy="no", report_to="none", disable_tqdm=not progress,
            dataloader_num_workers=0, use_cpu=device == "cpu",
            seed=cfg.seed, data_seed=cfg.seed, label_names=["labels"],
        )
        trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=val,
                          data_collator=DataCollatorWithPadding(tokenizer),
                          compute_metrics=_accuracy_metric,
                          callbacks=[timer, _EpochLogger(), *callbacks])
        trainer.remove_callback(PrinterCallback)  # it prints raw log dicts when tqdm is off
        trainer.train()
    return trainer, timer.seconds


def _remove_stale_temps(target: Path) -> None:
    # A killed process cannot clean up after itself; its half-built sibling is useless.
    # Only temporaries whose owner is gone are removed (their names carry its pid).
    for stale in locks.stale_temps(target):
        logger.warning("removing %s, left by an interrupted run", stale)
        shutil.rmtree(stale, ignore_errors=True)


def finetune(cfg: FinetuneConfig, train_df: pd.DataFrame, val_df: pd.DataFrame | None, *,
             force: bool = False, progress: bool = True,
             callbacks: Sequence[TrainerCallback] = ()) -> Path:
    """Fine-tune ``cfg.model`` on ``train_df`` (or reuse the cached checkpoint).

    Training is deterministic on CPU for a fixed seed and thread count; on GPU
    cuDNN/cuBLAS kernels may differ slightly between runs. One process
    trains a key at a time (an entry lock); another that needs the same key
    waits and then reuses the checkpoint. A cached checkpoint is verified
    against its recorded sizes and SHA-256 first; a damaged one is moved aside
    and trained again. Temporary directories left by a killed run of the same
    key are removed first.

    Args:
        cfg: the full configuration; ``cfg.data_fingerprint`` must equal
            :func:`data_fingerprint` ``(train_df, val_df)``.
        train_df, val_df: splits in the task schema; ``val_df`` is evaluated
            after each epoch (``None`` to skip).
        force: retrain even when a complete checkpoint exists.
        progress: show the Trainer's progress bar.
        callbacks: extra ``TrainerCallback`` objects.

    Returns:
        The checkpoint directory.
    """
    cfg.validate()
    check_frame(train_df, "train_df", cfg.num_labels)
    if val_df is not None:
        check_frame(val_df, "val_df", cfg.num_labels)
    actual = data_fingerprint(train_df, val_df)
    if cfg.data_fingerprint != actual:
        raise ValueError(f"cfg.data_fingerprint {cfg.data_fingerprint!r} does not match the data handed in "
                         f"({actual!r}); build it with data_fingerprint(train_df, val_df)")
    out = checkpoint_dir(cfg)
    if not force and cachecheck.usable_dir(out):
        logger.info("reusing fine-tuned checkpoint %s", out)
        return out
    # one process trains a key; another that needs it waits here, then reuses it
    with locks.entry_lock(out, "fine-tuned checkpoint"):
        if not force and cachecheck.usable_dir(out):
            logger.info("reusing fine-tuned checkpoint %s, made by another process", out)
            return out
        return _finetune_locked(cfg, out, train_df, val_df, progress=progress, callbacks=callbacks)


def _finetune_locked(cfg: FinetuneConfig, out: Path, train_df: pd.DataFrame, val_df: pd.DataFrame | None, *,
                     progress: bool, callbacks: Sequence[TrainerCallback]) -> Path:
    """Train and save ``cfg``'s checkpoint into ``out``; the caller holds its entry lock."""
    from xldrift.model.loading import load_encoder

    threads = set_threads()
    start = time.perf_counter()
    tokenizer, encoder = load_encoder(cfg.model)
    transformers.set_seed(cfg.seed)  # the head's initial weights depend on it
    model = EncoderClassifier(encoder, cfg.num_labels, cfg.pooling, cfg.dropout)
    counts = freeze(model, cfg.frozen_layers, word_embeddings=cfg.freeze_word_embeddings)
    logger.info("fine-tuning %s on %s/%s seed %d: %d of %d parameters trainable -> %s", cfg.model, cfg.task,
                cfg.source, cfg.seed, counts["trainable"], counts["total"], out.name)
    _remove_stale_temps(out)
    with io.atomic_dir(out) as tmp:
        trainer, step_seconds = _train(cfg, model, tokenizer, train_df, val_df, progress, callbacks)
        hist = history_frame(trainer.state.log_history)
        _save(model, tokenizer, tmp)
        io.write_csv(hist, tmp / HISTORY_FILE)
        steps = trainer.state.global_step
        files = cachecheck.seal_dir(tmp)  # sizes and SHA-256, checked whenever the checkpoint is read
        io.write_manifest(tmp, {
            **files, "config": asdict(cfg), "key": cfg.key(), "run_id": uuid.uuid4().hex,
            "pooling": cfg.pooling, "dropout": cfg.dropout, "num_labels": cfg.num_labels,
            "hidden_size": encoder.config.hidden_size, "parameters": counts,
            "train_items": len(train_df), "val_items": 0 if val_df is None else len(val_df),
            "steps": steps, "step_seconds": round(step_seconds, 3),
            "seconds_per_step": round(step_seconds / max(steps, 1), 4),
            "wall_seconds": round(time.perf_counter() - start, 2),
            "final_val_accuracy": _last(hist["val_accuracy"]), "threads": threads,
            "optimizer": trainer.args.optim.value if hasattr(trainer.args.optim, "value") else str(trainer.args.optim),
            "device": str(next(model.parameters()).device),
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        })
    logger.info("saved %s (%d steps, %.2f s/step)", out, steps, step_seconds / max(steps, 1))
    return out


def _last(series: pd.Series) -> float | None:
    values = series.dropna()
    return None if values.empty else float(values.iloc[-1])


# ------------------------------------------------------------------ save/load
def _save(model: EncoderClassifier, tokenizer: Any, directory: Path) -> None:
    """Write ``encoder/`` (self-contained: weights and tokenizer), ``tokenizer/`` and the head."""
    model.encoder.save_pretrained(directory / "encoder")
    tokenizer.save_pretrained(directory / "encoder")
    tokenizer.save_pretrained(directory / "tokenizer")
    head = {k: v.detach().cpu().contiguous() for k, v in model.classifier.state_dict().items()}
    save_file(head, str(directory / HEAD_FILE))


def encoder_dir(ckpt_dir: str | Path) -> Path:
    """The ``encoder/`` folder of a checkpoint, after verifying the checkpoint's files.

    Raises:
        CacheEntryError: the checkpoint is missing, incomplete or damaged (it is moved aside).
    """
    cachecheck.require_dir(Path(ckpt_dir), "fine-tuned checkpoint", PRODUCERS)
    return Path(ckpt_dir) / "encoder"


def load_classifier(ckpt_dir: str | Path) -> tuple[Any, EncoderClassifier]:
    """Load a complete checkpoint as ``(tokenizer, EncoderClassifier)`` in eval mode."""
    ckpt_dir = Path(ckpt_dir)
    manifest = io.read_manifest(ckpt_dir)
    if manifest is None:
        raise ValueError(f"{ckpt_dir} is not a complete fine-tuned checkpoint (no manifest.json)")
    cachecheck.require_dir(ckpt_dir, "fine-tuned checkpoint", PRODUCERS)
    from xldrift.model.loading import load_encoder

    tokenizer, encoder = load_encoder(str(ckpt_dir / "encoder"))
    model = EncoderClassifier(encoder, manifest["num_labels"], manifest["pooling"], manifest["dropout"])
    model.classifier.load_state_dict(load_file(str(ckpt_dir / HEAD_FILE)))
    return tokenizer, model.eval()
