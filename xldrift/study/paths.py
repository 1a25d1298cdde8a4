"""Every path the study reads or writes, built from the parameters.

Caches (model weights, checkpoints, representations, evaluations) live under
``$XLDRIFT_CACHE`` (default ``~/.cache/xldrift``) so that work survives a fresh
clone; results, figures and executed notebooks live in the repository, under
the profile's name.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # xldrift/study/paths.py -> the repository


def cache_dir() -> Path:
    """The cache root: ``$XLDRIFT_CACHE`` or ``~/.cache/xldrift``."""
    env = os.environ.get("XLDRIFT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "xldrift"


def out_root() -> Path:
    """Where results/figures/executed notebooks go (``$XLDRIFT_OUT`` or the repo)."""
    env = os.environ.get("XLDRIFT_OUT")
    return Path(env).expanduser() if env else ROOT


def results_dir(profile: str) -> Path:
    """``results/<profile>/``: tidy CSV tables and config.json."""
    return out_root() / "results" / profile


def figures_dir(profile: str) -> Path:
    """``figures/<profile>/``: PNG figures."""
    return out_root() / "figures" / profile


def executed_dir(profile: str) -> Path:
    """``notebooks/executed/<profile>/``: papermill outputs."""
    return out_root() / "notebooks" / "executed" / profile


def models_cache() -> Path:
    """Converted base models (e.g. the embedded e5-small)."""
    return cache_dir() / "models"


def checkpoints_cache() -> Path:
    """Fine-tuned checkpoints, one directory per cache key."""
    return cache_dir() / "checkpoints"


def representations_cache() -> Path:
    """Extracted per-layer representations."""
    return cache_dir() / "representations"


def evaluations_cache() -> Path:
    """Cached zero-shot predictions."""
    return cache_dir() / "evaluations"
