"""lang2vec's precomputed distances (the paper's database) and a check for placeholder rows.

Philippy, Guo & Haddadan (2023) take their distances from
``lang2vec.distance(kind, langs)`` of lang2vec's GitHub version, which reads
precomputed sparse matrices (``lang2vec/data/distances2.zip``; Littell et al.
2017, "URIEL and lang2vec", EACL). The PyPI release ships neither the
function nor the file, and the file is not in the stored copy of the
repository, so ``data/lang2vec_precomputed.csv`` holds the function's output as
published by a third party (provenance, licence and the codes in
``data/README.md``): every pair of 40 languages, six kinds, under the ISO
639-3 codes lang2vec was given (``ara``, ``swa``, ``zho``, ``msa``, ``fas`` for
the macrolanguages). This is the third database next to ``lang2vec`` (feature
cosine) and ``urielplus`` in :mod:`xldrift.analysis.typology`.

Task languages are matched by their own ISO 639-3 code, or, for the standard
individual language of a macrolanguage the table holds (:data:`PAPER_CODES`:
``arb`` -> ``ara`` etc., the substitution the paper makes for XNLI), by the
macrolanguage. Nothing else is matched; a language not in the table has no
precomputed distance (reported, never imputed).

Placeholder rows. Some rows of the precomputed matrices carry no information
(e.g. ``ara``, ``swa`` and ``zho`` share one syntactic row, so their mutual
distance is 0). :func:`placeholders` flags, per kind, a language that has

* a distance of (about) zero to a language of another top-level family
  (not applied to geographic distance, where neighbours of different
  families are legitimately at rounded distance 0, e.g. ``bul``-``tur``), or
* one constant value to every other language (at least 3), unless the kind
  is genetic and no other language in the table shares its family, where a
  constant maximal distance is the correct value.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from xldrift.analysis import typology
from xldrift.study import paths

log = logging.getLogger(__name__)

DATABASE = "lang2vec_precomputed"
TABLE = "lang2vec_precomputed.csv"
KINDS = typology.KINDS
PAPER_KINDS = ("syntactic", "geographic", "inventory", "genetic", "phonological")  # the paper's five: no featural
ZERO_TOL = 1e-3  # the table rounds to 4 decimals; phonological placeholders sit at 0.0002
# standard individual language -> the macrolanguage code lang2vec was given (ISO 639-3, SIL International)
PAPER_CODES = {"arb": "ara", "swh": "swa", "cmn": "zho", "zsm": "msa", "pes": "fas"}
_COLUMNS = ["iso_a", "iso_b", "kind", "value"]


def load_table(path: str | Path | None = None) -> pd.DataFrame:
    """The committed precomputed distances: ``iso_a, iso_b, kind, value``, one row per unordered pair and kind.

    Raises:
        ValueError: missing columns, an unknown kind, a value outside [0, 1],
            a duplicated pair or a language paired with itself.
    """
    path = Path(path) if path is not None else paths.ROOT / "data" / TABLE
    t = pd.read_csv(path, keep_default_na=False, dtype={"iso_a": str, "iso_b": str, "kind": str})
    missing = [c for c in _COLUMNS if c not in t.columns]
    if missing:
        raise ValueError(f"{path.name} lacks columns {missing}; expected {_COLUMNS}")
    t = t[_COLUMNS].astype({"value": float})
    problems = []
    if not set(t["kind"]) <= set(KINDS):
        problems.append(f"unknown kinds {sorted(set(t['kind']) - set(KINDS))}")
    if not t["value"].between(0, 1).all():
        problems.append(f"{int((~t['value'].between(0, 1)).sum())} values outside [0, 1]")
    if (t["iso_a"] == t["iso_b"]).any():
        problems.append("a language paired with itself")
    key = [tuple(sorted(p)) + (k,) for p, k in zip(zip(t["iso_a"], t["iso_b"]), t["kind"])]
    if len(set(key)) != len(key):
        problems.append("duplicated (pair, kind) rows")
    if problems:
        raise ValueError(f"{path.name}: " + "; ".join(problems))
    return t.reset_index(drop=True)


def table_languages(table: pd.DataFrame) -> list[str]:
    """The ISO codes the table covers, sorted."""
    return sorted(set(table["iso_a"]) | set(table["iso_b"]))


def coverage(codes: Mapping[str, str], table: pd.DataFrame) -> pd.DataFrame:
    """Which precomputed code each task language uses, or that it has none.

    Args:
        codes: task code -> ISO 639-3 code (``languages.csv``).
        table: :func:`load_table`.

    Returns:
        One row per task code: ``task_code, iso639_3, used_code, status``
        (``exact``, ``macrolanguage`` or ``not covered``) and ``reason``.
    """
    known = set(table_languages(table))
    rows = []
    for code, iso in codes.items():
        macro = PAPER_CODES.get(iso, "")
        if iso in known:
            rows.append((code, iso, iso, "exact", ""))
        elif macro in known:
            rows.append((code, iso, macro, "macrolanguage", f"{iso} is the standard language of {macro}, the code "
                                                          "lang2vec was given"))
        else:
            rows.append((code, iso, "", "not covered", f"{iso} is not in the precomputed table"))
    return pd.DataFrame(rows, columns=["task_code", "iso639_3", "used_code", "status", "reason"])


def distances(codes: Mapping[str, str], source: str | Sequence[str], table: pd.DataFrame,
              kinds: Sequence[str] = KINDS) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Precomputed distances from the source(s) to every covered task language.

    Args:
        codes: task code -> ISO 639-3 code.
        source: source task code(s).
        table: :func:`load_table`.
        kinds: kinds to return.

    Returns:
        ``(distances, coverage)``: ``lang_a, lang_b, kind, database, value``
        in task codes (the format of :func:`xldrift.analysis.typology.distance_table`,
        ``database`` = :data:`DATABASE`; target != source; two task codes that
        share a precomputed code are at distance 0, as ``lang2vec.distance``
        returns), and :func:`coverage`.

    Raises:
        ValueError: a source not in ``codes`` or not covered, or an unknown kind.
    """
    sources = [source] if isinstance(source, str) else list(source)
    bad_kinds = [k for k in kinds if k not in KINDS]
    if bad_kinds:
        raise ValueError(f"unknown kinds {bad_kinds}; valid: {', '.join(KINDS)}")
    cov = coverage(codes, table)
    used = dict(zip(cov["task_code"], cov["used_code"]))
    for s in sources:
        if s not in used:
            raise ValueError(f"source {s!r} is not in codes ({', '.join(codes)})")
        if not used[s]:
            raise ValueError(f"source {s!r} ({codes[s]}) has no precomputed distances")
    lookup = {(a, b, k): v for a, b, k, v in table[_COLUMNS].itertuples(index=False)}
    rows = []
    for s, t, kind in itertools.product(sources, codes, kinds):
        if t == s or not used[t]:
            continue
        a, b = sorted((used[s], used[t]))
        value = 0.0 if a == b else lookup.get((a, b, kind))
        if value is not None:
            rows.append((s, t, kind, DATABASE, float(value)))
    return pd.DataFrame(rows, columns=["lang_a", "lang_b", "kind", "database", "value"]), cov


def placeholders(table: pd.DataFrame, families: Mapping[str, str], *, kinds: Sequence[str] | None = None,
                 tol: float = ZERO_TOL) -> pd.DataFrame:
    """Languages whose distances of a kind are not informative (the rules are in the module docstring).

    Args:
        table: distances among languages, columns ``lang_a, lang_b, kind,
            value`` (or ``iso_a, iso_b, ...``), each unordered pair at most
            once per kind; any code system, as long as ``families`` uses it.
        families: code -> top-level family; ``""`` or a missing code counts
            as related to nothing.
        kinds: kinds to check (default: all in the table).
        tol: values at or below ``tol`` count as zero; a row whose values
            span at most ``tol / 10`` counts as constant.

    Returns:
        ``kind, language, rule, detail``, one row per flagged (kind, language)
        and rule (``zero to unrelated`` or ``constant row``); empty if none.
    """
    t = table.rename(columns={"iso_a": "lang_a", "iso_b": "lang_b"})
    missing = [c for c in ("lang_a", "lang_b", "kind", "value") if c not in t.columns]
    if missing:
        raise ValueError(f"table lacks columns {missing}")
    t = t[t["lang_a"] != t["lang_b"]]
    kinds = list(dict.fromkeys(t["kind"])) if kinds is None else list(kinds)
    fam = {k: v for k, v in families.items() if v}
    rows = []
    for kind in kinds:
        d = t[t["kind"] == kind]
        both = pd.concat([d, d.rename(columns={"lang_a": "lang_b", "lang_b": "lang_a"})])
        both = both.drop_duplicates(["lang_a", "lang_b"])
        if kind != "geographic":
            zero = both[(both["value"] <= tol)]
            for a, g in zero.groupby("lang_a", sort=True):
                fa = fam.get(a)
                unrelated = [b for b in g["lang_b"] if fa is None or fam.get(b) != fa]
                if unrelated:
                    rows.append((kind, a, "zero to unrelated", f"{g.set_index('lang_b').loc[unrelated[0], 'value']:.4g} "
                                 f"to {', '.join(sorted(unrelated))} ({fa or 'family unknown'} vs "
                                 f"{', '.join(sorted({fam.get(b, 'unknown') for b in unrelated}))})"))
        for a, g in both.groupby("lang_a", sort=True):
            v = g["value"].to_numpy(float)
            if len(v) < 3 or np.ptp(v) > tol / 10:
                continue
            relatives = [b for b in g["lang_b"] if fam.get(a) is not None and fam.get(b) == fam.get(a)]
            if kind == "genetic" and not relatives:
                continue  # nothing shares its family: a constant maximal distance is right
            rows.append((kind, a, "constant row", f"{v[0]:.4g} to all {len(v)} other languages"
                         + (f", including {', '.join(sorted(relatives)[:3])} of its own family" if relatives else "")))
    out = pd.DataFrame(rows, columns=["kind", "language", "rule", "detail"])
    order = {k: i for i, k in enumerate(KINDS)}
    return out.sort_values(["kind", "language"], key=lambda s: s.map(order) if s.name == "kind" else s
                           ).reset_index(drop=True)


def flagged_task_languages(flags: pd.DataFrame, cov: pd.DataFrame) -> dict[str, list[str]]:
    """Per kind, the task codes whose precomputed code is flagged (``flags`` in ISO codes, ``cov`` from :func:`coverage`)."""
    by_iso = cov[cov["used_code"] != ""].groupby("used_code")["task_code"].apply(list).to_dict()
    out: dict[str, list[str]] = {}
    for kind, g in flags.groupby("kind", sort=False):
        out[kind] = sorted({c for iso in g["language"] for c in by_iso.get(iso, [])})
    return {k: v for k, v in out.items() if v}


def agreement(pre: pd.DataFrame, other: pd.DataFrame, *, kinds: Sequence[str] = KINDS) -> pd.DataFrame:
    """Pearson and Spearman correlation of precomputed and another database's distances, per kind.

    Args:
        pre, other: ``lang_a, lang_b, kind, value`` over the same task codes
            (e.g. from the source to each target).

    Returns:
        ``kind, pearson, spearman, n`` (n = pairs both hold).
    """
    key = ["lang_a", "lang_b", "kind"]
    m = pre[key + ["value"]].merge(other[key + ["value"]], on=key, suffixes=("_pre", "_other")).dropna()
    rows = []
    for kind in kinds:
        g = m[m["kind"] == kind]
        ok = len(g) >= 3 and np.ptp(g["value_pre"]) > 0 and np.ptp(g["value_other"]) > 0
        rows.append(dict(kind=kind, pearson=float(np.corrcoef(g["value_pre"], g["value_other"])[0, 1]) if ok else np.nan,
                         spearman=float(g["value_pre"].rank().corr(g["value_other"].rank())) if ok else np.nan,
                         n=len(g)))
    return pd.DataFrame(rows)
