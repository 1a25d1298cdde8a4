"""Notebook 05's prose: every sentence that depends on its results, built in one place from its tables.

The notebook's sections show tables and figures; what they add in words
(how many seeds, which languages tie or are not covered, how small a p value
can get, which targets the model never saw, which database rows are
placeholders, and the findings and verdicts) is computed here, by one call
in its Results section, so that the sentences can be read, and checked,
together. The findings of the correlation study and of the paper's reading
come from :func:`xldrift.analysis.correlation.findings` and
:func:`xldrift.analysis.correlation.paper_findings`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from . import correlation


def seeds(accuracy_spread: pd.DataFrame) -> list[str]:
    """What the spread over fine-tuning seeds allows.

    Args:
        accuracy_spread: ``target, mean, sd, n_seeds`` (from correlation.seed_spread).
    """
    n_seeds = int(accuracy_spread["n_seeds"].max())
    if n_seeds == 1:
        return ["1 seed(s): no spread can be estimated; every correlation below rests on one fine-tuning run."]
    return [f"{n_seeds} seed(s): the largest accuracy sd over seeds is {accuracy_spread['sd'].max():.3f}, the range "
            f"of mean accuracy across targets {accuracy_spread['mean'].max() - accuracy_spread['mean'].min():.3f}."]


def genetic_ties(distances: pd.DataFrame) -> list[str]:
    """How many genetic distances equal the maximum, per database (they tie in every rank statistic).

    Args:
        distances: ``lang_a, lang_b, kind, database, value``.
    """
    gen = distances[distances["kind"] == "genetic"]
    return [f"{db}: {int((g['value'] == g['value'].max()).sum())} of {len(g)} genetic distances equal the maximum "
            f"{g['value'].max():.4f}" for db, g in gen.groupby("database")]


def coverage(excluded: pd.DataFrame) -> list[str]:
    """One sentence per (language, kind, database) cell not covered as-is, then what that leaves.

    Args:
        excluded: from correlation.exclusions.
    """
    out = [f"{r.database} {r.kind}: {r.task_code} ({r.iso639_3}) {r.status}"
           + (f" with {r.partner}" if r.partner else "") + f": {r.reason}" for r in excluded.itertuples()]
    out.append("Nothing else is excluded." if len(excluded) else
               "Every language is covered in every kind and database.")
    return out


def covariate(model: str, size: pd.Series, size_what: str, targets: Sequence[str]) -> list[str]:
    """For which targets the pretraining-size covariate is known.

    Args:
        size: pretraining size per task code, NaN where unknown.
        size_what: what the size counts (corpus and unit).
    """
    missing = [t for t in targets if t not in size or not pd.notna(size[t])]
    return [f"Covariate for {model}: {size_what}; known for {len(targets) - len(missing)} of {len(targets)} "
            f"languages" + (f" (missing: {', '.join(missing)}; their pairs drop out of the partial correlations)."
                            if missing else ".")]


def same_language_rows(impact: pd.DataFrame, accuracy: pd.DataFrame) -> list[str]:
    """How many input rows pair a source with itself (none of them enters a pair)."""
    n_same = int((impact["source"] == impact["target"]).sum() + (accuracy["source"] == accuracy["target"]).sum())
    return [f"{n_same} same-language input rows (impact and accuracy of a source on itself) are not in any pair."]


def p_floor(n_sources: int, n_languages: int, permutations: str, family: int, p_min: float, p_adj_min: float,
            correction: str, alpha: float) -> list[str]:
    """The smallest p values this many languages allow, and whether significance is attainable.

    Args:
        permutations: the number of distinct label permutations
            (correlation.distinct_permutations), written for reading.
        family: the largest family size (cells sharing one correction).
        p_min, p_adj_min: the floors from correlation.smallest_p.
    """
    return [f"{n_sources} source(s), {n_languages} languages: {permutations} distinct permutations, so p_perm "
            f">= about {p_min:.2g}; with {correction} over a family of {family} cells, p_adj >= about {p_adj_min:.2g}. "
            + ("No cell can be significant at this size: read the tables as a check that the analysis runs, not as "
               "evidence." if p_adj_min >= alpha else "Significance is attainable at this size.")]


def seen_languages(model: str, seen: pd.Series) -> list[str]:
    """Whether a seen-only analysis was possible, and needed.

    Args:
        seen: per target, in the model's pretraining corpus (nullable boolean; from pretraining.seen_languages).
    """
    n_unseen, n_unknown = int((seen == False).sum()), int(seen.isna().sum())  # noqa: E712
    if n_unknown:
        return [f"The pretraining language list of {model} is not shipped, so seen/unseen cannot be told apart."]
    if n_unseen == 0:
        return [f"All {len(seen)} targets are in {model}'s pretraining corpus: the seen-only analysis equals the one "
                "above."]
    return [f"{int(seen.sum())} targets are in {model}'s pretraining corpus and {n_unseen} are not; the seen-only "
            "correlations are in correlations_seen.csv."]


def placeholders(flags: pd.DataFrame, flagged: Mapping[str, Mapping[str, Sequence[str]]],
                 databases: Sequence[str]) -> list[str]:
    """The placeholder rows per database and kind, and the databases without any.

    Args:
        flags: from correlation.placeholder_report.
        flagged: from correlation.flagged_by_database.
        databases: the databases of our reading.
    """
    out = [f"{db}: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in kinds.items()) for db, kinds in flagged.items()]
    out.append(f"{len(flags)} flagged (kind, language) rows in all; none in "
               + (", ".join(sorted(set(databases) - set(flagged))) or "no other database") + ".")
    return out


def correlation_prose(*, model: str, targets: Sequence[str], sources: Sequence[str], databases: Sequence[str],
                      alpha: float, correction: str, accuracy_spread: pd.DataFrame, distances: pd.DataFrame,
                      excluded: pd.DataFrame, size: pd.Series, size_what: str, impact: pd.DataFrame,
                      accuracy: pd.DataFrame, n_languages: int, permutations: str, family: int, p_min: float,
                      p_adj_min: float,
                      seen: pd.Series, corr: pd.DataFrame, verdicts: pd.DataFrame, grid: pd.DataFrame,
                      variant: Mapping[str, str], flags: pd.DataFrame,
                      flagged: Mapping[str, Mapping[str, Sequence[str]]], claims_paper: pd.DataFrame,
                      paper_steps: pd.DataFrame) -> dict[str, list[str]]:
    """Every result-dependent sentence of notebook 05, by the section it reads, in the notebook's order.

    Args:
        model, targets, sources, databases, alpha, correction: the run's model and parameters.
        accuracy_spread: section 2's spread of accuracy over seeds.
        distances, excluded: section 3's distances and section 4's uncovered cells.
        size, size_what: section 6's pretraining-size covariate and what it counts.
        impact, accuracy: section 1's inputs (``source, target, ...``).
        n_languages, permutations, family, p_min, p_adj_min: section 11's permutation and correction floors
            (``permutations`` as text: the count can be astronomically large).
        seen: section 11's seen/unseen flag per target.
        corr, verdicts, grid, variant: the correlation table, the claims, the verdict grid, the primary variant.
        flags, flagged: section 14's placeholder rows.
        claims_paper, paper_steps: sections 15 and 18, the paper's reading.

    Returns:
        Section title -> its sentences (a title with no sentences is left out).
    """
    text = {
        "2 · Seeds": seeds(accuracy_spread),
        "3 · Genetic distance ties": genetic_ties(distances),
        "4 · Coverage": coverage(excluded),
        "6 · Covariate": covariate(model, size, size_what, targets),
        "7 · Pairs": same_language_rows(impact, accuracy),
        "11 · What this many languages allow": p_floor(len(sources), n_languages, permutations, family, p_min,
                                                       p_adj_min, correction, alpha),
        "11 · Seen and unseen languages": seen_languages(model, seen),
        "14 · Placeholder rows": placeholders(flags, flagged, databases),
        "Findings (primary variant, then the claims)": correlation.findings(corr, verdicts, grid, variant, alpha,
                                                                            correction, p_adj_min),
        "The paper's reading": correlation.paper_findings(claims_paper, verdicts, paper_steps, flags),
    }
    return {title: lines for title, lines in text.items() if lines}


def render(text: Mapping[str, Sequence[str]]) -> str:
    """The sections as plain text: each title on its own line, then its sentences as ``- `` items."""
    return "\n\n".join(title + "\n" + "\n".join(f"- {line}" for line in lines) for title, lines in text.items())
