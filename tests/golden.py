"""The golden smoke run: which tables the test suite compares, and how closely.

``make test`` runs the ``smoke`` profile in a temporary folder and compares the tables below
with ``tests/golden/smoke/``. A change that keeps them equal has shown that it does not move
the study's numbers. A change meant to move them refreshes the golden tables in the same commit
(``python tests/golden.py --refresh``) and says which published profiles it makes stale
(``python run_study.py --status``).

Tolerances. Two cold smoke runs on the same 2-core machine type (empty caches, the model
converted anew) gave identical tables except the correlation statistics, which differed by at
most 2e-15 (numpy's summation order). Text, counts and accuracies (whole items) must therefore be
equal. Float columns get the bounds below: 1e-6 for float32 model outputs (losses, CKA), because
another CPU may run the kernels with a different vector width; 1e-9 for statistics of them; and
2/n_perm for permutation p-values, where an r that moves in its last digits can flip one
permutation's comparison. A real change of behaviour moves these numbers by orders of magnitude more.

Another CPU. The float32 model outputs of a machine whose kernels differ from the one that made the
golden tables (e.g. without AVX-512) differ in their last digits: 2.4e-7 in a training loss, 9e-8
in a CKA, seen on an AMD EPYC against the golden machine. Smoke's fine-tuning is so short that the
lowest layers move by about 1e-7, so impacts there are float noise, and statistics over them move by
far more than float noise (a permutation p by 0.006). Statistics are therefore checked where their
inputs are the golden ones: when the model's outputs (:data:`UPSTREAM`) are within tolerance but not
equal, :func:`rederive` puts the golden upstream tables in place and re-runs notebooks 05-07, whose
tables must then match as above. The model's outputs themselves are still held to 1e-6.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from xldrift.study.verify import Tolerance  # noqa: E402

GOLDEN = ROOT / "tests" / "golden" / "smoke"

TABLES = [
    "items.csv", "languages.csv", "fertility.csv",                      # 01
    "accuracy.csv", "training_history.csv", "checkpoints.csv", "finetune_config.json",  # 02
    "drift.csv", "alignment.csv",                                       # 04
    "distances.csv", "distance_coverage.csv", "correlations.csv", "claims.csv", "verdict_grid.csv",  # 05
    "database_agreement.csv", "intervention_selection.csv",
    "intervention.csv", "intervention_runs.csv", "intervention_gains.csv", "intervention_gaps.csv",  # 06
    "intervention_verdict.csv",
    "precomputed_agreement.csv", "placeholders.csv", "correlations_placeholders.csv", "correlations_paper.csv",  # 05:
    "claims_paper.csv", "correlations_avg.csv", "paper_steps.csv",      # the paper's reading
    "pairs_accuracy_matrix.csv", "pairs_impact.csv", "pairs_counts.csv", "pairs_conventions.csv",  # 07
    "correlations_by_source.csv", "pairs_source_spread.csv", "pairs_claims.csv", "pairs_blocks.csv",
    "pairs_vs_single_source.csv",
]

#: what notebooks 01-04 write, read by the statistics of 05-07: the data, and the model's outputs
UPSTREAM = ["items.csv", "languages.csv", "fertility.csv", "accuracy.csv", "training_history.csv", "checkpoints.csv",
            "finetune_config.json", "drift.csv", "alignment.csv"]
STATISTICS_NOTEBOOKS = "05,06,07"

MODEL = Tolerance(atol=1e-6)
STATS = Tolerance(atol=1e-9)
PERM = Tolerance(atol=2 / 1000)  # the smoke profile's n_perm
TOLERANCES: dict[str, dict[str, Tolerance]] = {
    "training_history.csv": {"train_loss": MODEL, "val_accuracy": MODEL},
    "checkpoints.csv": {"final_val_accuracy": MODEL},
    "drift.csv": {"similarity": MODEL},
    "alignment.csv": {"similarity": MODEL},
    "correlations.csv": {c: STATS for c in ("r", "p", "ci_low", "ci_high", "p_adj")} | {"p_perm": PERM},
    "intervention_selection.csv": {c: STATS for c in ("r", "ci_low", "ci_high", "p_adj")} | {"p_perm": PERM},
    "database_agreement.csv": {"rho": STATS, "p": STATS},
    "precomputed_agreement.csv": {"pearson": STATS, "spearman": STATS},
    "correlations_placeholders.csv": {"r_all": STATS, "r_without": STATS, "p_perm_all": PERM, "p_perm_without": PERM},
    "pairs_impact.csv": {"impact": MODEL},
    "pairs_blocks.csv": {"r": STATS},
    "pairs_source_spread.csv": {c: STATS for c in ("r_mean", "r_sd", "r_min", "r_max", "r_all_pairs")},
    "pairs_vs_single_source.csv": {c: STATS for c in ("r_grid", "p_adj_grid", "r_full", "p_adj_full", "diff")},
}
for _name in ("correlations_paper.csv", "correlations_avg.csv", "correlations_by_source.csv"):
    TOLERANCES[_name] = TOLERANCES["correlations.csv"]


def run_smoke(out: Path) -> Path:
    """Run the smoke profile into ``out``; return its results folder."""
    env = {**os.environ, "XLDRIFT_OUT": str(out)}
    subprocess.run([sys.executable, str(ROOT / "run_study.py"), "--profile", "smoke"], cwd=ROOT, env=env, check=True)
    return out / "results" / "smoke"


def rederive(out: Path, dest: Path) -> Path:
    """Re-run the statistics of a smoke run on the golden upstream tables; return the new results folder.

    Copies the run's outputs (``out``: results, figures, executed copies) to ``dest``, replaces the
    tables of :data:`UPSTREAM` by the golden ones and re-runs notebooks 05-07 there (the shared cache
    holds their fine-tunings when the intervention selects the blocks it selected before).
    """
    for part in ("results", "figures", "notebooks"):
        if (out / part).is_dir():
            shutil.copytree(out / part, dest / part)
    results = dest / "results" / "smoke"
    for t in UPSTREAM:
        shutil.copy(GOLDEN / t, results / t)
    env = {**os.environ, "XLDRIFT_OUT": str(dest)}
    subprocess.run([sys.executable, str(ROOT / "run_study.py"), "--profile", "smoke", "--only", STATISTICS_NOTEBOOKS,
                    "--rerun"], cwd=ROOT, env=env, check=True, capture_output=True, text=True, timeout=1200)
    return results


def refresh(results: Path) -> None:
    """Copy the golden tables from a smoke run's results folder into ``tests/golden/smoke/``."""
    missing = [t for t in TABLES if not (results / t).is_file()]
    if missing:
        raise SystemExit(f"error: the smoke run in {results} did not write {missing}")
    shutil.rmtree(GOLDEN, ignore_errors=True)
    GOLDEN.mkdir(parents=True)
    for t in TABLES:
        shutil.copy(results / t, GOLDEN / t)
    print(f"refreshed {len(TABLES)} golden tables in {GOLDEN.relative_to(ROOT)}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--refresh", action="store_true", help="run the smoke profile and make its tables the golden ones")
    ap.add_argument("--from", dest="source", type=Path, help="take the tables from this results folder instead")
    args = ap.parse_args(argv)
    if not args.refresh:
        ap.print_help()
        return 0
    if args.source:
        refresh(args.source)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            refresh(run_smoke(Path(tmp)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
