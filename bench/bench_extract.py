"""Benchmark: the project's extraction against the paper's approach.

Both encode the same XNLI test pairs (premise-hypothesis, as the classifier
sees them) with the same model and the same number of threads:

- ours (``xldrift.representations.extract.extract``): inference mode, items sorted by length,
  batches of 64 padded to their longest item, pooling inside the loop;
- the paper's approach (released code of Philippy et al. 2023): items in file
  order, batches of 32 padded to 128 tokens, every hidden state kept, pooled
  at the end.

Reported: pooled outputs agree (max |difference| over all layers, both
poolings), throughput of each and their ratio, and achieved GFLOP/s of each,
counting only the encoder's matmul FLOPs on real tokens, as a fraction of this
machine's fp32 matmul peak (a 2048^3 ``torch.matmul``, measured before every
repeat). Each figure is also given per CPU second (process time of all
threads), which stays comparable when other jobs share the cores; the wall
figures are the ones to quote on an idle machine. A ``storage`` section
measures how much linear CKA (Kornblith et al. 2019) moves when the
representations are stored in float16 instead of float32.

Run: ``python bench/bench_extract.py [n_items] [repeats]`` (prints JSON).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xldrift.data import tasks as data  # noqa: E402
from xldrift.representations.extract import extract  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cka import _cpu_name  # noqa: E402  (one CPU probe for every benchmark)

def xnli_pairs(n_items: int) -> pd.DataFrame:
    """The first ``n_items`` premise-hypothesis pairs of the English XNLI test file (label names as strings)."""
    df = data.load_split("xnli", "en", "test").head(n_items)
    return pd.DataFrame({"id": df["id"], "text_a": df["text_a"], "text_b": df["text_b"],
                         "label": [data.XNLI_LABELS[k] for k in df["label"]]})


def paper_extract(model: torch.nn.Module, tokenizer: Any, df: pd.DataFrame, *, max_length: int = 128,
                  batch_size: int = 32) -> dict[str, np.ndarray]:
    """The paper's way: fixed padding, file order, all hidden states kept, pooled at the end."""
    kept, masks = [], []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(df), batch_size):
            part = df.iloc[start:start + batch_size]
            enc = tokenizer(part["text_a"].tolist(), part["text_b"].tolist(), padding="max_length",
                            truncation=True, max_length=max_length, return_tensors="pt")
            kept.append(torch.stack(model(**enc, output_hidden_states=True).hidden_states))  # (L+1, B, T, H)
            masks.append(enc["attention_mask"])
    hidden, mask = torch.cat(kept, 1), torch.cat(masks).float()
    del kept
    count = mask.sum(1, keepdim=True)
    mean = torch.stack([(h * mask[..., None]).sum(1) / count for h in hidden])
    return {"cls": hidden[:, :, 0].numpy().copy(), "mean": mean.numpy()}


def matmul_peak_gflops(size: int = 2048, repeats: int = 3) -> tuple[float, float]:
    """fp32 ``size``^3 matmul speed: (GFLOP per wall second, GFLOP per CPU second), best of ``repeats``.

    The CPU-second figure counts the time of all threads, so it is comparable
    across runs when other processes share the machine.
    """
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.matmul(a, b)  # warm-up
    wall, cpu = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        torch.matmul(a, b)
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return 2 * size**3 / min(wall) / 1e9, 2 * size**3 / min(cpu) / 1e9


def _timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float, float]:
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - w0, time.process_time() - c0


def encoder_flops(lengths: np.ndarray, hidden: int, ffn: int, layers: int) -> float:
    """Matmul FLOPs of a BERT encoder on real tokens only.

    Per layer: projections Q, K, V, O (4 h^2 per token) and the feed-forward
    block (2 h ffn per token), 2 FLOPs per multiply-add; attention scores and
    the weighted sum (2 x len^2 x h per item, times 2 FLOPs).
    """
    tokens, sq = float(lengths.sum()), float((lengths.astype(np.float64) ** 2).sum())
    return layers * (2 * tokens * (4 * hidden * hidden + 2 * hidden * ffn) + 2 * 2 * sq * hidden)


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA, feature-space form (Kornblith et al. 2019, eq. 5), float64."""
    x = x.astype(np.float64) - x.mean(0, dtype=np.float64)
    y = y.astype(np.float64) - y.mean(0, dtype=np.float64)
    return float(np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


def storage_error(reps: dict[str, np.ndarray]) -> dict[str, Any]:
    """|CKA(fp16 X, fp16 Y) - CKA(X, Y)| over all pairs of distinct layers, both poolings."""
    errors, values = [], []
    for pooling, a in reps.items():
        first = 1 if pooling == "cls" else 0  # layer-0 [CLS] is constant, CKA undefined
        half = a.astype(np.float16)
        for i in range(first, a.shape[0]):
            for j in range(i + 1, a.shape[0]):
                exact = linear_cka(a[i], a[j])
                values.append(exact)
                errors.append(abs(linear_cka(half[i], half[j]) - exact))
    n_layers, hidden = reps["cls"].shape[0], reps["cls"].shape[2]
    per_state = 15 * n_layers * 2 * 5010 * hidden
    return {"pairs": len(errors), "cka_range": [min(values), max(values)],
            "max_abs_error": max(errors), "median_abs_error": statistics.median(errors),
            "disk_gb_per_state_15_langs_n5010": {"float32": per_state * 4 / 1e9, "float16": per_state * 2 / 1e9}}


def timing_summary(runs: list[tuple[float, float]], peak: tuple[float, float], n_items: int,
                   gflop: float) -> dict[str, Any]:
    """One method's ``(wall, cpu)`` seconds per repeat -> medians, throughput and fractions of the peak.

    ``peak`` is the median matmul peak as ``(GFLOP/s, GFLOP per CPU second)``; ``gflop`` the
    work on real tokens. These are the fields ``bench/report.py`` reads.
    """
    wall = statistics.median(w for w, _ in runs)
    cpu = statistics.median(c for _, c in runs)
    return {"wall_s": [w for w, _ in runs], "cpu_s": [c for _, c in runs],
            "median_wall_s": wall, "median_cpu_s": cpu, "items_per_s": n_items / wall,
            "gflops_real_tokens": gflop / wall, "fraction_of_peak": gflop / wall / peak[0],
            "fraction_of_peak_cpu_time": gflop / cpu / peak[1]}


def run(n_items: int = 2000, repeats: int = 3, model_name: str = "e5-small-q4",
        batch_size: int = 64) -> dict[str, Any]:
    """Time both approaches ``repeats`` times (alternating) and compare their outputs.

    Args:
        n_items: XNLI English test pairs to encode.
        repeats: timed runs of each approach; medians are reported.
        model_name: anything ``xldrift.model.loading.load_encoder`` accepts (a tiny
            local model directory makes a quick smoke run).
        batch_size: our batch size.
    """
    from xldrift.model.loading import load_encoder

    load_start = os.getloadavg()[0]
    tokenizer, model = load_encoder(model_name)
    df = xnli_pairs(n_items)
    cfg = model.config
    extract(model, tokenizer, df.iloc[:8], progress=False)  # warm-up (allocator, thread pool)
    times: dict[str, list[tuple[float, float]]] = {"ours": [], "paper": [], "peak": []}
    for _ in range(repeats):  # interleaved, so that a burst of load elsewhere hits both
        times["peak"].append(matmul_peak_gflops())
        ours, wall, cpu = _timed(extract, model, tokenizer, df, batch_size=batch_size, progress=False)
        times["ours"].append((wall, cpu))
        paper, wall, cpu = _timed(paper_extract, model, tokenizer, df)
        times["paper"].append((wall, cpu))
    lengths = np.array([len(ids) for ids in tokenizer(df["text_a"].tolist(), df["text_b"].tolist(),
                                                       truncation=True, max_length=128)["input_ids"]])
    gflop = encoder_flops(lengths, cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers) / 1e9
    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in times.items()}
    diff = {p: float(np.abs(ours[p] - paper[p]).max()) for p in ours}

    def summary(name: str) -> dict[str, Any]:
        return timing_summary(times[name], med["peak"], n_items, gflop)

    return {
        "machine": {"cpu": _cpu_name(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "torch": torch.__version__, "loadavg_1min_start": load_start,
                    "loadavg_1min_end": os.getloadavg()[0]},
        "model": model_name, "n_items": n_items, "repeats": repeats,
        "tokens": {"real": int(lengths.sum()), "mean_length": float(lengths.mean()),
                   "max_length": int(lengths.max()), "paper_padded": 128 * n_items},
        "gflop_real_tokens": gflop,
        "matmul_peak": {"gflops": [p for p, _ in times["peak"]], "median_gflops": med["peak"][0],
                        "gflop_per_cpu_s": [c for _, c in times["peak"]]},
        "ours": {**summary("ours"), "batch_size": batch_size, "padding": "longest in batch, sorted"},
        "paper": {**summary("paper"), "batch_size": 32, "padding": "128, file order",
                  "hidden_states_kept_gb": (cfg.num_hidden_layers + 1) * n_items * 128 * cfg.hidden_size * 4 / 1e9},
        "speedup_wall": med["paper"][0] / med["ours"][0],
        "speedup_cpu_time": med["paper"][1] / med["ours"][1],
        "max_abs_diff": diff, "equal_to_1e-4": all(v <= 1e-4 for v in diff.values()),
        "storage": storage_error(ours),
    }


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    print(json.dumps(run(*args), indent=2))
