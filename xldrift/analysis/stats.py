"""Correlation statistics over languages and language pairs, with honest p-values.

* r: Pearson (1896) or Spearman (1904) rank correlation; analytic p from scipy.
* Permutation p: two-sided, ``(count(|r*| >= |r|) + 1) / (n_perm + 1)``
  (Phipson & Smyth 2010), with all permutations vectorised.
* Pairs of languages: with several sources, the ordered pairs (source, target)
  share languages and are not independent, so labels are permuted
  Mantel-style (Mantel 1967): one permutation of the language set is applied
  to both the source and the target role of ``y``. Languages that are sources
  are permuted among sources and the others among themselves, so every
  permuted pair exists; with one source this is the ordinary permutation test.
* 95% CI: percentile bootstrap (Efron & Tibshirani 1993) resampling languages,
  not pairs: a resample keeps every pair between the drawn languages.
* Partial Spearman: ranks of x and y residualised on the ranks of z by OLS,
  then Pearson of the residuals (Conover 1999, sec. 5.5); its permutation p
  permutes the residuals of y (Freedman & Lane 1983; partial Mantel test,
  Smouse, Long & Sokal 1986).
* Multiple comparisons: Holm (1979) step-down or Benjamini & Hochberg (1995).

Fewer than :data:`MIN_N` complete observations, or a constant variable, give
NaN results (with ``n`` recorded) and a warning rather than an exception,
because one sparse cell must not stop a whole table.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats as st
from tqdm.auto import tqdm

from xldrift.analysis.bootstrap import block_sizes

log = logging.getLogger(__name__)

METHODS = ("pearson", "spearman")
ADJUST = ("holm", "bh")
MIN_N = 4
KEYS = ["x", "y", "layer", "pooling", "metric", "database"]
COLUMNS = KEYS + ["method", "r", "p", "p_perm", "ci_low", "ci_high", "p_adj", "n"]


def _nan_result(n: int, why: str) -> dict:
    warnings.warn(f"correlation undefined ({why}); returning NaN with n={n}", RuntimeWarning, stacklevel=3)
    return dict(r=np.nan, p=np.nan, p_perm=np.nan, ci_low=np.nan, ci_high=np.nan, n=n)


def _pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Row-wise Pearson r of ``(B, m)`` arrays, ignoring NaN cells; NaN for constant rows."""
    ok = np.isfinite(x) & np.isfinite(y)
    n = ok.sum(1)
    x0, y0 = np.where(ok, x, 0.0), np.where(ok, y, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        dx = np.where(ok, x0 - (x0.sum(1) / n)[:, None], 0.0)
        dy = np.where(ok, y0 - (y0.sum(1) / n)[:, None], 0.0)
        sxx, syy = (dx * dx).sum(1), (dy * dy).sum(1)
        r = (dx * dy).sum(1) / np.sqrt(sxx * syy)
    # a constant row leaves only rounding error (relative size ~1e-32) in its sum of squares
    constant = (sxx <= 1e-20 * (x0 * x0).sum(1)) | (syy <= 1e-20 * (y0 * y0).sum(1))
    r[(n < 3) | constant] = np.nan
    return np.clip(r, -1.0, 1.0)


def _rank_rows(a: np.ndarray) -> np.ndarray:
    return st.rankdata(a, axis=1, nan_policy="omit")


def _corr_rows(x: np.ndarray, y: np.ndarray, method: str) -> np.ndarray:
    if method == "spearman":
        mask = ~(np.isfinite(x) & np.isfinite(y))
        x, y = _rank_rows(np.where(mask, np.nan, x)), _rank_rows(np.where(mask, np.nan, y))
    return _pearson_rows(x, y)


def _partial_rows(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Row-wise partial Spearman r_xy.z = (r_xy - r_xz r_yz) / sqrt((1 - r_xz^2)(1 - r_yz^2))."""
    mask = ~(np.isfinite(x) & np.isfinite(y) & np.isfinite(z))
    x, y, z = (_rank_rows(np.where(mask, np.nan, a)) for a in (x, y, z))
    rxy, rxz, ryz = _pearson_rows(x, y), _pearson_rows(x, z), _pearson_rows(y, z)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.clip((rxy - rxz * ryz) / np.sqrt((1 - rxz**2) * (1 - ryz**2)), -1.0, 1.0)


def _residual_ranks(x: np.ndarray, z: np.ndarray) -> np.ndarray:
    """OLS residual of rank(x) on [1, rank(z)]."""
    rx, rz = st.rankdata(x), st.rankdata(z)
    design = np.column_stack([np.ones_like(rz), rz])
    return rx - design @ np.linalg.lstsq(design, rx, rcond=None)[0]


class _Design:
    """Which pairs exist between which languages; permutations and resamples of them.

    Args:
        src, tgt: language label per pair ``(n_pairs,)``.
    """

    def __init__(self, src: Sequence, tgt: Sequence):
        src, tgt = np.asarray(src, dtype=object), np.asarray(tgt, dtype=object)
        if np.any(src == tgt):
            raise ValueError("same-language pairs (source == target) must be excluded before correlating")
        langs = sorted(set(src) | set(tgt), key=str)
        self.index = {lang: i for i, lang in enumerate(langs)}
        self.si = np.array([self.index[s] for s in src], dtype=int)
        self.ti = np.array([self.index[t] for t in tgt], dtype=int)
        self.n_lang = len(langs)
        self.row = np.full((self.n_lang, self.n_lang), -1)
        if len(set(zip(self.si, self.ti))) != len(self.si):
            raise ValueError("each (source, target) pair may appear only once")
        self.row[self.si, self.ti] = np.arange(len(self.si))
        sources = np.unique(self.si)
        self.strata = [sources, np.setdiff1d(np.arange(self.n_lang), sources)]

    def permuted_rows(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``(n, n_pairs)`` pair indices under label permutations; -1 where a pair is absent."""
        perm = np.tile(np.arange(self.n_lang), (n, 1))
        for s in self.strata:
            if len(s) > 1:
                perm[:, s] = rng.permuted(np.tile(s, (n, 1)), axis=1)
        return self.row[perm[:, self.si], perm[:, self.ti]]

    def resampled_rows(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``(n, n_sources * n_languages)`` pair indices of bootstrap resamples of languages; -1 = no pair.

        Each stratum is resampled with replacement; a resample keeps every pair
        from a drawn source to a drawn language (copies of one language never pair).
        """
        draws = [s[rng.integers(0, len(s), (n, len(s)))] for s in self.strata if len(s)]
        every = np.concatenate(draws, axis=1)
        return self.row[draws[0][:, :, None], every[:, None, :]].reshape(n, -1)


def _take(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return np.where(rows >= 0, values[np.maximum(rows, 0)], np.nan)


def _null(x: np.ndarray, y: np.ndarray, rows: np.ndarray, method: str) -> np.ndarray:
    """r of x against y taken at permuted pair indices ``rows`` ``(B, n)``."""
    if (rows >= 0).all():
        # complete design: each row of y[rows] is a reordering of y, so its mean and
        # spread (and, for Spearman, its ranks) are those of y
        if method == "spearman":
            x, y = st.rankdata(x), st.rankdata(y)
        dx, dy = x - x.mean(), y - y.mean()
        return np.clip(dy[rows] @ dx / np.sqrt((dx @ dx) * (dy @ dy)), -1.0, 1.0)
    return _corr_rows(np.broadcast_to(x, rows.shape), _take(y, rows), method)


def _pair_stats(x, y, src, tgt, *, method, n_perm, n_boot, seed, z=None) -> dict:
    """r, analytic p, permutation p and bootstrap CI for paired observations."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    z = None if z is None else np.asarray(z, float)
    keep = np.isfinite(x) & np.isfinite(y) & (np.isfinite(z) if z is not None else True)
    x, y, src, tgt = x[keep], y[keep], np.asarray(src, object)[keep], np.asarray(tgt, object)[keep]
    z = None if z is None else z[keep]
    n = int(keep.sum())
    design = _Design(src, tgt)
    if n < MIN_N:
        return _nan_result(n, f"fewer than {MIN_N} complete observations")
    if np.ptp(x) == 0 or np.ptp(y) == 0 or (z is not None and np.ptp(z) == 0):
        return _nan_result(n, "a constant variable")
    rng = np.random.default_rng(seed)
    if z is not None:
        ex, ey = _residual_ranks(x, z), _residual_ranks(y, z)
        r = float(_pearson_rows(ex[None], ey[None])[0])
        df = n - 3
        p = float(2 * st.t.sf(abs(r) * np.sqrt(df / max(1 - r * r, 1e-300)), df)) if df > 0 else np.nan
        px, py, pmethod = ex, ey, "pearson"
    else:
        res = (st.pearsonr if method == "pearson" else st.spearmanr)(x, y)
        r, p = float(res.statistic), float(res.pvalue)
        px, py, pmethod = x, y, method
    null = np.concatenate([_null(px, py, design.permuted_rows(rng, b), pmethod) for b in block_sizes(n_perm, n)]
                          ) if n_perm else np.array([])
    null = null[np.isfinite(null)]
    p_perm = float((np.sum(np.abs(null) >= abs(r) - 1e-12) + 1) / (null.size + 1)) if n_perm else np.nan
    boot = []
    for b in block_sizes(n_boot, len(design.strata[0]) * design.n_lang):
        rows = design.resampled_rows(rng, b)
        if z is not None:
            boot.append(_partial_rows(_take(x, rows), _take(y, rows), _take(z, rows)))
        else:
            boot.append(_corr_rows(_take(x, rows), _take(y, rows), method))
    boot = np.concatenate(boot) if boot else np.array([np.nan])
    lo, hi = np.nanpercentile(boot, [2.5, 97.5]) if np.isfinite(boot).any() else (np.nan, np.nan)
    return dict(r=r, p=p, p_perm=p_perm, ci_low=float(lo), ci_high=float(hi), n=n)


def _check(method: str, n_perm: int, n_boot: int) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    if n_perm < 0 or n_boot < 0:
        raise ValueError(f"n_perm and n_boot must be >= 0; got {n_perm}, {n_boot}")


def correlate(x, y, *, method: str = "pearson", n_perm: int = 10_000, n_boot: int = 2_000, seed: int = 0) -> dict:
    """Correlation of two per-language variables with permutation p and bootstrap CI.

    Args:
        x, y: values per language ``(n,)``; NaNs are dropped pairwise.
        method: ``"pearson"`` or ``"spearman"``.
        n_perm: permutations for the two-sided permutation p (0 to skip).
        n_boot: bootstrap resamples of languages for the 95% percentile CI.
        seed: seed of the random generator.

    Returns:
        ``dict(r, p, p_perm, ci_low, ci_high, n)``; NaN values (and a warning)
        when ``n < 4`` or a variable is constant.
    """
    _check(method, n_perm, n_boot)
    x, y = np.asarray(x, float).ravel(), np.asarray(y, float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length; got {x.size} and {y.size}")
    items = np.arange(x.size)
    return _pair_stats(x, y, np.full(x.size, -1), items, method=method, n_perm=n_perm, n_boot=n_boot, seed=seed)


def mantel_correlate(df: pd.DataFrame, *, x: str = "x", y: str = "y", source: str = "source", target: str = "target",
                     method: str = "pearson", n_perm: int = 10_000, n_boot: int = 2_000, seed: int = 0) -> dict:
    """Correlation over (source, target) pairs with a Mantel-style permutation p.

    Args:
        df: one row per ordered pair, columns ``source, target`` and the values.
        x, y, source, target: column names.
        method, n_perm, n_boot, seed: as in :func:`correlate`.

    Returns:
        ``dict(r, p, p_perm, ci_low, ci_high, n)`` with ``n`` = number of pairs.
        ``p`` is scipy's, which treats pairs as independent (anti-conservative);
        ``p_perm`` permutes language labels; the CI resamples languages.

    Raises:
        ValueError: if a same-language pair (source == target) is present.
    """
    _check(method, n_perm, n_boot)
    missing = {x, y, source, target} - set(df.columns)
    if missing:
        raise ValueError(f"df lacks columns {sorted(missing)}")
    return _pair_stats(df[x].to_numpy(float), df[y].to_numpy(float), df[source].to_numpy(), df[target].to_numpy(),
                       method=method, n_perm=n_perm, n_boot=n_boot, seed=seed)


def partial_spearman(x, y, z, *, n_perm: int = 10_000, n_boot: int = 2_000, seed: int = 0,
                     source=None, target=None) -> dict:
    """Spearman correlation of x and y controlling for a covariate z.

    Ranks are residualised on rank(z) by OLS and the residuals correlated
    (Pearson); the analytic p uses a t distribution with n - 3 degrees of
    freedom; the permutation p permutes residuals of y (Freedman & Lane 1983),
    by language labels when ``source``/``target`` are given.

    Args:
        x, y, z: values ``(n,)``; NaNs dropped listwise.
        source, target: optional language labels per observation (pairs).

    Returns:
        ``dict(r, p, p_perm, ci_low, ci_high, n)``.
    """
    _check("spearman", n_perm, n_boot)
    x, y, z = (np.asarray(a, float).ravel() for a in (x, y, z))
    if not x.size == y.size == z.size:
        raise ValueError(f"x, y, z must have the same length; got {x.size}, {y.size}, {z.size}")
    src = np.full(x.size, -1) if source is None else np.asarray(source, object)
    tgt = np.arange(x.size) if target is None else np.asarray(target, object)
    return _pair_stats(x, y, src, tgt, method="spearman", n_perm=n_perm, n_boot=n_boot, seed=seed, z=z)


def adjust_pvalues(p, method: str = "holm") -> np.ndarray:
    """Family-wise (Holm 1979) or false-discovery-rate (Benjamini & Hochberg 1995) adjustment.

    Args:
        p: p-values ``(m,)``; NaNs are kept as NaN and not counted in m.
        method: ``"holm"`` or ``"bh"``.

    Returns:
        Adjusted p-values ``(m,)`` in the input order, capped at 1.
    """
    if method not in ADJUST:
        raise ValueError(f"unknown adjustment {method!r}; valid: {', '.join(ADJUST)}")
    p = np.asarray(p, float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    ranked = p[order]
    if method == "holm":
        adj = np.maximum.accumulate((m - np.arange(m)) * ranked)
    else:
        adj = np.minimum.accumulate((m / np.arange(1, m + 1) * ranked)[::-1])[::-1]
    out[order] = np.minimum(adj, 1.0)
    return out


def _family(table: pd.DataFrame) -> pd.Series:
    group = table["x"].astype(str).str.split(":").str[0]
    parts = [group, table["y"].astype(str)] + [table[c].astype(str) for c in ("pooling", "metric", "database", "method")]
    return pd.Series(["|".join(v) for v in zip(*parts)], index=table.index)


def correlation_table(pairs: pd.DataFrame, *, methods: Sequence[str] = METHODS, partial: bool = True,
                      n_perm: int = 10_000, n_boot: int = 2_000, seed: int = 0, adjust: str = "holm",
                      progress: bool = False) -> pd.DataFrame:
    """One row per (x, y, layer, pooling, metric, database, method) with r, p, CI and p_adj.

    Args:
        pairs: long table (see :func:`pair_table`) with columns ``x, y,
            layer, pooling, metric, database, source, target, x_value,
            y_value`` and optionally ``z`` (the covariate, e.g. log
            pretraining size of the target). Same-language rows (source ==
            target) are dropped here, with a log line, before anything else.
        methods: correlation methods; with ``partial`` and a ``z`` column a
            ``"partial_spearman"`` row is added per cell.
        n_perm, n_boot, seed: as in :func:`correlate` (same seed in every cell).
        adjust: ``"holm"`` or ``"bh"``, applied to ``p_perm`` within each family
            (to ``p`` when ``n_perm=0``).

    Returns:
        Columns :data:`COLUMNS`. A family is one x group (``distance`` for all
        kinds, or ``impact``) with one y, pooling, metric, database and method,
        i.e. the cells of one heatmap (kinds x layers); the correction runs
        over the cells of that family.
    """
    need = set(KEYS) | {"source", "target", "x_value", "y_value"}
    if not need <= set(pairs.columns):
        raise ValueError(f"pairs needs columns {sorted(need)}; missing {sorted(need - set(pairs.columns))}")
    for m in methods:
        _check(m, n_perm, n_boot)
    if adjust not in ADJUST:
        raise ValueError(f"unknown adjustment {adjust!r}; valid: {', '.join(ADJUST)}")
    same = pairs["source"] == pairs["target"]
    if same.any():
        log.info("excluding %d same-language pairs (source == target)", int(same.sum()))
    pairs = pairs.loc[~same]
    assert not (pairs["source"] == pairs["target"]).any()
    rows = []
    groups = list(pairs.groupby(KEYS, dropna=False, sort=False))
    for key, g in tqdm(groups, desc="correlations", disable=not progress):
        todo = [(m, None) for m in methods]
        if partial and "z" in g and g["z"].notna().any():
            todo.append(("partial_spearman", g["z"].to_numpy(float)))
        for method, z in todo:
            res = _pair_stats(g["x_value"], g["y_value"], g["source"], g["target"], seed=seed, z=z,
                              method="spearman" if z is not None else method, n_perm=n_perm, n_boot=n_boot)
            rows.append(dict(zip(KEYS, key), method=method, **res))
    table = pd.DataFrame(rows, columns=[c for c in COLUMNS if c != "p_adj"])
    table["p_adj"] = np.nan
    column = "p_perm" if n_perm else "p"  # without permutations only the analytic p is there to adjust
    for _, idx in table.groupby(_family(table)).groups.items():
        table.loc[idx, "p_adj"] = adjust_pvalues(table.loc[idx, column], adjust)
    return table[COLUMNS]


def _seed_mean(df: pd.DataFrame, keys: list[str], name: str) -> pd.DataFrame:
    need = set(keys) | {"value"}
    if not need <= set(df.columns):
        raise ValueError(f"{name} needs columns {sorted(need)}; got {list(df.columns)}")
    return df.groupby(keys, dropna=False, as_index=False)["value"].mean()  # averages seeds, if any


def pair_table(distances: pd.DataFrame | None = None, impact: pd.DataFrame | None = None,
               accuracy: pd.DataFrame | None = None, covariate: dict[str, float] | None = None) -> pd.DataFrame:
    """Long input for :func:`correlation_table`: the three families, one row per pair and cell.

    Families: (1) ``distance:<kind>`` vs ``impact`` per layer, pooling, metric
    and database; (2) ``impact`` vs ``accuracy`` per layer, pooling and metric;
    (3) ``distance:<kind>`` vs ``accuracy`` per database. Impact and accuracy
    are averaged over a ``seed`` column if there is one.

    Args:
        distances: ``lang_a, lang_b, kind, database, value`` (symmetric).
        impact: ``source, target, layer, pooling, metric, value`` [``seed``].
        accuracy: ``source, target, value`` [``seed``].
        covariate: target language -> covariate (e.g. log pretraining size),
            added as column ``z``.

    Returns:
        Columns ``x, y, layer, pooling, metric, database, source, target,
        x_value, y_value, z``; same-language pairs removed.
    """
    parts = []
    if distances is not None:
        d = _seed_mean(distances, ["lang_a", "lang_b", "kind", "database"], "distances")
        d = pd.concat([d, d.rename(columns={"lang_a": "lang_b", "lang_b": "lang_a"})])
        d = d.drop_duplicates(["lang_a", "lang_b", "kind", "database"]).rename(columns={"lang_a": "source", "lang_b": "target"})
        d = d.assign(x="distance:" + d["kind"], x_value=d["value"]).drop(columns=["kind", "value"])
    if impact is not None:
        im = _seed_mean(impact, ["source", "target", "layer", "pooling", "metric"], "impact")
    if accuracy is not None:
        acc = _seed_mean(accuracy, ["source", "target"], "accuracy").rename(columns={"value": "y_value"})
    if distances is not None and impact is not None:
        parts.append(d.merge(im.rename(columns={"value": "y_value"}), on=["source", "target"]).assign(y="impact"))
    if impact is not None and accuracy is not None:
        parts.append(im.rename(columns={"value": "x_value"}).merge(acc, on=["source", "target"])
                     .assign(x="impact", y="accuracy", database=np.nan))
    if distances is not None and accuracy is not None:
        parts.append(d.merge(acc, on=["source", "target"]).assign(y="accuracy", layer=np.nan, pooling=np.nan, metric=np.nan))
    if not parts:
        raise ValueError("pair_table needs at least two of distances, impact, accuracy")
    out = pd.concat(parts, ignore_index=True)
    out["z"] = out["target"].map(covariate) if covariate else np.nan
    out = out[out["source"] != out["target"]]
    return out[KEYS + ["source", "target", "x_value", "y_value", "z"]].reset_index(drop=True)
