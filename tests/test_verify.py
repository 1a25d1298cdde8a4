"""Comparing two runs' tables: what the golden test and --verify rely on."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from xldrift.study import verify
from xldrift.study.verify import Tolerance


def _frame(sim=(0.91, 0.52)) -> pd.DataFrame:
    return pd.DataFrame({"target": ["de", "sw"], "layer": [1, 2], "similarity": list(sim)})


def test_equal_tables_are_equal():
    res = verify.compare_frames(_frame(), _frame())
    assert res["status"] == "equal" and res["values"] == 6 and res["differ"] == 0


def test_a_difference_is_counted_measured_and_located():
    res = verify.compare_frames(_frame((0.91, 0.5201)), _frame())
    assert res["status"] == "differs" and res["differ"] == 1
    assert math.isclose(res["max_abs_diff"], 1e-4, rel_tol=1e-6)
    assert res["where"] == "similarity at target=sw"


def test_tolerance_admits_small_differences_only():
    tol = {"similarity": Tolerance(atol=1e-6)}
    assert verify.compare_frames(_frame((0.91, 0.52 + 5e-7)), _frame(), tol)["status"] == "within tolerance"
    assert verify.compare_frames(_frame((0.91, 0.52 + 5e-6)), _frame(), tol)["status"] == "differs"
    # a tolerance on one column never excuses another
    moved = _frame()
    moved.loc[0, "layer"] = 3
    assert verify.compare_frames(moved, _frame(), tol)["status"] == "differs"


def test_a_default_tolerance_covers_columns_without_their_own():
    noisy = _frame((0.91 + 1e-15, 0.52))
    assert verify.compare_frames(noisy, _frame())["status"] == "differs"
    assert verify.compare_frames(noisy, _frame(), default=Tolerance(atol=1e-9))["status"] == "within tolerance"
    assert verify.compare_frames(_frame((0.95, 0.52)), _frame(), default=Tolerance(atol=1e-9))["status"] == "differs"


def test_text_nan_shape_and_columns():
    a, b = _frame(), _frame()
    a.loc[1, "target"] = "ur"
    res = verify.compare_frames(a, b)
    assert res["status"] == "differs" and "'ur' vs 'sw'" in res["where"]
    nan = _frame((float("nan"), 0.52))
    assert verify.compare_frames(nan, nan.copy())["status"] == "equal"
    assert verify.compare_frames(nan, _frame())["status"] == "differs"
    assert "1 rows, reference has 2" in verify.compare_frames(_frame().head(1), _frame())["detail"]
    assert "columns differ" in verify.compare_frames(_frame().drop(columns="layer"), _frame())["detail"]


def test_compare_dirs_reports_each_table_and_ignores_run_specific_columns(tmp_path, capsys):
    new, ref = tmp_path / "new", tmp_path / "ref"
    for d, secs, sim in ((new, 3.0, 0.52), (ref, 9.0, 0.52)):
        d.mkdir()
        _frame((0.91, sim)).to_csv(d / "drift.csv", index=False)
        pd.DataFrame({"state": ["pre"], "items": [10], "seconds": [secs], "items/s": [10 / secs]}).to_csv(
            d / "extraction.csv", index=False)
        (d / "config.json").write_text(json.dumps({"started": str(secs)}))
        (d / "finetune_config.json").write_text(json.dumps({"lr": 1e-4}))
    pd.DataFrame({"x": [1]}).to_csv(ref / "claims.csv", index=False)
    report = verify.compare_dirs(new, ref).set_index("table")["status"].to_dict()
    assert report == {"claims.csv": "missing", "drift.csv": "equal", "extraction.csv": "equal",
                      "finetune_config.json": "equal"}
    (new / "finetune_config.json").write_text(json.dumps({"lr": 2e-5}))
    verify.print_report(verify.compare_dirs(new, ref), "new", "ref")
    printed = capsys.readouterr().out
    assert "finetune_config.json             differs: JSON differs" in printed
    assert printed.strip().endswith("2 of 4 tables equal, 0 within tolerance, 2 differ")


def test_golden_tables_exist_and_tolerances_name_real_columns():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import golden

    for name in golden.TABLES:
        assert (golden.GOLDEN / name).is_file(), f"tests/golden/smoke/{name} is missing: refresh the golden tables"
    for name, cols in golden.TOLERANCES.items():
        assert name in golden.TABLES
        header = pd.read_csv(golden.GOLDEN / name, nrows=0).columns
        assert set(cols) <= set(header), f"{name}: tolerance for a column it does not have"
        for tol in cols.values():
            assert tol.atol <= 2e-3 and tol.rtol == 0, "tolerances stay tight enough to catch a real change"
    with pytest.raises(SystemExit, match="did not write"):
        golden.refresh(Path("/nonexistent"))
