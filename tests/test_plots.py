"""Figures draw exactly the numbers they are given, and stay readable at a fixed size with 200 languages."""

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


def _token_frames(langs: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """20 items' token counts per language, and the fertility table built from them."""
    lengths = pd.DataFrame({"language": np.repeat(langs, 20), "tokens": RNG.integers(10, 200, len(langs) * 20)})
    fert = lengths.groupby("language")["tokens"].median().rename("median_tokens").reset_index()
    fert["tokens_per_char"] = RNG.uniform(0.2, 0.9, len(fert))
    return lengths, fert


def test_token_lengths_many_languages():
    langs, _ = _langs(205)
    lengths, fert = _token_frames(langs)
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


# -- the data behind the marks ---------------------------------------------------------
# Each figure function is drawn from a small frame and its marks are read back: bar heights, line and scatter
# coordinates, error-bar ends, heatmap arrays and tick labels must be the frame's numbers, in the frame's order.
FEW = [f"l{i:02d}" for i in range(6)]
FEW_FAMILIES = {t: ("fam_a" if i % 2 else "fam_b") for i, t in enumerate(FEW)}


def _ticks(labels) -> list[str]:
    return [t.get_text() for t in labels]


def _bars(ax) -> np.ndarray:
    return np.array([p.get_height() for p in ax.patches])


def _bar_widths(ax) -> np.ndarray:
    return np.array([p.get_width() for p in ax.patches])


def _error_ends(ax) -> np.ndarray:
    """(n_bars, 2) low and high ends of the error bars drawn on ``ax`` (vertical or horizontal)."""
    segs = np.concatenate([np.asarray(c.get_segments()) for c in ax.collections if hasattr(c, "get_segments")])
    vertical = np.allclose(segs[:, 0, 0], segs[:, 1, 0])
    return np.sort(segs[:, :, 1 if vertical else 0], axis=1)


def _offsets(ax) -> np.ndarray:
    """(n_points, 2) coordinates of every scatter mark on ``ax``."""
    from matplotlib.collections import PathCollection

    return np.concatenate([c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)])


def _accuracy_summary(targets: list[str]) -> pd.DataFrame:
    acc = RNG.uniform(0.2, 0.9, len(targets))
    return pd.DataFrame({"source": targets[0], "target": targets, "accuracy": acc, "ci_low": acc - 0.03,
                         "ci_high": acc + 0.05})


def test_accuracy_bars_draw_each_accuracy_and_its_interval_best_first():
    summary = _accuracy_summary(FEW)
    fig = plots.accuracy_bars(summary, chance=1 / 3)
    ax = fig.axes[0]
    d = summary.sort_values("accuracy", ascending=False)
    np.testing.assert_allclose(_bars(ax), d["accuracy"])
    assert _ticks(ax.get_xticklabels()) == d["target"].tolist()
    np.testing.assert_allclose(_error_ends(ax), d[["ci_low", "ci_high"]].to_numpy())
    colours = [tuple(p.get_facecolor()) for p in ax.patches]
    source = colours.pop(d["target"].tolist().index(FEW[0]))
    assert len(set(colours)) == 1 and source not in colours, "the source bar alone in its own colour"
    assert [ln.get_ydata()[0] for ln in ax.lines if ln.get_linestyle() == "--"] == [1 / 3], "chance as a dashed line"
    plt.close(fig)


def test_accuracy_profile_draws_the_sorted_accuracies_and_the_source():
    langs, _ = _langs(205)
    summary = _accuracy_summary(langs)
    fig = plots.accuracy_bars(summary, chance=1 / 7)
    ax, hist = fig.axes[:2]
    d = summary.sort_values("accuracy", ascending=False).reset_index(drop=True)
    line = [ln for ln in ax.lines if ln.get_label() == "accuracy"][0]
    np.testing.assert_allclose(line.get_ydata(), d["accuracy"])
    src = d.index[d["target"] == langs[0]][0]
    np.testing.assert_allclose(_offsets(ax), [[src, d.loc[src, "accuracy"]]])
    assert _bar_widths(hist).sum() == len(d), "the histogram counts every language once"
    plt.close(fig)


@pytest.mark.filterwarnings("ignore:vert. bool was deprecated")  # seaborn's boxplot still passes matplotlib's `vert`
def test_token_lengths_draw_the_fertility_bars_in_order():
    lengths, fert = _token_frames(FEW)
    fig = plots.token_lengths(lengths, fert, 128)
    boxes, bars = fig.axes[:2]
    assert _ticks(boxes.get_xticklabels()) == fert.sort_values("median_tokens")["language"].tolist()
    by_fertility = fert.sort_values("tokens_per_char")
    assert _ticks(bars.get_yticklabels()) == by_fertility["language"].tolist()
    np.testing.assert_allclose(_bar_widths(bars), by_fertility["tokens_per_char"])
    assert 128 in [ln.get_ydata()[0] for ln in boxes.lines if ln.get_linestyle() == "--"]
    plt.close(fig)


def test_token_lengths_many_languages_draw_median_and_fertility_profiles():
    langs, _ = _langs(205)
    lengths, fert = _token_frames(langs)
    fig = plots.token_lengths(lengths, fert, 128)
    left, right = fig.axes[:2]
    order = fert.sort_values("median_tokens")["language"]
    median = lengths.groupby("language")["tokens"].median().reindex(order)
    np.testing.assert_allclose([ln for ln in left.lines if ln.get_label() == "median"][0].get_ydata(), median)
    np.testing.assert_allclose(right.lines[0].get_xdata(), fert.sort_values("tokens_per_char")["tokens_per_char"])
    plt.close(fig)


def _gains(targets: list[str], conds=("targeted", "random")) -> pd.DataFrame:
    rows = [(c, t, g, g - 0.01, g + 0.02) for c in ("full", *conds) for t in targets for g in [RNG.normal(0, 0.02)]]
    return pd.DataFrame(rows, columns=["condition", "target", "gain", "ci_low", "ci_high"])


def test_intervention_gains_draw_each_gain_sorted_by_distance():
    distance = pd.Series(RNG.uniform(0, 1, len(FEW)), index=FEW)
    order = distance.sort_values().index.tolist()
    gains = _gains(FEW)
    fig = plots.intervention_gains(gains, distance, order[:3], order[3:])
    assert [ax.get_title() for ax in fig.axes] == ["targeted - full", "random - full"], "no panel for full itself"
    for ax, cond in zip(fig.axes, ("targeted", "random")):
        d = gains[gains["condition"] == cond].set_index("target").loc[order]
        np.testing.assert_allclose(_bars(ax), d["gain"])
        np.testing.assert_allclose(_error_ends(ax), d[["ci_low", "ci_high"]].to_numpy())
        assert _ticks(ax.get_xticklabels()) == [f"{t}\n{distance[t]:.2f}" for t in order]
        distant = {tuple(p.get_facecolor()) for p, t in zip(ax.patches, order) if t in order[3:]}
        close = {tuple(p.get_facecolor()) for p, t in zip(ax.patches, order) if t in order[:3]}
        assert len(distant) == len(close) == 1 and distant != close
    plt.close(fig)


def test_intervention_gains_many_languages_scatter_gain_against_distance():
    langs, _ = _langs(205)
    distance = pd.Series(RNG.uniform(0, 1, 205), index=langs)
    order = distance.sort_values().index.tolist()
    gains = _gains(langs, conds=("targeted",))
    fig = plots.intervention_gains(gains, distance, order[:102], order[102:])
    d = gains[gains["condition"] == "targeted"].set_index("target").loc[order]
    np.testing.assert_allclose(_offsets(fig.axes[0]), np.c_[distance[order], d["gain"]])
    plt.close(fig)


def test_gap_summary_draws_the_half_means_and_each_gap_change():
    gaps = pd.DataFrame({"comparison": ["targeted - full", "lowest - full", "targeted - lowest"],
                         "condition": ["targeted", "lowest", "targeted"], "baseline": ["full", "full", "lowest"],
                         "close": [0.01, 0.02, -0.01], "distant": [0.03, 0.0, 0.02], "gap_change": [0.02, -0.02, 0.03],
                         "ci_low": [-0.01, -0.04, 0.0], "ci_high": [0.05, 0.01, 0.06]})
    fig = plots.gap_summary(gaps)
    halves, change = fig.axes
    vs_full = gaps[gaps["baseline"] == "full"]
    np.testing.assert_allclose(_bars(halves), np.r_[vs_full["close"], vs_full["distant"]])
    assert _ticks(halves.get_xticklabels()) == vs_full["condition"].tolist()
    point = [ln for ln in change.lines if ln.get_marker() == "o"][0]
    np.testing.assert_allclose(np.asarray(point.get_xdata(), float), gaps["gap_change"])
    np.testing.assert_allclose(_error_ends(change), gaps[["ci_low", "ci_high"]].to_numpy())
    ticks = dict(zip(change.get_yticks(), _ticks(change.get_yticklabels())))
    assert [ticks[y] for y in point.get_ydata()] == gaps["comparison"].tolist(), "each point on its own row"
    plt.close(fig)


def _layer_impact(targets: list[str]) -> pd.DataFrame:
    rows = [(t, p, layer, float(RNG.uniform(0.01, 0.9))) for t in targets for p in ("cls", "mean")
            for layer in range(1, 5)]
    return pd.DataFrame(rows, columns=["target", "pooling", "layer", "impact"])


def test_drift_profile_draws_each_language_absolute_and_relative():
    impact = _layer_impact(FEW)
    fig = plots.drift_profile(impact, FEW_FAMILIES, "linear_cka", "l00")
    axes = np.array(fig.axes[:4]).reshape(2, 2)
    for j, pooling in enumerate(("cls", "mean")):
        d = impact[impact["pooling"] == pooling]
        mean = d.groupby("layer")["impact"].mean()
        top = {ln.get_label(): ln for ln in axes[0, j].lines}
        rel = [ln for ln in axes[1, j].lines if len(ln.get_xdata()) > 2]
        for k, t in enumerate(FEW):
            g = d[d["target"] == t].sort_values("layer")
            line = top[f"{t} ({FEW_FAMILIES[t]})"]
            np.testing.assert_allclose(line.get_xdata(), g["layer"])
            np.testing.assert_allclose(line.get_ydata(), g["impact"])
            np.testing.assert_allclose(rel[k].get_ydata(), g["impact"].to_numpy() / mean.loc[g["layer"]].to_numpy())
    plt.close(fig)


def test_drift_profile_many_languages_draws_family_medians():
    langs, fams = _langs(205)
    impact = _impact(langs)
    fig = plots.drift_profile(impact, fams, "linear_cka", "l000")
    groups = plots.family_groups(langs, fams)
    d = impact[impact["pooling"] == "cls"].assign(family=lambda x: x["target"].map(groups))
    medians = {ln.get_label().split(" (")[0]: ln for ln in fig.axes[0].lines if not ln.get_label().startswith("_")}
    assert set(medians) == set(groups.values())
    for fam, line in medians.items():
        np.testing.assert_allclose(line.get_ydata(), d[d["family"] == fam].groupby("layer")["impact"].median())
    plt.close(fig)


def test_drift_heatmap_shows_the_impact_table_and_its_ratio_to_the_layer_mean():
    impact = _layer_impact(FEW)
    fig = plots.drift_heatmap(impact, "linear_cka", "l00")
    heat = [ax for ax in fig.axes if ax.images]
    order = impact.groupby("target")["impact"].mean().sort_values(ascending=False).index.tolist()
    for k, pooling in enumerate(("cls", "mean")):
        table = impact[impact["pooling"] == pooling].pivot(index="layer", columns="target", values="impact")[order]
        absolute, relative = heat[k], heat[2 + k]  # row-major: the impact row, then the relative row
        np.testing.assert_allclose(absolute.images[0].get_array(), table.to_numpy())
        np.testing.assert_allclose(relative.images[0].get_array(), table.div(table.mean(axis=1), axis=0).to_numpy())
        assert _ticks(absolute.get_xticklabels()) == order
        assert _ticks(absolute.get_yticklabels()) == [str(v) for v in table.index]
    plt.close(fig)


def test_alignment_vs_drift_shows_change_and_impact_per_cell():
    impact = _layer_impact(FEW)
    change = impact.assign(change=RNG.normal(0, 0.05, len(impact))).drop(columns="impact")
    fig = plots.alignment_vs_drift(change, impact, "linear_cka", "l00", "mean")
    heat = [ax for ax in fig.axes if ax.images]
    order = impact.groupby("target")["impact"].mean().sort_values(ascending=False).index  # over both poolings
    ch = change[change["pooling"] == "mean"].pivot(index="layer", columns="target", values="change")[order]
    im = impact[impact["pooling"] == "mean"].pivot(index="layer", columns="target", values="impact")[order]
    np.testing.assert_allclose(heat[0].images[0].get_array(), ch.to_numpy())
    np.testing.assert_allclose(heat[1].images[0].get_array(), im.to_numpy())
    assert _ticks(heat[0].get_xticklabels()) == list(order)
    cells = np.c_[im.to_numpy().ravel(), ch.to_numpy().ravel()]
    scatter = [ax for ax in fig.axes if ax.collections and not ax.images and ax.get_xlabel().startswith("absolute")][0]
    key = lambda a: a[np.lexsort(a.T[::-1])]  # noqa: E731 - order-free comparison of point sets
    np.testing.assert_allclose(key(_offsets(scatter)), key(cells))
    plt.close(fig)


def test_umap_panels_place_each_language_point_where_the_table_says():
    pts = pd.DataFrame([(s, layer, t, RNG.normal(), RNG.normal()) for s in ("pre", "post") for layer in (3, 6)
                        for t in FEW for _ in range(4)], columns=["state", "layer", "target", "x", "y"])
    fig = plots.umap_panels(pts, FEW_FAMILIES, "cls")
    axes = np.array(fig.axes).reshape(2, 2)
    for i, layer in enumerate((3, 6)):
        for j, state in enumerate(("pre", "post")):
            assert axes[i, j].get_title() == f"layer {layer}, {state}"
            for coll, t in zip(axes[i, j].collections, FEW):
                g = pts[(pts["layer"] == layer) & (pts["state"] == state) & (pts["target"] == t)]
                np.testing.assert_allclose(coll.get_offsets(), g[["x", "y"]].to_numpy())
                assert coll.get_label() == f"{t} ({FEW_FAMILIES[t]})"
    plt.close(fig)


def _corr_rows() -> pd.DataFrame:
    rows = [dict(x=f"distance:{kind}", y="impact", layer=layer, pooling=pooling, metric="m", database="lang2vec",
                 method="pearson", r=float(RNG.uniform(-1, 1)), p_adj=float(RNG.uniform(0, 1)), n=14)
            for pooling in ("cls", "mean") for kind in ("genetic", "syntactic", "geographic") for layer in (1, 2, 3)]
    corr = pd.DataFrame(rows)
    return corr.assign(ci_low=corr["r"] - 0.1, ci_high=corr["r"] + 0.1)


def test_correlation_heatmap_shows_r_per_kind_and_layer():
    corr = _corr_rows()
    fig = plots.correlation_heatmap(corr, title="t")
    heat = [ax for ax in fig.axes if ax.images]
    kinds = ["distance:syntactic", "distance:genetic", "distance:geographic"]  # the study's order of kinds
    for ax, pooling in zip(heat, ("cls", "mean")):
        r = corr[corr["pooling"] == pooling].pivot(index="x", columns="layer", values="r").loc[kinds]
        np.testing.assert_allclose(ax.images[0].get_array(), r.to_numpy())
        assert _ticks(ax.get_yticklabels()) == ["syntactic", "genetic", "geographic"]
        assert _ticks(ax.get_xticklabels()) == ["1", "2", "3"]
        assert ax.get_title() == f"lang2vec · {pooling} (n = 14)"
    plt.close(fig)


def test_r_by_layer_draws_each_kind_with_its_interval():
    corr = _corr_rows()
    fig = plots.r_by_layer(corr)
    for ax, pooling in zip(fig.axes, ("cls", "mean")):
        lines = {ln.get_label(): ln for ln in ax.lines if not ln.get_label().startswith("_")}
        assert list(lines) == ["syntactic", "genetic", "geographic"]
        for kind, line in lines.items():
            g = corr[(corr["pooling"] == pooling) & (corr["x"] == f"distance:{kind}")].sort_values("layer")
            np.testing.assert_allclose(line.get_xydata(), g[["layer", "r"]].to_numpy())
        bands = [c.get_paths()[0].vertices for c in ax.collections]
        assert len(bands) == 3
        g = corr[(corr["pooling"] == pooling) & (corr["x"] == "distance:syntactic")]
        np.testing.assert_allclose(bands[0][:, 1].min(), g["ci_low"].min())
        np.testing.assert_allclose(bands[0][:, 1].max(), g["ci_high"].max())
    plt.close(fig)


def test_strongest_scatter_plots_the_pairs_of_the_chosen_cell():
    cells = [dict(x=f"distance:{k}", y="impact", layer=layer, pooling="cls", metric="m", database="lang2vec")
             for k in ("syntactic", "genetic") for layer in (1, 2)]
    pairs = pd.DataFrame([dict(c, source="en", target=t, x_value=RNG.uniform(), y_value=RNG.uniform())
                          for c in cells for t in FEW[1:]])
    best = pd.DataFrame([dict(cells[1], r=0.5, ci_low=0.1, ci_high=0.8, p_adj=0.04, n=5),
                         dict(cells[2], r=-0.3, ci_low=-0.7, ci_high=0.2, p_adj=0.5, n=5)])
    fig = plots.strongest_scatter(pairs, best)
    for ax, cell in zip(fig.axes, (cells[1], cells[2])):
        sel = pairs[(pairs["x"] == cell["x"]) & (pairs["layer"] == cell["layer"])]
        np.testing.assert_allclose(_offsets(ax), sel[["x_value", "y_value"]].to_numpy())
        assert [t.get_text() for t in ax.texts] == sel["target"].tolist()
        slope, icept = np.polyfit(sel["x_value"], sel["y_value"], 1)
        fit = ax.lines[0].get_xydata()
        np.testing.assert_allclose(fit[:, 1], slope * fit[:, 0] + icept)
    assert "r = +0.50 [+0.10, +0.80]" in fig.axes[0].get_title()
    plt.close(fig)


def test_database_agreement_plots_one_point_per_language_pair():
    pairs = [(a, b) for i, a in enumerate(FEW) for b in FEW[i + 1:]]
    rows = [(a, b, kind, db, float(RNG.uniform())) for a, b in pairs for kind in ("syntactic", "genetic")
            for db in ("lang2vec", "urielplus")]
    distances = pd.DataFrame(rows, columns=["lang_a", "lang_b", "kind", "database", "value"])
    agreement = pd.DataFrame({"kind": ["syntactic", "genetic"], "rho": [0.4, 0.9], "n": [len(pairs)] * 2})
    fig = plots.database_agreement(distances, agreement)
    for ax, kind in zip(fig.axes, ("syntactic", "genetic")):
        wide = distances[distances["kind"] == kind].pivot_table(index=["lang_a", "lang_b"], columns="database",
                                                                values="value")
        got = _offsets(ax)
        assert len(got) == len(pairs)
        np.testing.assert_allclose(got[np.lexsort(got.T[::-1])],
                                   wide[["lang2vec", "urielplus"]].sort_values(["lang2vec", "urielplus"]).to_numpy())
        assert ax.get_title() == f"{kind}: rho = {agreement.set_index('kind').loc[kind, 'rho']:.2f} (n = {len(pairs)})"
    plt.close(fig)


def test_paper_vs_corrected_shows_r_with_the_avg_column_last():
    rows = pd.DataFrame({"x": ["distance:genetic"] * 3 + ["distance:syntactic"] * 3, "layer": [2, 1, np.nan] * 2,
                         "r": [0.2, -0.9, -0.5, -0.3, 0.1, 0.0], "p": 0.5, "n": 14})
    fig = plots.paper_vs_corrected([("paper", rows, "p")])
    ax = [ax for ax in fig.axes if ax.images][0]
    # rows: syntactic before genetic; columns: layers ascending, then AVG
    np.testing.assert_allclose(ax.images[0].get_array(), [[0.1, -0.3, 0.0], [-0.9, 0.2, -0.5]])
    assert _ticks(ax.get_yticklabels()) == ["syntactic", "genetic"]
    plt.close(fig)
