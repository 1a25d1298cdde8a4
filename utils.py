"""The notebooks' one import: ``import utils as U``.

Gives the package's modules as attributes under short names (``U.drift`` is
``xldrift.analysis.drift``, ``U.models`` is ``xldrift.model.loading``; see
:data:`MODULES`), each imported on first use, so that a notebook's kernel
loads only the modules it uses (the runner records them: a change elsewhere
leaves its executed copy current). Adds what only notebooks need: parameter set-up, the navigation
line, tidy table display and figure saving.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import random
import sys
import types
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:  # notebooks run from notebooks/
    sys.path.insert(0, str(ROOT))

import importlib  # noqa: E402

from xldrift.study import config as params  # noqa: E402
from xldrift.study import io, paths  # noqa: E402

# The notebooks' short names, each the module of the package it stands for (grouped by stage).
MODULES: dict[str, str] = {
    # data: notebook 01
    "data": "xldrift.data.tasks",
    "languages": "xldrift.data.languages",
    "splits": "xldrift.data.splits",
    "tokens": "xldrift.data.tokens",
    # model: notebooks 02, 03 and 06
    "classifier": "xldrift.model.classifier",
    "evaluate": "xldrift.model.evaluate",
    "finetune": "xldrift.model.finetune",
    "fingerprint": "xldrift.model.fingerprint",
    "frozen": "xldrift.model.frozen",
    "models": "xldrift.model.loading",
    "setups": "xldrift.model.setups",
    "transfer": "xldrift.model.transfer",
    # representations: notebook 03
    "extract": "xldrift.representations.extract",
    "pooling": "xldrift.representations.pooling",
    "representation_cache": "xldrift.representations.cache",
    "representations": "xldrift.representations.index",
    # analysis: notebooks 04 to 07
    "bootstrap": "xldrift.analysis.bootstrap",
    "claims": "xldrift.analysis.claims",
    "correlation": "xldrift.analysis.correlation",
    "drift": "xldrift.analysis.drift",
    "drift_summary": "xldrift.analysis.drift_summary",
    "intervention": "xldrift.analysis.intervention",
    "metrics": "xldrift.analysis.metrics",
    "pairs": "xldrift.analysis.pairs",
    "paper": "xldrift.analysis.paper",
    "precomputed": "xldrift.analysis.precomputed",
    "pretraining": "xldrift.analysis.pretraining",
    "projection": "xldrift.analysis.projection",
    "prose": "xldrift.analysis.prose",
    "stats": "xldrift.analysis.stats",
    "typology": "xldrift.analysis.typology",
    # plots: one module per notebook, every figure function re-exported by the package
    "plots": "xldrift.plots",
    # study: parameters and paths
    "io": "xldrift.study.io",
    "params": "xldrift.study.config",
    "paths": "xldrift.study.paths",
}


def __getattr__(name: str) -> types.ModuleType:
    """``U.<name>`` imports the module :data:`MODULES` maps it to, on first use."""
    if name in MODULES:
        module = importlib.import_module(MODULES[name])
        globals()[name] = module
        return module
    raise AttributeError(f"module 'utils' has no attribute {name!r}; package modules: {', '.join(MODULES)}")

NOTEBOOK_TITLES = {
    "01": "Data",
    "02": "Fine-tuning",
    "03": "Extraction",
    "04": "Drift",
    "05": "Correlations",
    "06": "Intervention",
    "07": "Pairs",
}

HEADLESS = os.environ.get("XLDRIFT_HEADLESS") == "1"
PROGRESS = not HEADLESS  # progress bars are for people; headless runs log one line per stage
if HEADLESS:
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    import transformers

    transformers.utils.logging.disable_progress_bar()
warnings.filterwarnings("ignore", message="IProgress not found")


def _notebook_file(number: str) -> Path:
    found = sorted((ROOT / "notebooks").glob(f"{number}_*.ipynb"))
    if not found:
        raise FileNotFoundError(f"no notebook {number}_*.ipynb in {ROOT / 'notebooks'}")
    return found[0]


def nav_line(number: str) -> str:
    """The navigation line of notebook ``number`` (checked by a test)."""
    nums = sorted(NOTEBOOK_TITLES)
    i = nums.index(number)
    parts = []
    if i > 0:
        p = nums[i - 1]
        parts.append(f"[← {p} · {NOTEBOOK_TITLES[p]}]({_notebook_file(p).name})")
    parts.append("[README](../README.md)")
    if i + 1 < len(nums):
        n = nums[i + 1]
        parts.append(f"[{n} · {NOTEBOOK_TITLES[n]} →]({_notebook_file(n).name})")
    return " | ".join(parts)


def log(msg: str) -> None:
    """One timestamped line per stage (what a headless run prints)."""
    print(f"[{dt.datetime.now():%H:%M:%S}] {msg}", flush=True)


def setup(number: str, profile: str, overrides: dict[str, Any]) -> params.StudyConfig:
    """The notebook's config: built from the runner's validated values, or resolved here in an interactive run.

    Under the runner (``XLDRIFT_RUNNER=1``) ``overrides`` are the values the runner has already
    validated (:meth:`~xldrift.study.config.StudyConfig.overrides`), so the config is built from them as
    they are. Run interactively, ``profile`` must be a scratch one and ``overrides`` are checked
    here, as the runner would check them. Either way the parameters are validated once. Seeds
    ``random`` and numpy, creates the output folders and records the fields this notebook uses
    (:data:`xldrift.study.config.NOTEBOOK_FIELDS`) in ``results/<profile>/config.json``.

    Args:
        number: the notebook's two-digit number.
        profile: the profile name (the folder of results and figures).
        overrides: ``{field: value}`` that differ from the defaults of :class:`~xldrift.study.config.StudyConfig`.

    Returns:
        The config; ``cfg.targets`` (the resolved languages), ``cfg.results`` and ``cfg.figures``
        (output folders) come with it.
    """
    # headless: warnings only (plus one U.log line per stage); interactive: the package's INFO lines too
    level = logging.WARNING if HEADLESS else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)
    for noisy in ("transformers", "urllib3", "filelock", "httpx", "datasets", "numba", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _check_writable_profile(profile)
    if _under_runner():
        cfg = params.StudyConfig(**{**overrides, "profile": profile})
    else:
        cfg = params.StudyConfig.validated({**overrides, "profile": profile})
    cfg.results.mkdir(parents=True, exist_ok=True)
    cfg.figures.mkdir(parents=True, exist_ok=True)
    used = cfg.for_notebook(number)
    # the global seed follows the notebook's own fields: its first seed, else its item seed, else 0
    seed = (used.get("seeds") or [used.get("item_seed", 0)])[0]
    random.seed(seed)
    np.random.seed(seed)
    _record(cfg.results / "config.json", number, used)
    log(f"{number} · {NOTEBOOK_TITLES[number]}: profile {cfg.profile}")
    return cfg


def config_table(cfg: params.StudyConfig, number: str) -> pd.DataFrame:
    """The fields notebook ``number`` uses, with their values, where each value comes from and what it means.

    Returns:
        One row per field (:data:`xldrift.study.config.NOTEBOOK_FIELDS`): ``parameter, value, set by, meaning``;
        ``set by`` is ``default`` or ``profile`` (the profile, its file or ``--set`` under the runner, the
        ``overrides`` cell in an interactive run).
    """
    changed = cfg.overrides()
    values = cfg.for_notebook(number)
    return pd.DataFrame([{"parameter": k, "value": repr(v) if isinstance(v, str) else str(v),
                          "set by": "profile" if k in changed or k == "profile" else "default",
                          "meaning": params.SCHEMA[k].help} for k, v in values.items()])


SCRATCH_PROFILE = params.SCRATCH_PROFILE


def _check_writable_profile(profile: str) -> None:
    """Interactive runs write to a scratch profile; only the runner writes a published one.

    A published profile is one with a ``profiles/<name>.yaml``; the runner marks its kernels with
    ``XLDRIFT_RUNNER=1``.
    """
    if not _under_runner() and (ROOT / "profiles" / f"{profile}.yaml").is_file():
        raise params.ParamError(
            f"profile {profile!r} is published (profiles/{profile}.yaml); an interactive run writes to a scratch "
            f"profile such as {SCRATCH_PROFILE!r} (git-ignored). To re-make {profile!r}, use "
            f"`python run_study.py --profile {profile}`"
        )


def _under_runner() -> bool:
    """True in a kernel the runner started (it validated the parameters and may write a published profile)."""
    return os.environ.get("XLDRIFT_RUNNER") == "1"


def _record(path: Path, number: str, values: dict[str, Any]) -> None:
    current = json.loads(path.read_text()) if path.is_file() else {}
    current.setdefault("notebooks", {})[number] = values
    io.write_json(current, path)


def show(df: pd.DataFrame, caption: str | None = None, digits: int = 3, max_rows: int = 40) -> Any:
    """Display a tidy table, rounded, with an optional caption; longer tables show their first ``max_rows``."""
    shown = df.head(max_rows) if len(df) > max_rows else df
    sty = shown.style.format(precision=digits, na_rep="–").hide(axis="index")
    if len(df) > max_rows:
        caption = f"{caption or 'Table'} (first {max_rows} of {len(df)} rows; the CSV has them all)"
    if caption:
        sty = sty.set_caption(caption)
    return sty


def count(n: int) -> str:
    """An exact count with thousands separators, or its order of magnitude when it is astronomically large.

    >>> count(40320), count(math.factorial(204))
    ('40,320', 'about 1.3 x 10^384')
    """
    if n < 10**12:
        return f"{n:,}"
    digits = len(str(n)) - 1
    return f"about {int(str(n)[:2]) / 10:.1f} x 10^{digits}"


def savefig(fig: Any, cfg: params.StudyConfig, name: str, dpi: int = 110, keep_existing: bool = False) -> None:
    """Save ``fig`` as ``figures/<profile>/<name>.png`` (it is also shown inline).

    With ``keep_existing`` (the tables the figure is drawn from were unchanged,
    see ``io.write_csv(keep_if_close=)``) an existing PNG keeps its bytes: a line
    fit on another platform moves anti-aliased pixels without changing the figure.
    """
    path = cfg.figures / f"{name}.png"
    if keep_existing and path.is_file():
        io.rewrite(path)
        return
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")


def files_written(cfg: params.StudyConfig, names: list[str]) -> pd.DataFrame:
    """A table of output files with their sizes, for the Results section."""
    rows = []
    for n in names:
        p = cfg.results / n if not n.endswith(".png") else cfg.figures / n
        rows.append({"file": str(p.relative_to(paths.out_root())) if p.is_relative_to(paths.out_root()) else str(p),
                     "exists": p.is_file(), "kB": round(p.stat().st_size / 1024, 1) if p.is_file() else None})
    return pd.DataFrame(rows)
