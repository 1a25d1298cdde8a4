"""Languages the encoder saw in pretraining, and the correlations without the unseen ones.

With 200 languages (SIB-200), about half are absent from the pretraining
corpus of the XLM-R family (CC-100, Conneau et al. 2020, Table 6 lists its 100
languages; multilingual-e5 starts from XLM-R, Wang et al. 2024). An unseen
language can move and transfer differently for reasons that have nothing to do
with its distance from the source, so every primary-variant correlation of
notebook 05 is recomputed on the seen languages alone and shown next to the
all-language value, each with its own n.

The pretraining-size covariate is the size of the target language's share of
the model's pretraining corpus: CC-100 GiB for the XLM-R family (XLM-R, and
multilingual-e5, which is initialised from it; Conneau et al. 2020, Table 6)
and Wikipedia article counts for mBERT (Devlin et al. 2019 trained it on
Wikipedia), chosen by the model's name.
"""

from __future__ import annotations

import re
from typing import Mapping

import numpy as np
import pandas as pd

from xldrift.analysis import correlation, stats, typology
from xldrift.study.io import require_columns

CORPORA = {
    "cc100": ("cc100_gib", "CC-100 size in GiB (Conneau et al. 2020, Table 6)"),
    "wikipedia": ("wiki_articles_k", "Wikipedia articles in thousands (Meta-Wiki list, 2020)"),
}


def pretraining_corpus(model: str) -> str | None:
    """``"cc100"`` for the XLM-R family (incl. multilingual-e5), ``"wikipedia"`` for mBERT, else None."""
    name = str(model).lower()
    tokens = set(re.split(r"[/_\-.\s]+", name))
    if "xlm-roberta" in name or tokens & {"xlmr", "e5"} or name.startswith("e5"):
        return "cc100"
    if "bert-base-multilingual" in name or "mbert" in tokens:
        return "wikipedia"
    return None


def pretraining_covariate(model: str, languages: pd.DataFrame, sizes: pd.DataFrame,
                          xlmr: pd.DataFrame | None = None) -> tuple[pd.Series, str]:
    """Pretraining data size of each task language for ``model``'s corpus.

    Looked up by task code in ``sizes`` (``data/pretraining_size.csv``), then
    by ISO 639-3 code, then (CC-100 only) in ``xlmr`` (``data/xlmr_languages.csv``)
    by ISO code or its macrolanguage (:data:`xldrift.analysis.typology.MACROLANGUAGE`).

    Args:
        model: the model name (decides the corpus, see :func:`pretraining_corpus`).
        languages: notebook 01's ``languages.csv`` (``code, iso639_3``).
        sizes, xlmr: the two committed tables.

    Returns:
        ``(size, description)``: size per task code (NaN where unknown; empty
        when no corpus is known for the model) and what the numbers are.
    """
    require_columns(languages, ("code", "iso639_3"), "languages.csv")
    corpus = pretraining_corpus(model)
    if corpus is None:
        return pd.Series(dtype=float, name="size"), f"no pretraining-size table for model {model!r}"
    column, what = CORPORA[corpus]
    by_code = sizes.set_index("task_code")[column].dropna()
    by_iso = sizes.set_index("iso639_3")[column].dropna()
    extra = (xlmr.groupby("iso639_3")["cc100_gib"].max() if xlmr is not None and corpus == "cc100"
             else pd.Series(dtype=float))
    out = {}
    for code, iso in zip(languages["code"], languages["iso639_3"]):
        macro = typology.MACROLANGUAGE.get(iso, "")
        found = [t[k] for t, k in ((by_code, code), (by_iso, iso), (extra, iso), (extra, macro)) if k in t.index]
        out[code] = float(found[0]) if found else np.nan
    return pd.Series(out, name="size", dtype=float), what


def seen_languages(model: str, size: pd.Series, targets: list[str]) -> pd.Series:
    """Whether each target is in the model's pretraining corpus (nullable boolean).

    For the XLM-R family the corpus table (``data/xlmr_languages.csv``) lists
    every CC-100 language, so a language without a size is unseen. For other
    models no complete list is shipped: every value is ``<NA>`` (unknown).

    Args:
        model: model name (decides the corpus, see :func:`pretraining_corpus`).
        size: pretraining size per task code, NaN where not found
            (:func:`pretraining_covariate`).
        targets: task codes to classify.
    """
    if pretraining_corpus(model) != "cc100":
        return pd.Series(pd.NA, index=targets, dtype="boolean", name="seen")
    values = [bool(t in size.index and np.isfinite(size[t])) for t in targets]
    return pd.Series(values, index=targets, dtype="boolean", name="seen")


def group_table(seen: pd.Series, accuracy: pd.Series, impact: pd.Series | None = None) -> pd.DataFrame:
    """Per group (seen, unseen): languages, mean and range of accuracy (and of impact at one layer).

    Args:
        seen: from :func:`seen_languages`.
        accuracy: mean zero-shot accuracy per target.
        impact: optional impact per target (e.g. at the top layer).
    """
    rows = []
    for label, flag in (("seen in pretraining", True), ("unseen", False)):
        members = [t for t in seen.index if seen[t] is not pd.NA and bool(seen[t]) == flag]
        row = {"group": label, "languages": len(members)}
        for name, values in (("accuracy", accuracy), ("impact", impact)):
            if values is None:
                continue
            v = values.reindex(members).dropna()
            row.update({f"{name}_mean": float(v.mean()) if len(v) else np.nan,
                        f"{name}_min": float(v.min()) if len(v) else np.nan,
                        f"{name}_max": float(v.max()) if len(v) else np.nan})
        rows.append(row)
    return pd.DataFrame(rows)


def _in_variant(pairs: pd.DataFrame, variant: Mapping[str, str]) -> pd.Series:
    keep = pd.Series(True, index=pairs.index)
    for key in ("database", "pooling", "metric"):
        col = pairs[key]
        keep &= col.isna() | (col.astype(str) == "") | (col.astype(str) == variant[key])
    return keep


def seen_only_correlations(pairs: pd.DataFrame, seen: pd.Series, variant: Mapping[str, str], *,
                           n_perm: int = 10_000, n_boot: int = 1_000, adjust: str = "holm",
                           progress: bool = False) -> pd.DataFrame:
    """The primary variant's correlation cells recomputed on pairs whose target was seen.

    Same statistics as :func:`xldrift.analysis.stats.correlation_table` (Pearson and
    Spearman, permutation p, bootstrap CI over languages, ``adjust`` within each
    heatmap family), so each ``p_adj`` is comparable with the all-language one.

    Raises:
        ValueError: when no target is known to be seen.
    """
    keep_targets = [t for t in seen.index if seen[t] is not pd.NA and bool(seen[t])]
    if not keep_targets:
        raise ValueError("no target language is known to be in the pretraining corpus; nothing to recompute")
    sub = pairs[_in_variant(pairs, variant) & pairs["target"].isin(keep_targets)
                & (pairs["source"].isin(keep_targets) | ~pairs["source"].isin(seen.index))]
    return stats.correlation_table(sub, methods=("pearson", "spearman"), partial=False, n_perm=n_perm,
                                   n_boot=n_boot, adjust=adjust, progress=progress)


def compare(corr_all: pd.DataFrame, corr_seen: pd.DataFrame, variant: Mapping[str, str],
            method: str = "pearson") -> pd.DataFrame:
    """Each x/y relation at its strongest all-language layer: all languages next to seen only.

    Returns:
        Columns ``x, y, layer, r_all, ci_all, p_adj_all, n_all, r_seen, ci_seen,
        p_adj_seen, n_seen`` (CI as ``"[lo, hi]"`` text).
    """
    rows = []
    for y, x_prefix, keys in (("impact", "distance:", variant), ("accuracy", "impact", {k: v for k, v in variant.items()
                                                                                      if k != "database"}),
                              ("accuracy", "distance:", {"database": variant["database"]})):
        keys = {**keys, "method": method}
        best = correlation.strongest(correlation.select(corr_all, y=y, x_prefix=x_prefix, **keys))
        seen_rows = correlation.select(corr_seen, y=y, x_prefix=x_prefix, **keys)
        for b in best.itertuples():
            match = seen_rows[(seen_rows["x"] == b.x) & ((seen_rows["layer"] == b.layer) if pd.notna(b.layer)
                                                         else seen_rows["layer"].isna())]
            s = match.iloc[0] if len(match) else None
            rows.append({"x": b.x, "y": y, "layer": b.layer, "r_all": b.r,
                         "ci_all": f"[{b.ci_low:+.2f}, {b.ci_high:+.2f}]", "p_adj_all": b.p_adj, "n_all": b.n,
                         "r_seen": s["r"] if s is not None else np.nan,
                         "ci_seen": f"[{s['ci_low']:+.2f}, {s['ci_high']:+.2f}]" if s is not None else "",
                         "p_adj_seen": s["p_adj"] if s is not None else np.nan,
                         "n_seen": s["n"] if s is not None else 0})
    return pd.DataFrame(rows)
