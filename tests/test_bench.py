"""The benchmark README writer and the scale benchmark's arithmetic (no timing is asserted)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import bench_scale  # noqa: E402
import report  # noqa: E402

SECTIONS = ("## Machine", "## Linear CKA", "## Extraction", "## Fine-tuning step", "## End to end", "## Scale",
            "## Cache verification")


def _row(text: str, *starts: str) -> str:
    """The one table row whose first cells are ``starts``."""
    prefix = "| " + " | ".join(starts) + " |"
    rows = [line for line in text.splitlines() if line.startswith(prefix)]
    assert len(rows) == 1, f"expected one row starting {prefix!r}, found {rows}"
    return rows[0]


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    nxt = text.find("\n## ", start + 1)
    return text[start:] if nxt < 0 else text[start:nxt]


def _scale_results() -> dict:
    ns = [100, 200]
    extraction = {
        "100": {"seconds": 2.0, "items_per_s": 50.0, "tokens": 4000, "tokens_per_s": 2000.0, "projected": False},
        "200": {"seconds": 4.2, "items_per_s": 47.6, "tokens": 8400, "projected": True, "projected_from_n": 100},
    }
    metrics = {m: {str(n): {"layer_s": 0.01 * n / 100, "seconds": 13 * 0.01 * n / 100} for n in ns}
               for m in bench_scale.METRICS}
    return {"ns": ns, "repeats": 3, "model": "tiny", "layers": 13, "hidden": 384, "states_per_language": 2,
            "extraction": extraction, "metrics": metrics,
            "per_language": bench_scale.per_language(ns, extraction, metrics),
            "growth_exponent": {"extraction": 1.07}, "projection_check": None, "plot": "scale.png"}


def _results() -> dict:
    """Synthetic results: CKA misses its speed target, extraction misses its agreement target, no end-to-end."""
    return {
        "machine": {"cpu": "Test CPU", "cores": 2, "python": "3.11", "torch": "2.x", "numpy": "2.x", "threads": 2,
                    "gpu": False},
        "when": "2024-01-01 00:00",
        "cka": {"repeats": 3,
                "results": {"default": {"384": {"n": 5010, "d": 384, "median_s": {"feature": 0.05, "gram": 0.5},
                                                "speed_ratio": 10.0, "max_abs_diff": 2e-9}}},
                "grid_projection": {"sources": 15, "targets": 15, "layers": 13, "n_cka": 2925, "n": 5010, "d": 768,
                                    "default": {"feature": {"hours": 0.1}, "gram": {"hours": 3.0}}}},
        # the shape bench_extract.run() returns
        "extract": {"n_items": 2000, "model": "tiny", "repeats": 2,
                    "ours": {"median_wall_s": 10.0, "median_cpu_s": 19.0, "items_per_s": 200.0,
                             "gflops_real_tokens": 70.0, "fraction_of_peak": 0.7, "fraction_of_peak_cpu_time": 0.72},
                    "paper": {"median_wall_s": 30.0, "median_cpu_s": 58.0, "items_per_s": 66.7,
                              "gflops_real_tokens": 23.3, "fraction_of_peak": 0.23, "fraction_of_peak_cpu_time": 0.24},
                    "speedup_wall": 3.0, "speedup_cpu_time": 3.05, "max_abs_diff": {"cls": 5e-6, "mean": 3e-4},
                    "matmul_peak": {"median_gflops": 100.0}},
        "scale": _scale_results(),
    }


def test_every_section_and_verdicts(tmp_path):
    path = tmp_path / "README.md"
    report.write(_results(), path)
    text = path.read_text()
    for heading in SECTIONS:
        assert heading in text
    assert "Test CPU" in text
    # CKA: a 10x speed-up against a 30x target is missed; a 2e-9 difference against 1e-6 is met.
    cka_row = _row(text, "default", "5010", "384")
    cells = [c.strip() for c in cka_row.strip("|").split("|")]
    assert cells[6] == "**missed**" and cells[8] == "met"
    # Extraction: 3x >= 2.5x met, max diff 3e-4 > 1e-4 missed, 70% >= 60% met.
    assert _row(text, "speed-up, wall (paper time / ours)").rstrip(" |").endswith("met")
    assert "| 10.0 | 30.0 |" in _row(text, "median wall time (s)") and "3.05x" in _row(text, "speed-up, CPU time")
    assert "| 70% | 23% |" in _row(text, "fraction of fp32 matmul peak (100.0 GFLOP/s)")
    assert "**missed**" in _row(text, "max abs diff of pooled states")
    assert "3.0e-04" in _row(text, "max abs diff of pooled states")
    assert _row(text, "fraction of fp32 matmul peak (100.0 GFLOP/s)").rstrip(" |").endswith("met")
    assert _row(text, "default", "6.0 min", "3.0 h")  # grid projection, converted from hours
    # End to end was skipped.
    assert "Not measured in this run (skipped)." in _section(text, "## End to end")
    # Scale: projected size flagged, plot embedded, 15-language projection = 15 x (2 x ext + metrics).
    assert "(projected)" in _row(text, "200")
    assert "](scale.png)" in text
    one = 2 * 2.0 + 3 * 13 * 0.01  # 4.39 s, so 200 languages take 878 s = 14.6 min
    assert _row(text, "100").rstrip(" |").endswith(f"{200 * one / 60:.1f} min")


def test_all_sections_missing(tmp_path):
    path = tmp_path / "README.md"
    report.write({}, path)
    text = path.read_text()
    for heading in SECTIONS:
        assert heading in text
    assert text.count("Not measured in this run (skipped).") == 6
    assert "**missed**" not in text and "| met |" not in text


def test_partial_section_reads_not_measured(tmp_path):
    path = tmp_path / "README.md"
    report.write({"extract": {"speedup_wall": 1.5}, "end_to_end": {"smoke": {"cold": {"wall_s": 400.0}}}}, path)
    text = path.read_text()
    assert "**missed**" in _row(text, "speed-up, wall (paper time / ours)")
    assert report.NA in _row(text, "max abs diff of pooled states")
    assert "**missed**" in _row(text, "smoke, cold run (empty cache) wall")  # 400 s > 300 s
    assert report.NA in _row(text, "unchanged re-run / cold run")


def test_default_verdict_comes_from_a_lower_bound_on_fine_tuning(tmp_path):
    path = tmp_path / "README.md"

    def verdict(steps: int, rate: float) -> str:
        ft = {"runs": 2, "steps": steps, "wall_s": steps * rate * 2, "fastest_s_per_step": rate}
        report.write({"end_to_end": {"default_recorded": {"finetune": ft}}}, path)
        row = next(line for line in path.read_text().splitlines() if "lower bound on a cold run" in line)
        return row.rsplit("|", 2)[-2].strip()

    assert verdict(1136, 2.6) == "**missed**"  # 49 min of fine-tuning alone
    assert verdict(100, 2.6) == "not decided by the bound"  # a bound under the target proves nothing


def test_nan_is_not_a_pass(tmp_path):
    results = _results()
    results["extract"]["ours"]["fraction_of_peak"] = float("nan")
    path = tmp_path / "README.md"
    report.write(results, path)
    row = _row(path.read_text(), "fraction of fp32 matmul peak (100.0 GFLOP/s)")
    assert "met" not in row.replace(report.NA, "") and report.NA in row


def test_durations_pick_a_readable_unit():
    assert report._dur(30) == "30 s"
    assert report._dur(600) == "10.0 min"
    assert report._dur(3 * 3600) == "3.0 h"
    assert report._dur(None) == report.NA


def test_write_rejects_non_dict(tmp_path):
    with pytest.raises(ValueError, match="results must be"):
        report.write([1, 2], tmp_path / "README.md")


def test_slope_and_projection():
    assert bench_scale.slope([10, 1000], [1.0, 1e4]) == pytest.approx(2.0)
    extraction = {"100": {"seconds": 2.0, "tokens": 1000, "tokens_per_s": 500.0, "projected": False},
                  "300": {"seconds": 5.0, "tokens": 2400, "tokens_per_s": 480.0, "projected": False},
                  "900": {"seconds": 99.0, "tokens": 9000, "projected": True}}
    check = bench_scale.projection_check(extraction)
    assert (check["from_n"], check["to_n"]) == (100, 300)
    assert check["predicted_s"] == pytest.approx(2400 / 500)
    assert check["relative_error"] == pytest.approx(4.8 / 5.0 - 1)


def test_per_language_is_linear():
    extraction = {"50": {"seconds": 3.0, "projected": False}}
    metrics = {m: {"50": {"seconds": s}} for m, s in zip(bench_scale.METRICS, (0.1, 0.2, 0.7))}
    out = bench_scale.per_language([50], extraction, metrics)["50"]
    assert out["total_s"] == pytest.approx(2 * 3.0 + 1.0)
    assert out["total_linear_cka_only_s"] == pytest.approx(6.1)
    assert out["languages"]["200"]["total_s"] == pytest.approx(200 * 7.0)
    assert math.isclose(out["languages"]["15"]["total_h"], 15 * 7.0 / 3600)


def test_plot_writes_png(tmp_path):
    sec = _scale_results()
    path = tmp_path / "scale.png"
    bench_scale.plot(sec["ns"], sec["extraction"], sec["metrics"], path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_malformed_section_does_not_stop_the_readme(tmp_path):
    results = _results()
    results["cka"]["results"] = "not a dict"
    path = tmp_path / "README.md"
    report.write(results, path)
    text = path.read_text()
    assert "Could not be rendered" in _section(text, "## Linear CKA")
    assert "## Scale" in text and "**missed**" in _row(text, "max abs diff of pooled states")


def test_projected_counts_match_what_the_default_run_recorded():
    import bench_project
    import run_all

    rates = run_all._recorded_rates("default")
    c = bench_project.counts("default")
    assert c["fine_tunings"] == len(rates) == 4  # 1 main + 3 intervention conditions; the setups are their own profile
    recorded = run_all.recorded_durations("default")["finetune"]["steps"]
    assert abs(c["steps"] - recorded) <= 0.02 * recorded  # items are drawn by premise group, so n_train is approximate
    setups = bench_project.counts("setups")  # notebooks 01-02: the main run and 4 variants, nothing extracted
    assert setups["fine_tunings"] == 5 and setups["extract_items"] == 0
    full = bench_project.counts("full")
    # 3 seeds x (1 main + targeted, lowest and one random draw); full leaves the setup comparison to default
    assert full["fine_tunings"] == 3 * (1 + 3) and full["targets"] == 15


def test_projection_section_renders_counts_and_rates(tmp_path):
    path = tmp_path / "README.md"
    sec = {"finetune_s_per_step": {"fastest": 2.5, "median": 4.0, "runs": 8}, "forward_items_per_s": 17.0,
           "profiles": {"full": {"targets": 15, "fine_tunings": 30, "steps": 7980, "eval_items": 904500,
                                 "extract_items": 60300, "projected_s": {"fastest": 77040, "median": 90653}}}}
    report.write({"projection": sec}, path)
    row = _row(path.read_text(), "`full`")
    assert "21.4 h - 25.2 h" in row and "904500" in row


def test_projection_with_fused_rates_and_default_verdict(tmp_path):
    import bench_project

    sec = bench_project.project(["default"], [2.0, 3.0, 4.0], items_per_s=20.0, step_ratio=2.0)
    c = sec["profiles"]["default"]
    forward = (c["eval_items"] + c["extract_items"]) / 20.0
    assert c["projected_s_fused"]["fastest"] == round(c["steps"] * 2.0 / 2.0 + forward)
    assert c["projected_s_fused"]["median"] == round(c["steps"] * 3.0 / 2.0 + forward)
    path = tmp_path / "README.md"
    report.write({"projection": sec}, path)
    text = path.read_text()
    verdict = "met" if c["projected_s_fused"]["fastest"] <= 1800 else "**missed**"
    assert f"({verdict} by the projection)" in _section(text, "## Profiles projected")
    assert "2.00x" in text


def _finetune_section() -> dict:
    def setting(optimizer: float) -> dict:
        phases = {"forward": 0.6, "backward": 1.2, "clip": 0.05, "optimizer": optimizer, "zero_grad": 0.02}
        fused = {**phases, "optimizer": 0.1}
        for d in (phases, fused):
            d["step"] = sum(d.values())
            d["cpu"] = 2 * d["step"]
        return {"trainable_parameters": 21.5e6 if optimizer < 0.5 else 117.5e6,
                "median_s": {"baseline": phases, "fused": fused}, "optimizer_share_baseline": optimizer / phases["step"],
                "optimizer_ratio": optimizer / 0.1,
                "max_abs_param_diff": 2.4e-7, "max_abs_loss_diff": 1.2e-7}

    return {"model": "tiny", "batch_size": 32, "steps_per_repeat": 6, "repeats": 2, "padded_lengths": [60, 58],
            "real_token_fraction": 0.65, "parameters": {"total": 118e6, "word_embeddings": 96e6},
            "variants": {"baseline": "adamw_torch", "fused": "adamw_torch_fused"},
            "settings": {"all_weights": setting(0.8), "embeddings_frozen": setting(0.2)},
            "top_ops_baseline": [{"op": "aten::mm", "self_s": 1.0, "share": 0.4, "calls": 146},
                                 {"op": "aten::sqrt", "self_s": 0.3, "share": 0.11, "calls": 199}],
            "machine": {"torch_threads": 2}}


def test_finetune_section_ratios_and_agreement(tmp_path):
    path = tmp_path / "README.md"
    report.write({"finetune": _finetune_section()}, path)
    text = _section(path.read_text(), "## Fine-tuning step")
    assert _row(text, "optimizer step").endswith("| 0.800 | 0.100 | 8.00x | 0.200 | 0.100 | 2.00x |")
    assert _row(text, "whole step (wall)").endswith("| 2.670 | 1.970 | 1.36x | 2.070 | 1.970 | 1.05x |")
    assert "96 M of its 118 M parameters" in text and "2.4e-07" in text and "65% of the tokens" in text
    assert "(117.5 M trainable)" in text and "(21.5 M trainable)" in text
    assert _row(text, "`aten::mm`") and "30%" in text and "10%" in text  # optimizer shares 0.8/2.67, 0.2/2.07
    assert "element-wise `aten::sqrt` (11%) are among" in text and "cuts the optimizer step by 8.0x" in text
    sec = _finetune_section()
    sec["top_ops_baseline"] = sec["top_ops_baseline"][:1]
    report.write({"finetune": sec}, path)
    assert "none of AdamW's element-wise operators" in path.read_text()


def test_projection_scales_the_forward_rate_by_tokens_per_item():
    import bench_project

    plain = bench_project.project(["sib200"], [2.0], items_per_s=60.0)["profiles"]["sib200"]
    scaled = bench_project.project(["sib200"], [2.0], items_per_s=60.0, reference_tokens=40.0,
                                   task_tokens={"sib200": 50.0, "xnli": 40.0})["profiles"]["sib200"]
    items = plain["eval_items"] + plain["extract_items"]
    assert plain["forward_s"] == round(items / 60.0)
    assert scaled["forward_items_per_s"] == 48.0 and scaled["forward_s"] == round(items / 48.0)


def test_extraction_section_reads_what_the_benchmark_writes(tmp_path):
    # the report once read field names an older bench_extract wrote, and showed "not measured"
    import bench_extract

    peak = (100.0, 50.0)
    ours = bench_extract.timing_summary([(10.0, 19.0), (11.0, 21.0)], peak, n_items=2000, gflop=700.0)
    paper = bench_extract.timing_summary([(30.0, 58.0), (32.0, 60.0)], peak, n_items=2000, gflop=700.0)
    assert ours["median_wall_s"] == 10.5 and ours["items_per_s"] == pytest.approx(2000 / 10.5)
    sec = {"n_items": 2000, "model": "tiny", "repeats": 2, "ours": ours, "paper": paper,
           "speedup_wall": paper["median_wall_s"] / ours["median_wall_s"],
           "speedup_cpu_time": paper["median_cpu_s"] / ours["median_cpu_s"],
           "max_abs_diff": {"cls": 1e-6, "mean": 2e-6}, "matmul_peak": {"median_gflops": peak[0]}}
    path = tmp_path / "README.md"
    report.write({"extract": sec}, path)
    text = _section(path.read_text(), "## Extraction")
    for label in ("median wall time (s)", "median CPU time, all threads (s)", "throughput (items/s)",
                  "GFLOP/s on real tokens", "fraction of fp32 matmul peak (100.0 GFLOP/s)",
                  "fraction of peak per CPU second"):
        assert report.NA not in _row(text, label), label
    assert _row(text, "fraction of fp32 matmul peak (100.0 GFLOP/s)").rstrip(" |").endswith("met")  # 67% >= 60%


def test_cache_section_sets_verification_against_the_work_saved():
    sec = {"repeats": 3, "sha256_mb_per_s": 700.0,
           "checkpoint": {"mb": 480.0, "verify_first_s": 0.6, "verify_again_s": 0.0001, "sizes_only_s": 0.00006,
                          "load_s": 2.0, "train_s_recorded": 600.0},
           "representations": {"mb": 19.0, "items": 501, "verify_first_s": 0.02, "read_s": 0.002, "extract_s": 8.0},
           "predictions": {"items": 300, "verify_and_rows_s": 0.002, "read_s": 0.0005}}
    text = report.render({"cache": sec})
    part = _section(text, "## Cache verification")
    assert "0.1%" in _row(part, "checkpoint (480 MB)")  # 0.6 s of 600 s
    assert "0.25%" in _row(part, "representations (501 items, 19 MB)")  # 0.02 s of 8 s
    assert "not measured" in _row(part, "predictions (300 items)")
    assert "Not measured" in _section(report.render({}), "## Cache verification")


def _executed(root, profile: str, records: list[dict]) -> None:
    import json

    d = root / "notebooks" / "executed" / profile
    d.mkdir(parents=True)
    for i, rec in enumerate(records, start=1):
        (d / f"0{i}_nb.ipynb").write_text(json.dumps({"cells": [], "metadata": {"xldrift": rec}}))


def test_cold_run_times_one_cold_run_and_refuses_a_mixture(tmp_path, monkeypatch):
    import run_all

    monkeypatch.setattr(run_all, "ROOT", tmp_path)
    monkeypatch.setattr(run_all, "_profile_notebooks", lambda profile, commit=None: ["01", "02"])  # the fake profile's two notebooks
    run = {"started": "2026-12-02T07:14:18", "cold_cache": True, "commit": "abcdef1"}
    _executed(tmp_path, "default", [{**run, "duration_s": 30.0}, {**run, "duration_s": 90.0}])
    sec = run_all.cold_run("default")
    assert sec["cold"] and sec["total_s"] == 120.0 and sec["shares"] == {"01_nb": 0.25, "02_nb": 0.75}
    text = report.default_cold(sec)
    assert "measured 2.0 min (met)" in text and "| 02_nb | 90 s | 75% | not measured |" in text
    _executed(tmp_path, "mixed", [{**run, "duration_s": 30.0}, {**run, "started": "later", "duration_s": 9.0}])
    mixed = run_all.cold_run("mixed")
    assert not mixed["cold"] and "more than one run" in report.default_cold(mixed)


def test_a_default_run_in_progress_is_not_reported_as_a_cold_time(tmp_path):
    path = tmp_path / "README.md"
    sec = {"one_run": True, "cold": True, "started": "2026-01-01T00:00:00", "commit": "abc1234",
           "durations_s": {"01_data": 24.5}, "total_s": 24.5, "notebooks_expected": 7}
    report.write({"default_cold": sec}, path)
    text = _section(path.read_text(), "## The default profile, cold")
    assert "notebooks 01 of the profile's 7" in text and "(met)" not in text
    report.write({"default_cold": {**sec, "durations_s": {f"0{i}_x": 10.0 for i in range(1, 8)}, "total_s": 70.0}},
                 path)
    assert "(met)" in _section(path.read_text(), "## The default profile, cold")  # all 7: a cold time, judged


def test_a_run_is_complete_with_the_notebooks_of_its_own_commit():
    """A notebook added after a run does not make that run 'in progress'."""
    import subprocess

    import run_all

    first = subprocess.run(["git", "rev-list", "--max-parents=0", "HEAD"], cwd=run_all.ROOT, capture_output=True,
                           text=True).stdout.split()
    listed = subprocess.run(["git", "ls-tree", "--name-only", "5ef7715", "notebooks/"], cwd=run_all.ROOT,
                            capture_output=True, text=True)
    if listed.returncode != 0 or not first:
        pytest.skip("no git history in this checkout")
    then = run_all._profile_notebooks("default", "5ef7715")  # the cold run's commit had notebooks 01-06
    now = run_all._profile_notebooks("default")
    assert then == ["01", "02", "03", "04", "05", "06"] and set(then) < set(now)


def test_a_measured_cold_run_is_the_default_verdict_over_the_projection():
    import report

    sec = {"profiles": {"default": {"projected_s_fused": {"fastest": 1200, "median": 1500}}},
           "measured_cold": {"cold": True, "total_s": 2796.0, "commit": "d7301c70a036"}}
    text = report.projection(sec)
    assert "(met by the projection)" in text
    assert "that run is the verdict: 46.6 min at commit d7301c7 (**missed**" in text
    # a warm (or absent) run says nothing beyond the projection
    assert "that run is the verdict" not in report.projection({**sec, "measured_cold": {"cold": False, "total_s": 60}})
