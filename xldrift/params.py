"""The study's parameters: one schema, validated before any heavy work.

Every notebook declares the parameters it uses in a cell tagged
``parameters``; this module knows, for each name, its type and valid range.
:func:`validate` checks a whole parameter set (from a profile plus
``--set`` overrides) and raises one :class:`ParamError` that says what was
wrong and what is valid.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import json
from pathlib import Path
from typing import Any, Callable

from xldrift import data

KINDS = ("syntactic", "phonological", "inventory", "featural", "genetic", "geographic")
METRICS = ("linear_cka", "debiased_cka", "rbf_cka", "procrustes")
POOLINGS = ("cls", "mean")
DATABASES = ("lang2vec", "urielplus")


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


SCHEMA: dict[str, Spec] = {
    "profile": Spec(str, help="profile name (folder of results/figures)"),
    "task": Spec(str, lambda v: v in data.TASKS, f"one of {data.TASKS}"),
    "model": Spec(str, lambda v: bool(v), "the embedded 'e5-small-q4', a local path or a Hub id"),
    "source_languages": Spec(list, _list_of(str), "a non-empty list of language codes"),
    "target_languages": Spec((list, str), lambda v: v == "all" or _list_of(str)(v), "'all' or a list of codes"),
    "seeds": Spec(list, _list_of(int), "a non-empty list of distinct integers"),
    "item_seed": Spec(int, _ints(0), "an integer >= 0"),
    "n_train": Spec(int, _ints(8, 400_000), "an integer in [8, 400000]"),
    "n_val": Spec(int, _ints(3, 10_000), "an integer in [3, 10000]"),
    "n_eval": Spec(int, _ints(3, 1_000_000), "an integer >= 3"),
    "n_drift": Spec(int, _ints(8, 1_000_000), "an integer >= 8 (CKA needs several items)"),
    "drift_from_eval": Spec(bool, valid="true or false"),
    "epochs": Spec(int, _ints(1, 100), "an integer in [1, 100]"),
    "learning_rate": Spec(float, lambda v: 0 < v < 1, "a float in (0, 1), e.g. 2e-5"),
    "batch_size": Spec(int, _ints(1, 4096), "an integer in [1, 4096]"),
    "eval_batch_size": Spec(int, _ints(1, 4096), "an integer in [1, 4096]"),
    "max_length": Spec(int, _ints(8, 512), "an integer in [8, 512]"),
    "warmup_ratio": Spec(float, lambda v: 0 <= v < 1, "a float in [0, 1)"),
    "weight_decay": Spec(float, lambda v: 0 <= v < 1, "a float in [0, 1)"),
    "head_pooling": Spec(str, lambda v: v in POOLINGS, f"one of {POOLINGS}"),
    "freeze_word_embeddings": Spec(bool, valid="true or false"),
    "compare_setups": Spec(bool, valid="true or false"),
    "force": Spec(bool, valid="true or false"),
    "poolings": Spec(list, _list_of(str, POOLINGS), f"a non-empty subset of {POOLINGS}"),
    "metrics": Spec(list, _list_of(str, METRICS), f"a non-empty subset of {METRICS}"),
    "umap_layers": Spec(list, _list_of(int), "a list of layer indices"),
    "databases": Spec(list, _list_of(str, DATABASES), f"a non-empty subset of {DATABASES}"),
    "distance_policy": Spec(str, lambda v: v in ("fallback", "exclude"), "'fallback' or 'exclude'"),
    "n_perm": Spec(int, _ints(100, 10_000_000), "an integer >= 100"),
    "n_boot": Spec(int, _ints(100, 10_000_000), "an integer >= 100"),
    "alpha": Spec(float, lambda v: 0 < v < 1, "a float in (0, 1)"),
    "correction": Spec(str, lambda v: v in ("holm", "bh"), "'holm' or 'bh'"),
    "freeze_k": Spec(int, _ints(1, 48), "an integer in [1, number of layers]"),
    "freeze_distance": Spec(str, lambda v: v in KINDS, f"one of {KINDS}"),
    "freeze_database": Spec(str, lambda v: v in DATABASES, f"one of {DATABASES}"),
    "random_draws": Spec(int, _ints(0, 100), "an integer in [0, 100]"),
    "conditions": Spec(list, _list_of(str, ("targeted", "random", "lowest")), "a subset of targeted/random/lowest"),
    "heatmap_layers": Spec(list, _list_of(int), "a non-empty list of layer indices"),
    "compare_results": Spec(str, valid="a results folder (relative to the repository, or absolute), or '' for none"),
    "intervention_source": Spec(str, valid="a language code among source_languages, or '' for the task's English",
                                help="the source language of notebook 06's intervention runs"),
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


def check_languages(params: dict[str, Any]) -> list[str]:
    """Validate source/target languages against the task's data; return targets."""
    task = params.get("task", "xnli")
    try:
        valid = data.available_languages(task)
    except data.DataError as e:
        raise ParamError(str(e)) from None
    targets = params.get("target_languages", "all")
    targets = valid if targets == "all" else targets
    for key, langs in (("target_languages", targets), ("source_languages", params.get("source_languages", []))):
        unknown = [x for x in langs if x not in valid]
        if unknown:
            shown = ", ".join(valid) if len(valid) <= 30 else ", ".join(valid[:30]) + f", ... ({len(valid)} in all)"
            raise ParamError(f"{key}: unknown {task} language(s) {', '.join(map(repr, unknown))}; valid: {shown}")
    missing = [s for s in params.get("source_languages", []) if s not in targets]
    if missing:
        raise ParamError(f"source language(s) {missing} must also be in target_languages")
    return list(targets)


def validate(params: dict[str, Any]) -> dict[str, Any]:
    """Check every parameter and the cross-parameter constraints.

    Returns the parameters with numeric types widened.

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


def check_intervention_source(params: dict[str, Any]) -> str:
    """The intervention's source language (notebook 06), which must be one of the fine-tuning sources.

    The intervention fine-tunes one source; with several sources (the grid) it stays on
    ``intervention_source`` (``""``: the task's English, :data:`ENGLISH`) rather than on
    whichever source happens to be listed first.

    Raises:
        ParamError: ``intervention_source`` is not among ``source_languages``.
    """
    source = params.get("intervention_source") or ENGLISH.get(params.get("task", "xnli"), "")
    sources = list(params.get("source_languages", []))
    if source not in sources:
        raise ParamError(f"intervention_source={source!r} is not among source_languages {sources}; the intervention "
                         "re-fine-tunes a source that notebook 02 fine-tuned (set intervention_source to one of them)")
    return source


def resolve_targets(params: dict[str, Any]) -> list[str]:
    """The target languages, with ``'all'`` expanded."""
    return check_languages(params)
