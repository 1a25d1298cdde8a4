"""The two ways to reduce an item's token states to one vector, and the layers each can score.

The same two names serve two ideas, which the code keeps apart:

- **head pooling**: what the classifier trained in notebook 02 puts under its
  linear head (:class:`xldrift.model.classifier.EncoderClassifier`, the
  ``head_pooling`` parameter);
- **representation pooling**: how notebook 03 reduces every layer's token
  states to the vectors whose drift notebook 04 measures (the ``poolings``
  parameter).

``cls`` takes the first token's vector (Philippy et al. 2023 use it); ``mean``
averages the non-padding tokens (Reimers & Gurevych 2019).
"""

from __future__ import annotations

#: Every pooling, for the classifier head and for representations alike.
POOLINGS: tuple[str, ...] = ("cls", "mean")


def layers_for(pooling: str, n_layers: int) -> range:
    """Layers scored for representation ``pooling``: all ``n_layers`` for ``mean``; ``cls`` skips layer 0.

    The first token at layer 0 is the same embedding for every input, so its
    representation is constant and CKA is undefined there (not merely small).

    Args:
        pooling: one of :data:`POOLINGS`.
        n_layers: hidden states per item, the embeddings output included (``L + 1``).

    Returns:
        The scored hidden-state indices.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; valid: {', '.join(POOLINGS)}")
    return range(1 if pooling == "cls" else 0, n_layers)
