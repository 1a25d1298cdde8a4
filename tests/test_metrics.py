"""Tests for xldrift.analysis.metrics against direct textbook forms written here."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.linalg import orthogonal_procrustes
from scipy.spatial.distance import pdist, squareform

from xldrift.analysis import metrics as M

NAMES = ("linear_cka", "debiased_cka", "rbf_cka", "procrustes")


# ---------------------------------------------------------------------------
# Reference forms, written independently of the module under test
# ---------------------------------------------------------------------------
def _hsic_h(K: np.ndarray, L: np.ndarray) -> float:
    """Biased HSIC up to a constant: tr(K H L H) with the centring matrix H."""
    n = K.shape[0]
    H = np.eye(n) - np.ones((n, n)) / n
    return float(np.trace(K @ H @ L @ H))


def _cka_from_grams(K: np.ndarray, L: np.ndarray) -> float:
    return _hsic_h(K, L) / np.sqrt(_hsic_h(K, K) * _hsic_h(L, L))


def _linear_cka_ref(X: np.ndarray, Y: np.ndarray) -> float:
    return _cka_from_grams(X @ X.T, Y @ Y.T)


def _hsic_unbiased_ref(K: np.ndarray, L: np.ndarray) -> float:
    """Song et al. 2012, eq. 5, term by term with explicit ones vectors."""
    n = K.shape[0]
    Kt, Lt = K.copy(), L.copy()
    np.fill_diagonal(Kt, 0.0)
    np.fill_diagonal(Lt, 0.0)
    one = np.ones(n)
    term = np.trace(Kt @ Lt) + (one @ Kt @ one) * (one @ Lt @ one) / ((n - 1) * (n - 2))
    term -= 2.0 / (n - 2) * (one @ Kt @ Lt @ one)
    return float(term / (n * (n - 3)))


def _debiased_ref(X: np.ndarray, Y: np.ndarray) -> float:
    K, L = X @ X.T, Y @ Y.T
    return _hsic_unbiased_ref(K, L) / np.sqrt(_hsic_unbiased_ref(K, K) * _hsic_unbiased_ref(L, L))


def _rbf_ref(X: np.ndarray, Y: np.ndarray, frac: float) -> float:
    def gram(Z: np.ndarray) -> np.ndarray:
        dist = pdist(Z)  # each distinct pair once
        sigma = frac * np.median(dist)
        return np.exp(-squareform(dist) ** 2 / (2 * sigma**2))

    return _cka_from_grams(gram(X), gram(Y))


def _procrustes_ref(X: np.ndarray, Y: np.ndarray) -> float:
    """min_R ||X - Y R||_F^2 by scipy, after centring, unit norm and zero padding."""
    xc, yc = X - X.mean(0), Y - Y.mean(0)
    xc, yc = xc / np.linalg.norm(xc), yc / np.linalg.norm(yc)
    d = max(xc.shape[1], yc.shape[1])
    xp = np.hstack([xc, np.zeros((xc.shape[0], d - xc.shape[1]))])
    yp = np.hstack([yc, np.zeros((yc.shape[0], d - yc.shape[1]))])
    R, _ = orthogonal_procrustes(yp, xp)
    return float(np.linalg.norm(xp - yp @ R) ** 2)


def _pair(n: int = 120, d1: int = 12, d2: int = 9, seed: int = 0, offset: float = 3.0):
    """Correlated representations with a non-zero mean (so centring matters)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d1)) + offset
    Y = np.tanh(X @ rng.standard_normal((d1, d2))) + 0.3 * rng.standard_normal((n, d2)) - offset
    return X, Y


def _rotation(d: int, seed: int = 1) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return q


# ---------------------------------------------------------------------------
# Defining properties
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_self_similarity_is_one(name):
    X, _ = _pair()
    assert M.similarity(name, X, X) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_invariant_to_rotation_scaling_translation(name):
    X, Y = _pair()
    base = M.similarity(name, X, Y)
    moved = 4.2 * X @ _rotation(X.shape[1]) - 7.0
    assert M.similarity(name, moved, Y) == pytest.approx(base, abs=1e-10)
    assert M.similarity(name, X, 0.01 * Y @ _rotation(Y.shape[1], seed=5)) == pytest.approx(base, abs=1e-10)


def test_linear_cka_not_invariant_to_general_linear_map():
    # With X^T X = I (centred orthonormal columns), CKA(X, XA) = ||A||_F^2 / (sqrt(d) ||A^T A||_F),
    # which is 1 only when A is a scaled orthogonal matrix.
    rng = np.random.default_rng(2)
    Z = rng.standard_normal((200, 8))
    Q, _ = np.linalg.qr(Z - Z.mean(0))
    A = np.diag([1.0] * 7 + [10.0])
    expected = np.linalg.norm(A) ** 2 / (np.sqrt(8) * np.linalg.norm(A.T @ A))
    value = M.linear_cka(Q, Q @ A)
    assert value == pytest.approx(expected, abs=1e-12)
    assert value < 0.5


@pytest.mark.parametrize("name", NAMES)
def test_symmetric(name):
    X, Y = _pair()
    assert M.similarity(name, X, Y) == pytest.approx(M.similarity(name, Y, X), abs=1e-12)


def test_two_items_are_always_fully_similar():
    # Centred, two items are +v and -v: both centred Grams are proportional to [[1,-1],[-1,1]].
    rng = np.random.default_rng(3)
    assert M.linear_cka(rng.standard_normal((2, 5)), rng.standard_normal((2, 3))) == pytest.approx(1.0)


# ---------------------------------------------------------------------------
# Agreement with the Gram-matrix forms
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("method", M.METHODS)
def test_linear_cka_matches_centring_matrix_form(method):
    X, Y = _pair()
    assert M.linear_cka(X, Y, method=method) == pytest.approx(_linear_cka_ref(X, Y), abs=1e-10)


def test_auto_picks_the_cheaper_form():
    # Gram form costs n^2 (d1 + d2), feature form n (d1 + d2)^2.
    assert M._use_gram("auto", 30, 80, 50)
    assert M._use_gram("auto", 100, 60, 60)
    assert not M._use_gram("auto", 5010, 768, 768)
    assert M._use_gram("gram", 5010, 8, 8) and not M._use_gram("feature", 10, 80, 80)


def test_linear_cka_more_features_than_items():
    X, Y = _pair(n=30, d1=80, d2=50)
    ref = _linear_cka_ref(X, Y)
    for method in M.METHODS:
        assert M.linear_cka(X, Y, method=method) == pytest.approx(ref, abs=1e-10)


@pytest.mark.parametrize("shape", [(150, 10, 6), (25, 40, 60)])
@pytest.mark.parametrize("method", M.METHODS)
def test_debiased_cka_matches_song_estimator(shape, method):
    X, Y = _pair(*shape)
    assert M.debiased_cka(X, Y, method=method) == pytest.approx(_debiased_ref(X, Y), abs=1e-9)


def test_debiased_cka_near_zero_for_independent_features():
    rng = np.random.default_rng(4)
    X, Y = rng.standard_normal((2000, 200)), rng.standard_normal((2000, 200))
    # Biased linear CKA of independent Gaussians is about d/n = 0.1 here, not 0.
    assert M.linear_cka(X, Y) > 0.05
    assert abs(M.debiased_cka(X, Y)) < 0.02


@pytest.mark.parametrize("frac", [1.0, 0.5, 2.0])
def test_rbf_cka_matches_direct_form(frac):
    X, Y = _pair(n=80)
    value = M.rbf_cka(X, Y, sigma_frac=frac)
    assert value == pytest.approx(_rbf_ref(X, Y, frac), abs=1e-10)
    assert 0.0 <= value <= 1.0


def test_rbf_cka_between_zero_and_one_for_unrelated_inputs():
    rng = np.random.default_rng(6)
    value = M.rbf_cka(rng.standard_normal((100, 5)), rng.standard_normal((100, 7)))
    assert 0.0 <= value < 0.5


@pytest.mark.parametrize("shape", [(60, 8, 8), (60, 8, 5), (20, 40, 30)])
def test_procrustes_matches_scipy(shape):
    X, Y = _pair(*shape)
    dist = M.procrustes_distance(X, Y)
    assert dist == pytest.approx(_procrustes_ref(X, Y), abs=1e-10)
    assert M.procrustes_similarity(X, Y) == pytest.approx(1.0 - dist / 2.0, abs=1e-12)
    assert 0.0 < M.procrustes_similarity(X, Y) < 1.0


def test_procrustes_distance_zero_for_rotated_copy():
    X, _ = _pair()
    assert M.procrustes_distance(X, 2.5 * X @ _rotation(X.shape[1]) + 1.0) == pytest.approx(0.0, abs=1e-10)


def test_procrustes_bounds_hold_exactly():
    # Rounding can put ||X^T X||_* a few ulps above 1 for unit-norm X; a distance must never go negative.
    for seed in range(20):
        X = np.random.default_rng(seed).standard_normal((100, 10))
        assert M.procrustes_similarity(X, X) <= 1.0
        assert M.procrustes_distance(X, X) >= 0.0


# ---------------------------------------------------------------------------
# Inputs: torch, float32, extreme magnitudes
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_torch_input_matches_numpy(name):
    X, Y = _pair()
    expected = M.similarity(name, X, Y)
    assert M.similarity(name, torch.from_numpy(X), torch.from_numpy(Y)) == pytest.approx(expected, abs=1e-12)
    tx = torch.from_numpy(X).float().requires_grad_(True)
    value = M.similarity(name, tx, torch.from_numpy(Y).float())
    assert isinstance(value, float)
    assert value == pytest.approx(M.similarity(name, X.astype(np.float32), Y.astype(np.float32)), abs=1e-12)


def test_bfloat16_tensor_is_widened():
    X, Y = _pair()
    xb, yb = torch.from_numpy(X).bfloat16(), torch.from_numpy(Y).bfloat16()
    expected = _linear_cka_ref(xb.double().numpy(), yb.double().numpy())
    assert M.linear_cka(xb, yb) == pytest.approx(expected, abs=1e-10)


def test_float32_accumulated_in_float64():
    # A large shared offset: a float32 mean over 3,000 rows would be off by far more than 1e-10.
    rng = np.random.default_rng(7)
    X32 = (rng.standard_normal((3000, 16)) * 0.05 + 300.0).astype(np.float32)
    Y32 = (X32[:, :10] ** 2 / 300.0 + rng.standard_normal((3000, 10))).astype(np.float32)
    x64, y64 = X32.astype(np.float64), Y32.astype(np.float64)
    xc, yc = x64 - x64.mean(0), y64 - y64.mean(0)
    expected = np.linalg.norm(yc.T @ xc) ** 2 / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc))
    assert M.linear_cka(X32, Y32) == pytest.approx(expected, abs=1e-10)
    assert M.debiased_cka(X32, Y32) == pytest.approx(M.debiased_cka(x64, y64), abs=1e-10)


@pytest.mark.parametrize("scale", [1e-200, 1e-80, 1e80, 1e200])
@pytest.mark.parametrize("name", NAMES)
def test_extreme_magnitudes(name, scale):
    X, Y = _pair()
    assert M.similarity(name, scale * X, Y) == pytest.approx(M.similarity(name, X, Y), abs=1e-10)


# ---------------------------------------------------------------------------
# Bad input: one ValueError each, before any NaN can appear
# ---------------------------------------------------------------------------
def _bad_inputs():
    X, Y = _pair(n=12)
    nan, inf = X.copy(), Y.copy()
    nan[3, 2] = np.nan
    inf[5, 1] = -np.inf
    const = np.tile(X[0], (12, 1))
    # Rows equal up to one float32 ulp: rounding noise, not variation.
    noisy = np.tile(X[0].astype(np.float32), (12, 1))
    noisy[::2, 0] = np.nextafter(noisy[::2, 0], np.float32(np.inf))
    return {
        "mismatched n": (X, Y[:10], r"12 items.*Y has 10"),
        "1-D": (X[:, 0], Y, r"2-D"),
        "3-D": (X[None], Y, r"2-D"),
        "no features": (X[:, :0], Y, r"at least one feature"),
        "complex": (X.astype(complex), Y, r"real numbers"),
        "NaN": (nan, Y, r"X contains 1 non-finite.*row 3, column 2"),
        "inf": (X, inf, r"Y contains 1 non-finite.*row 5, column 1"),
        "constant": (const, Y, r"X is constant across items"),
        "constant up to rounding": (X, noisy, r"Y is constant across items"),
    }


@pytest.mark.parametrize("case", list(_bad_inputs()))
@pytest.mark.parametrize("name", NAMES)
def test_bad_input_raises(name, case):
    X, Y, pattern = _bad_inputs()[case]
    with pytest.raises(M.RepresentationError, match=pattern) as info:
        M.similarity(name, X, Y)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("name, n_ok", [("linear_cka", 2), ("rbf_cka", 2), ("procrustes", 2), ("debiased_cka", 4)])
def test_too_few_items(name, n_ok):
    X, Y = _pair(n=n_ok + 5)
    with pytest.raises(ValueError, match=rf"at least {n_ok} items.*got {n_ok - 1}"):
        M.similarity(name, X[: n_ok - 1], Y[: n_ok - 1])
    assert np.isfinite(M.similarity(name, X[:n_ok], Y[:n_ok]))


def test_debiased_undefined_for_one_hot_items():
    # Equidistant one-hot items: the unbiased HSIC of X with itself is exactly 0.
    with pytest.raises(ValueError, match=r"undefined.*HSIC of X"):
        M.debiased_cka(np.eye(8), np.random.default_rng(8).standard_normal((8, 3)))


def test_bad_options():
    X, Y = _pair()
    with pytest.raises(ValueError, match=r"method must be one of"):
        M.linear_cka(X, Y, method="fast")
    for frac in (0.0, -1.0, float("nan"), float("inf"), "1"):
        with pytest.raises(ValueError, match=r"sigma_frac must be a positive finite number"):
            M.rbf_cka(X, Y, sigma_frac=frac)


def test_rbf_median_zero_raises():
    X = np.zeros((10, 3))
    X[0] = 1.0  # 9 identical points: most pairs have distance 0
    with pytest.raises(ValueError, match=r"median pairwise distance"):
        M.rbf_cka(X, np.random.default_rng(9).standard_normal((10, 2)))


# ---------------------------------------------------------------------------
# Registry and layer-wise helper
# ---------------------------------------------------------------------------
def test_registry():
    X, Y = _pair()
    assert set(NAMES) <= set(M.SIMILARITIES)
    assert M.similarity("linear_cka", X, Y) == M.linear_cka(X, Y)
    assert M.similarity("rbf_cka", X, Y, sigma_frac=0.5) == M.rbf_cka(X, Y, sigma_frac=0.5)
    assert M.impact("linear_cka", X, Y) == pytest.approx(1.0 - _linear_cka_ref(X, Y), abs=1e-10)
    assert M.impact("procrustes", X, Y) == pytest.approx(_procrustes_ref(X, Y) / 2.0, abs=1e-10)
    valid = r"linear_cka, debiased_cka, rbf_cka, procrustes"
    with pytest.raises(ValueError, match=rf"unknown similarity 'cca'; valid names: {valid}"):
        M.similarity("cca", X, Y)
    assert M.impact("procrustes", X, Y) == pytest.approx(M.procrustes_distance(X, Y) / 2.0, abs=1e-12)


def _stacks():
    rng = np.random.default_rng(10)
    A = rng.standard_normal((3, 40, 6))
    B = A @ rng.standard_normal((6, 5)) + 0.5 * rng.standard_normal((3, 40, 5))
    return A, B


@pytest.mark.parametrize("name", NAMES)
def test_layerwise_matches_per_layer(name):
    A, B = _stacks()
    expected = [M.similarity(name, A[i], B[i]) for i in range(3)]
    np.testing.assert_allclose(M.layerwise_similarity(name, A, B), expected, atol=1e-12)
    np.testing.assert_allclose(
        M.layerwise_similarity(name, torch.from_numpy(A), list(B), progress=True), expected, atol=1e-12
    )


def test_layerwise_constant_layer(caplog):
    A, B = _stacks()
    A[0] = A[0, 0]  # layer 0 the same for every item, as a first-token vector is
    with pytest.raises(ValueError, match=r"layer 0 \(X = A\[0\], Y = B\[0\]\): X is constant"):
        M.layerwise_similarity("linear_cka", A, B)
    out = M.layerwise_similarity("linear_cka", A, B, on_error="nan")
    assert np.isnan(out[0])
    assert "layer 0" in caplog.text and "constant" in caplog.text
    np.testing.assert_allclose(out[1:], [_linear_cka_ref(A[i], B[i]) for i in (1, 2)], atol=1e-10)


def test_layerwise_bad_arguments():
    A, B = _stacks()
    with pytest.raises(ValueError, match=r"on_error must be 'raise' or 'nan'"):
        M.layerwise_similarity("linear_cka", A, B, on_error="skip")
    with pytest.raises(ValueError, match=r"A has 3 layers but B has 2"):
        M.layerwise_similarity("linear_cka", A, B[:2])
    with pytest.raises(ValueError, match=r"shape \(n_layers, n_items, n_features\)"):
        M.layerwise_similarity("linear_cka", A[0], B[0])
    with pytest.raises(ValueError, match=r"unknown similarity"):
        M.layerwise_similarity("cka", A, B)
    # A bad option is not a bad layer: it raises even when layers may become NaN.
    with pytest.raises(ValueError, match=r"sigma_frac must be"):
        M.layerwise_similarity("rbf_cka", A, B, on_error="nan", sigma_frac=-1.0)


# ---------------------------------------------------------------------------
# Prepared inputs: one preparation, many comparisons
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(120, 12, 9), (30, 80, 50)])
def test_self_term_is_the_full_symmetric_norm(shape):
    # ||X^T X||_F^2 = ||X X^T||_F^2 = sum of the fourth powers of X's singular values
    X, _ = _pair(*shape)
    xc = X - X.mean(0)
    expected = np.sum(np.linalg.svd(xc, compute_uv=False) ** 4)
    assert M.prepare(X).self_sq == pytest.approx(expected, rel=1e-10)
    assert M.prepare(X, "procrustes").self_sq == pytest.approx(expected, rel=1e-10)  # computed on first use
    product = M._self_product(np.ascontiguousarray(xc))
    assert product.shape == (min(xc.shape),) * 2 and np.array_equal(product, product.T)


@pytest.mark.parametrize("name", NAMES)
def test_prepared_equals_unprepared(name):
    X, Y = _pair()
    expected = M.similarity(name, X, Y)
    px, py = M.prepare(X, name), M.prepare(Y, name)
    assert M.similarity(name, px, py) == pytest.approx(expected, abs=1e-12)
    assert M.similarity(name, px, Y) == pytest.approx(expected, abs=1e-12)
    assert M.similarity(name, X, py) == pytest.approx(expected, abs=1e-12)
    assert M.similarity(name, py, px) == pytest.approx(expected, abs=1e-12)  # the remembered cross term is symmetric


def test_prepare_leaves_input_untouched_and_handles_float32():
    X, Y = _pair()
    X32 = X.astype(np.float32)
    copy = X32.copy()
    value = M.linear_cka(M.prepare(X32), Y)
    np.testing.assert_array_equal(X32, copy)
    assert value == pytest.approx(M.linear_cka(X32, Y), abs=1e-14)


def test_linear_family_shares_one_preparation():
    X, Y = _pair()
    px, py = M.prepare(X, "linear_cka"), M.prepare(Y, "procrustes")
    for name in ("linear_cka", "debiased_cka", "procrustes"):
        assert M.similarity(name, px, py) == pytest.approx(M.similarity(name, X, Y), abs=1e-12)


def test_prepared_mismatches_raise():
    X, Y = _pair()
    with pytest.raises(ValueError, match=r"X was prepared with \('linear_cka'\); rbf_cka needs prepare"):
        M.rbf_cka(M.prepare(X), Y)
    with pytest.raises(ValueError, match=r"sigma_frac=0.5\); rbf_cka needs prepare\(\.\.\., 'rbf_cka', sigma_frac=1.0"):
        M.rbf_cka(M.prepare(X, "rbf_cka", sigma_frac=0.5), Y)
    with pytest.raises(ValueError, match=r"X has 120 items.*Y has 100"):
        M.linear_cka(M.prepare(X), Y[:100])
    with pytest.raises(ValueError, match=r"debiased_cka needs at least 4 items"):
        M.debiased_cka(M.prepare(X[:3]), Y[:3])
    with pytest.raises(ValueError, match=r"pre layer 0 is constant across items"):
        M.prepare(np.tile(X[0], (10, 1)), name="pre layer 0")
    with pytest.raises(ValueError, match=r"unknown similarity"):
        M.prepare(X, "cca")


def test_linear_cka_many():
    X, Y = _pair()
    Ys = [Y, Y[:, :4], torch.from_numpy(2.0 * X), M.prepare(Y[:, ::-1])]
    expected = [_linear_cka_ref(X, np.asarray(y)) for y in (Y, Y[:, :4], 2.0 * X, Y[:, ::-1])]
    np.testing.assert_allclose(M.linear_cka_many(X, Ys), expected, atol=1e-10)
    np.testing.assert_allclose(M.linear_cka_many(M.prepare(X), Ys, method="gram"), expected, atol=1e-10)


def test_bench_baselines_agree():
    # bench/bench_cka.py times our form against these; they must compute the same CKA.
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "bench_cka.py"
    spec = importlib.util.spec_from_file_location("bench_cka", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    X, Y = _pair()
    ref = _linear_cka_ref(X, Y)
    assert bench.reference_gram_cka(X, Y) == pytest.approx(ref, abs=1e-12)
    assert bench.lean_gram_cka(X, Y) == pytest.approx(ref, abs=1e-12)
    with pytest.raises(ValueError, match="symmetric"):
        bench._reference_centre(np.triu(np.ones((4, 4))))


def test_prepared_stack_prepares_each_layer_once_and_matches_direct_calls():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 40, 6)), rng.normal(size=(3, 40, 5))
    sa = M.PreparedStack(a, "a", ["linear_cka", "procrustes", "rbf_cka"])
    sb = M.PreparedStack(b, "b", ["linear_cka", "procrustes", "rbf_cka"])
    for layer in range(3):
        for m in ("linear_cka", "procrustes", "rbf_cka"):
            assert sa.similarity(sb, layer, m) == pytest.approx(M.similarity(m, a[layer], b[layer]), abs=1e-12)
    assert sa.get(1, "linear_cka") is sa.get(1, "procrustes")  # one preparation serves the linear family
    assert sa.get(1, "rbf_cka") is not sa.get(1, "linear_cka")


def test_preparation_rule_and_errors_name_the_stacks():
    assert M.preparation("procrustes", ["procrustes", "rbf_cka"]) == "procrustes"
    assert M.preparation("procrustes", ["procrustes", "debiased_cka"]) == "linear_cka"
    assert M.preparation("rbf_cka", ["linear_cka"]) == "rbf_cka"
    with pytest.raises(ValueError, match="valid names"):
        M.lookup("cosine")
    with pytest.raises(ValueError, match="valid names"):
        M.PreparedStack(np.zeros((1, 4, 2)), "x", ["cosine"])
    const = M.PreparedStack(np.ones((1, 5, 3)), "pre de", ["linear_cka"])
    other = M.PreparedStack(np.random.default_rng(1).normal(size=(1, 5, 3)), "post de", ["linear_cka"])
    with pytest.raises(M.RepresentationError, match="pre de vs post de, layer 0"):
        const.similarity(other, 0, "linear_cka")
