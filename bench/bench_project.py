"""Project a profile's cold CPU time from its parts and this machine's measured rates.

A profile's cost is dominated by three counts that follow from its parameters:
fine-tuning steps, zero-shot evaluation items and extraction items. They are
multiplied by rates measured on this machine: seconds per fine-tuning step as
recorded by the default profile's checkpoints (fastest and median), and encoder
forward throughput from the extraction benchmark of the same results file.
Statistics, tables and figures (minutes at most) are left out, so the
projection is a lower bound of the right order, not a prediction to the minute.
The recorded checkpoints were trained with the Trainer's for-loop AdamW; given
the step ratio ``bench_finetune`` measured against the fused AdamW now used,
each profile is also projected at the recorded rates divided by that ratio.

With several sources (the ``grid`` profile) every count is per (source, seed) run, the
intervention of notebook 06 re-fine-tunes one source only, and notebook 04's similarity
comparisons (one per source, seed, target, scored layer and metric, plus the alignment
comparisons) grow with sources x targets; given the per-layer metric times of the scale
benchmark, their cost is projected too, as an upper bound (each timed comparison prepared
both of its inputs, which notebook 04 does once per representation).
"""

from __future__ import annotations

import math
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def counts(profile: str) -> dict:
    """Fine-tunings, steps, evaluation and extraction items the profile implies, from its parameters."""
    from xldrift.model import setups
    from xldrift.study import runner

    p, _ = runner.plan(profile, {}, None)
    notebooks = set(runner.profile_notebooks(profile))
    targets = runner.params.resolve_targets(p)
    sources, seeds = len(p.source_languages), len(p.seeds)
    steps_per_run = math.ceil(p.n_train / p.batch_size) * p.epochs
    main = sources * seeds
    setup_runs = (len(setups.variants(p)) - 1) * main if p.compare_setups else 0
    per_condition = {"targeted": 1, "lowest": 1, "random": p.random_draws}
    # notebook 06 re-fine-tunes one source (intervention_source), whatever the number of sources
    intervention = sum(per_condition[c] for c in p.conditions) * seeds if "06" in notebooks else 0
    runs = main + setup_runs + intervention
    extract = (1 + main) * len(targets) * p.n_drift if "03" in notebooks else 0
    return {"profile": profile, "task": p.task, "sources": sources, "targets": len(targets), "fine_tunings": runs,
            "steps": runs * steps_per_run, "eval_items": runs * len(targets) * p.n_eval, "extract_items": extract,
            "n_drift": p.n_drift, "cka_comparisons": comparisons(p, targets, seeds) if "04" in notebooks else {}}


def comparisons(p: Any, targets: list[str], seeds: int, n_layers: int = 12) -> dict[str, int]:
    """Similarity comparisons notebook 04 makes, per metric.

    Drift: one per (source, seed, target, scored layer); alignment: one per (source,
    seed, target other than the source, layer) after fine-tuning and one per
    (source, other target, layer) before. Scored layers: 1..L for ``cls`` pooling and
    0..L for ``mean`` (:func:`xldrift.representations.pooling.layers_for`).
    """
    layers = sum(n_layers + (pool == "mean") for pool in p.poolings)
    sources = len(p.source_languages)
    others = sum(len(targets) - (s in targets) for s in p.source_languages)
    per_metric = sources * seeds * len(targets) * layers + (seeds + 1) * others * layers
    return {m: per_metric for m in p.metrics}


def layer_seconds(timings: dict[str, dict], n: int) -> dict[str, float]:
    """Seconds per single-layer comparison at ``n`` items, per metric, from the scale benchmark.

    Log-log interpolation between the measured sizes (extrapolation from the two nearest
    at either end), since each metric's time grows as a power of n.

    Args:
        timings: ``{metric: {str(n): {"layer_s": seconds}}}`` as ``bench_scale`` records it.
    """
    out = {}
    for metric, by_n in timings.items():
        pts = sorted((int(k), float(v["layer_s"])) for k, v in by_n.items() if v.get("layer_s"))
        if len(pts) < 2:
            continue
        i = min(max(1, sum(x <= n for x, _ in pts)), len(pts) - 1)
        (x0, y0), (x1, y1) = pts[i - 1], pts[i]
        slope = math.log(y1 / y0) / math.log(x1 / x0)
        out[metric] = y0 * (n / x0) ** slope
    return out


def mean_tokens(task: str, model: str = "e5-small-q4", split: str = "test") -> float:
    """Mean tokens per item (a pair for XNLI, a sentence for SIB-200) over every language's ``split``."""
    from xldrift.data import tasks as data
    from xldrift.model.loading import load_tokenizer

    tok = load_tokenizer(model)
    total = count = 0
    for lang in data.available_languages(task):
        df = data.load_split(task, lang, split)
        second = df["text_b"].tolist() if df["text_b"].notna().all() else None
        ids = tok(df["text_a"].tolist(), second, truncation=True, max_length=128)["input_ids"]
        total, count = total + sum(len(x) for x in ids), count + len(ids)
    return total / count


def project(profiles: list[str], finetune_rates: list[float] | dict, items_per_s: float,
            step_ratio: float | None = None, reference_tokens: float | None = None,
            task_tokens: dict[str, float] | None = None, metric_timings: dict[str, dict] | None = None) -> dict:
    """Counts and projected seconds for each profile at the fastest and median fine-tuning rate.

    ``finetune_rates``: seconds per step of each recorded fine-tuning, or the summary
    (``fastest``, ``median``, ``runs``) a previous projection recorded from them.

    With ``step_ratio`` (baseline step time / fused step time, measured in one run), also
    ``projected_s_fused``: the same at the rates divided by it. With ``reference_tokens``
    (mean tokens per item where ``items_per_s`` was measured) and ``task_tokens`` (the same
    per task), a task's forward rate is ``items_per_s`` scaled by their ratio, since the
    encoder's cost grows with the tokens it reads. With ``metric_timings`` (the scale
    benchmark's per-layer metric times), ``drift_metrics_s`` projects notebook 04's
    comparisons (an upper bound) and ``projected_s_total`` adds it to the fused projection
    (or to the plain one without ``step_ratio``).
    """
    if isinstance(finetune_rates, dict):  # a summary recorded earlier: {"fastest", "median", "runs"}
        fast, median, n_runs = finetune_rates["fastest"], finetune_rates["median"], finetune_rates["runs"]
    else:
        fast, median, n_runs = min(finetune_rates), statistics.median(finetune_rates), len(finetune_rates)
    out = {"finetune_s_per_step": {"fastest": fast, "median": median, "runs": n_runs},
           "forward_items_per_s": items_per_s, "step_ratio": step_ratio, "reference_tokens": reference_tokens,
           "task_tokens": task_tokens or {}, "profiles": {}}
    for name in profiles:
        c = counts(name)
        rate = items_per_s
        if reference_tokens and task_tokens and c["task"] in task_tokens:
            rate = items_per_s * reference_tokens / task_tokens[c["task"]]
        c["forward_items_per_s"] = round(rate, 1)
        forward_s = (c["eval_items"] + c["extract_items"]) / rate
        c["projected_s"] = {"fastest": round(c["steps"] * fast + forward_s), "median": round(c["steps"] * median + forward_s)}
        if step_ratio:
            c["projected_s_fused"] = {k: round(c["steps"] * rate / step_ratio + forward_s)
                                      for k, rate in (("fastest", fast), ("median", median))}
        c["forward_s"] = round(forward_s)
        if metric_timings and c["cka_comparisons"]:
            per = layer_seconds(metric_timings, c["n_drift"])
            if all(m in per for m in c["cka_comparisons"]):
                c["drift_metrics_s"] = round(sum(k * per[m] for m, k in c["cka_comparisons"].items()))
                base = c.get("projected_s_fused", c["projected_s"])
                c["projected_s_total"] = {k: v + c["drift_metrics_s"] for k, v in base.items()}
        out["profiles"][name] = c
    return out
