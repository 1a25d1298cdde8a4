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
"""

from __future__ import annotations

import math
import statistics
import sys
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def counts(profile: str) -> dict:
    """Fine-tunings, steps, evaluation and extraction items the profile implies, from its parameters."""
    from xldrift import runner, setups

    values, _ = runner.plan(profile, {}, None)
    p = SimpleNamespace(**values)
    notebooks = set(runner.profile_notebooks(profile))
    targets = runner.params.resolve_targets(values)
    sources, seeds = len(p.source_languages), len(p.seeds)
    steps_per_run = math.ceil(p.n_train / p.batch_size) * p.epochs
    main = sources * seeds
    setup_runs = (len(setups.variants(p)) - 1) * main if p.compare_setups else 0
    per_condition = {"targeted": 1, "lowest": 1, "random": p.random_draws}
    intervention = sum(per_condition[c] for c in p.conditions) * main if "06" in notebooks else 0
    runs = main + setup_runs + intervention
    extract = (1 + main) * len(targets) * p.n_drift if "03" in notebooks else 0
    return {"profile": profile, "task": p.task, "targets": len(targets), "fine_tunings": runs,
            "steps": runs * steps_per_run, "eval_items": runs * len(targets) * p.n_eval, "extract_items": extract}


def mean_tokens(task: str, model: str = "e5-small-q4", split: str = "test") -> float:
    """Mean tokens per item (a pair for XNLI, a sentence for SIB-200) over every language's ``split``."""
    from xldrift import data
    from xldrift.models import load_tokenizer

    tok = load_tokenizer(model)
    total = count = 0
    for lang in data.available_languages(task):
        df = data.load_split(task, lang, split)
        second = df["text_b"].tolist() if df["text_b"].notna().all() else None
        ids = tok(df["text_a"].tolist(), second, truncation=True, max_length=128)["input_ids"]
        total, count = total + sum(len(x) for x in ids), count + len(ids)
    return total / count


def project(profiles: list[str], finetune_rates: list[float], items_per_s: float,
            step_ratio: float | None = None, reference_tokens: float | None = None,
            task_tokens: dict[str, float] | None = None) -> dict:
    """Counts and projected seconds for each profile at the fastest and median fine-tuning rate.

    With ``step_ratio`` (baseline step time / fused step time, measured in one run), also
    ``projected_s_fused``: the same at the rates divided by it. With ``reference_tokens``
    (mean tokens per item where ``items_per_s`` was measured) and ``task_tokens`` (the same
    per task), a task's forward rate is ``items_per_s`` scaled by their ratio, since the
    encoder's cost grows with the tokens it reads.
    """
    fast, median = min(finetune_rates), statistics.median(finetune_rates)
    out = {"finetune_s_per_step": {"fastest": fast, "median": median, "runs": len(finetune_rates)},
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
        out["profiles"][name] = c
    return out
