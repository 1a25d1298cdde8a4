"""Benchmark: one fine-tuning step, phase by phase, with the Trainer's two AdamW implementations.

The fine-tuning loop of the study is the Hugging Face ``Trainer`` with AdamW.
With ``optim="adamw_torch"`` on CPU, PyTorch picks its for-loop AdamW (the
multi-tensor and fused kernels are chosen by default only for CUDA tensors);
``optim="adamw_torch_fused"`` asks for the fused kernel, which updates each
parameter tensor in one pass. Two settings are measured: every weight trained
(the paper's recipe, the ``paper`` profile), where AdamW updates all 96 M
word-embedding parameters of the embedded model (a 250 k-piece vocabulary) at
every step, and the word-embedding matrix frozen (the study's chosen setup,
every other profile), which leaves 21.5 M parameters to the optimizer.

Both variants start from the same weights, see the same batches (XNLI English
pairs as the fine-tuning notebook feeds them: batch 32, padded to the longest
item, at most 128 tokens) and draw the same dropout masks. Each step is timed in
its phases: forward, backward, gradient clipping, optimizer step and zeroing
the gradients. Reported: the median of each phase over the timed steps (the
first step, which allocates the optimizer state, is excluded), the step ratio
(baseline over fused), CPU seconds per step (process time of all threads, which
stays comparable when other jobs share the cores), the share of real (not
padding) tokens in the batches, the largest difference of
any parameter and of the loss after the same steps, and the operators that
dominate the baseline step with every weight trained (torch profiler, one step).

Run: ``python bench/bench_finetune.py [steps] [repeats]`` (prints JSON).
"""

from __future__ import annotations

import copy
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VARIANTS = {"baseline": "adamw_torch", "fused": "adamw_torch_fused"}
PHASES = ("forward", "backward", "clip", "optimizer", "zero_grad")


def _batches(tokenizer: Any, n_steps: int, batch_size: int = 32, max_length: int = 128) -> list[dict]:
    from transformers import DataCollatorWithPadding

    from xldrift.data import tasks as data
    from xldrift.model.classifier import encode

    df = data.load_split("xnli", "en", "dev").iloc[: n_steps * batch_size]
    items = encode(tokenizer, df, max_length, labels=True)
    collate = DataCollatorWithPadding(tokenizer)
    return [collate(items[i * batch_size:(i + 1) * batch_size]) for i in range(n_steps)]


def _optimizer(model: torch.nn.Module, optim: str, lr: float = 2e-5) -> torch.optim.Optimizer:
    """The optimizer the Trainer builds for ``optim`` (same class, kwargs and parameter groups)."""
    from transformers import Trainer, TrainingArguments

    args = TrainingArguments(output_dir=os.devnull, optim=optim, learning_rate=lr, weight_decay=0.0,
                             report_to="none", use_cpu=True)
    cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
    return cls([p for p in model.parameters() if p.requires_grad], **kwargs)


def _step(model: torch.nn.Module, opt: torch.optim.Optimizer, batch: dict) -> tuple[float, list[float]]:
    """One training step as the Trainer takes it; the loss and the seconds of each of :data:`PHASES`."""
    t0 = time.perf_counter()
    loss = model(**batch).loss
    t1 = time.perf_counter()
    loss.backward()
    t2 = time.perf_counter()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    t3 = time.perf_counter()
    opt.step()
    t4 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    t5 = time.perf_counter()
    return float(loss), [t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4]


def _trajectory(model: torch.nn.Module, optim: str, batches: list[dict]) -> dict:
    """Train ``model`` on ``batches`` one step each; time every phase."""
    torch.manual_seed(0)  # the same dropout masks for every variant
    model.train()
    opt = _optimizer(model, optim)
    phases: dict[str, list[float]] = {p: [] for p in PHASES}
    cpu, losses = [], []
    for batch in batches:
        c0 = time.process_time()
        loss, seconds = _step(model, opt, batch)
        for name, dt in zip(PHASES, seconds):
            phases[name].append(dt)
        cpu.append(time.process_time() - c0)
        losses.append(loss)
    return {"phases": phases, "cpu": cpu, "losses": losses}


def _top_ops(model: torch.nn.Module, optim: str, batches: list[dict], rows: int = 6) -> list[dict]:
    """Operators with the most self CPU time in one step (after a warm-up step)."""
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    model.train()
    opt = _optimizer(model, optim)
    _step(model, opt, batches[0])  # warm-up: allocates the optimizer state
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        _step(model, opt, batches[1])
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    return [{"op": e.key, "self_s": round(e.self_cpu_time_total / 1e6, 3), "share": round(e.self_cpu_time_total / total, 3),
             "calls": e.count} for e in events[:rows]]


def _compare(init: torch.nn.Module, batches: list[dict], repeats: int) -> dict:
    """Both variants from the same start, ``repeats`` times each, alternating; timings and agreement."""
    n_steps = len(batches)
    timed: dict[str, dict[str, list[float]]] = {v: {p: [] for p in (*PHASES, "step", "cpu")} for v in VARIANTS}
    final: dict[str, Any] = {}
    for _ in range(repeats):
        for variant, optim in VARIANTS.items():
            model = copy.deepcopy(init)
            traj = _trajectory(model, optim, batches)
            for p in PHASES:
                timed[variant][p] += traj["phases"][p][1:]
            timed[variant]["step"] += [sum(traj["phases"][p][i] for p in PHASES) for i in range(1, n_steps)]
            timed[variant]["cpu"] += traj["cpu"][1:]
            final[variant] = (model, traj["losses"])
    (m_base, l_base), (m_fused, l_fused) = final["baseline"], final["fused"]
    med = {v: {k: statistics.median(xs) for k, xs in t.items()} for v, t in timed.items()}
    return {
        "trainable_parameters": sum(p.numel() for p in init.parameters() if p.requires_grad),
        "median_s": med,
        "step_ratio": round(med["baseline"]["step"] / med["fused"]["step"], 3),
        "optimizer_ratio": round(med["baseline"]["optimizer"] / med["fused"]["optimizer"], 2),
        "cpu_step_ratio": round(med["baseline"]["cpu"] / med["fused"]["cpu"], 3),
        "optimizer_share_baseline": round(med["baseline"]["optimizer"] / med["baseline"]["step"], 3),
        "max_abs_param_diff": max(float((a - b).abs().max()) for a, b in zip(m_base.parameters(), m_fused.parameters())),
        "max_abs_loss_diff": max(abs(a - b) for a, b in zip(l_base, l_fused)),
    }


#: setting name -> whether the word-embedding matrix is frozen
SETTINGS = {"all_weights": False, "embeddings_frozen": True}


def run(n_steps: int = 6, repeats: int = 2, model_name: str = "e5-small-q4") -> dict:
    """Time both variants in both settings, ``repeats`` runs of ``n_steps`` steps each."""
    from xldrift.model.classifier import EncoderClassifier, freeze
    from xldrift.model.finetune import set_threads
    from xldrift.model.loading import load_encoder

    if n_steps < 3:
        raise ValueError(f"n_steps must be at least 3 (the first step is not timed), got {n_steps}")
    threads = set_threads()
    load_start = os.getloadavg()[0]
    tokenizer, encoder = load_encoder(model_name)
    torch.manual_seed(0)
    init = EncoderClassifier(encoder, 3)
    batches = _batches(tokenizer, n_steps)
    out: dict[str, Any] = {
        "model": model_name, "steps_per_repeat": n_steps, "repeats": repeats, "batch_size": 32,
        "padded_lengths": [int(b["input_ids"].shape[1]) for b in batches],
        "real_token_fraction": round(sum(int(b["attention_mask"].sum()) for b in batches)
                                     / sum(b["attention_mask"].numel() for b in batches), 3),
        "parameters": {"total": sum(p.numel() for p in init.parameters()),
                       "word_embeddings": init.encoder.get_input_embeddings().weight.numel()},
        "variants": VARIANTS, "settings": {},
    }
    for name, frozen in SETTINGS.items():
        model = copy.deepcopy(init)
        freeze(model, (), word_embeddings=frozen)
        out["settings"][name] = _compare(model, batches, repeats)
    out["top_ops_baseline"] = _top_ops(copy.deepcopy(init), VARIANTS["baseline"], batches)
    # the study's own setup (every profile but `paper`) sets the ratio the projection uses
    out["step_ratio"] = out["settings"]["embeddings_frozen"]["step_ratio"]
    out["machine"] = {"torch_threads": threads, "loadavg_1min_start": load_start, "loadavg_1min_end": os.getloadavg()[0]}
    return out


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    print(json.dumps(run(*args), indent=1))
