"""The correlation study read as the paper computes it, and the path from there to our reading.

Philippy, Guo & Haddadan (2023, arXiv:2305.02151), scripts 04, 06 and 07 of
their released code (``fredxlpy/CrossLingualSpaceImpactAnalysis``), make these
choices:

* distances from ``lang2vec.distance()`` (:mod:`xldrift.analysis.precomputed`), five
  kinds: syntactic, geographic, inventory, genetic, phonological (no featural);
* distance vs impact over the pairs with source != target, but impact vs
  accuracy and distance vs accuracy *with* the source paired with itself
  (distance 0, its own accuracy): with one source, n = 15 on XNLI instead of 14;
* Pearson and Spearman r per layer, plus an "AVG" row: the distance (or
  accuracy) correlated with impact averaged over layers 1-12;
* a cell is starred by its unadjusted analytic p (* p <= .05, ** p <= .01).

Our corrected reading (:mod:`xldrift.analysis.stats`, :mod:`xldrift.analysis.claims`) uses
feature-cosine distances (six kinds), never pairs a language with itself, and
calls a cell significant when its Holm-adjusted permutation p is below alpha.
:func:`steps` moves from one reading to the other one change at a time and
gives the claims' verdicts after each.

Here the impact is the seed mean of our model's impact; the paper's model,
task size and single seed are not reproduced, only its analysis.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats as st

from xldrift.analysis import claims, precomputed, stats

log = logging.getLogger(__name__)

AVG = "impact_avg"  # x or y name of impact averaged over layers (the paper's AVG row)
COLUMNS = stats.COLUMNS + ["languages", "same_language"]


def stars(p: float) -> str:
    """The paper's marks: ``**`` for p <= .01, ``*`` for p <= .05, else ``""`` (also for NaN)."""
    return "**" if p <= 0.01 else "*" if p <= 0.05 else ""


def _mean(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return df.groupby(keys, dropna=False, as_index=False)["value"].mean()


def same_language_pairs(impact: pd.DataFrame, accuracy: pd.DataFrame, kinds_by_db: Mapping[str, Sequence[str]]
                        ) -> pd.DataFrame:
    """The pairs the paper adds: each source with itself in impact vs accuracy and distance (0) vs accuracy.

    Args:
        impact: ``source, target, layer, pooling, metric, value`` [``seed``].
        accuracy: ``source, target, value`` [``seed``].
        kinds_by_db: database -> distance kinds to give a zero self-distance.

    Returns:
        Rows in the format of :func:`xldrift.analysis.stats.pair_table` (``z`` NaN),
        source == target.
    """
    im = _mean(impact[impact["source"] == impact["target"]], ["source", "target", "layer", "pooling", "metric"])
    acc = _mean(accuracy[accuracy["source"] == accuracy["target"]], ["source", "target"]).rename(
        columns={"value": "y_value"})
    parts = [im.rename(columns={"value": "x_value"}).merge(acc, on=["source", "target"])
             .assign(x="impact", y="accuracy", database=np.nan)]
    for db, kinds in kinds_by_db.items():
        for kind in kinds:
            parts.append(acc.assign(x=f"distance:{kind}", x_value=0.0, y="accuracy", layer=np.nan, pooling=np.nan,
                                    metric=np.nan, database=db))
    out = pd.concat(parts, ignore_index=True).assign(z=np.nan)
    return out[stats.KEYS + ["source", "target", "x_value", "y_value", "z"]]


def add_layer_mean(pairs: pd.DataFrame, min_layer: int = 1) -> pd.DataFrame:
    """``pairs`` plus the AVG cells: impact averaged over layers >= ``min_layer`` (the paper's layers 1-12).

    Distance vs impact gets ``y = impact_avg`` and impact vs accuracy ``x =
    impact_avg``, both with an empty ``layer``; the layer-0 embedding output of
    mean pooling is left out so that both poolings average the same blocks.
    """
    keys = ["x", "y", "pooling", "metric", "database", "source", "target"]
    out = [pairs]
    di = pairs[(pairs["y"] == "impact") & (pairs["layer"] >= min_layer)]
    if len(di):
        m = di.groupby(keys, dropna=False, as_index=False).agg(x_value=("x_value", "first"), y_value=("y_value", "mean"),
                                                               z=("z", "first"))
        out.append(m.assign(y=AVG, layer=np.nan))
    ia = pairs[(pairs["x"] == "impact") & (pairs["layer"] >= min_layer)]
    if len(ia):
        m = ia.groupby(keys, dropna=False, as_index=False).agg(x_value=("x_value", "mean"), y_value=("y_value", "first"),
                                                               z=("z", "first"))
        out.append(m.assign(x=AVG, layer=np.nan))
    return pd.concat(out, ignore_index=True)[pairs.columns]


def analytic_table(pairs: pd.DataFrame, methods: Sequence[str] = stats.METHODS) -> pd.DataFrame:
    """r and scipy's analytic p per cell, with whatever pairs ``pairs`` holds (same-language ones included).

    Args:
        pairs: the long pair table (:func:`xldrift.analysis.stats.pair_table`, optionally
            with :func:`same_language_pairs` and :func:`add_layer_mean` rows).
        methods: ``pearson`` and/or ``spearman``.

    Returns:
        Columns :data:`xldrift.analysis.stats.COLUMNS` plus ``same_language`` (how many
        same-language pairs the cell holds); ``p_perm`` and the CI are NaN
        (the paper has neither) and ``p_adj`` repeats ``p`` (the paper does
        not adjust). Cells with fewer than :data:`xldrift.analysis.stats.MIN_N` pairs
        or a constant variable have NaN r.
    """
    for m in methods:
        if m not in stats.METHODS:
            raise ValueError(f"unknown method {m!r}; valid: {', '.join(stats.METHODS)}")
    rows = []
    for key, g in pairs.groupby(stats.KEYS, dropna=False, sort=False):
        g = g.dropna(subset=["x_value", "y_value"])
        x, y = g["x_value"].to_numpy(float), g["y_value"].to_numpy(float)
        same = int((g["source"] == g["target"]).sum())
        for method in methods:
            r = p = np.nan
            if len(g) >= stats.MIN_N and np.ptp(x) > 0 and np.ptp(y) > 0:
                res = (st.pearsonr if method == "pearson" else st.spearmanr)(x, y)
                r, p = float(res.statistic), float(res.pvalue)
            rows.append(dict(zip(stats.KEYS, key), method=method, r=r, p=p, p_perm=np.nan, ci_low=np.nan,
                             ci_high=np.nan, p_adj=p, n=len(g), same_language=same))
    return pd.DataFrame(rows, columns=stats.COLUMNS + ["same_language"])


def drop_languages(pairs: pd.DataFrame, flagged: Mapping[str, Sequence[str]], database: str) -> pd.DataFrame:
    """Pairs of ``database`` without the languages flagged for each distance kind (other rows unchanged)."""
    drop = pd.Series(False, index=pairs.index)
    for kind, langs in flagged.items():
        cell = (pairs["x"] == f"distance:{kind}") & (pairs["database"] == database)
        drop |= cell & (pairs["source"].isin(langs) | pairs["target"].isin(langs))
    return pairs.loc[~drop]


def paper_table(pairs: pd.DataFrame, same: pd.DataFrame, flagged: Mapping[str, Sequence[str]], database: str,
                methods: Sequence[str] = stats.METHODS) -> pd.DataFrame:
    """The paper's correlations, with every cell a flagged language enters also given without it.

    Args:
        pairs: :func:`xldrift.analysis.stats.pair_table` for ``database``'s distances
            (same-language pairs excluded).
        same: :func:`same_language_pairs` (added to the accuracy families only,
            as the paper does).
        flagged: kind -> task codes flagged as placeholders in ``database``.
        database: the distance database whose rows are read (e.g.
            :data:`xldrift.analysis.precomputed.DATABASE`).

    Returns:
        :data:`COLUMNS`: per cell ``languages`` = ``all`` and, for every
        distance cell of a kind with flagged languages, a second row
        ``without placeholders`` (the flagged languages' pairs removed).
        Distance cells use the paper's five kinds.
    """
    kinds = [f"distance:{k}" for k in precomputed.PAPER_KINDS]
    keep = (pairs["x"].isin(kinds) & (pairs["database"] == database)) | (pairs["x"] == "impact")
    base = add_layer_mean(pd.concat([pairs[keep], same[same["x"].isin(kinds + ["impact"])
                                                     & ((same["database"] == database) | (same["x"] == "impact"))]],
                                    ignore_index=True))
    out = [analytic_table(base, methods).assign(languages="all")]
    hit = {k: v for k, v in flagged.items() if v and f"distance:{k}" in kinds}
    if hit:
        reduced = drop_languages(base, hit, database)
        cells = reduced[reduced["x"].isin([f"distance:{k}" for k in hit])]
        out.append(analytic_table(cells, methods).assign(languages="without placeholders"))
    return pd.concat(out, ignore_index=True)[COLUMNS]


def paper_claims(corr: pd.DataFrame, variant: Mapping[str, str], alpha: float = 0.05) -> pd.DataFrame:
    """Claims (a)-(c) by the paper's rule (a cell counts when its unadjusted analytic p <= alpha).

    Args:
        corr: :func:`paper_table` (its ``languages == "all"`` rows are read;
            AVG rows are not part of the claims' rules).
        variant: ``database, pooling, metric, method`` (database: the paper's).

    Returns:
        The :func:`xldrift.analysis.claims.evaluate_claims` table.
    """
    rows = corr[corr["languages"] == "all"].drop(columns=["languages", "same_language"])
    # claims count p_adj < alpha; the paper marks p <= alpha, so alpha moves up by a rounding margin
    return claims.evaluate_claims(rows, primary=variant, alpha=alpha * (1 + 1e-9))


# -- from the paper's reading to ours, one change at a time ---------------------------------------------
STEP_KEYS = ("database", "placeholders", "same_language", "kinds", "p_rule")
P_RULES = {"p": "unadjusted analytic p <= alpha", "holm": "Holm-adjusted analytic p < alpha",
           "perm_holm": "Holm-adjusted permutation p < alpha"}


def _reading(pairs: pd.DataFrame, same: pd.DataFrame, flagged: Mapping[str, Mapping[str, Sequence[str]]],
             state: Mapping, variant: Mapping[str, str], n_perm: int, seed: int,
             covered: Sequence[str]) -> pd.DataFrame:
    """Claim rows (distance vs impact, impact vs accuracy per layer) of one reading, in the claims format."""
    db, kinds = state["database"], [f"distance:{k}" for k in state["kinds"]]
    sel = ((pairs["x"].isin(kinds) & (pairs["database"] == db) & (pairs["y"] == "impact")) | (pairs["x"] == "impact"))
    sel &= pairs["pooling"].eq(variant["pooling"]) & pairs["metric"].eq(variant["metric"])
    cell = pairs[sel].drop_duplicates(stats.KEYS + ["source", "target"])  # impact vs accuracy may come twice
    if state["same_language"]:
        extra = same[(same["x"] == "impact") & same["pooling"].eq(variant["pooling"])
                     & same["metric"].eq(variant["metric"])]
        cell = pd.concat([cell, extra], ignore_index=True)
    if state["placeholders"] == "dropped":
        cell = drop_languages(cell, flagged.get(db, {}), db)
    if state["targets"] == "covered":
        dist = cell["x"].astype(str).str.startswith("distance:")
        cell = cell[~dist | (cell["source"].isin(covered) & cell["target"].isin(covered))]
    if state["p_rule"] == "perm_holm":
        if state["same_language"]:
            raise ValueError("a permutation p is computed without same-language pairs; drop them first")
        corr = stats.correlation_table(cell, methods=[variant["method"]], partial=False, n_perm=n_perm, n_boot=0,
                                       seed=seed, adjust="holm")
    else:
        corr = analytic_table(cell, [variant["method"]])
        if state["p_rule"] == "holm":
            fam = corr["x"].astype(str).str.split(":").str[0] + "|" + corr["y"].astype(str)
            for _, idx in corr.groupby(fam).groups.items():
                corr.loc[idx, "p_adj"] = stats.adjust_pvalues(corr.loc[idx, "p"], "holm")
    return corr


def _strongest(rows: pd.DataFrame, p_rule: str) -> str:
    rows = rows[np.isfinite(rows["r"].to_numpy(float))]
    if rows.empty:
        return "no finite r"
    top = rows.loc[rows["r"].abs().idxmax()]
    label = {"p": "p", "holm": "Holm p", "perm_holm": "Holm perm. p"}[p_rule]
    return (f"{str(top['x']).split(':')[-1]}, layer {int(top['layer'])}: r = {top['r']:+.2f}, "
            f"{label} = {top['p_adj']:.2g}, n = {int(top['n'])}")


def steps(pairs: pd.DataFrame, same: pd.DataFrame, flagged: Mapping[str, Mapping[str, Sequence[str]]],
          variant: Mapping[str, str], covered: Sequence[str], *, alpha: float = 0.05, n_perm: int = 10_000,
          seed: int = 0, paper_db: str = precomputed.DATABASE) -> pd.DataFrame:
    """Verdicts on claims (a)-(c), from the paper's reading to ours, one change per row.

    Rows 0 and 1 onwards form a path in which each row changes one thing of
    the row before: distances (precomputed -> feature cosine) on the same
    targets, the targets the precomputed table lacks added (none on XNLI),
    placeholder languages dropped (those flagged in the distances in use), the
    same-language point dropped, featural distance added, Holm adjustment,
    permutation p. Row ``0b`` branches from row 0: the paper's reading with the
    placeholder languages of the precomputed distances dropped. The last row is
    the corrected reading (compare with ``claims.csv``).

    Args:
        pairs: pair table holding both ``paper_db`` and ``variant['database']``
            distances (same-language pairs excluded).
        same: :func:`same_language_pairs`.
        flagged: database -> kind -> flagged task codes.
        variant: the primary variant (``database, pooling, metric, method``).
        covered: task codes with precomputed distances; distance cells of the
            first rows use only these (impact vs accuracy uses every target).
        alpha: significance level (the paper's rule uses p <= alpha).
        n_perm, seed: for the permutation step, as in notebook 05.

    Returns:
        One row per reading: ``step, change, database, placeholders,
        same_language, kinds, p_rule``, the verdicts ``a, b, c``, the strongest
        distance-impact and impact-accuracy cells, and ``n`` (pairs per cell).
    """
    five, six = tuple(precomputed.PAPER_KINDS), tuple(dict.fromkeys(precomputed.PAPER_KINDS + ("featural",)))
    start = dict(database=paper_db, targets="covered", placeholders="kept", same_language=True, kinds=five, p_rule="p")
    path = [("0", "the paper's reading", start),
            ("0b", "branch: placeholder languages dropped from the paper's distances", {**start, "placeholders": "dropped"})]
    changes = [("1", "distances: precomputed -> feature cosine", dict(database=variant["database"])),
               ("2", "targets without precomputed distances added", dict(targets="all")),
               ("3", "placeholder languages dropped", dict(placeholders="dropped")),
               ("4", "same-language point dropped", dict(same_language=False)),
               ("5", "featural distance added", dict(kinds=six)),
               ("6", "Holm adjustment (analytic p)", dict(p_rule="holm")),
               ("7", "permutation p (Holm-adjusted): the corrected reading", dict(p_rule="perm_holm"))]
    state = dict(start)
    for step, change, delta in changes:
        state = {**state, **delta}
        path.append((step, change, state))
    rows = []
    for step, change, state in path:
        corr = _reading(pairs, same, flagged, state, variant, n_perm, seed, covered)
        primary = {**variant, "database": state["database"]}
        # the paper's rule is p <= alpha; claims use p_adj < alpha, so nudge alpha up by a rounding margin
        a = alpha * (1 + 1e-9) if state["p_rule"] == "p" else alpha
        verdict = claims.evaluate_claims(corr, primary=primary, alpha=a).set_index("claim")["verdict"]
        di = corr[corr["y"] == "impact"]
        ia = corr[corr["x"] == "impact"]
        lost = flagged.get(state["database"], {}) if state["placeholders"] == "dropped" else {}
        lost = "; ".join(k + ": " + ", ".join(v) for k, v in lost.items() if k in state["kinds"])
        rows.append(dict(step=step, change=change, database=state["database"], targets=state["targets"],
                         placeholders=state["placeholders"] + (f" ({lost})" if lost else " (none flagged)"
                                                               if state["placeholders"] == "dropped" else ""),
                         same_language="kept" if state["same_language"] else "dropped",
                         kinds=", ".join(state["kinds"]), p_rule=P_RULES[state["p_rule"]],
                         a=verdict["a"], b=verdict["b"], c=verdict["c"],
                         strongest_distance_impact=_strongest(di, state["p_rule"]),
                         strongest_impact_accuracy=_strongest(ia, state["p_rule"]),
                         n=f"{int(di['n'].min())}-{int(di['n'].max())} / {int(ia['n'].max())}"))
    return pd.DataFrame(rows)


def moved(steps_table: pd.DataFrame) -> pd.DataFrame:
    """Which step of the path changes which claim's verdict: ``claim, step, change, before, after``."""
    path = steps_table[steps_table["step"] != "0b"].reset_index(drop=True)
    out = []
    for claim in ("a", "b", "c"):
        for i in range(1, len(path)):
            before, after = path.loc[i - 1, claim], path.loc[i, claim]
            if before != after:
                out.append(dict(claim=claim, step=path.loc[i, "step"], change=path.loc[i, "change"], before=before,
                                after=after))
    branch = steps_table[steps_table["step"] == "0b"]
    if len(branch) and len(path):
        for claim in ("a", "b", "c"):
            if branch.iloc[0][claim] != path.loc[0, claim]:
                out.append(dict(claim=claim, step="0b", change=branch.iloc[0]["change"], before=path.loc[0, claim],
                                after=branch.iloc[0][claim]))
    return pd.DataFrame(out, columns=["claim", "step", "change", "before", "after"])
