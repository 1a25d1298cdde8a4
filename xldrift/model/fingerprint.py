"""Fingerprints of encoder weights, and the check that two model states differ.

Only the encoder that produces the hidden states counts: task heads and
poolers are ignored, so a fine-tuned classifier and its base encoder compare
on the same tensors.
"""

from __future__ import annotations

import hashlib

import torch


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
