"""The study's parameters: one frozen dataclass, :class:`StudyConfig`, validated once.

Every parameter is declared here, and only here, with its default, its valid
values and one line of help. A profile (``profiles/<name>.yaml``) and ``--set``
overrides change some of them; the runner (:func:`xldrift.study.runner.plan`) checks
the result with :meth:`StudyConfig.validated`, which raises one
:class:`ParamError` naming the bad key, its value and what is valid, before any
heavy work. The notebooks receive the validated config from the runner (their
``parameters`` cell holds only the profile name and the overrides) and use the
fields :data:`NOTEBOOK_FIELDS` lists for them, which is also what an executed
copy records for its staleness check.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import json
from pathlib import Path
from typing import Any, Callable, Mapping

from xldrift.data import tasks as data
from xldrift.study import paths
from xldrift.representations.pooling import POOLINGS

KINDS = ("syntactic", "phonological", "inventory", "featural", "genetic", "geographic")
METRICS = ("linear_cka", "debiased_cka", "rbf_cka", "procrustes")
DATABASES = ("lang2vec", "urielplus")
SCRATCH_PROFILE = "lab"  #: what an interactive run writes to (git-ignored); never a profile file


class ParamError(ValueError):
    """A parameter is unknown, of the wrong type or out of range."""


def notebook_parameters(path: Path) -> dict[str, Any]:
    """Names and default values of the cell tagged ``parameters`` in the notebook ``path``.

    Raises:
        ValueError: no such cell, or a value that is not a plain literal.
    """
    nb = json.loads(Path(path).read_text())
    cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"{Path(path).name}: expected one cell tagged 'parameters', found {len(cells)}")
    out: dict[str, Any] = {}
    for node in ast.parse("".join(cells[0]["source"])).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            raise ValueError(f"{Path(path).name}: the parameters cell may only hold 'name = literal' lines")
        out[node.targets[0].id] = ast.literal_eval(node.value)
    return out


@dataclasses.dataclass(frozen=True)
class Spec:
    """Type and check of one parameter."""

    type: type | tuple[type, ...]
    check: Callable[[Any], bool] = lambda v: True
    valid: str = ""
    help: str = ""


def _ints(lo: int, hi: int | None = None) -> Callable[[Any], bool]:
    return lambda v: v >= lo and (hi is None or v <= hi)


def _list_of(t: type, allowed: tuple | None = None, nonempty: bool = True) -> Callable[[Any], bool]:
    def ok(v: Any) -> bool:
        return (
            (len(v) > 0 or not nonempty)
            and all(isinstance(x, t) and not (t is int and isinstance(x, bool)) for x in v)
            and (allowed is None or all(x in allowed for x in v))
            and len(set(v)) == len(v)
        )

    return ok


def _param(default: Any, type_: type | tuple[type, ...], check: Callable[[Any], bool] = lambda v: True,
           valid: str = "", help: str = "") -> Any:
    """A :class:`StudyConfig` field: its default (copied per instance when it is a list) and its :class:`Spec`."""
    meta = {"spec": Spec(type_, check, valid, help)}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


_BOOL = "true or false"


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """Every parameter of the study, with its default, its valid values and its meaning.

    Build one with :meth:`validated` (which checks every value); the plain
    constructor trusts its arguments, which is how a notebook receives the
    config the runner has already validated. Lists stay lists, as YAML and the
    notebooks write them.
    """

    profile: str = _param(SCRATCH_PROFILE, str, help="output folder; 'lab' is a git-ignored scratch profile (the runner sets "
                                           "published ones)")
    task: str = _param("xnli", str, lambda v: v in data.TASKS, f"one of {data.TASKS}", "xnli or sib200")
    model: str = _param("e5-small-q4", str, lambda v: bool(v), "the embedded 'e5-small-q4', a local path or a Hub id",
                        "the pre-trained model: embedded, local path or Hub id")
    source_languages: list[str] = _param(["en"], list, _list_of(str), "a non-empty list of language codes",
                                         "fine-tuning languages (the paper profile uses all 15)")
    target_languages: list[str] | str = _param("all", (list, str), lambda v: v == "all" or _list_of(str)(v),
                                               "'all' or a list of codes", "'all' or a list of codes")
    item_seed: int = _param(0, int, _ints(0), "an integer >= 0", "seed of the premise-group sampling")
    n_train: int = _param(2240, int, _ints(8, 400_000), "an integer in [8, 400000]", "training items (source language)")
    n_val: int = _param(249, int, _ints(3, 10_000), "an integer in [3, 10000]",
                        "validation items, held out from the source dev file")
    n_eval: int = _param(501, int, _ints(3, 1_000_000), "an integer >= 3", "zero-shot evaluation items per language")
    n_drift: int = _param(501, int, _ints(8, 1_000_000), "an integer >= 8 (CKA needs several items)",
                          "items whose representations are compared pre vs post")
    drift_from_eval: bool = _param(False, bool, valid=_BOOL,
                                   help="reuse the evaluation items for drift (the paper's choice)")
    seeds: list[int] = _param([0], list, _list_of(int), "a non-empty list of distinct integers",
                              "one fine-tuning run per seed; paired: the same in every condition")
    epochs: int = _param(2, int, _ints(1, 100), "an integer in [1, 100]",
                         "passes over the training items; the last epoch is kept (as in the paper)")
    learning_rate: float = _param(1e-4, float, lambda v: 0 < v < 1, "a float in (0, 1), e.g. 2e-5",
                                  "AdamW peak learning rate")
    batch_size: int = _param(32, int, _ints(1, 4096), "an integer in [1, 4096]", "training batch size")
    eval_batch_size: int = _param(64, int, _ints(1, 4096), "an integer in [1, 4096]", "inference batch size")
    max_length: int = _param(128, int, _ints(8, 512), "an integer in [8, 512]", "truncation length in tokens")
    warmup_ratio: float = _param(0.1, float, lambda v: 0 <= v < 1, "a float in [0, 1)",
                                 "share of steps with linear warm-up")
    weight_decay: float = _param(0.01, float, lambda v: 0 <= v < 1, "a float in [0, 1)", "AdamW weight decay")
    head_pooling: str = _param("mean", str, lambda v: v in POOLINGS, f"one of {POOLINGS}",
                               "classifier input: mean over tokens or the first ([CLS]) token")
    freeze_word_embeddings: bool = _param(True, bool, valid=_BOOL,
                                          help="keep the 96M-parameter word-embedding matrix fixed")
    compare_setups: bool = _param(False, bool, valid=_BOOL, help="also fine-tune one-factor variants of this setup "
                                                                  "and the paper's recipe (notebook 02, section 6)")
    force: bool = _param(False, bool, valid=_BOOL, help="retrain, re-evaluate, re-extract and recompute even when "
                                                         "cached")
    poolings: list[str] = _param(list(POOLINGS), list, _list_of(str, POOLINGS), f"a non-empty subset of {POOLINGS}",
                                 "first token and mean over real tokens")
    metrics: list[str] = _param(["linear_cka", "debiased_cka", "rbf_cka"], list, _list_of(str, METRICS),
                                f"a non-empty subset of {METRICS}", "similarity measures (see xldrift/analysis/metrics.py)")
    umap_layers: list[int] = _param([1, 6, 12], list, _list_of(int), "a list of layer indices",
                                    "layers shown in the UMAP figure")
    databases: list[str] = _param(["lang2vec", "urielplus"], list, _list_of(str, DATABASES),
                                  f"a non-empty subset of {DATABASES}", "typological databases")
    distance_policy: str = _param("fallback", str, lambda v: v in ("fallback", "exclude"), "'fallback' or 'exclude'",
                                  "missing URIEL data: macro-language fallback, or exclude")
    n_perm: int = _param(10_000, int, _ints(100, 10_000_000), "an integer >= 100",
                         "permutations for permutation p-values")
    n_boot: int = _param(1000, int, _ints(100, 10_000_000), "an integer >= 100",
                         "bootstrap resamples for confidence intervals")
    alpha: float = _param(0.05, float, lambda v: 0 < v < 1, "a float in (0, 1)", "significance level")
    correction: str = _param("holm", str, lambda v: v in ("holm", "bh"), "'holm' or 'bh'",
                             "multiple-comparison correction: holm or bh")
    intervention_source: str = _param("", str, valid="a language code among source_languages, or '' for the task's "
                                                     "English",
                                      help="the source the intervention re-fine-tunes (one of source_languages) and "
                                           "whose row notebook 07 sets apart; empty: English")
    freeze_k: int = _param(3, int, _ints(1, 48), "an integer in [1, number of layers]",
                           "number of encoder layers the intervention freezes")
    freeze_distance: str = _param("genetic", str, lambda v: v in KINDS, f"one of {KINDS}",
                                  "distance kind whose correlations choose the layers")
    freeze_database: str = _param("lang2vec", str, lambda v: v in DATABASES, f"one of {DATABASES}",
                                  "database of that distance")
    conditions: list[str] = _param(["targeted", "random", "lowest"], list,
                                   _list_of(str, ("targeted", "random", "lowest")),
                                   "a subset of targeted/random/lowest", "freezing conditions besides full fine-tuning")
    random_draws: int = _param(1, int, _ints(0, 100), "an integer in [0, 100]", "draws of random-k layer sets")
    heatmap_layers: list[int] = _param([1, 4, 8, 12], list, _list_of(int), "a non-empty list of layer indices",
                                       "layers of the impact heatmaps (those scored are kept)")
    compare_results: str = _param("results/full", str,
                                  valid="a results folder (relative to the repository, or absolute), or '' for none",
                                  help="a single-source run's results folder to set the pairs' row against")

    # ------------------------------------------------------------ building
    @classmethod
    def specs(cls) -> dict[str, Spec]:
        """``{name: Spec}`` of every field, in declaration order."""
        return {f.name: f.metadata["spec"] for f in dataclasses.fields(cls)}

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """``{name: default}`` of every field (fresh lists)."""
        return cls().as_dict()

    @classmethod
    def validated(cls, values: Mapping[str, Any]) -> StudyConfig:
        """Check ``values`` (defaults fill the rest) and build the config.

        Args:
            values: ``{name: value}`` for some fields, e.g. a profile merged with ``--set`` overrides.

        Raises:
            ParamError: the first problem found, naming the key, its value and what is valid.
        """
        return cls(**validate({**cls.defaults(), **values}))

    # ------------------------------------------------------------ reading
    def as_dict(self) -> dict[str, Any]:
        """Every field as ``{name: value}``, in declaration order (lists copied)."""
        return {f.name: _copy(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def overrides(self) -> dict[str, Any]:
        """The fields (other than ``profile``) whose values differ from the defaults."""
        base = self.defaults()
        return {k: v for k, v in self.as_dict().items() if k != "profile" and v != base[k]}

    def for_notebook(self, number: str) -> dict[str, Any]:
        """The fields notebook ``number`` uses (:data:`NOTEBOOK_FIELDS`), as ``{name: value}``."""
        values = self.as_dict()
        return {k: values[k] for k in NOTEBOOK_FIELDS[number]}

    @functools.cached_property
    def targets(self) -> list[str]:
        """The target languages, with ``'all'`` expanded to every language of the task's data."""
        return expand_targets(self.task, self.target_languages)

    @property
    def results(self) -> Path:
        """``results/<profile>/``."""
        return paths.results_dir(self.profile)

    @property
    def figures(self) -> Path:
        """``figures/<profile>/``."""
        return paths.figures_dir(self.profile)

    def intervention_language(self) -> str:
        """The intervention's source language (see :func:`check_intervention_source`)."""
        return check_intervention_source(self.as_dict())


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value


SCHEMA: dict[str, Spec] = StudyConfig.specs()  #: every parameter's type, valid values and help

#: The fields each notebook uses: what its executed copy records, and what makes it stale when changed.
#: A test checks that every ``cfg.<field>`` a notebook reads is listed here.
NOTEBOOK_FIELDS: dict[str, tuple[str, ...]] = {
    "01": ("profile", "task", "model", "source_languages", "target_languages", "item_seed", "n_train", "n_val",
           "n_eval", "n_drift", "drift_from_eval", "max_length"),
    "02": ("profile", "task", "model", "source_languages", "target_languages", "seeds", "epochs", "learning_rate",
           "batch_size", "eval_batch_size", "max_length", "warmup_ratio", "weight_decay", "head_pooling",
           "freeze_word_embeddings", "compare_setups", "n_boot", "force"),
    "03": ("profile", "task", "model", "source_languages", "target_languages", "poolings", "eval_batch_size",
           "max_length", "force"),
    "04": ("profile", "task", "model", "source_languages", "target_languages", "poolings", "metrics", "umap_layers",
           "force"),
    "05": ("profile", "task", "source_languages", "target_languages", "poolings", "metrics", "databases",
           "distance_policy", "n_perm", "n_boot", "alpha", "correction"),
    "06": ("profile", "task", "model", "source_languages", "intervention_source", "target_languages", "seeds",
           "freeze_k", "freeze_distance", "freeze_database", "conditions", "random_draws", "eval_batch_size",
           "max_length", "n_boot", "n_perm", "alpha", "force"),
    "07": ("profile", "task", "model", "source_languages", "target_languages", "intervention_source", "poolings",
           "metrics", "databases", "heatmap_layers", "compare_results", "freeze_k", "freeze_distance",
           "freeze_database", "n_perm", "n_boot", "alpha", "correction"),
}

def coerce(name: str, value: Any) -> Any:
    """Numeric widening that YAML and the command line need (``1`` for a float)."""
    spec = SCHEMA.get(name)
    if spec is not None and spec.type is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def check_value(name: str, value: Any) -> None:
    """Raise :class:`ParamError` unless ``value`` is valid for ``name``."""
    if name not in SCHEMA:
        near = difflib.get_close_matches(name, SCHEMA, n=1)
        hint = f" Did you mean {near[0]!r}?" if near else ""
        raise ParamError(f"unknown parameter {name!r}.{hint} Valid: {', '.join(sorted(SCHEMA))}")
    spec = SCHEMA[name]
    types = spec.type if isinstance(spec.type, tuple) else (spec.type,)
    bad_bool = isinstance(value, bool) and bool not in types
    if bad_bool or not isinstance(value, types):
        raise ParamError(f"{name}={value!r} has type {type(value).__name__}; expected {spec.valid or spec.type}")
    try:
        ok = spec.check(value)
    except TypeError:
        ok = False
    if not ok:
        raise ParamError(f"{name}={value!r} is out of range; expected {spec.valid}")


def _available(task: str) -> list[str]:
    try:
        return list(data.available_languages(task))
    except data.DataError as e:
        raise ParamError(str(e)) from None


def expand_targets(task: str, target_languages: list[str] | str) -> list[str]:
    """The target languages, with ``'all'`` expanded to every language of ``task``'s data (no other check)."""
    return _available(task) if target_languages == "all" else list(target_languages)


def check_languages(params: Mapping[str, Any]) -> list[str]:
    """Validate source/target languages against the task's data; return targets."""
    task = params.get("task", "xnli")
    valid = _available(task)
    targets = expand_targets(task, params.get("target_languages", "all"))
    for key, langs in (("target_languages", targets), ("source_languages", params.get("source_languages", []))):
        unknown = [x for x in langs if x not in valid]
        if unknown:
            shown = ", ".join(valid) if len(valid) <= 30 else ", ".join(valid[:30]) + f", ... ({len(valid)} in all)"
            raise ParamError(f"{key}: unknown {task} language(s) {', '.join(map(repr, unknown))}; valid: {shown}")
    missing = [s for s in params.get("source_languages", []) if s not in targets]
    if missing:
        raise ParamError(f"source language(s) {missing} must also be in target_languages")
    return list(targets)


def validate(params: Mapping[str, Any]) -> dict[str, Any]:
    """Check every parameter and the cross-parameter constraints.

    Args:
        params: ``{name: value}``; names must be :class:`StudyConfig` fields.

    Returns:
        The parameters with numeric types widened.

    Raises:
        ParamError: the first problem found, with what is valid.
    """
    out = {k: coerce(k, v) for k, v in params.items()}
    for k, v in out.items():
        check_value(k, v)
    if "task" in out or "target_languages" in out:
        check_languages(out)
    return out


ENGLISH = {"xnli": "en", "sib200": "eng_Latn"}  #: each task's code for English


def check_intervention_source(params: Mapping[str, Any] | StudyConfig) -> str:
    """The intervention's source language (notebook 06), which must be one of the fine-tuning sources.

    The intervention fine-tunes one source; with several sources (the grid) it stays on
    ``intervention_source`` (``""``: the task's English, :data:`ENGLISH`) rather than on
    whichever source happens to be listed first.

    Raises:
        ParamError: ``intervention_source`` is not among ``source_languages``.
    """
    params = params.as_dict() if isinstance(params, StudyConfig) else params
    source = params.get("intervention_source") or ENGLISH.get(params.get("task", "xnli"), "")
    sources = list(params.get("source_languages", []))
    if source not in sources:
        raise ParamError(f"intervention_source={source!r} is not among source_languages {sources}; the intervention "
                         "re-fine-tunes a source that notebook 02 fine-tuned (set intervention_source to one of them)")
    return source


def resolve_targets(params: Mapping[str, Any] | StudyConfig) -> list[str]:
    """The target languages, with ``'all'`` expanded, checked against the task's data."""
    return check_languages(params.as_dict() if isinstance(params, StudyConfig) else params)
