"""Similarity between two representations of the same items.

Every metric compares ``X`` of shape ``(n_items, d1)`` with ``Y`` of shape
``(n_items, d2)``: row ``i`` of both describes the same item (e.g. one XNLI
pair before and after fine-tuning); ``d1`` may differ from ``d2``. Inputs may
be numpy arrays or torch tensors of any real dtype; all arithmetic runs in
float64 and every metric returns a plain Python ``float``.

- ``linear_cka``: :func:`linear_cka` (Kornblith et al. 2019). O(n d^2) time,
  O(d^2) extra memory; the O(n^2 d) Gram form when that is cheaper. See
  ``bench/bench_cka.py`` for its speed against the Gram form.
- ``debiased_cka``: :func:`debiased_cka` (Song et al. 2012; Nguyen, Raghu &
  Kornblith 2021). Same cost as ``linear_cka``.
- ``rbf_cka``: :func:`rbf_cka` (Kornblith et al. 2019). O(n^2 d) time, about
  three ``n x n`` float64 matrices.
- ``procrustes``: :func:`procrustes_similarity` (Schonemann 1966; Ding, Denain
  & Steinhardt 2021). O(n d^2 + d^3). The registry returns the similarity
  ``||X^T Y||_*`` in [0, 1]; the distance is ``2 - 2 * similarity``
  (:func:`procrustes_distance`), so ``impact("procrustes", X, Y)`` is half of it.

Input rules, checked before any heavy work; each violation raises one
:class:`RepresentationError` (a ``ValueError``) saying what is wrong and what
is valid (never a silent NaN):

- both inputs 2-D ``(n_items, n_features)`` with at least one feature, real
  dtype, the same ``n_items``, and only finite values;
- at least :data:`MIN_ITEMS` items (one item leaves nothing after centring),
  :data:`MIN_ITEMS_DEBIASED` for ``debiased_cka`` (its estimator divides by
  ``n (n - 3)``);
- not constant: ``||X - mean(X)||_F <= rtol * ||X||_F`` counts as constant,
  with ``rtol`` = 16 machine epsilons of the input dtype (at most 1%), so
  items that differ only by rounding noise are caught too. Example: the
  first-token vector at layer 0, which is the same for every input.
"""

from __future__ import annotations

import logging
import math
import numbers
from typing import Any, Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

#: Fewest items for every metric but ``debiased_cka``: centring one item
#: leaves an all-zero matrix, so no similarity is defined.
MIN_ITEMS = 2
#: Fewest items for ``debiased_cka``: the unbiased HSIC divides by
#: ``n (n - 3)`` and ``(n - 1)(n - 2)`` (Song et al. 2012).
MIN_ITEMS_DEBIASED = 4
METHODS = ("auto", "feature", "gram")


class RepresentationError(ValueError):
    """Input a metric cannot score (shape, values, too few items, no variation).

    Raised for the data, unlike a bad option such as ``method``;
    :func:`layerwise_similarity` turns only these into NaN when asked.
    """


# Centred norms outside this range are rescaled so that fourth powers
# (||X^T X||_F^2) neither overflow nor underflow float64.
_SAFE_NORM = (1e-60, 1e60)


# -- input checks and centring ------------------------------------------------
def _as_matrix(a: Any, name: str) -> tuple[np.ndarray, float]:
    """``a`` (array-like or torch tensor) as a 2-D real array, uncopied when possible, and its ``rtol``."""
    eps = None
    if type(a).__module__.split(".")[0] == "torch":
        import torch

        t = a.detach().cpu()
        if t.is_complex():
            raise RepresentationError(f"{name} must hold real numbers; got torch dtype {t.dtype}")
        if t.is_floating_point() and t.dtype not in (torch.float32, torch.float64):
            eps = torch.finfo(t.dtype).eps  # numpy has no bfloat16: widen, keep its precision for rtol
            t = t.float()
        a = t.numpy()
    arr = np.asarray(a)
    if arr.ndim != 2:
        raise RepresentationError(f"{name} must be 2-D with shape (n_items, n_features); got shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise RepresentationError(f"{name} must hold real numbers (bool, int or float); got dtype {arr.dtype}")
    if arr.shape[1] == 0:
        raise RepresentationError(f"{name} has shape {arr.shape}: at least one feature (column) is needed")
    if eps is None:
        eps = np.finfo(arr.dtype).eps if arr.dtype.kind == "f" else np.finfo(np.float64).eps
    return arr, min(16.0 * float(eps), 1e-2)


def _check_finite(arr: np.ndarray, name: str) -> None:
    """Raise if ``arr`` holds NaN or inf, naming the first offending entry."""
    bad = ~np.isfinite(arr)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise RepresentationError(
            f"{name} contains {int(bad.sum())} non-finite values (NaN or inf; first at row {i}, "
            f"column {j}); all values must be finite"
        )


def _centre_once(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    # float64 accumulation even for float32 input: a float32 column sum over
    # thousands of rows loses digits that CKA's 1e-6 budget needs. NaN/inf and
    # overflow are dealt with by the caller, so their warnings are noise here.
    with np.errstate(invalid="ignore", over="ignore"):
        mu = arr.mean(axis=0, dtype=np.float64)
        xc = np.subtract(arr, mu, dtype=np.float64)
        return xc, mu, math.sqrt(float(np.vdot(xc, xc)))


def _centre(arr: np.ndarray, rtol: float, name: str) -> tuple[np.ndarray, float]:
    """Centre the columns of ``arr`` ``(n_items, n_features)`` in float64; reject NaN/inf or constant input.

    Returns ``(xc, norm)``: the centred matrix (possibly times a positive
    constant, which no metric here sees) and its Frobenius norm.
    """
    xc, mu, norm = _centre_once(arr)
    if not (np.isfinite(mu).all() and _SAFE_NORM[0] < norm < _SAFE_NORM[1]):
        # Rare path: a NaN/inf, or magnitudes whose squares leave float64's range.
        _check_finite(arr, name)
        peak = float(np.abs(arr).max())
        if peak > 0:
            xc, mu, norm = _centre_once(arr / peak)
    total = math.hypot(norm, math.sqrt(arr.shape[0]) * float(np.linalg.norm(mu)))
    if norm <= rtol * total:
        raise RepresentationError(
            f"{name} is constant across items (all {arr.shape[0]} rows equal up to rounding: "
            f"||{name} - mean||_F = {norm:.3g} <= {rtol:.2g} * ||{name}||_F); similarity is undefined "
            f"for a representation that does not vary, e.g. the first-token vector at layer 0"
        )
    return xc, norm


def _prepare(X: Any, Y: Any, min_items: int, metric: str) -> tuple[np.ndarray, float, np.ndarray, float]:
    """Validate a pair of representations and centre both: ``(xc, x_norm, yc, y_norm)``."""
    x, x_rtol = _as_matrix(X, "X")
    y, y_rtol = _as_matrix(Y, "Y")
    if x.shape[0] != y.shape[0]:
        raise RepresentationError(
            f"X has {x.shape[0]} items (rows) but Y has {y.shape[0]}; both must describe the same items"
        )
    if x.shape[0] < min_items:
        why = "its unbiased HSIC divides by n(n-3)" if min_items > MIN_ITEMS else "centring leaves nothing"
        raise RepresentationError(f"{metric} needs at least {min_items} items ({why}); got {x.shape[0]}")
    xc, x_norm = _centre(x, x_rtol, "X")
    yc, y_norm = _centre(y, y_rtol, "Y")
    return xc, x_norm, yc, y_norm


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}")


def _use_gram(method: str, n: int, d1: int, d2: int) -> bool:
    """Whether to use ``n x n`` Gram products instead of ``d x d`` feature products.

    Flops: ``n (d1 + d2)^2`` in feature space against ``n^2 (d1 + d2)``, so
    ``auto`` takes the Gram form once ``d1 + d2 > n`` (always when d > n).
    """
    return method == "gram" or (method == "auto" and d1 + d2 > n)


def _sq_fro(a: np.ndarray) -> float:
    return float(np.vdot(a, a))


def _cross_terms(x: np.ndarray, y: np.ndarray, gram: bool) -> tuple[float, float, float]:
    """``(<K,L>, <K,K>, <L,L>)`` for ``K = x x^T``, ``L = y y^T`` (Frobenius products).

    In feature space ``<K, L> = ||y^T x||_F^2`` (Kornblith et al. 2019),
    which never forms an ``n x n`` matrix.
    """
    if gram:
        k, l = x @ x.T, y @ y.T
        return float(np.vdot(k, l)), _sq_fro(k), _sq_fro(l)
    return _sq_fro(y.T @ x), _sq_fro(x.T @ x), _sq_fro(y.T @ y)


def _ratio(xy: float, xx: float, yy: float, metric: str) -> float:
    if not (xx > 0 and yy > 0 and math.isfinite(xy)):
        raise RepresentationError(
            f"{metric} is undefined here: a self-similarity term is {min(xx, yy):.3g}, not > 0"
        )
    return float(xy / (math.sqrt(xx) * math.sqrt(yy)))


# -- metrics ------------------------------------------------------------------
def linear_cka(X: Any, Y: Any, *, method: str = "auto") -> float:
    """Linear centred kernel alignment (Kornblith et al. 2019, ICML, feature-space form).

    With column-centred ``X`` and ``Y``::

        CKA = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)

    which equals the Gram form ``HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))``
    with ``K = X X^T``, ``L = Y Y^T``. Invariant to orthogonal transforms,
    isotropic scaling and translation of either input; in [0, 1].

    Args:
        X: shape ``(n_items, d1)``, numpy array or torch tensor.
        Y: shape ``(n_items, d2)``.
        method: ``"feature"`` (``d x d`` products, O(n d^2)), ``"gram"``
            (``n x n`` products, O(n^2 d)) or ``"auto"``: the Gram form when
            ``d1 + d2 > n``, the feature form otherwise.

    Returns:
        Linear CKA.
    """
    _check_method(method)
    x, _, y, _ = _prepare(X, Y, MIN_ITEMS, "linear_cka")
    gram = _use_gram(method, x.shape[0], x.shape[1], y.shape[1])
    return _ratio(*_cross_terms(x, y, gram), "linear_cka")


def _unbiased_hsic(cross: float, dx: np.ndarray, dy: np.ndarray, n: int) -> float:
    """Unbiased HSIC estimator ``HSIC_1`` (Song et al. 2012, JMLR) for centred linear kernels.

    With ``K~`` = ``K`` with its diagonal ``dx`` set to zero::

        HSIC_1 = [tr(K~ L~) + 1'K~1 1'L~1 / ((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n(n-3))

    The estimator does not change when the features are translated, and for
    centred features ``K 1 = 0``, so ``K~ 1 = -dx`` and ``1'K~1 = -sum(dx)``;
    ``tr(K~ L~) = <K, L> - dx.dy``. Only ``<K, L>`` (``cross``) needs the
    full matrices.
    """
    trace = cross - float(dx @ dy)
    return (trace + dx.sum() * dy.sum() / ((n - 1) * (n - 2)) - 2.0 * float(dx @ dy) / (n - 2)) / (n * (n - 3))


def debiased_cka(X: Any, Y: Any, *, method: str = "auto") -> float:
    """Linear CKA from the unbiased HSIC estimator (debiased CKA).

    ``HSIC_1(K, L) / sqrt(HSIC_1(K, K) HSIC_1(L, L))`` with linear kernels
    and the unbiased estimator of Song et al. 2012 (JMLR, "Feature selection
    via dependence maximization"), as used for CKA by Nguyen, Raghu &
    Kornblith 2021 (ICLR, "Do wide and deep networks learn the same
    things?"). Unlike :func:`linear_cka` it is close to 0 for independent
    representations even when ``d`` is not small against ``n``; it can be
    slightly negative.

    Args:
        X: shape ``(n_items, d1)``, at least :data:`MIN_ITEMS_DEBIASED` items.
        Y: shape ``(n_items, d2)``.
        method: as in :func:`linear_cka`.

    Returns:
        Debiased CKA. Raises :class:`RepresentationError` where it is
        undefined: ``HSIC_1(K, K) <= 0`` (e.g. one-hot items, ``X = I``).
    """
    _check_method(method)
    x, _, y, _ = _prepare(X, Y, MIN_ITEMS_DEBIASED, "debiased_cka")
    n = x.shape[0]
    xy, xx, yy = _cross_terms(x, y, _use_gram(method, n, x.shape[1], y.shape[1]))
    dx, dy = np.einsum("ij,ij->i", x, x), np.einsum("ij,ij->i", y, y)
    h_xy, h_xx, h_yy = _unbiased_hsic(xy, dx, dy, n), _unbiased_hsic(xx, dx, dx, n), _unbiased_hsic(yy, dy, dy, n)
    for label, h, full in (("X", h_xx, xx), ("Y", h_yy, yy)):
        # Compared with ||K||_F^2, anything below 1e-12 of it is rounding noise.
        if h * n * (n - 3) <= 1e-12 * full:
            raise RepresentationError(
                f"debiased_cka is undefined: the unbiased HSIC of {label} with itself is {h:.3g} (must be > 0); "
                f"use more items or linear_cka"
            )
    return _ratio(h_xy, h_xx, h_yy, "debiased_cka")


def _centre_gram(k: np.ndarray) -> None:
    """Double-centre a symmetric ``(n, n)`` Gram matrix in place: ``H K H``."""
    means = k.mean(axis=0)
    k -= means[:, None]
    k -= means[None, :]
    k += means.mean()


def _rbf_gram(x: np.ndarray, sigma_frac: float, name: str) -> np.ndarray:
    """``H K H``, shape ``(n_items, n_items)``, ``K_ij = exp(-||x_i - x_j||^2 / (2 sigma^2))``.

    ``x`` is centred, shape ``(n_items, d)``; ``sigma = sigma_frac * median distance``.
    """
    n = x.shape[0]
    g = x @ x.T
    sq = np.diag(g).copy()
    g *= -2.0
    g += sq[:, None]
    g += sq[None, :]
    np.maximum(g, 0.0, out=g)  # rounding can leave tiny negative squared distances
    np.fill_diagonal(g, 0.0)
    # The n diagonal zeros are the smallest entries, so the off-diagonal order
    # statistic k is the overall one n + k; each pair appears twice, which
    # leaves the median unchanged. n(n-1) is even: average the middle two.
    half = n * (n - 1) // 2
    mid = np.partition(g, (n + half - 1, n + half), axis=None)[n + half - 1 : n + half + 1]
    median = 0.5 * (math.sqrt(mid[0]) + math.sqrt(mid[1]))
    if median <= 0:
        raise RepresentationError(
            f"rbf_cka needs a positive median pairwise distance in {name}; over half of its item pairs "
            f"are identical points"
        )
    sigma = sigma_frac * median
    g *= -1.0 / (2.0 * sigma * sigma)
    np.exp(g, out=g)
    _centre_gram(g)
    return g


def rbf_cka(X: Any, Y: Any, *, sigma_frac: float = 1.0) -> float:
    """CKA with Gaussian (RBF) kernels (Kornblith et al. 2019, ICML).

    ``K_ij = exp(-||x_i - x_j||^2 / (2 sigma_X^2))`` with, per input,
    ``sigma = sigma_frac * median_{i<j} ||x_i - x_j||`` (the median of the
    Euclidean distances over distinct item pairs, i.e. not over the full
    ``n x n`` matrix with its zero diagonal; Kornblith et al. set the
    bandwidth as a fraction of the median distance). Then
    ``<HKH, HLH>_F / (||HKH||_F ||HLH||_F)``, in [0, 1].

    Cost: O(n^2 (d1 + d2)) time and about three ``n x n`` float64 matrices
    (600 MB at n = 5,000); fine up to n ~ 5,000, quadratic beyond.

    Args:
        X: shape ``(n_items, d1)``.
        Y: shape ``(n_items, d2)``.
        sigma_frac: positive, finite fraction of the median distance.

    Returns:
        RBF CKA.
    """
    if not (isinstance(sigma_frac, numbers.Real) and math.isfinite(sigma_frac) and sigma_frac > 0):
        raise ValueError(f"sigma_frac must be a positive finite number; got {sigma_frac!r}")
    x, _, y, _ = _prepare(X, Y, MIN_ITEMS, "rbf_cka")
    kx = _rbf_gram(x, float(sigma_frac), "X")
    ky = _rbf_gram(y, float(sigma_frac), "Y")
    return _ratio(float(np.vdot(kx, ky)), _sq_fro(kx), _sq_fro(ky), "rbf_cka")


def _thin(x: np.ndarray) -> np.ndarray:
    """An ``(n, min(n, d))`` matrix whose ``M^T Y`` has the singular values of ``x^T Y``.

    For ``d > n``, ``x^T = Q R`` gives ``x^T Y = Q (R Y)`` with orthonormal
    ``Q``, so ``R^T`` (``n x n``) can stand in for ``x``.
    """
    if x.shape[1] <= x.shape[0]:
        return x
    return np.linalg.qr(x.T, mode="r").T


def procrustes_similarity(X: Any, Y: Any) -> float:
    """Nuclear norm of the cross-covariance of normalised representations, in [0, 1].

    With ``X``, ``Y`` column-centred and scaled to ``||X||_F = ||Y||_F = 1``,
    ``||X^T Y||_*`` (sum of singular values) is the largest
    ``<X, Y R>`` over orthogonal ``R`` (Schonemann 1966, Psychometrika), so
    ``procrustes_distance = 2 - 2 * procrustes_similarity``. For ``d1 != d2``
    this is the same as zero-padding the narrower input.

    Args:
        X: shape ``(n_items, d1)``.
        Y: shape ``(n_items, d2)``.

    Returns:
        The similarity, 1 for a rotated, scaled or translated copy.
    """
    x, x_norm, y, y_norm = _prepare(X, Y, MIN_ITEMS, "procrustes")
    nuclear = np.linalg.svd(_thin(x).T @ _thin(y), compute_uv=False).sum() / (x_norm * y_norm)
    # Rounding can lift the norm a hair above its bound of 1 (||X||_F ||Y||_F).
    return float(min(nuclear, 1.0))


def procrustes_distance(X: Any, Y: Any) -> float:
    """Orthogonal Procrustes distance (Ding, Denain & Steinhardt 2021, NeurIPS).

    ``min_R ||X - Y R||_F^2 = 2 - 2 ||X^T Y||_*`` over orthogonal ``R``, for
    centred, unit-Frobenius-norm ``X`` and ``Y`` (Schonemann 1966). In
    [0, 2]; 0 for a rotated, scaled or translated copy.

    Args:
        X: shape ``(n_items, d1)``.
        Y: shape ``(n_items, d2)``; ``d2`` may differ from ``d1``.

    Returns:
        The distance.
    """
    return 2.0 - 2.0 * procrustes_similarity(X, Y)


# -- registry -----------------------------------------------------------------
#: Similarity by name; ``procrustes`` maps to :func:`procrustes_similarity`.
SIMILARITIES: dict[str, Callable[..., float]] = {
    "linear_cka": linear_cka,
    "debiased_cka": debiased_cka,
    "rbf_cka": rbf_cka,
    "procrustes": procrustes_similarity,
}


def _lookup(name: str) -> Callable[..., float]:
    if name not in SIMILARITIES:
        raise ValueError(f"unknown similarity {name!r}; valid names: {', '.join(SIMILARITIES)}")
    return SIMILARITIES[name]


def similarity(name: str, X: Any, Y: Any, **kwargs: Any) -> float:
    """The similarity ``name`` (a key of :data:`SIMILARITIES`) between ``X`` and ``Y``.

    Args:
        name: ``linear_cka``, ``debiased_cka``, ``rbf_cka`` or ``procrustes``.
        X: shape ``(n_items, d1)``.
        Y: shape ``(n_items, d2)``.
        **kwargs: passed to the metric (e.g. ``sigma_frac`` for ``rbf_cka``).

    Returns:
        The similarity.
    """
    return _lookup(name)(X, Y, **kwargs)


def impact(name: str, X: Any, Y: Any, **kwargs: Any) -> float:
    """``1 - similarity(name, X, Y)``: how far fine-tuning moved a representation.

    For ``linear_cka`` this is the drift of Philippy et al. 2023 (1 - CKA).
    """
    return 1.0 - similarity(name, X, Y, **kwargs)


def _layers(a: Any, name: str) -> Sequence[Any]:
    ndim = getattr(a, "ndim", None)
    if ndim is not None and ndim != 3:
        raise ValueError(f"{name} must have shape (n_layers, n_items, n_features); got shape {tuple(a.shape)}")
    if ndim is None and not isinstance(a, Sequence):
        raise ValueError(f"{name} must be a 3-D array/tensor or a sequence of 2-D arrays; got {type(a).__name__}")
    return a


def layerwise_similarity(
    name: str, A: Any, B: Any, *, on_error: str = "raise", progress: bool = False, **kwargs: Any
) -> np.ndarray:
    """Per-layer similarity between two stacks of representations.

    Args:
        name: a key of :data:`SIMILARITIES`.
        A: shape ``(n_layers, n_items, d1)`` (array, tensor, or a sequence of
            2-D arrays).
        B: shape ``(n_layers, n_items, d2)``.
        on_error: ``"raise"`` (default): a layer whose representations no
            metric can score raises :class:`RepresentationError` (a
            ``ValueError``) naming the layer; ``"nan"``: that layer gets NaN
            and a warning is logged. Bad options (``method``,
            ``sigma_frac``) always raise.
        progress: show a progress bar over layers.
        **kwargs: passed to the metric.

    Returns:
        Float64 array of shape ``(n_layers,)``.
    """
    metric = _lookup(name)
    if on_error not in ("raise", "nan"):
        raise ValueError(f"on_error must be 'raise' or 'nan'; got {on_error!r}")
    a, b = _layers(A, "A"), _layers(B, "B")
    if len(a) != len(b):
        raise ValueError(f"A has {len(a)} layers but B has {len(b)}; both need the same layers")
    out = np.empty(len(a), dtype=np.float64)
    for layer in tqdm(range(len(a)), desc=name, disable=not progress):
        try:
            out[layer] = metric(a[layer], b[layer], **kwargs)
        except RepresentationError as err:
            if on_error == "raise":
                raise RepresentationError(f"layer {layer} (X = A[{layer}], Y = B[{layer}]): {err}") from err
            logger.warning("%s: layer %d set to NaN: %s", name, layer, err)
            out[layer] = np.nan
    return out
