"""Up-front checks of a run: everything that would otherwise fail minutes later.

:func:`run_checks` is what ``run_study.py --check`` promises and what every run
does before it executes anything: the parameters against the model (layer
counts) and the data (items available), the cache and output folders
(existing or creatable, and writable), and, for ``--only``, the files and
cache entries the selected notebooks read from notebooks not selected. Each
failure is one :class:`~xldrift.study.config.ParamError` saying what was wrong and
what is valid or what to run first. Nothing is written: folders are probed
with a temporary file that is removed at once.

:func:`cache_staleness` tells the runner that a notebook whose executed copy
looks up to date must run again because the cache entries it made are gone
or damaged (sizes only: a ``stat`` per file).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from xldrift.data import tasks as data
from xldrift.study import cachecheck, io, paths
from xldrift.study.config import ParamError

# Result files each notebook reads from earlier notebooks, and the files each makes
# (tests/test_reliability.py checks these against the notebook sources).
NEEDS: dict[str, tuple[str, ...]] = {
    "01": (),
    "02": ("items.csv",),
    "03": ("items.csv", "checkpoints.csv"),
    "04": ("representations.csv", "languages.csv"),
    "05": ("languages.csv", "fertility.csv", "accuracy.csv", "drift.csv"),
    "06": ("correlations.csv", "finetune_config.json", "checkpoints.csv", "items.csv", "distances.csv"),
    "07": ("accuracy.csv", "drift.csv", "distances.csv", "correlations.csv"),
}
MAKES: dict[str, tuple[str, ...]] = {
    "01": ("items.csv", "languages.csv", "fertility.csv"),
    "02": ("accuracy.csv", "checkpoints.csv", "finetune_config.json", "training_history.csv",
           "setup_comparison.csv"),
    "03": ("representations.csv", "extraction.csv"),
    "04": ("drift.csv", "alignment.csv", "umap.csv", "drift_meta.json"),
    "05": ("distances.csv", "distance_coverage.csv", "database_agreement.csv", "correlations.csv",
           "correlations_seen.csv", "claims.csv", "verdict_grid.csv", "precomputed_agreement.csv", "placeholders.csv",
           "correlations_placeholders.csv", "correlations_paper.csv", "claims_paper.csv", "correlations_avg.csv",
           "paper_steps.csv"),
    "06": ("intervention.csv", "intervention_selection.csv", "intervention_runs.csv", "intervention_gains.csv",
           "intervention_gaps.csv", "intervention_verdict.csv"),
    "07": ("pairs_accuracy_matrix.csv", "pairs_impact.csv", "pairs_counts.csv", "pairs_conventions.csv",
           "correlations_by_source.csv", "pairs_source_spread.csv", "pairs_claims.csv", "pairs_blocks.csv",
           "pairs_vs_single_source.csv", "pairs_accuracy_vs_single_source.csv"),
}


def producer(name: str) -> str | None:
    """The notebook number that writes result file ``name``."""
    return next((nb for nb, files in MAKES.items() if name in files), None)


# ----------------------------------------------------------------- folders
def _first_existing(path: Path) -> Path:
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    return probe


def check_folder(path: Path, label: str) -> None:
    """``path`` exists as a writable folder or can be created as one.

    Probes by creating (and removing) a temporary file in ``path`` or in its
    nearest existing ancestor, so it holds for any user, root included.

    Raises:
        ParamError: naming ``label`` and the cause.
    """
    path = Path(path)
    probe = _first_existing(path)
    if not probe.is_dir():
        what = f"{probe} is a file, not a folder" if probe.exists() else f"{probe} does not exist"
        raise ParamError(f"{label}: {what}, so {path} cannot be {'used' if probe == path else 'created'}; "
                         f"choose a folder that exists or can be created")
    try:
        fd, name = tempfile.mkstemp(prefix=".xldrift-write-check-", dir=probe)
        os.close(fd)
        os.unlink(name)
    except OSError as err:
        where = "" if probe == path else f" (the nearest existing folder above {path})"
        raise ParamError(f"{label}: cannot write in {probe}{where}: {err.strerror or err}; "
                         f"choose a writable folder") from None


def check_folders(profile: str) -> None:
    """The cache and the profile's output folders exist or can be created, and are writable."""
    cache = paths.cache_dir()
    cache_label = f"XLDRIFT_CACHE={os.environ['XLDRIFT_CACHE']}" if os.environ.get("XLDRIFT_CACHE") \
        else f"the cache folder {cache}"
    check_folder(cache, cache_label)
    for sub in (paths.models_cache(), paths.checkpoints_cache(), paths.representations_cache(),
                paths.evaluations_cache()):
        if sub.exists():
            check_folder(sub, f"{cache_label} ({sub.name}/)")
    out_label = f"XLDRIFT_OUT={os.environ['XLDRIFT_OUT']}" if os.environ.get("XLDRIFT_OUT") \
        else f"the output folder {paths.out_root()}"
    check_folder(paths.out_root(), out_label)
    for sub in (paths.results_dir(profile), paths.figures_dir(profile), paths.executed_dir(profile)):
        check_folder(sub, out_label)


# ----------------------------------------------------------------- parameters against model and data
def check_layers(values: dict[str, Any]) -> None:
    """``freeze_k`` and ``umap_layers`` against the model's number of blocks."""
    if "freeze_k" not in values and "umap_layers" not in values:
        return
    from xldrift.model import embedded
    from xldrift.representations.pooling import layers_for

    if values["model"] in embedded.EMBEDDED:  # no torch import for the embedded model
        n_blocks = embedded.num_layers(values["model"])
    else:
        from xldrift.model import loading

        n_blocks = loading.model_info(values["model"])["num_layers"]
    k = values.get("freeze_k")
    if k is not None and not 1 <= k <= n_blocks:
        raise ParamError(f"freeze_k={k} is out of range: {values['model']} has {n_blocks} encoder blocks; "
                         f"expected an integer in [1, {n_blocks}]")
    if "umap_layers" in values:
        pooling = values.get("poolings", ["cls"])[0]
        valid = layers_for(pooling, n_blocks + 1)
        bad = [x for x in values["umap_layers"] if x not in valid]
        if bad:
            raise ParamError(f"umap_layers={values['umap_layers']}: layer(s) {bad} are not scored for {pooling} "
                             f"pooling with {values['model']}; valid: {valid.start}..{valid.stop - 1}")


def check_items(values: dict[str, Any]) -> None:
    """The ``n_*`` sizes fit in the task's data (the same selection notebook 01 makes).

    Skipped when the data would come from the Hub (that is a download, not a check).
    """
    from xldrift.data import splits

    task, source = values.get("task", "xnli"), values["source_languages"][0]
    try:
        if data.data_root(task)[0] is None:
            return
        if task == "sib200":
            sizes = {s: len(data.load_split(task, source, s)) for s in data.SPLITS[task]}
            wanted = {"n_train": ("train", values["n_train"]), "n_val": ("dev", values["n_val"]),
                      "n_eval": ("test", values["n_eval"])}
            for name, (split, n) in wanted.items():
                if n > sizes[split]:
                    raise ParamError(f"{name}={n} is more than the {sizes[split]} {split} sentences of {task}; "
                                     f"expected at most {sizes[split]}")
            total = sum(sizes.values())
            if values["n_drift"] > total:
                raise ParamError(f"n_drift={values['n_drift']} is more than the {total} parallel sentences of "
                                 f"{task}; expected at most {total}")
            return
        splits.select_items(task, source, n_train=values["n_train"], n_val=values["n_val"],
                            n_eval=values["n_eval"], n_drift=values["n_drift"], seed=values.get("item_seed", 0),
                            drift_from_eval=values.get("drift_from_eval", False))
    except data.DataError as err:
        raise ParamError(str(err)) from None
    except ValueError as err:
        raise ParamError(f"{err}") from None


# ----------------------------------------------------------------- what --only needs
def _checkpoints_listed(table: Path) -> list[str]:
    try:
        return pd.read_csv(table)["checkpoint"].astype(str).tolist()
    except (OSError, ValueError, KeyError, pd.errors.ParserError):
        return []


# notebooks that read cache entries an earlier notebook made (06 trains any checkpoint it lacks itself)
CACHE_PRODUCER = {"03": "02", "04": "03"}


def missing_cache_inputs(profile: str, number: str) -> str | None:
    """A cache entry notebook ``number`` reads but did not make, that is missing; or None."""
    res = paths.results_dir(profile)
    if number == "03":
        for name in _checkpoints_listed(res / "checkpoints.csv"):
            if not io.is_complete(paths.checkpoints_cache() / name):
                return f"the fine-tuned checkpoint {name} (listed in checkpoints.csv) is not in the cache"
    if number == "04" and (res / "representations.csv").is_file():
        try:
            files = pd.read_csv(res / "representations.csv")["path"].astype(str).tolist()
        except (OSError, ValueError, KeyError, pd.errors.ParserError):
            files = []
        for f in files:
            if not Path(f).is_file():
                return f"the representations file {f} (listed in representations.csv) is not in the cache"
    return None


def check_upstream(profile: str, numbers: list[str]) -> None:
    """Every file the selected notebooks read from unselected ones is there.

    Raises:
        ParamError: naming the missing file and the notebook to run first.
    """
    res = paths.results_dir(profile)
    selected = sorted(numbers)
    for nb in selected:
        for name in NEEDS.get(nb, ()):
            made_by = producer(name)
            if made_by in selected and made_by < nb:
                continue
            if not (res / name).is_file():
                first = made_by or "the notebook that writes it"
                raise ParamError(f"--only {','.join(selected)}: notebook {nb} reads {res / name}, which does not "
                                 f"exist; run notebook {first} first (--only {','.join(sorted({first, *selected}))}, "
                                 f"or no --only)")
        why = missing_cache_inputs(profile, nb)
        first = CACHE_PRODUCER.get(nb)
        if why and first not in selected:
            raise ParamError(f"--only {','.join(selected)}: notebook {nb} needs {why}; run notebook {first} first "
                             f"(--only {','.join(sorted({first, *selected}))})")


def run_checks(profile: str, values: dict[str, Any], notebooks: list[Path], only: bool) -> None:
    """All up-front checks of a run (see the module docstring).

    Args:
        profile: the profile name.
        values: validated parameters (:func:`xldrift.study.runner.plan`).
        notebooks: the notebooks the run would execute.
        only: whether ``--only`` chose them.

    Raises:
        ParamError: the first problem, in one line.
    """
    check_folders(profile)
    check_layers(values)
    check_items(values)
    if only:
        check_upstream(profile, [nb.name[:2] for nb in notebooks])


# ----------------------------------------------------------------- runner staleness from the cache
def cache_staleness(profile: str, notebook: Path) -> str | None:
    """Why ``notebook`` must run again because a cache entry it made is damaged, or None.

    Damaged means: present with files whose sizes differ from their record,
    or moved aside by a reader that found it damaged. An entry that is simply
    absent (a fresh clone, a cleared cache) does not make a current notebook
    stale; :func:`forced_by_cache` runs its producer when a notebook that
    runs needs it.
    """
    number, res = notebook.name[:2], paths.results_dir(profile)
    tables = {"02": ["checkpoints.csv"], "06": ["intervention_runs.csv"]}.get(number, [])
    for table in tables:
        for name in _checkpoints_listed(res / table):
            d = paths.checkpoints_cache() / name
            if io.is_complete(d):
                why = cachecheck.check_dir(d, deep=False)
                if why:
                    return f"checkpoint {name} damaged ({why})"
            elif cachecheck.was_quarantined(d):
                return f"checkpoint {name} was moved aside as damaged"
    if number == "03" and (res / "representations.csv").is_file():
        try:
            files = pd.read_csv(res / "representations.csv")["path"].astype(str).tolist()
        except (OSError, ValueError, KeyError, pd.errors.ParserError):
            files = []
        for f in map(Path, files):
            if f.is_file():
                why = cachecheck.check_file(f, deep=False)
                if why:
                    return f"{f.name} damaged ({why})"
            elif cachecheck.was_quarantined(f):
                return f"{f.name} was moved aside as damaged"
    return None


def forced_by_cache(profile: str, notebooks: list[Path], stale: dict[str, str | None], rerun: bool) -> dict[str, str]:
    """Producers among ``notebooks`` that must run because a notebook that runs needs their missing cache entries.

    Args:
        profile: the profile.
        notebooks: the notebooks of this run, in order.
        stale: notebook number -> why it runs (None: current), as judged now.
        rerun: every notebook runs anyway.

    Returns:
        ``{producer number: why}``.
    """
    numbers = {nb.name[:2] for nb in notebooks}
    out: dict[str, str] = {}
    for number in sorted(numbers, reverse=True):  # 04 may force 03, which may force 02
        runs = rerun or stale.get(number) is not None or number in out
        producer = CACHE_PRODUCER.get(number)
        if runs and producer in numbers:
            why = missing_cache_inputs(profile, number)
            if why:
                out[producer] = f"notebook {number} needs {why}"
    return out
