"""Verdicts on the study's claims, computed from the correlation table.

The table is never written by hand: each verdict follows from the rules
below applied to the rows of :func:`xldrift.analysis.stats.correlation_table`, and the
evidence column quotes the numbers behind it.

Definitions (``alpha`` default 0.05; "significant" means ``p_adj < alpha``,
where ``p_adj`` is the family-corrected permutation p):

* A *variant* is one (database, pooling) combination at the primary metric and
  method; the *primary* variant is given by ``primary``. Claim (c) does not
  involve a database, so its variants are poolings only.
* For one x (e.g. ``distance:genetic``) over layers: *majority* = more than
  half of the layers significant and all significant layers share the sign
  of r; *some* = at least one significant layer.
* Layer thirds: with L layers sorted, the bottom third is the first
  ``L // 3`` layers and the top third the last ``L // 3`` (needs L >= 3).

Rules, per variant:

(a) "Linguistic distance relates to representation-space impact"
    (rows ``x = distance:*``, ``y = impact``): *supported* if some distance
    kind has a majority; *mixed* if no kind has a majority but some kind has
    some; *not supported* otherwise.
(b) "Genetic distance relates to impact at every layer; syntactic and
    geographic distance more so in deeper layers": three parts:
    genetic significant at every layer with one sign; for syntactic and for
    geographic, mean |r| over the top third of layers greater than over the
    bottom third and at least one top-third layer significant. *Supported* if
    all three hold, *not supported* if none holds, *mixed* otherwise.
(c) "Impact relates to transfer performance" (rows ``x = impact``,
    ``y = accuracy``): as (a) with the single x ``impact``.
(d) "Targeted freezing narrows the transfer gap to distant languages", from
    an intervention summary (see :func:`claim_d`).

A claim whose rows are absent in the primary variant gets the verdict
``not evaluated``. Robustness reports how many variants reach the same
verdict as the primary one.
"""

from __future__ import annotations

from collections.abc import Mapping

import math

import numpy as np
import pandas as pd

from xldrift.analysis import stats

SUPPORTED, MIXED, NOT_SUPPORTED, NOT_EVALUATED = "supported", "mixed", "not supported", "not evaluated"
COLUMNS = ["claim", "statement", "verdict", "evidence", "robustness"]
STATEMENTS = {
    "a": "Linguistic distance relates to representation-space impact.",
    "b": "Genetic distance relates to impact at every layer; syntactic and geographic distance more so in deeper layers.",
    "c": "Impact relates to transfer performance.",
    "d": "Targeted freezing narrows the transfer gap to distant languages.",
}
PRIMARY = dict(database="lang2vec", pooling="cls", metric="linear_cka", method="pearson")
_NEED = {"x", "y", "layer", "pooling", "metric", "database", "method", "r", "ci_low", "ci_high", "p_adj", "n"}


def _layers_summary(rows: pd.DataFrame, alpha: float) -> dict:
    """Significance pattern over the layers of one x."""
    rows = rows.sort_values("layer")
    sig = rows["p_adj"].to_numpy(float) < alpha
    signs = set(np.sign(rows.loc[sig, "r"]).astype(int))
    n_layers, n_sig = len(rows), int(sig.sum())
    best = rows.loc[rows["r"].abs().idxmax()] if rows["r"].notna().any() else None
    return dict(n_layers=n_layers, n_sig=n_sig, consistent=len(signs) <= 1,
                majority=n_sig > n_layers / 2 and len(signs) == 1, some=n_sig > 0,
                all=n_sig == n_layers > 0 and len(signs) == 1, best=best, rows=rows, sig=sig)


def _fmt(row: pd.Series | None) -> str:
    if row is None:
        return "no finite r"
    layer = "" if pd.isna(row["layer"]) else f"layer {int(row['layer'])}: "
    return (f"{layer}r={row['r']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}], "
            f"p_adj={row['p_adj']:.3g}, n={int(row['n'])}")


def _by_x(rows: pd.DataFrame, alpha: float) -> dict[str, dict]:
    return {x: _layers_summary(g, alpha) for x, g in rows.groupby("x", sort=True)}


def _rank_verdict(summaries: dict[str, dict]) -> str:
    if any(s["majority"] for s in summaries.values()):
        return SUPPORTED
    return MIXED if any(s["some"] for s in summaries.values()) else NOT_SUPPORTED


def _claim_ac(rows: pd.DataFrame, alpha: float) -> tuple[str, str]:
    if not len(rows) or not np.isfinite(rows["r"].to_numpy(dtype=float)).any():
        # e.g. accuracy constant across targets: no correlation is defined, so nothing was tested
        return NOT_EVALUATED, "no finite correlation (a variable is constant or too few languages)"
    s = _by_x(rows, alpha)
    if not s:
        return NOT_EVALUATED, "no rows"
    verdict = _rank_verdict(s)
    ranked = sorted(s.items(), key=lambda kv: (kv[1]["n_sig"], abs(kv[1]["best"]["r"]) if kv[1]["best"] is not None else 0),
                    reverse=True)
    parts = [f"{x.split(':')[-1]}: {v['n_sig']}/{v['n_layers']} layers significant"
             f"{'' if v['consistent'] else ' (mixed signs)'}; strongest {_fmt(v['best'])}" for x, v in ranked[:3]]
    return verdict, "; ".join(parts)


def _deeper(summary: dict | None, alpha: float) -> tuple[bool, str]:
    if summary is None or summary["n_layers"] < 3:
        return False, "too few layers"
    rows, k = summary["rows"], summary["n_layers"] // 3
    low, high = rows["r"].abs().iloc[:k].mean(), rows["r"].abs().iloc[-k:].mean()
    top_sig = int(summary["sig"][-k:].sum())
    ok = bool(high > low and top_sig > 0)
    return ok, f"mean |r| top third {high:.2f} vs bottom third {low:.2f}, {top_sig}/{k} top layers significant"


def _claim_b(rows: pd.DataFrame, alpha: float) -> tuple[str, str]:
    s = _by_x(rows, alpha)
    gen = s.get("distance:genetic")
    if gen is None:
        return NOT_EVALUATED, "no genetic rows"
    parts = [gen["all"]]
    text = [f"genetic: {gen['n_sig']}/{gen['n_layers']} layers significant"
            f"{'' if gen['consistent'] else ' (mixed signs)'}, strongest {_fmt(gen['best'])}"]
    for kind in ("syntactic", "geographic"):
        ok, why = _deeper(s.get(f"distance:{kind}"), alpha)
        parts.append(ok)
        text.append(f"{kind}: {why}")
    verdict = SUPPORTED if all(parts) else NOT_SUPPORTED if not any(parts) else MIXED
    return verdict, "; ".join(text)


_RULES = {"a": _claim_ac, "b": _claim_b, "c": _claim_ac}


def _rows_for(corr: pd.DataFrame, claim: str, variant: Mapping[str, str],
              match: tuple[str, ...] = ("metric", "method", "pooling", "database")) -> pd.DataFrame:
    """Rows of one claim, restricted to the ``match`` keys of ``variant``."""
    if claim == "c":
        sel = corr["x"].eq("impact") & corr["y"].eq("accuracy")
        match = tuple(k for k in match if k != "database")
    else:
        sel = corr["y"].eq("impact") & corr["x"].astype(str).str.startswith("distance:")
    for k in match:
        sel &= corr[k].eq(variant[k])
    return corr[sel]


def evaluate_claims(correlations: pd.DataFrame, primary: Mapping[str, str] | None = None,
                    alpha: float = 0.05) -> pd.DataFrame:
    """Verdicts for claims (a)-(c) from a correlation table.

    Args:
        correlations: output of :func:`xldrift.analysis.stats.correlation_table`.
        primary: the variant the verdict is based on: keys ``database,
            pooling, metric, method`` (default :data:`PRIMARY`).
        alpha: significance level for ``p_adj``.

    Returns:
        Columns ``claim, statement, verdict, evidence, robustness``, one row per
        claim; the decision rules are in the module docstring.
    """
    primary = {**PRIMARY, **(primary or {})}
    missing = _NEED - set(correlations.columns)
    if missing:
        raise ValueError(f"correlations lacks columns {sorted(missing)}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1); got {alpha}")
    corr = correlations
    out = []
    for claim, rule in _RULES.items():
        verdict, evidence = rule(_rows_for(corr, claim, primary), alpha)
        keys = ["pooling"] if claim == "c" else ["database", "pooling"]
        anywhere = _rows_for(corr, claim, primary, match=("metric", "method"))
        results = []
        for v in anywhere[keys].drop_duplicates().dropna().to_dict("records"):
            rows = _rows_for(corr, claim, {**primary, **v})
            if len(rows):
                results.append(("/".join(str(v[k]) for k in keys), rule(rows, alpha)[0]))
        agree = sum(r == verdict for _, r in results)
        robustness = (f"{agree}/{len(results)} variants ({'/'.join(keys)}) agree: "
                      + ", ".join(f"{name} {r}" for name, r in results)) if results else "no variants"
        out.append(dict(claim=claim, statement=STATEMENTS[claim], verdict=verdict, evidence=evidence,
                        robustness=robustness))
    return pd.DataFrame(out, columns=COLUMNS)


def _interval(summary: Mapping, key: str) -> tuple[float, float, float]:
    part = summary.get(key)
    if not isinstance(part, Mapping) or not {"estimate", "ci_low", "ci_high"} <= set(part):
        raise ValueError(f"intervention_summary[{key!r}] must be a dict with estimate, ci_low, ci_high; got {part!r}")
    return float(part["estimate"]), float(part["ci_low"]), float(part["ci_high"])


def claim_d(intervention_summary: Mapping) -> pd.DataFrame:
    """Verdict for claim (d) in the same table form as :func:`evaluate_claims`.

    Args:
        intervention_summary: ``{"gap_change": {...}, "targeted_vs_control":
            {...}}``, each ``{"estimate", "ci_low", "ci_high"}`` (accuracy
            points or fractions, 95% CI): ``gap_change`` = gain of targeted
            freezing on the distant half of the targets minus its gain on the
            close half; ``targeted_vs_control`` = gain of targeted freezing
            minus the gain of freezing control layers. Optional ``"n"`` (text
            such as "14 targets, 3 seeds") and ``"robustness"`` (text).

    Returns:
        One row. *Supported* if both CIs lie above 0; *mixed* if exactly one
        does, or neither does but both estimates are positive; else *not
        supported*.
    """
    gap, ctrl = _interval(intervention_summary, "gap_change"), _interval(intervention_summary, "targeted_vs_control")
    above = [gap[1] > 0, ctrl[1] > 0]
    if all(above):
        verdict = SUPPORTED
    elif any(above) or (gap[0] > 0 and ctrl[0] > 0):
        verdict = MIXED
    else:
        verdict = NOT_SUPPORTED
    n = intervention_summary.get("n")
    evidence = (f"gap change {gap[0]:+.3g} [{gap[1]:+.3g}, {gap[2]:+.3g}]; targeted - control "
                f"{ctrl[0]:+.3g} [{ctrl[1]:+.3g}, {ctrl[2]:+.3g}]" + (f"; {n}" if n else ""))
    return pd.DataFrame([dict(claim="d", statement=STATEMENTS["d"], verdict=verdict, evidence=evidence,
                              robustness=str(intervention_summary.get("robustness", "n/a")))], columns=COLUMNS)


# -- what the numbers allow, and every variant's verdicts ----------------------------------
def distinct_permutations(n_sources: int, n_languages: int) -> int:
    """Distinct label permutations of the Mantel-style test (sources among sources, others among others)."""
    return math.factorial(n_sources) * math.factorial(n_languages - n_sources)


def smallest_p(n_sources: int, n_languages: int, n_perm: int, family_size: int, correction: str) -> tuple[float, float]:
    """Roughly the smallest permutation p and adjusted p a cell can reach.

    A permutation p is at least ``1 / (n_perm + 1)`` and, with few languages,
    about ``1 / (number of distinct permutations)``, because the observed
    labelling recurs among the permutations. Holm multiplies the smallest p by
    the family size; Benjamini-Hochberg can leave it unchanged.

    Returns:
        ``(p_perm_min, p_adj_min)``.
    """
    if correction not in stats.ADJUST:
        raise ValueError(f"unknown correction {correction!r}; valid: {', '.join(stats.ADJUST)}")
    p = max(1 / (n_perm + 1), 1 / distinct_permutations(n_sources, n_languages))
    return p, min(1.0, p * family_size) if correction == "holm" else p


def verdict_grid(corr: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """The claims' verdicts in every (database, pooling, metric, method) variant the table holds.

    Returns:
        One row per variant: ``database, pooling, metric, method`` and a
        column per claim (``a``, ``b``, ``c``) holding its verdict.
    """
    rows = corr[corr["y"].eq("impact") & corr["x"].astype(str).str.startswith("distance:")]
    combos = rows[["database", "pooling", "metric", "method"]].drop_duplicates().dropna()
    out = []
    for v in combos.to_dict("records"):
        table = evaluate_claims(corr, primary=v, alpha=alpha)
        out.append({**v, **dict(zip(table["claim"], table["verdict"]))})
    return pd.DataFrame(out)
