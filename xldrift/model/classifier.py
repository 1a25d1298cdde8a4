"""The classifier a fine-tuning run trains, layer freezing, and item encoding.

:class:`EncoderClassifier` puts a pooled sentence vector, dropout and a linear
head on a base encoder; :func:`freeze` stops gradients to chosen transformer
blocks (numbered 1..L like hidden states, so block ``i`` produces hidden state
``i``); :func:`check_frame` and :func:`encode` validate and tokenise items in
the task schema (``id, group, text_a, text_b, label``).
"""

from __future__ import annotations

import numbers
from typing import Any, Sequence

import pandas as pd
import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from xldrift.representations.pooling import POOLINGS


class EncoderClassifier(nn.Module):
    """A base encoder, a pooled sentence vector, dropout and a linear head.

    Args:
        encoder: a pooler-less base model (e.g. ``BertModel``) whose output has
            ``last_hidden_state`` of shape ``(batch, seq, hidden)``.
        num_labels: number of classes.
        pooling: the head pooling (:mod:`xldrift.representations.pooling`): ``"mean"`` over non-padding tokens or ``"cls"``
            (first token).
        dropout: dropout rate before the linear layer.
    """

    def __init__(self, encoder: nn.Module, num_labels: int, pooling: str = "mean", dropout: float = 0.1):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; valid: {', '.join(POOLINGS)}")
        self.encoder = encoder
        self.pooling = pooling
        self.num_labels = num_labels
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(encoder.config.hidden_size, num_labels)

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``(batch, seq, hidden)`` -> ``(batch, hidden)``."""
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None,
                labels: torch.Tensor | None = None) -> SequenceClassifierOutput:
        """Logits ``(batch, num_labels)``, and the mean cross-entropy when ``labels`` are given."""
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
        logits = self.classifier(self.dropout(self.pool(hidden, attention_mask)))
        loss = None if labels is None else nn.functional.cross_entropy(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)


def encoder_blocks(encoder: nn.Module) -> nn.ModuleList:
    """The encoder's transformer blocks, in order (block ``i`` is ``[i - 1]``)."""
    for path in ("encoder.layer", "encoder.layers", "transformer.layer", "layers", "layer"):
        obj: Any = encoder
        for part in path.split("."):
            obj = getattr(obj, part, None)
        if isinstance(obj, nn.ModuleList):
            return obj
    raise ValueError(f"cannot find the transformer blocks of {type(encoder).__name__} "
                     "(looked for encoder.layer, encoder.layers, transformer.layer, layers)")


def freeze(model: nn.Module, layers: Sequence[int] = (), word_embeddings: bool = False,
           embeddings: bool = False) -> dict[str, Any]:
    """Stop gradients to chosen encoder blocks and/or embeddings; count parameters.

    Only sets ``requires_grad=False``; parameters not named stay as they are.

    Args:
        model: an :class:`EncoderClassifier` or a bare encoder.
        layers: encoder blocks 1..L to freeze entirely (layer norms included);
            layer 0 is the embeddings output, so block ``i`` produces hidden state ``i``.
        word_embeddings: freeze the token embedding matrix.
        embeddings: freeze the whole embedding module (word, position, type, norm).

    Returns:
        ``total``, ``trainable`` and ``frozen`` parameter counts and what was frozen.
    """
    encoder = model.encoder if isinstance(model, EncoderClassifier) else model
    blocks, layers = encoder_blocks(encoder), list(layers)
    bad = [x for x in layers if isinstance(x, bool) or not isinstance(x, numbers.Integral)
           or not 1 <= x <= len(blocks)]
    if bad:
        raise ValueError(f"invalid layers {bad}: encoder blocks are numbered 1..{len(blocks)} "
                         "(0 is the embeddings output; use embeddings=True for those)")
    targets: list[nn.Module] = [blocks[int(i) - 1] for i in layers]
    if embeddings:
        if getattr(encoder, "embeddings", None) is None:
            raise ValueError(f"{type(encoder).__name__} has no .embeddings module to freeze")
        targets.append(encoder.embeddings)
    if word_embeddings:
        targets.append(encoder.get_input_embeddings())
    for module in targets:
        module.requires_grad_(False)
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable, "frozen": total - trainable,
            "frozen_layers": sorted(int(i) for i in set(layers)),
            "word_embeddings": bool(word_embeddings), "embeddings": bool(embeddings)}


# ------------------------------------------------------------------ data
def check_frame(df: pd.DataFrame, name: str, num_labels: int | None = None) -> None:
    """Raise ``ValueError`` unless ``df`` is a non-empty split in the task schema."""
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"{name} must be a DataFrame, got {type(df).__name__}")
    need = ["text_a", "text_b"] + (["label"] if num_labels is not None else [])
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ValueError(f"{name} lacks columns {missing}; expected id, group, text_a, text_b, label")
    if df.empty:
        raise ValueError(f"{name} has no rows")
    bad_text = ~df["text_a"].map(lambda x: isinstance(x, str))
    if bad_text.any():
        raise ValueError(f"{name}: text_a is not a string in row {df.index[bad_text.to_numpy()][0]!r}")
    if num_labels is not None:
        lab = pd.to_numeric(df["label"], errors="coerce")
        bad = lab.isna() | (lab != lab.round()) | (lab < 0) | (lab >= num_labels)
        if bad.any():
            raise ValueError(f"{name}: label {df['label'][bad].iloc[0]!r} in row {df.index[bad.to_numpy()][0]!r} "
                             f"is not an integer in 0..{num_labels - 1}")


def encode(tokenizer: Any, df: pd.DataFrame, max_length: int, *, labels: bool = False) -> list[dict[str, list[int]]]:
    """Tokenise rows without padding: pairs where ``text_b`` is set, single texts elsewhere.

    Returns:
        One feature dict per row, in ``df`` order (``labels`` added when asked).
    """
    a = df["text_a"].tolist()
    b = df["text_b"].tolist()
    paired = [isinstance(x, str) for x in b]
    feats: list[dict[str, list[int]]] = [{} for _ in a]
    for is_pair in (True, False):
        idx = [i for i, p in enumerate(paired) if p == is_pair]
        if not idx:
            continue
        second = [b[i] for i in idx] if is_pair else None
        enc = tokenizer([a[i] for i in idx], second, truncation=True, max_length=max_length)
        for j, i in enumerate(idx):
            feats[i] = {k: list(v[j]) for k, v in enc.items()}
    if labels:
        for f, y in zip(feats, df["label"].astype(int).tolist()):
            f["labels"] = y
    return feats
