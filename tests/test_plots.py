"""Figures stay readable, and of a fixed size, with 200 languages as with 15."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from xldrift import plots  # noqa: E402

RNG = np.random.default_rng(0)
FAMILIES = [f"fam{i}" for i in range(14)]


def _langs(n: int) -> tuple[list[str], dict[str, str]]:
    langs = [f"l{i:03d}" for i in range(n)]
    # skewed family sizes, as in SIB-200 (a few large families, many small ones)
    fams = {t: FAMILIES[min(int(RNG.exponential(3)), len(FAMILIES) - 1)] for t in langs}
    return langs, fams


def _size(fig) -> tuple[float, float]:
    w, h = fig.get_size_inches()
    plt.close(fig)
    return w, h


def _labels(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.get_xticklabels() + ax.get_yticklabels() if t.get_text()]


def test_family_groups_keep_the_commonest_and_pool_the_rest():
    langs, fams = _langs(205)
    groups = plots.family_groups(langs, fams, n=4)
    counts = pd.Series(fams).value_counts()
    top = sorted(counts.index, key=lambda f: (-counts[f], f))[:4]
    assert set(groups.values()) == set(top) | ({"other"} if len(counts) > 4 else set())
    assert all(groups[t] == (fams[t] if fams[t] in top else "other") for t in langs)


@pytest.mark.parametrize("n", [15, 205])
def test_accuracy_figure(n):
    langs, _ = _langs(n)
    acc = RNG.uniform(0.2, 0.9, n)
    summary = pd.DataFrame({"source": langs[0], "target": langs, "accuracy": acc, "ci_low": acc - 0.05,
                            "ci_high": acc + 0.05})
    fig = plots.accuracy_bars(summary, chance=1 / 7)
    texts = " ".join(t.get_text() for ax in fig.axes for t in ax.texts)
    labels = _labels(fig)
    w, _ = _size(fig)
    if n <= plots.MANY:
        assert set(langs) <= set(labels)
    else:
        assert w <= 14, "a fixed width, not one bar per language"
        worst, best = summary.nsmallest(5, "accuracy")["target"], summary.nlargest(5, "accuracy")["target"]
        assert all(t in texts for t in set(worst) | set(best)), "the extremes are named"
        assert not set(langs) <= set(labels)


def test_token_lengths_many_languages():
    langs, _ = _langs(205)
    lengths = pd.DataFrame({"language": np.repeat(langs, 20), "tokens": RNG.integers(10, 200, 205 * 20)})
    fert = lengths.groupby("language")["tokens"].median().rename("median_tokens").reset_index()
    fert["tokens_per_char"] = RNG.uniform(0.2, 0.9, len(fert))
    fig = plots.token_lengths(lengths, fert, 128)
    texts = " ".join(t.get_text() for ax in fig.axes for t in ax.texts)
    w, _ = _size(fig)
    assert w <= 14 and fert.loc[fert["tokens_per_char"].idxmax(), "language"] in texts


def _impact(langs: list[str]) -> pd.DataFrame:
    rows = [(t, p, layer, float(min(1.0, 0.01 * np.exp(0.4 * layer) * RNG.uniform(0.5, 1.5))))
            for t in langs for p in ("cls", "mean") for layer in range(13)]
    return pd.DataFrame(rows, columns=["target", "pooling", "layer", "impact"])


def test_drift_figures_many_languages():
    langs, fams = _langs(205)
    impact = _impact(langs)
    fig = plots.drift_profile(impact, fams, "linear_cka", "l000")
    legend = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    assert len(legend) <= plots.N_FAMILIES + 1, "a legend per family, not per language"
    assert any(x.startswith("other (") for x in legend)
    w, h = _size(fig)
    assert w <= 14 and h <= 8
    fig = plots.drift_heatmap(impact, "linear_cka", "l000")
    assert max(len(ax.get_xticklabels()) for ax in fig.axes) <= plots.MANY
    w, _ = _size(fig)
    assert w <= 20
    change = impact.rename(columns={"impact": "change"})
    fig = plots.alignment_vs_drift(change, impact, "linear_cka", "l000", "cls")
    w, _ = _size(fig)
    assert w <= 25


def test_umap_colours_by_family_with_many_languages():
    langs, fams = _langs(205)
    pts = pd.DataFrame([(s, 6, t, RNG.normal(), RNG.normal()) for s in ("pre", "post") for t in langs
                        for _ in range(3)], columns=["state", "layer", "target", "x", "y"])
    fig = plots.umap_panels(pts, fams, "cls")
    legend = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    _size(fig)
    assert 2 <= len(legend) <= plots.N_FAMILIES + 1
    total = sum(int(x.split("(")[1].split()[0]) for x in legend)
    assert total == 205, "every language is in one family group"


def test_intervention_gains_many_languages():
    langs, _ = _langs(205)
    distance = pd.Series(RNG.uniform(0, 1, 205), index=langs)
    order = distance.sort_values().index.tolist()
    close, distant = order[:102], order[102:]
    gains = pd.DataFrame([(c, t, g, g - 0.05, g + 0.05) for c in ("targeted", "random") for t in langs
                          for g in [RNG.normal(0, 0.02)]], columns=["condition", "target", "gain", "ci_low", "ci_high"])
    fig = plots.intervention_gains(gains, distance, close, distant)
    titles = [ax.get_title() for ax in fig.axes]
    w, _ = _size(fig)
    assert w <= 14 and any("n = 205" in t for t in titles)
