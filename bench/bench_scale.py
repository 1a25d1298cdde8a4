"""Benchmark: how the drift pipeline's cost grows with ``n_drift`` and with the number of languages.

For each ``n`` in :data:`N_DRIFT` (500, 1,000, 2,000 and the full XNLI test
set, 5,010 pairs) two components are timed on this machine:

- extraction: ``xldrift.representations.extract.extract`` on the first ``n`` English XNLI
  test pairs with the embedded model (both poolings, batch 64, max length
  128), one model state. Sizes up to :data:`MEASURE_EXTRACTION_UP_TO` are
  timed (median of ``repeats``); larger sizes are *projected* from the
  measured tokens per second at the largest timed size and the real token
  count of the first ``n`` pairs (marked ``projected: true``). Extraction is
  linear in tokens once batches are sorted by length; the projection is
  checked by predicting the second timed size from the first.
- drift metrics for one language: ``xldrift.analysis.metrics.similarity`` for
  ``linear_cka`` (Kornblith et al. 2019), ``debiased_cka`` (Song et al. 2012;
  Nguyen, Raghu & Kornblith 2021) and ``rbf_cka`` (Kornblith et al. 2019) on a
  random float32 ``(n, 384)`` pair, really computed at every ``n``. Each of
  the 13 layers is the same computation on same-shaped inputs, so the
  13-layer time is 13 x the median single-layer time.

One language of the drift study costs two extractions (before and after
fine-tuning) plus the metrics over 13 layers; the cost of 15 (XNLI) and 200
(SIB-200) languages is projected linearly from it, since languages are
independent. The growth exponent of each component is the slope of
log(time) against log(n) between the smallest and largest ``n``.

Run: ``python bench/bench_scale.py`` (prints JSON, writes ``bench/scale.png``).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from xldrift.data.tasks import load_split  # noqa: E402
from xldrift.representations.extract import encode_inputs, extract  # noqa: E402
from xldrift.analysis.metrics import similarity  # noqa: E402

N_DRIFT: tuple[int, ...] = (500, 1000, 2000, 5010)
MEASURE_EXTRACTION_UP_TO = 1000
METRICS: tuple[str, ...] = ("linear_cka", "debiased_cka", "rbf_cka")
N_LAYERS = 13
HIDDEN = 384
LANGUAGES: tuple[int, ...] = (15, 200)
STATES_PER_LANGUAGE = 2  # pre- and post-fine-tuning representations
EXTRACT_KW: dict[str, Any] = {"poolings": ("cls", "mean"), "batch_size": 64, "max_length": 128}


def _median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, list[float]]:
    """Median and all of ``repeats`` wall-clock timings of ``fn()``."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def slope(ns: Sequence[int], seconds: Sequence[float]) -> float:
    """Growth exponent ``k`` in ``time ~ n^k`` between the first and last point (log-log slope)."""
    return math.log(seconds[-1] / seconds[0]) / math.log(ns[-1] / ns[0])


def time_extraction(model: torch.nn.Module, tokenizer: Any, df_all: Any, ns: Sequence[int], repeats: int,
                    measure_up_to: int) -> dict[str, dict[str, Any]]:
    """Extraction time per ``n``: timed (median) up to ``measure_up_to`` items, projected by tokens above.

    Returns:
        ``{str(n): {"seconds", "items_per_s", "tokens", "projected", ...}}``.
    """
    tokens = np.array([len(ids) for ids in encode_inputs(tokenizer, df_all, EXTRACT_KW["max_length"])["input_ids"]])
    extract(model, tokenizer, df_all.iloc[:16], progress=False, **EXTRACT_KW)  # warm-up: allocator, thread pool
    out: dict[str, dict[str, Any]] = {}
    measured = [n for n in ns if n <= measure_up_to]
    if not measured:
        raise ValueError(f"no n in {list(ns)} is <= measure_up_to={measure_up_to}; nothing to project from")
    runs: dict[int, list[float]] = {n: [] for n in measured}
    # Sizes take turns within each repeat, so a burst of load from other jobs
    # slows every size alike rather than one of them.
    for _ in range(repeats):
        for n in measured:
            runs[n] += _median_time(lambda: extract(model, tokenizer, df_all.iloc[:n], progress=False, **EXTRACT_KW),
                                    1)[1]
    for n in measured:
        med, real = statistics.median(runs[n]), int(tokens[:n].sum())
        out[str(n)] = {"seconds": med, "runs_s": runs[n], "items_per_s": n / med, "tokens": real,
                       "tokens_per_s": real / med, "projected": False}
    basis = out[str(measured[-1])]
    for n in ns:
        if n > measure_up_to:
            real = int(tokens[:n].sum())
            secs = real / basis["tokens_per_s"]
            out[str(n)] = {"seconds": secs, "items_per_s": n / secs, "tokens": real, "projected": True,
                           "projected_from_n": measured[-1]}
    return out


def projection_check(extraction: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """Predict the second timed size from the first by tokens/s; the relative error bounds the projection."""
    timed = sorted((int(n), r) for n, r in extraction.items() if not r["projected"])
    if len(timed) < 2:
        return None
    (n0, r0), (n1, r1) = timed[0], timed[1]
    predicted = r1["tokens"] / r0["tokens_per_s"]
    return {"from_n": n0, "to_n": n1, "predicted_s": predicted, "measured_s": r1["seconds"],
            "relative_error": predicted / r1["seconds"] - 1.0}


def time_metrics(ns: Sequence[int], repeats: int, seed: int = 0) -> dict[str, dict[str, dict[str, Any]]]:
    """Per metric and ``n``: median single-layer time on a random ``(n, 384)`` float32 pair, and x13 layers."""
    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, dict[str, Any]]] = {m: {} for m in METRICS}
    for n in ns:
        X = rng.standard_normal((n, HIDDEN)).astype(np.float32)
        # correlated like pre/post representations, so no metric is at a degenerate value
        Y = (X + rng.standard_normal((n, HIDDEN))).astype(np.float32)
        for name in METRICS:
            similarity(name, X[:64], Y[:64])  # warm-up outside the timing
            med, times = _median_time(lambda: similarity(name, X, Y), repeats)
            out[name][str(n)] = {"layer_s": med, "runs_s": times, "seconds": N_LAYERS * med}
    return out


def per_language(ns: Sequence[int], extraction: dict, metrics: dict) -> dict[str, dict[str, Any]]:
    """Cost of one language (2 extractions + 13 layers of each metric) and its linear projection."""
    out = {}
    for n in ns:
        key = str(n)
        ext = STATES_PER_LANGUAGE * extraction[key]["seconds"]
        met = {m: metrics[m][key]["seconds"] for m in METRICS}
        total = ext + sum(met.values())
        out[key] = {
            "extraction_s": ext, "metrics_s": sum(met.values()), "total_s": total,
            "total_linear_cka_only_s": ext + met["linear_cka"],
            "extraction_projected": extraction[key]["projected"],
            "languages": {str(k): {"total_s": k * total, "total_h": k * total / 3600} for k in LANGUAGES},
        }
    return out


def plot(ns: Sequence[int], extraction: dict, metrics: dict, path: Path) -> None:
    """Log-log time against ``n``: one line per component, projected extraction points hollow and dashed."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=110)
    xs = [int(n) for n in ns]
    ext = [extraction[str(n)]["seconds"] for n in ns]
    timed = [i for i, n in enumerate(ns) if not extraction[str(n)]["projected"]]
    last = timed[-1]
    ax.plot([xs[i] for i in timed], [ext[i] for i in timed], "o-", color="C0",
            label=f"extraction, 1 state (n^{slope(xs, ext):.2f})")
    if last < len(xs) - 1:
        ax.plot(xs[last:], ext[last:], "--", color="C0")
        ax.plot(xs[last + 1:], ext[last + 1:], "o", color="C0", markerfacecolor="white",
                label="  projected from tokens/s")
    for i, name in enumerate(METRICS, start=1):
        ys = [metrics[name][str(n)]["seconds"] for n in ns]
        ax.plot(xs, ys, "s-", color=f"C{i}", label=f"{name}, 13 layers (n^{slope(xs, ys):.2f})")
    ax.set(xscale="log", yscale="log", xlabel="n_drift (items per language)", ylabel="seconds",
           title="Time for one language")
    ax.set_xticks(xs, [str(n) for n in xs])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def run(ns: Sequence[int] = N_DRIFT, repeats: int = 3, measure_extraction_up_to: int = MEASURE_EXTRACTION_UP_TO,
        model_name: str = "e5-small-q4", plot_path: Path | None = HERE / "scale.png") -> dict[str, Any]:
    """Time extraction and the drift metrics at each ``n``, project to many languages, plot.

    Args:
        ns: sizes of the drift set, increasing, at most 5,010 (the XNLI test set).
        repeats: timed runs per measurement; medians are reported.
        measure_extraction_up_to: largest ``n`` whose extraction is timed;
            larger ones are projected (``projected: true``).
        model_name: anything ``xldrift.model.loading.load_encoder`` accepts.
        plot_path: where to save the log-log plot (``None``: no plot).

    Returns:
        A JSON-ready dict: ``extraction``, ``metrics``, ``per_language``
        (keyed by ``str(n)``), growth exponents, the projection check and
        the machine's threads and load.
    """
    from xldrift.model.loading import load_encoder

    ns = sorted(int(n) for n in ns)
    if not ns or ns[0] < 8:
        raise ValueError(f"ns must be a non-empty list of sizes >= 8; got {ns}")
    start, load_start = time.perf_counter(), os.getloadavg()[0]
    df_all = load_split("xnli", "en", "test")
    if ns[-1] > len(df_all):
        raise ValueError(f"largest n is {ns[-1]} but the XNLI test set has {len(df_all)} pairs")
    df_all = df_all.iloc[:ns[-1]]
    tokenizer, model = load_encoder(model_name)
    extraction = time_extraction(model, tokenizer, df_all, ns, repeats, measure_extraction_up_to)
    del model
    metrics = time_metrics(ns, repeats)
    result: dict[str, Any] = {
        "ns": ns, "repeats": repeats, "model": model_name, "layers": N_LAYERS, "hidden": HIDDEN,
        "states_per_language": STATES_PER_LANGUAGE,
        "extract_kwargs": {**EXTRACT_KW, "poolings": list(EXTRACT_KW["poolings"])},
        "extraction": extraction, "projection_check": projection_check(extraction),
        "metrics": metrics, "per_language": per_language(ns, extraction, metrics),
        "growth_exponent": {"extraction": slope(ns, [extraction[str(n)]["seconds"] for n in ns]),
                            **{m: slope(ns, [metrics[m][str(n)]["seconds"] for n in ns]) for m in METRICS}},
        "torch_threads": torch.get_num_threads(),
        "loadavg_1min_start": load_start, "loadavg_1min_end": os.getloadavg()[0],
    }
    if plot_path is not None:
        plot(ns, extraction, metrics, Path(plot_path))
        result["plot"] = Path(plot_path).name
    result["total_runtime_s"] = time.perf_counter() - start
    return result


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
