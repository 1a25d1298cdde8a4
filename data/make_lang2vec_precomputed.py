"""Rebuild ``lang2vec_precomputed.csv`` from tab-separated dumps of ``lang2vec.distance()``.

The dumps are the four ``*_l2v_distances.txt`` files and ``code_map.json`` of
``github.com/simran-khanuja/demux`` (folder ``src/helper/l2v``, commit
56148da6f79cee04a3c2bf5611a66156d271e18d); see ``data/README.md``. Each line
is ``<lang a> <lang b> <kind>_distance <value>`` with two-letter codes that
``code_map.json`` maps to the ISO 639-3 codes passed to lang2vec.

Usage: ``python data/make_lang2vec_precomputed.py <folder with the dumps>``.
The script checks that every pair has one value per kind in both directions
and across files before writing, and fails otherwise.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

KINDS = ("syntactic", "geographic", "phonological", "genetic", "inventory", "featural")
FILES = ("xnli", "PAN-X", "udpos", "tydiqa")


def read_dumps(folder: Path) -> pd.DataFrame:
    """All lines of the dumps as ``iso_a, iso_b, kind, value, file`` with iso_a < iso_b."""
    codes = json.loads((folder / "code_map.json").read_text())
    parts = []
    for name in FILES:
        t = pd.read_csv(folder / f"{name}_l2v_distances.txt", sep="\t", header=None, names=["a", "b", "kind", "value"],
                        dtype={"a": str, "b": str, "kind": str, "value": float}, keep_default_na=False)
        t["kind"] = t["kind"].str.removesuffix("_distance")
        unknown = sorted(set(t["kind"]) - set(KINDS))
        if unknown:
            raise ValueError(f"{name}: unknown distance kinds {unknown}")
        a, b = t["a"].map(codes), t["b"].map(codes)
        if a.isna().any() or b.isna().any():
            raise ValueError(f"{name}: codes without an ISO 639-3 mapping: {sorted(set(t.loc[a.isna(), 'a']) | set(t.loc[b.isna(), 'b']))}")
        t["iso_a"], t["iso_b"] = a.where(a < b, b), b.where(a < b, a)
        parts.append(t.assign(file=name)[["iso_a", "iso_b", "kind", "value", "file"]])
    return pd.concat(parts, ignore_index=True)


def build(folder: Path) -> pd.DataFrame:
    """One row per unordered pair and kind; raises if two lines of a pair disagree."""
    lines = read_dumps(folder)
    spread = lines.groupby(["iso_a", "iso_b", "kind"])["value"].agg(["min", "max"])
    bad = spread[spread["max"] > spread["min"]]
    if len(bad):
        raise ValueError(f"{len(bad)} pairs have different values in different lines, e.g.\n{bad.head()}")
    out = lines.drop_duplicates(["iso_a", "iso_b", "kind"]).drop(columns="file")
    counts = out.groupby(["iso_a", "iso_b"]).size()
    if (counts != len(KINDS)).any():
        raise ValueError(f"pairs without all {len(KINDS)} kinds: {list(counts[counts != len(KINDS)].index)[:5]}")
    return out.sort_values(["iso_a", "iso_b", "kind"]).reset_index(drop=True)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    table = build(Path(sys.argv[1]))
    target = Path(__file__).resolve().parent / "lang2vec_precomputed.csv"
    table.to_csv(target, index=False)
    print(f"{len(table)} rows, {table[['iso_a', 'iso_b']].drop_duplicates().shape[0]} pairs, "
          f"{len(set(table['iso_a']) | set(table['iso_b']))} languages -> {target}")
