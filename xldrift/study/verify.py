"""Compare the tables of two runs: a fresh reproduction against the committed results, or a
smoke run against the golden reference the test suite keeps.

Each table is compared cell by cell. Text columns must be equal. Numbers are equal when
``|a - b| <= atol + rtol * |b|`` (NaN equals NaN), with tolerances given per column; the
report names, for each table, how many values differ, the largest difference and where it is
(the row's identifying text columns and the column).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

# Files a run rewrites with run-specific content, never compared.
SKIP = {"config.json", "drift_meta.json"}  # drift_meta.json: cache keys and seconds of notebook 04's bookkeeping
# Columns that hold timings or machine paths, not results.
RUN_SPECIFIC = {
    "checkpoints.csv": ["seconds_per_step", "wall_seconds"],
    "intervention_runs.csv": ["seconds_per_step", "wall_seconds"],  # the same run records as checkpoints.csv
    "extraction.csv": ["seconds", "items/s"],
    "representations.csv": ["path"],
}


@dataclass(frozen=True)
class Tolerance:
    """``|a - b| <= atol + rtol * |b|``; the default is exact equality."""

    atol: float = 0.0
    rtol: float = 0.0


def _row_key(df: pd.DataFrame, i: int, numeric: list[str]) -> str:
    text = [c for c in df.columns if c not in numeric]
    return ", ".join(f"{c}={df.iloc[i][c]}" for c in text[:6]) or f"row {i + 1}"


def compare_frames(new: pd.DataFrame, ref: pd.DataFrame, tolerances: dict[str, Tolerance] | None = None,
                   default: Tolerance = Tolerance()) -> dict[str, object]:
    """Compare two tables cell by cell.

    Args:
        new: the table just made.
        ref: the reference (committed or golden) table.
        tolerances: per numeric column; columns not named get ``default`` (exact unless given).

    Returns:
        ``{"status": "equal" | "within tolerance" | "differs", "values": n compared,
        "differ": n outside tolerance, "max_abs_diff": float, "where": str, "detail": str}``.
    """
    tolerances = tolerances or {}
    out: dict[str, object] = {"values": 0, "differ": 0, "max_abs_diff": 0.0, "where": "", "detail": ""}
    if list(new.columns) != list(ref.columns):
        return {**out, "status": "differs",
                "detail": f"columns differ: {sorted(set(new.columns) ^ set(ref.columns)) or 'order'}"}
    if len(new) != len(ref):
        return {**out, "status": "differs", "detail": f"{len(new)} rows, reference has {len(ref)}"}
    numeric = [c for c in ref.columns if pd.api.types.is_numeric_dtype(ref[c]) and pd.api.types.is_numeric_dtype(new[c])
               and not pd.api.types.is_bool_dtype(ref[c])]
    exact_equal = True
    worst = (0.0, "")
    n_values = n_differ = 0
    for c in ref.columns:
        if c in numeric:
            a, b = new[c].to_numpy(float), ref[c].to_numpy(float)
            both_nan = np.isnan(a) & np.isnan(b)
            diff = np.where(both_nan, 0.0, np.abs(a - b))
            diff = np.where(np.isnan(diff), np.inf, diff)
            tol = tolerances.get(c, default)
            bad = diff > tol.atol + tol.rtol * np.abs(np.nan_to_num(b))
            exact_equal &= bool((diff == 0).all())
            n_values += len(a)
            n_differ += int(bad.sum())
            if diff.size and diff.max() > worst[0]:
                i = int(diff.argmax())
                worst = (float(diff.max()), f"{c} at {_row_key(ref, i, numeric)}")
        else:
            a, b = new[c].astype(str).to_numpy(), ref[c].astype(str).to_numpy()
            bad = a != b
            n_values += len(a)
            if bad.any():
                exact_equal = False
                n_differ += int(bad.sum())
                i = int(np.flatnonzero(bad)[0])
                if not worst[1]:
                    worst = (np.inf, f"{c} at {_row_key(ref, i, numeric)}: {a[i]!r} vs {b[i]!r}")
    status = "equal" if exact_equal else "within tolerance" if n_differ == 0 else "differs"
    return {**out, "status": status, "values": n_values, "differ": n_differ,
            "max_abs_diff": worst[0], "where": worst[1]}


def compare_dirs(new_dir: Path, ref_dir: Path, tolerances: dict[str, dict[str, Tolerance]] | None = None,
                 names: list[str] | None = None, ignore: dict[str, list[str]] | None = None,
                 default: Tolerance = Tolerance()) -> pd.DataFrame:
    """Compare every table (CSV or JSON) of ``ref_dir`` with its namesake in ``new_dir``.

    Args:
        tolerances: ``{file name: {column: Tolerance}}``.
        names: compare only these files (default: every ``.csv`` and ``.json`` in ``ref_dir``).
        ignore: ``{file name: [column, ...]}`` left out of the comparison (timings, machine paths).
        default: the tolerance of every numeric column without one of its own.

    Returns:
        One row per file: ``table, status, values, differ, max_abs_diff, where, detail``; status
        ``missing`` when the new run did not write the file.
    """
    tolerances = tolerances or {}
    ignore = RUN_SPECIFIC if ignore is None else ignore
    files = names or sorted(p.name for p in ref_dir.iterdir() if p.suffix in (".csv", ".json") and p.name not in SKIP)
    rows = []
    for name in files:
        ref, new = ref_dir / name, new_dir / name
        if not new.is_file():
            rows.append({"table": name, "status": "missing", "detail": "not written by the new run"})
            continue
        if name.endswith(".json"):
            same = json.loads(new.read_text()) == json.loads(ref.read_text())
            rows.append({"table": name, "status": "equal" if same else "differs", "detail": "" if same else "JSON differs"})
            continue
        drop = ignore.get(name, [])
        res = compare_frames(pd.read_csv(new).drop(columns=drop, errors="ignore"),
                             pd.read_csv(ref).drop(columns=drop, errors="ignore"), tolerances.get(name), default)
        rows.append({"table": name, **res})
    cols = ["table", "status", "values", "differ", "max_abs_diff", "where", "detail"]
    return pd.DataFrame(rows).reindex(columns=cols)


def print_report(report: pd.DataFrame, new_label: str, ref_label: str) -> None:
    """One line per table: equal, or how many values differ, by how much and where."""
    print(f"comparing {new_label} with {ref_label}:")
    for r in report.itertuples():
        if r.status == "equal":
            line = f"equal ({int(r.values):,} values)" if pd.notna(r.values) else "equal"
        elif r.status == "within tolerance":
            line = f"within tolerance ({int(r.values):,} values; largest difference {r.max_abs_diff:.2g}, {r.where})"
        elif r.status == "missing" or (isinstance(r.detail, str) and r.detail):
            line = f"{r.status}: {r.detail}"
        else:
            line = (f"differs: {int(r.differ):,} of {int(r.values):,} values; largest difference "
                    f"{r.max_abs_diff:.3g} ({r.where})")
        print(f"  {r.table:32s} {line}")
    n_equal = int((report["status"] == "equal").sum())
    print(f"{n_equal} of {len(report)} tables equal, {int((report['status'] == 'within tolerance').sum())} within "
          f"tolerance, {int(report['status'].isin(['differs', 'missing']).sum())} differ")
