"""Inputs, covariates and computed readings of the correlation study (notebook 05).

The statistics themselves live in :mod:`xldrift.analysis.stats` and the verdicts in
:mod:`xldrift.analysis.claims`; this module prepares their inputs from the tables of
notebooks 01-04 and turns their outputs into the sentences and small tables
the notebook prints, so that no number in the notebook's prose is typed by
hand.

* Impact of fine-tuning on a target's representation space at a layer is
  ``1 - similarity`` of its pre and post representations (Philippy, Guo &
  Haddadan 2023, their Phi_i(S, T), with linear CKA of Kornblith et al. 2019).

The pretraining-size covariate is :func:`xldrift.analysis.pretraining.pretraining_covariate`;
the smallest attainable p and the grid of verdicts over every variant are in
:mod:`xldrift.analysis.claims`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from xldrift.analysis import claims, paper, precomputed, stats, typology
from xldrift.study.io import require_columns

log = logging.getLogger(__name__)

DRIFT_NEED = ("model", "source", "target", "seed", "layer", "pooling", "metric", "similarity")
ACCURACY_NEED = ("model", "source", "target", "seed", "condition", "accuracy")
AGREEMENT_ALL_PAIRS_MAX = 20  # above this many languages URIEL+ over all pairs takes minutes


# -- inputs ------------------------------------------------------------------------
def impact_table(drift: pd.DataFrame, *, poolings: Sequence[str], metrics: Sequence[str],
                 sources: Sequence[str] | None = None, targets: Sequence[str] | None = None) -> pd.DataFrame:
    """Impact per seed from notebook 04's ``drift.csv``, for the requested poolings and metrics.

    Args:
        drift: ``model, task, source, target, seed, layer, pooling, metric, similarity``.
        poolings, metrics: which to keep; each must be present in ``drift``.
        sources, targets: languages to keep (default: all).

    Returns:
        ``source, target, seed, layer, pooling, metric, value`` with
        ``value = 1 - similarity``.

    Raises:
        ValueError: a missing column, or a pooling/metric that ``drift`` lacks.
    """
    require_columns(drift, DRIFT_NEED, "drift.csv")
    for name, asked in (("pooling", poolings), ("metric", metrics)):
        absent = [v for v in asked if v not in set(drift[name])]
        if absent:
            raise ValueError(f"drift.csv has no {name} {absent}; it holds {sorted(set(drift[name]))}")
    d = _languages(drift[drift["pooling"].isin(poolings) & drift["metric"].isin(metrics)], sources, targets, "drift.csv")
    out = d.assign(value=1.0 - d["similarity"])
    return out[["source", "target", "seed", "layer", "pooling", "metric", "value"]].reset_index(drop=True)


def accuracy_inputs(accuracy: pd.DataFrame, condition: str = "full", *, sources: Sequence[str] | None = None,
                    targets: Sequence[str] | None = None) -> pd.DataFrame:
    """Zero-shot accuracy per seed of one fine-tuning condition: ``source, target, seed, value``."""
    require_columns(accuracy, ACCURACY_NEED, "accuracy.csv")
    a = accuracy[accuracy["condition"] == condition]
    if a.empty:
        raise ValueError(f"accuracy.csv has no rows with condition {condition!r}; "
                         f"conditions: {sorted(set(accuracy['condition']))}")
    a = _languages(a, sources, targets, "accuracy.csv")
    return a.rename(columns={"accuracy": "value"})[["source", "target", "seed", "value"]].reset_index(drop=True)


def _languages(df: pd.DataFrame, sources: Sequence[str] | None, targets: Sequence[str] | None,
               name: str) -> pd.DataFrame:
    """Rows of the given sources and targets; every requested language must be there."""
    for col, asked in (("source", sources), ("target", targets)):
        if asked is None:
            continue
        absent = sorted(set(asked) - set(df[col]))
        if absent:
            raise ValueError(f"{name} has no {col} {absent}; it holds {sorted(set(df[col]))}")
        df = df[df[col].isin(asked)]
    return df


def model_name(*tables: pd.DataFrame) -> str:
    """The one model named in every table's ``model`` column; raises if they disagree."""
    names = sorted({str(m) for t in tables for m in t["model"].unique()})
    if len(names) != 1:
        raise ValueError(f"the input tables must come from one model; found {names}")
    return names[0]


def seed_spread(impact: pd.DataFrame, accuracy: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """How much impact and accuracy vary over fine-tuning seeds (before they are averaged).

    Args:
        impact: from :func:`impact_table`.
        accuracy: from :func:`accuracy_inputs`.

    Returns:
        ``(impact_spread, accuracy_spread)``. The first has one row per
        (pooling, metric): ``n_seeds``, ``median_sd`` and ``max_sd`` of impact
        across seeds over all (target, layer) cells, and ``median_impact``.
        The second one row per (source, target): ``mean, sd, min, max,
        n_seeds``. ``sd`` (ddof = 1) is NaN with a single seed.
    """
    keys = ["source", "target", "pooling", "metric", "layer"]
    cells = impact.groupby(keys)["value"].agg(["mean", "std", "count"]).reset_index()
    imp = cells.groupby(["pooling", "metric"]).agg(
        n_seeds=("count", "max"), median_sd=("std", "median"), max_sd=("std", "max"),
        median_impact=("mean", "median")).reset_index()
    acc = accuracy.groupby(["source", "target"])["value"].agg(
        mean="mean", sd="std", min="min", max="max", n_seeds="count").reset_index()
    return imp, acc


def family_sizes(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per (x group, y) of a pair table: number of cells and the largest number of pairs in a cell."""
    sizes = pairs.groupby(stats.KEYS, dropna=False).size().rename("n").reset_index()
    sizes["x"] = sizes["x"].astype(str).str.split(":").str[0]
    return sizes.groupby(["x", "y"]).agg(cells=("n", "size"), pairs_per_cell=("n", "max")).reset_index()


# -- coverage ----------------------------------------------------------------------
def exclusions(coverage: pd.DataFrame, distances: pd.DataFrame) -> pd.DataFrame:
    """Every (language, kind, database) a database does not cover, checked against the distances.

    Args:
        coverage: the coverage table of :func:`xldrift.analysis.typology.compute_distances`.
        distances: its distance table.

    Returns:
        The rows of ``coverage`` whose status is not ``ok`` (fallbacks,
        exclusions, pairs that could not be compared).

    Raises:
        ValueError: if an excluded language still has a distance in that
            kind and database (an exclusion that did not happen).
    """
    out = coverage[coverage["status"] != "ok"].reset_index(drop=True)
    for r in out[out["status"] == "excluded"].itertuples():
        d = distances[(distances["kind"] == r.kind) & (distances["database"] == r.database)]
        if ((d["lang_a"] == r.task_code) | (d["lang_b"] == r.task_code)).any():
            raise ValueError(f"{r.task_code} is excluded from {r.database} {r.kind} but still has distances")
    return out


def agreement_pairs(n_languages: int) -> str:
    """``"all"`` unordered pairs for database agreement up to :data:`AGREEMENT_ALL_PAIRS_MAX` languages, else ``"source"``."""
    return "all" if n_languages <= AGREEMENT_ALL_PAIRS_MAX else "source"


# -- variants and selections ----------------------------------------------------------
def primary_variant(poolings: Sequence[str], metrics: Sequence[str], databases: Sequence[str]) -> dict[str, str]:
    """The variant verdicts are based on: the paper's choices ([CLS], linear CKA, Pearson) where available."""
    return dict(database=databases[0], pooling="cls" if "cls" in poolings else poolings[0],
                metric="linear_cka" if "linear_cka" in metrics else metrics[0], method="pearson")


def select(corr: pd.DataFrame, *, y: str, x_prefix: str = "", **keys: str) -> pd.DataFrame:
    """Rows of a correlation table with ``y``, ``x`` starting with ``x_prefix`` and the given key values."""
    sel = corr["y"].eq(y) & corr["x"].astype(str).str.startswith(x_prefix)
    for k, v in keys.items():
        sel &= corr[k].eq(v)
    return corr[sel]


def strongest(rows: pd.DataFrame) -> pd.DataFrame:
    """For each ``x``, the row with the largest finite ``|r|`` (lowest layer on ties); x without any is left out."""
    ok = rows[np.isfinite(rows["r"].to_numpy(float))]
    if ok.empty:
        return ok
    ok = ok.assign(_abs=ok["r"].abs()).sort_values(["x", "_abs", "layer"], ascending=[True, False, True])
    return ok.drop_duplicates("x").drop(columns="_abs").reset_index(drop=True)


def undefined_cells(pairs: pd.DataFrame, corr: pd.DataFrame) -> pd.DataFrame:
    """Why cells have no r: counts per (x group, y, reason).

    Reasons: fewer than :data:`xldrift.analysis.stats.MIN_N` pairs, a constant x, a
    constant y (e.g. accuracy at chance in every target), or constant covariate.
    """
    nan = corr[corr["r"].isna()]
    if nan.empty:
        return pd.DataFrame(columns=["x", "y", "reason", "cells"])
    def keyed(df: pd.DataFrame) -> pd.Series:  # NaN keys (no layer, no database) made comparable
        k = df[stats.KEYS].astype({"layer": "Int64"}).astype(object)
        return k.where(k.notna(), "").astype(str).agg("|".join, axis=1)

    groups = dict(tuple(pairs.groupby(keyed(pairs), sort=False)))
    rows = [dict(x=str(r.x).split(":")[0], y=r.y, reason=_reason(groups.get(key), r.method))
            for key, r in zip(keyed(nan), nan.itertuples(index=False))]
    return pd.DataFrame(rows).value_counts().rename("cells").reset_index()


def _reason(g: pd.DataFrame | None, method: str) -> str:
    if g is None:
        return "no pairs"
    g = g.dropna(subset=["x_value", "y_value"] + (["z"] if method == "partial_spearman" else []))
    if len(g) < stats.MIN_N:
        return f"fewer than {stats.MIN_N} pairs"
    for col, name in (("x_value", "x"), ("y_value", "y"), ("z", "covariate")):
        if col in g and np.ptp(g[col].to_numpy(float)) == 0:
            return f"{name} constant ({g[col].iloc[0]:.3g} for every pair)"
    return "other"


def partial_comparison(corr: pd.DataFrame, variant: Mapping[str, str]) -> pd.DataFrame:
    """Spearman next to partial Spearman (covariate held fixed) for each x and y of the variant.

    Each x is shown at the layer where its plain Spearman |r| is largest.

    Returns:
        ``x, y, layer, spearman, spearman_ci, partial, partial_ci, n, n_partial``.
    """
    keys = ["x", "y", "layer", "pooling", "metric", "database"]
    sel = pd.Series(True, index=corr.index)
    for k in ("pooling", "metric", "database"):
        sel &= corr[k].eq(variant[k]) | corr[k].isna()
    c = corr[sel]
    sp, pa = c[c["method"] == "spearman"], c[c["method"] == "partial_spearman"]
    if sp.empty or pa.empty:
        return pd.DataFrame(columns=["x", "y", "layer", "spearman", "spearman_ci", "partial", "partial_ci", "n",
                                     "n_partial"])
    both = sp.merge(pa, on=keys, how="left", suffixes=("", "_partial"))
    best = pd.concat([strongest(g) for _, g in both.groupby("y", sort=False)], ignore_index=True)
    ci = _ci_text
    return pd.DataFrame({"x": best["x"], "y": best["y"], "layer": best["layer"].astype("Int64"),
                         "spearman": best["r"], "spearman_ci": ci(best["ci_low"], best["ci_high"]),
                         "partial": best["r_partial"],
                         "partial_ci": ci(best["ci_low_partial"], best["ci_high_partial"]),
                         "n": best["n"], "n_partial": best["n_partial"].astype("Int64")})


def _ci_text(lo: pd.Series, hi: pd.Series) -> list[str]:
    return [f"[{a:+.2f}, {b:+.2f}]" for a, b in zip(lo, hi)]


def _fmt(row: pd.Series) -> str:
    layer = "" if pd.isna(row["layer"]) else f" at layer {int(row['layer'])}"
    return (f"{str(row['x']).split(':')[-1]}{layer}: r = {row['r']:+.2f} [{row['ci_low']:+.2f}, {row['ci_high']:+.2f}], "
            f"p_adj = {row['p_adj']:.3g}, n = {int(row['n'])}")


def family_summary(corr: pd.DataFrame, variant: Mapping[str, str], alpha: float) -> pd.DataFrame:
    """Per family of the variant: cells, cells with r, cells significant after correction, strongest cell."""
    specs = [("distance → impact", dict(y="impact", x_prefix="distance:", database=variant["database"],
                                          pooling=variant["pooling"], metric=variant["metric"])),
             ("impact → accuracy", dict(y="accuracy", x_prefix="impact", pooling=variant["pooling"],
                                        metric=variant["metric"])),
             ("distance → accuracy", dict(y="accuracy", x_prefix="distance:", database=variant["database"]))]
    out = []
    for name, spec in specs:
        for method in dict.fromkeys(corr["method"]):
            rows = select(corr, method=method, **spec)
            if rows.empty:
                continue
            best = strongest(rows)
            top = best.loc[best["r"].abs().idxmax()] if len(best) else None
            label = ", ".join(str(spec[k]) for k in ("database", "pooling", "metric") if k in spec)
            out.append(dict(family=name, variant=label, method=method, cells=len(rows),
                            with_r=int(rows["r"].notna().sum()), significant=int((rows["p_adj"] < alpha).sum()),
                            uncorrected_p_le_05=int((rows["p"] <= 0.05).sum()),
                            n=_n_range(rows), strongest=_fmt(top) if top is not None else "no finite r"))
    return pd.DataFrame(out)


def _n_range(rows: pd.DataFrame) -> str:
    lo, hi = int(rows["n"].min()), int(rows["n"].max())
    return str(lo) if lo == hi else f"{lo}-{hi}"


def findings(corr: pd.DataFrame, verdicts: pd.DataFrame, grid: pd.DataFrame, variant: Mapping[str, str],
             alpha: float, correction: str, p_adj_floor: float = 0.0) -> list[str]:
    """Sentences that read the correlation study, computed from its tables.

    Args:
        corr: the correlation table.
        verdicts: :func:`xldrift.analysis.claims.evaluate_claims` for ``variant``.
        grid: :func:`verdict_grid`.
        p_adj_floor: the smallest attainable ``p_adj`` (:func:`smallest_p`);
            at or above ``alpha`` the verdicts cannot be anything but "not
            supported", and a sentence says so.
    """
    out = []
    undefined = int(corr["r"].isna().sum())
    if undefined:
        acc = corr["y"] == "accuracy"
        out.append(f"{undefined} of {len(corr)} cells have no r (a constant variable or too few pairs; see "
                   f"section 8); of the cells with accuracy, {int(corr.loc[acc, 'r'].isna().sum())} of {int(acc.sum())}.")
    if p_adj_floor >= alpha:
        out.append(f"No cell could reach p_adj < {alpha} with this many languages (floor about {p_adj_floor:.2g}): "
                   "'not supported' below means 'not testable at this size', not 'absent'.")
    for r in family_summary(corr, variant, alpha).query("method == 'pearson'").itertuples():
        out.append(f"{r.family} ({r.variant}, Pearson): {r.significant} of {r.cells} cells significant after {correction} "
                   f"(p_adj < {alpha}); {r.uncorrected_p_le_05} would be marked by the uncorrected analytic p <= .05 "
                   f"the paper used; strongest {r.strongest}.")
    for v in verdicts.itertuples():
        keys = ["pooling", "metric", "method"] if v.claim == "c" else ["database", "pooling", "metric", "method"]
        col = grid.drop_duplicates(keys)[v.claim] if v.claim in grid else pd.Series(dtype=str)
        out.append(f"Claim ({v.claim}) {v.statement} Verdict: {v.verdict}; the same verdict in "
                   f"{int((col == v.verdict).sum())} of {len(col)} variants ({' × '.join(keys)}).")
    return out


# -- the paper's reading (sections 13-18) -------------------------------------------------
def placeholder_report(pre_table: pd.DataFrame, pre_coverage: pd.DataFrame, pairs_all: pd.DataFrame,
                       families: Mapping[str, str], sources: Sequence[str] = ()) -> pd.DataFrame:
    """Placeholder rows (:func:`xldrift.analysis.precomputed.placeholders`) in every distance database.

    Args:
        pre_table: :func:`xldrift.analysis.precomputed.load_table` (checked over all its
            languages, families from URIEL's ``fam``).
        pre_coverage: :func:`xldrift.analysis.precomputed.coverage` for the task languages.
        pairs_all: a :func:`xldrift.analysis.typology.distance_table` frame (task codes).
        families: task code -> family (``languages.csv``), for ``pairs_all``.
        sources: the source languages. Where ``pairs_all`` holds only pairs
            with a source, a zero distance says nothing about the source's own
            row (it has a distance to every language), so sources are not
            flagged there; the partner is.

    Returns:
        ``database, kind, language, rule, detail, task_codes``: ``language`` in
        the database's codes; ``task_codes`` the task languages it concerns
        (comma-separated, ``""`` if none).
    """
    isos = precomputed.table_languages(pre_table)
    pre = precomputed.placeholders(pre_table, typology.top_families(isos))
    users = pre_coverage[pre_coverage["used_code"] != ""].groupby("used_code")["task_code"].apply(
        lambda s: ", ".join(sorted(s)))
    parts = [pre.assign(database=precomputed.DATABASE, task_codes=pre["language"].map(users).fillna(""))]
    for db, g in pairs_all.groupby("database", sort=False):
        f = precomputed.placeholders(g, families)
        if sources and (g["lang_a"].isin(sources) | g["lang_b"].isin(sources)).all():
            f = f[~f["language"].isin(sources)]
        parts.append(f.assign(database=db, task_codes=f["language"]))
    cols = ["database", "kind", "language", "rule", "detail", "task_codes"]
    return pd.concat(parts, ignore_index=True)[cols]


def flagged_by_database(flags: pd.DataFrame) -> dict[str, dict[str, list[str]]]:
    """Database -> kind -> flagged task codes, from :func:`placeholder_report` (only kinds with task codes)."""
    out: dict[str, dict[str, list[str]]] = {}
    for (db, kind), g in flags[flags["task_codes"] != ""].groupby(["database", "kind"], sort=False):
        codes = sorted({c.strip() for s in g["task_codes"] for c in s.split(",") if c.strip()})
        out.setdefault(db, {})[kind] = codes
    return out


def n_text(rows: pd.DataFrame) -> str:
    """``"14"`` or ``"9-14"``: the range of ``n`` over the rows."""
    return _n_range(rows)


def starred(rows: pd.DataFrame, columns: Sequence[str] = ("x", "languages"), p: str = "p") -> pd.DataFrame:
    """Pearson/Spearman r as text with the paper's stars (* p <= .05, ** p <= .01), one column per layer (AVG last).

    Args:
        rows: correlation rows of one method (``x, layer, r`` and ``p``).
        columns: the keys that make a table row (those present are used).
        p: which p the stars follow (the paper's: the unadjusted analytic ``p``).
    """
    keys = [c for c in columns if c in rows.columns and c != "layer"]
    d = rows.assign(col=rows["layer"].map(lambda v: "AVG" if pd.isna(v) else f"{int(v)}"),
                    cell=[("" if not np.isfinite(r) else f"{r:+.2f}{paper.stars(q)}")
                          for r, q in zip(rows["r"].to_numpy(float), rows[p].to_numpy(float))])
    cols = [str(c) for c in sorted(int(v) for v in d["layer"].dropna().unique())]
    cols += ["AVG"] if d["layer"].isna().any() else []
    out = d.pivot_table(index=keys, columns="col", values="cell", aggfunc="first")
    return out.reindex(columns=[c for c in cols if c in out.columns]).reset_index().rename_axis(columns=None)


def paper_findings(claims_paper: pd.DataFrame, verdicts: pd.DataFrame, steps: pd.DataFrame,
                   flags: pd.DataFrame) -> list[str]:
    """Sentences on the paper's reading: its verdicts next to ours, what moves them, the placeholder rows."""
    ours = dict(zip(verdicts["claim"], verdicts["verdict"]))
    out = [f"Claim ({c}) as the paper computes it: {v}; in our reading: {ours.get(c, 'not evaluated')}."
           for c, v in zip(claims_paper["claim"], claims_paper["verdict"])]
    moves = [f"({m['claim']}) {m['before']} -> {m['after']} at step {m['step']} ({m['change']})"
             for m in paper.moved(steps).to_dict("records")]
    out.append("Verdicts that change on the way: " + ("; ".join(moves) if moves else "none") + ".")
    task = flags[flags["task_codes"] != ""]
    for db, g in task.groupby("database", sort=False):
        out.append(f"{db}: placeholder rows among the task languages in " + "; ".join(
            f"{k} ({', '.join(sorted({c.strip() for s in h['task_codes'] for c in s.split(',')}))})"
            for k, h in g.groupby("kind", sort=False)) + ".")
    if task.empty:
        out.append("No task language has a placeholder row in any database.")
    return out


def placeholder_effect(pairs: pd.DataFrame, flagged: Mapping[str, Mapping[str, Sequence[str]]],
                       variant: Mapping[str, str], *, n_perm: int, seed: int = 0) -> pd.DataFrame:
    """Each of our distance cells that a flagged language enters, with and without that language.

    Args:
        pairs: :func:`xldrift.analysis.stats.pair_table` of our reading.
        flagged: database -> kind -> flagged task codes (databases not in
            ``pairs`` are ignored).
        variant: pooling and metric to report (distance vs impact); distance vs
            accuracy is reported for every flagged kind.
        n_perm, seed: as in :func:`xldrift.analysis.stats.correlation_table`.

    Returns:
        ``x, y, layer, database, method`` and for ``all`` and ``without``
        (placeholder languages dropped) ``r``, ``p_perm`` and ``n``; empty if
        nothing is flagged. ``p_perm`` is not family-adjusted here.
    """
    keys = ["x", "y", "layer", "database", "method"]
    cols = keys + ["r_all", "p_perm_all", "n_all", "r_without", "p_perm_without", "n_without"]
    parts = []
    for db, kinds in flagged.items():
        cells = pairs[(pairs["database"] == db) & pairs["x"].isin([f"distance:{k}" for k in kinds])]
        cells = cells[(cells["y"] == "accuracy") | (cells["pooling"].eq(variant["pooling"])
                                                    & cells["metric"].eq(variant["metric"]))]
        if cells.empty:
            continue
        both = []
        for name, g in (("all", cells), ("without", paper.drop_languages(cells, kinds, db))):
            t = stats.correlation_table(g, methods=["pearson", "spearman"], partial=False, n_perm=n_perm, n_boot=0,
                                        seed=seed)
            both.append(t[keys + ["r", "p_perm", "n"]].rename(columns={c: f"{c}_{name}" for c in ("r", "p_perm", "n")}))
        parts.append(both[0].merge(both[1], on=keys, how="left"))
    return pd.concat(parts, ignore_index=True)[cols] if parts else pd.DataFrame(columns=cols)
