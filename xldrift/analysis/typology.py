"""Linguistic distances between task languages from URIEL, in two databases.

Six kinds of distance (Littell et al. 2017, "URIEL and lang2vec", EACL):
syntactic, phonological, inventory, featural, genetic and geographic.

``lang2vec`` (PyPI 1.1.2). That release has no ``distance()`` function and does
not ship the precomputed distance matrices the URIEL paper describes, so we
define the distance ourselves as the cosine distance ``1 - cos(u, v)`` between
the languages' ``lang2vec.get_features`` vectors:

============  ===========================================================
kind          feature set
============  ===========================================================
syntactic     ``syntax_knn``
phonological  ``phonology_knn``
inventory     ``inventory_knn``
featural      ``syntax_knn`` + ``phonology_knn`` + ``inventory_knn`` (concatenated)
genetic       ``fam`` (membership in every Glottolog family/sub-family node)
geographic    ``geo`` (distances to fixed points on the globe)
============  ===========================================================

All features are non-negative, so the cosine is in [0, 1] and so is the
distance (rounding below 0 is clipped). lang2vec marks a missing value as the
string ``'--'``. The ``*_knn`` sets are k-NN imputed and complete for every
language in the database; ``fam``/``geo`` are all-missing for a few codes. A
vector that is entirely missing means "no data" (handled by the policy below);
one with *some* missing entries is compared over the entries both languages
have, the rule URIEL+ uses, and the count is logged. (In lang2vec 1.1.2 no
vector of these sets has a missing entry.) A vector with no non-zero value
has no direction, so it also counts as "no data", in both databases: this
is the ``fam`` vector of isolates (``eus``) and of codes URIEL attaches to no
family node (``lvs``, ``ltg``, ``nob``, ``nno``, ``twi``, ``nqo``).

``urielplus`` (1.3.2; Khan et al. 2025, "URIEL+", COLING). Distances come from
``URIELPlus().new_distance(kind, [a, b])`` with the package defaults: observed
(not imputed) features, union aggregation over sources, angular distance
``2*arccos(cos)/pi`` over the features both languages have, rounded to 4
decimals. Its genetic distance is exactly 1.0 between languages sharing no
family node, so many pairs tie (e.g. English to Thai, Swahili, Turkish,
Vietnamese); Spearman statistics use average ranks for ties. URIEL+ takes
the arccos of a float32 cosine, so it puts a language about 1e-4 from itself;
two task codes with the same ISO code (``zho_Hans``, ``zho_Hant``) are given
distance 0 directly.

Coverage policy (``policy=``), applied identically in both databases:

* ``"fallback"`` (default): a language with no data for a (kind, database)
  is replaced by its ISO 639-3 macrolanguage when that has data (``arb`` ->
  ``ara``, ``swh`` -> ``swa``, ``cmn`` -> ``zho``, see :data:`MACROLANGUAGE`,
  from the ISO 639-3 macrolanguage mappings of SIL International); anything
  still without data is excluded.
* ``"exclude"``: no substitution; a language without data is excluded.

Every substitution and exclusion is logged as a warning and listed in the
coverage report, never dropped silently. Known gaps in URIEL+: no phonological
or inventory data for ``arb`` (``ara`` has both) and none for phonology of
``urd`` (no macrolanguage; excluded); of SIB-200's 205 codes, 92 have no usable
URIEL+ phonology and 47 no inventory even after fallback. lang2vec's k-NN
sets cover every code.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import itertools
import logging
import os
import re
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats as st
from tqdm.auto import tqdm

from xldrift.study import io, paths

log = logging.getLogger(__name__)

KINDS = ("syntactic", "phonological", "inventory", "featural", "genetic", "geographic")
DATABASES = ("lang2vec", "urielplus")
POLICIES = ("fallback", "exclude")
PAIRS = ("source", "all")
CACHE_VERSION = 1

LANG2VEC_SETS: dict[str, tuple[str, ...]] = {
    "syntactic": ("syntax_knn",),
    "phonological": ("phonology_knn",),
    "inventory": ("inventory_knn",),
    "featural": ("syntax_knn", "phonology_knn", "inventory_knn"),
    "genetic": ("fam",),
    "geographic": ("geo",),
}

# Individual language -> ISO 639-3 macrolanguage (SIL International, ISO 639-3
# macrolanguage mappings), restricted to languages of XNLI and SIB-200.
MACROLANGUAGE: dict[str, str] = {
    **dict.fromkeys(["arb", "acm", "acq", "aeb", "ajp", "apc", "ars", "ary", "arz"], "ara"),
    **dict.fromkeys(["cmn", "yue"], "zho"),
    **dict.fromkeys(["zsm", "min", "bjn"], "msa"),
    **dict.fromkeys(["pes", "prs"], "fas"),
    **dict.fromkeys(["azj", "azb"], "aze"),
    **dict.fromkeys(["lvs", "ltg"], "lav"),
    **dict.fromkeys(["kmr", "ckb"], "kur"),
    **dict.fromkeys(["nob", "nno"], "nor"),
    **dict.fromkeys(["bos", "hrv", "srp"], "hbs"),
    "swh": "swa", "uzn": "uzb", "plt": "mlg", "khk": "mon", "npi": "nep", "ory": "ori",
    "pbt": "pus", "gaz": "orm", "quy": "que", "ydd": "yid", "als": "sqi", "twi": "aka",
    "knc": "kau", "fuv": "ful", "dik": "din", "taq": "tmh", "ayr": "aym", "ekk": "est",
}

_ISO = re.compile(r"^[a-z]{3}$")
_FLORES = re.compile(r"^([a-z]{3})_[A-Z][a-z]{3}$")
_URIEL_PREFIX = {"syntactic": "S_", "phonological": "P_", "inventory": "INV_"}


def iso_from_flores(code: str) -> str:
    """ISO 639-3 part of a Flores-200 / SIB-200 code: ``eng_Latn`` -> ``eng``."""
    m = _FLORES.match(code)
    if not m:
        raise ValueError(f"{code!r} is not a Flores-200 code like 'eng_Latn'")
    return m.group(1)


# ---------------------------------------------------------------- databases

@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence lang2vec's pkg_resources warning and URIEL+'s INFO logging."""
    previous = logging.root.manager.disable
    logging.disable(logging.INFO)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


@functools.lru_cache(maxsize=1)
def _lang2vec():
    with _quiet():
        import lang2vec.lang2vec as l2v
    return l2v


@functools.lru_cache(maxsize=None)
def _npz(path: str) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` file, decompressed once."""
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


class _NumpyCachedLoad:
    """numpy as lang2vec sees it, except that ``load(path)`` returns a cached dict.

    lang2vec indexes the lazily-loaded ``NpzFile`` once per feature, which
    decompresses the whole array every time (about 6 s for ``fam``'s 3,718
    features); an in-memory copy gives the same values in milliseconds.
    """

    def __getattr__(self, name: str):
        return getattr(np, name)

    @staticmethod
    def load(path, *args, **kwargs):
        return _npz(str(path)) if not args and not kwargs else np.load(path, *args, **kwargs)


def _lang2vec_file(feature_set: str) -> str:
    l2v = _lang2vec()
    return os.path.join(os.path.dirname(l2v.__file__), "data", l2v.FEATURE_SETS_DICT[feature_set][0])


@functools.lru_cache(maxsize=None)
def _lang2vec_languages(feature_set: str) -> frozenset[str]:
    """Codes present in the file that holds ``feature_set`` (unknown codes make lang2vec raise)."""
    return frozenset(str(x) for x in _npz(_lang2vec_file(feature_set))["langs"])


@functools.lru_cache(maxsize=1)
def urielplus_db():
    """The URIEL+ knowledge base, loaded once per process (about 1-2 s).

    ``urielplus`` calls ``logging.basicConfig(level=INFO)`` on import; the root
    logger's handlers and level are restored afterwards so that importing it
    does not change how the notebook logs.
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    with _quiet():
        from urielplus import urielplus

        db = urielplus.URIELPlus()
    root.handlers[:], root.level = handlers, level
    return db


def _lang2vec_vectors(isos: Sequence[str], feature_set: str) -> dict[str, np.ndarray]:
    """Feature vectors ``(n_features,)`` with NaN for lang2vec's ``'--'``."""
    known = [c for c in dict.fromkeys(isos) if c in _lang2vec_languages(feature_set)]
    if not known:
        return {}
    l2v = _lang2vec()
    with _quiet():
        l2v.np = _NumpyCachedLoad()
        try:
            feats = l2v.get_features(known, feature_set)
        finally:
            l2v.np = np
    return {c: np.array([np.nan if v == "--" else float(v) for v in feats[c]]) for c in known}


def top_families(isos: Sequence[str]) -> dict[str, str]:
    """Each code's top-level genealogical family from URIEL's ``fam`` features ('' where unknown).

    A language belongs to every Glottolog node above it (``F_Indo-European``,
    ``F_Germanic``, ...); the top-level family is the node with the most member
    languages in the database. Isolates and codes URIEL attaches to no node
    (``eus``, ``nqo``) and codes it does not know get ``''``.
    """
    f = _npz(_lang2vec_file("fam"))
    data = f["data"][:, :, 0] == 1  # (n_languages, n_nodes)
    size = data.sum(axis=0)
    row = {str(c): i for i, c in enumerate(f["langs"])}
    out = {}
    for iso in dict.fromkeys(isos):
        nodes = np.flatnonzero(data[row[iso]]) if iso in row else np.array([], int)
        out[iso] = str(f["feats"][nodes[np.argmax(size[nodes])]])[2:] if len(nodes) else ""
    return out


def _cosine_distance(u: np.ndarray, v: np.ndarray) -> float:
    """``1 - cos(u, v)`` over entries both vectors have, clipped to [0, 1]; NaN if either is zero there."""
    both = np.isfinite(u) & np.isfinite(v)
    u, v = u[both], v[both]
    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
    if nu == 0 or nv == 0:
        return float("nan")
    return float(np.clip(1.0 - u @ v / (nu * nv), 0.0, 1.0))


def _urielplus_vector(iso: str, kind: str) -> np.ndarray | None:
    """URIEL+'s values of ``kind`` for ``iso`` ``(n_features, n_sources)``, -1 = missing; None if absent."""
    db = urielplus_db()
    with _quiet():
        idx = db.map_new_distance_to_loaded_features(kind)
    where = np.flatnonzero(db.langs[idx] == iso)
    if iso not in db.langs[0] or where.size == 0:
        return None
    prefix = _URIEL_PREFIX.get(kind, "")
    cols = [i for i, f in enumerate(db.feats[idx]) if str(f).startswith(prefix)]
    return np.asarray(db.data[idx][where[0]][cols], float)


def _known(iso: str, database: str) -> bool:
    if database == "lang2vec":
        return any(iso in _lang2vec_languages(s) for s in ("syntax_knn", "fam", "geo"))
    return iso in urielplus_db().langs[0]


# ----------------------------------------------------------------- coverage

def _validate(codes, sources, kinds, databases, policy, pairs) -> None:
    if not isinstance(codes, Mapping) or not codes:
        raise ValueError("codes must be a non-empty mapping task code -> ISO 639-3 code")
    bad = {k: v for k, v in codes.items() if not (isinstance(v, str) and _ISO.match(v))}
    if bad:
        raise ValueError(f"ISO 639-3 codes must be three lower-case letters; got {bad}")
    for name, given, valid in (("kinds", kinds, KINDS), ("databases", databases, DATABASES)):
        wrong = [k for k in given if k not in valid]
        if wrong or not given:
            raise ValueError(f"unknown {name} {wrong}; valid: {', '.join(valid)}")
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; valid: {', '.join(POLICIES)}")
    if pairs not in PAIRS:
        raise ValueError(f"unknown pairs {pairs!r}; valid: {', '.join(PAIRS)}")
    missing = [s for s in sources if s not in codes]
    if missing:
        raise ValueError(f"source languages {missing} are not in codes ({', '.join(codes)})")
    if pairs == "source" and not sources:
        raise ValueError("pairs='source' needs at least one source language")


def _missing(iso: str, kind: str, database: str, l2v: dict) -> str:
    """Why ``iso`` has no usable ``kind`` vector in ``database`` ("" if it has one).

    A vector without any non-zero value carries no information for a cosine:
    URIEL's ``fam`` vector is all zeros for isolates and for codes attached to
    no family node (``eus``, ``nqo``, but also ``lvs``, ``nob``, ``nno``), and
    scoring those at distance 1 from every language would be an artefact.
    """
    if database == "urielplus":
        vec = _urielplus_vector(iso, kind) if _known(iso, database) else None
        vec = None if vec is None or not (vec != -1).any() else np.where(vec == -1, np.nan, vec)
    else:
        parts = [l2v.get((s, iso)) for s in LANG2VEC_SETS[kind]]
        vec = None if any(v is None or not np.isfinite(v).any() for v in parts) else np.concatenate(parts)
    if vec is None:
        return f"no {kind} data"
    return "" if np.nanmax(np.abs(vec)) > 0 else f"{kind} vector is all zeros (no information)"


def _unknown(codes: Mapping[str, str], databases: Sequence[str], strict: bool) -> dict[str, list[str]]:
    """Task codes each database does not know; with ``strict`` any such code is an error."""
    unknown = {db: [c for c, iso in codes.items() if not _known(iso, db)] for db in databases}
    bad = sorted({f"{c} ({codes[c]}) in {db}" for db, cs in unknown.items() for c in cs})
    if bad and strict:
        raise ValueError(f"unknown ISO 639-3 codes: {', '.join(bad)}; check the codes mapping")
    return unknown


def _coverage(codes, kinds, databases, policy, unknown, l2v) -> pd.DataFrame:
    """One row per (task code, kind, database): which ISO code is used, or why none."""
    rows = []
    for db in databases:
        for kind, (code, iso) in itertools.product(kinds, codes.items()):
            row = dict(task_code=code, iso639_3=iso, kind=kind, database=db,
                       status="ok", used_code=iso, partner="", reason="")
            why = _missing(iso, kind, db, l2v)
            if why:
                why = "code not in database" if code in unknown[db] else why
                macro = MACROLANGUAGE.get(iso)
                if policy == "fallback" and macro and not _missing(macro, kind, db, l2v):
                    row.update(status="fallback", used_code=macro, reason=f"{why} for {iso}; macrolanguage {macro} used")
                else:
                    row.update(status="excluded", used_code="", reason=f"{why} for {iso}")
                log.warning("%s %s %s (%s): %s", db, kind, code, iso, row["reason"])
            rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- distances

def _pair_list(codes: Sequence[str], sources: Sequence[str], pairs: str) -> list[tuple[str, str]]:
    if pairs == "all":
        return list(itertools.combinations(codes, 2))
    out = [(s, t) for s in sources for t in codes if t != s]
    seen, unique = set(), []
    for a, b in out:  # with several sources, (a, b) and (b, a) are one distance
        if frozenset((a, b)) not in seen:
            seen.add(frozenset((a, b)))
            unique.append((a, b))
    return unique


def _distance(db: str, kind: str, a: str, b: str, l2v: dict) -> float:
    if a == b:
        return 0.0
    if db == "urielplus":
        with _quiet():
            return float(urielplus_db().new_distance(kind, [a, b]))
    u = np.concatenate([l2v[(s, a)] for s in LANG2VEC_SETS[kind]])
    v = np.concatenate([l2v[(s, b)] for s in LANG2VEC_SETS[kind]])
    partial = int((~np.isfinite(u) | ~np.isfinite(v)).sum())
    if partial:
        log.info("lang2vec %s %s-%s: %d of %d features missing; compared on the rest", kind, a, b, partial, u.size)
    value = _cosine_distance(u, v)
    if not np.isfinite(value):
        raise ValueError(f"no shared non-zero {kind} features between {a} and {b}")
    return value


def _compute(codes, sources, kinds, databases, policy, pairs, strict, progress):
    unknown = _unknown(codes, databases, strict)
    isos = set(codes.values())
    isos |= {MACROLANGUAGE[i] for i in isos if i in MACROLANGUAGE}
    l2v: dict[tuple[str, str], np.ndarray] = {}
    if "lang2vec" in databases:
        for fs in sorted({s for k in kinds for s in LANG2VEC_SETS[k]}):
            l2v.update({(fs, c): v for c, v in _lang2vec_vectors(sorted(isos), fs).items()})
    coverage = _coverage(codes, kinds, databases, policy, unknown, l2v)
    used = {(r.task_code, r.kind, r.database): r.used_code for r in coverage.itertuples()}
    rows, failed = [], []
    jobs = list(itertools.product(databases, kinds))
    for db, kind in tqdm(jobs, desc="distances", disable=not progress):
        for a, b in _pair_list(list(codes), sources, pairs):
            ua, ub = used[(a, kind, db)], used[(b, kind, db)]
            if not ua or not ub:
                continue
            try:
                rows.append((a, b, kind, db, _distance(db, kind, ua, ub, l2v)))
            except ValueError as err:  # no feature observed (or non-zero) for both languages
                log.warning("%s %s %s-%s excluded: %s", db, kind, a, b, str(err).splitlines()[0])
                failed.append(dict(task_code=b, iso639_3=codes[b], kind=kind, database=db, status="pair excluded",
                                   used_code=ub, partner=a, reason=str(err).splitlines()[0]))
    table = pd.DataFrame(rows, columns=["lang_a", "lang_b", "kind", "database", "value"])
    if pairs == "source":
        table = _orient(table, sources)
    return table, pd.concat([coverage, pd.DataFrame(failed, columns=coverage.columns)], ignore_index=True)


def _orient(table: pd.DataFrame, sources: Sequence[str]) -> pd.DataFrame:
    """Every (source, target) row, reusing the symmetric value of (target, source)."""
    flipped = table.rename(columns={"lang_a": "lang_b", "lang_b": "lang_a"})
    both = pd.concat([table, flipped], ignore_index=True)
    both = both[both["lang_a"].isin(sources)].drop_duplicates(["lang_a", "lang_b", "kind", "database"])
    return both[["lang_a", "lang_b", "kind", "database", "value"]].reset_index(drop=True)


def compute_distances(
    codes: Mapping[str, str],
    source: str | Sequence[str] | None = None,
    *,
    databases: Sequence[str] = DATABASES,
    kinds: Sequence[str] = KINDS,
    policy: str = "fallback",
    pairs: str = "source",
    strict: bool = False,
    cache: bool = True,
    progress: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Distances between task languages and the coverage report behind them.

    Args:
        codes: task code -> ISO 639-3 code as URIEL uses it, e.g.
            ``{"en": "eng", "ar": "arb", "zh": "cmn"}``.
        source: the source language(s) (task codes). With ``pairs="source"``
            the table holds every (source, target) pair, target != source.
        databases: any of ``"lang2vec"``, ``"urielplus"``.
        kinds: any of :data:`KINDS`.
        policy: ``"fallback"`` (macrolanguage substitution, then exclusion) or
            ``"exclude"``; see the module docstring.
        pairs: ``"source"`` or ``"all"`` (every unordered pair once, for
            database agreement; URIEL+ genetic costs about 0.25 s per pair).
        strict: raise ``ValueError`` naming any code a database does not know,
            instead of excluding it with a warning.
        cache: reuse / store the result under ``cache_dir()/distances``.
        progress: show a progress bar.

    Returns:
        ``(distances, coverage)``. ``distances`` has columns ``lang_a, lang_b,
        kind, database, value`` in task codes, value in [0, 1]. ``coverage`` has
        one row per (task_code, kind, database) with ``status`` ok / fallback /
        excluded, the ``used_code``, and a ``reason``; pairs a database could
        not compare are added with status ``pair excluded`` and the other
        language in ``partner``.
    """
    sources = [source] if isinstance(source, str) else list(source or [])
    kinds, databases = list(kinds), list(databases)
    _validate(codes, sources, kinds, databases, policy, pairs)
    key = io.stable_hash(dict(
        v=CACHE_VERSION, codes=sorted(codes.items()), sources=sorted(sources), kinds=kinds, databases=databases,
        policy=policy, pairs=pairs, strict=strict, versions=_versions(databases)))
    folder = paths.cache_dir() / "distances" / key
    if cache and io.is_complete(folder):
        return (pd.read_csv(folder / "distances.csv", keep_default_na=False, na_values=[""]),
                pd.read_csv(folder / "coverage.csv", keep_default_na=False, na_values=[]).fillna(""))
    start = time.perf_counter()
    table, coverage = _compute(dict(codes), sources, kinds, databases, policy, pairs, strict, progress)
    seconds = time.perf_counter() - start
    log.info("%d distances for %d languages in %.1f s", len(table), len(codes), seconds)
    if cache:
        with io.atomic_dir(folder) as tmp:
            table.to_csv(tmp / "distances.csv", index=False)
            coverage.to_csv(tmp / "coverage.csv", index=False)
            io.write_manifest(tmp, dict(key=key, seconds=round(seconds, 2), n_languages=len(codes)))
    return table, coverage


def _versions(databases: Sequence[str]) -> dict[str, str]:
    return {db: importlib.metadata.version(db) for db in databases}


def distance_table(codes: Mapping[str, str], source: str | Sequence[str] | None = None, **kwargs) -> pd.DataFrame:
    """The ``lang_a, lang_b, kind, database, value`` table of :func:`compute_distances`."""
    return compute_distances(codes, source, **kwargs)[0]


def coverage_report(codes: Mapping[str, str], source: str | Sequence[str] | None = None, **kwargs) -> pd.DataFrame:
    """The coverage table of :func:`compute_distances`, limited to rows that are not ``ok``."""
    cov = compute_distances(codes, source, **kwargs)[1]
    return cov[cov["status"] != "ok"].reset_index(drop=True)


def database_agreement(distances: pd.DataFrame) -> pd.DataFrame:
    """Spearman correlation between the two databases per kind, across language pairs.

    Each unordered pair counts once; only pairs present in both databases are used.

    Args:
        distances: a :func:`distance_table` frame holding both databases.

    Returns:
        Columns ``kind, rho, p, n`` (Spearman 1904; scipy's ``spearmanr``,
        average ranks for ties). ``rho`` is NaN when fewer than 3 pairs are
        shared. ``p`` treats pairs as independent although they share
        languages, so read it as descriptive only.
    """
    need = {"lang_a", "lang_b", "kind", "database", "value"}
    if not need <= set(distances.columns):
        raise ValueError(f"distances needs columns {sorted(need)}; got {list(distances.columns)}")
    d = distances.assign(pair=[tuple(sorted(p)) for p in zip(distances["lang_a"], distances["lang_b"])])
    d = d.drop_duplicates(["pair", "kind", "database"])
    wide = d.pivot_table(index=["kind", "pair"], columns="database", values="value")
    rows = []
    for kind, g in wide.groupby(level="kind", sort=False):
        g = g.dropna()
        if not set(DATABASES) <= set(g.columns) or len(g) < 3:
            rows.append(dict(kind=kind, rho=np.nan, p=np.nan, n=len(g)))
            continue
        res = st.spearmanr(g["lang2vec"], g["urielplus"])
        rows.append(dict(kind=kind, rho=float(res.statistic), p=float(res.pvalue), n=len(g)))
    out = pd.DataFrame(rows, columns=["kind", "rho", "p", "n"])
    order = {k: i for i, k in enumerate(KINDS)}
    return out.sort_values("kind", key=lambda s: s.map(order)).reset_index(drop=True)
