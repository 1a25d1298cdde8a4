"""Similarity between two representations of the same items.

Every metric compares ``X`` of shape ``(n_items, d1)`` with ``Y`` of shape
``(n_items, d2)``: row ``i`` of both describes the same item (e.g. one XNLI
pair before and after fine-tuning); ``d1`` may differ from ``d2``. Inputs may
be numpy arrays or torch tensors of any real dtype; all arithmetic runs in
float64 and every metric returns a plain Python ``float``.

- ``linear_cka``: :func:`linear_cka` (Kornblith et al. 2019). O(n d^2) time,
  O(n d + d^2) extra memory (a centred copy, ``d x d`` products); the
  O(n^2 d) Gram form when that is cheaper. See ``bench/bench_cka.py`` for its
  speed against the Gram form of the reference code.
- ``debiased_cka``: :func:`debiased_cka` (Song et al. 2012; Nguyen, Raghu &
  Kornblith 2021). Same cost as ``linear_cka``.
- ``rbf_cka``: :func:`rbf_cka` (Kornblith et al. 2019). O(n^2 d) time, about
  three ``n x n`` float64 matrices.
- ``procrustes``: :func:`procrustes_similarity` (Schonemann 1966; Ding, Denain
  & Steinhardt 2021). O(n d^2 + d^3). The registry returns the similarity
  ``||X^T Y||_*`` in [0, 1]; the distance is ``2 - 2 * similarity``
  (:func:`procrustes_distance`), so ``impact("procrustes", X, Y)`` is half of it.

Many comparisons with one representation (the drift of every seed against one
pre-trained state, or the alignment of every target with the source) need not
redo its share of the work: :func:`prepare` checks and reduces a
representation once (centred copy, self-term, or centred RBF kernel), and
every metric accepts the resulting :class:`Prepared` in place of an array.
With both sides prepared, a linear CKA costs one ``d1 x d2`` product.

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
import weakref
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
# Metrics that work on the centred features; rbf_cka works on a centred kernel.
_LINEAR_FAMILY = ("linear_cka", "debiased_cka", "procrustes")


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


def _self_product(xc: np.ndarray) -> np.ndarray:
    """The smaller of ``xc^T xc`` and ``xc xc^T``, by one symmetric rank-k update (BLAS syrk).

    numpy runs ``a.T @ a`` on one buffer as ``dsyrk`` (half the flops of a
    general product) and mirrors the computed triangle, so the result is the
    full symmetric matrix and its Frobenius norm needs no triangle
    bookkeeping. Measured on the study's machine, this was 6-8% faster than
    calling ``scipy.linalg.blas.dsyrk`` (which fills one triangle), because
    numpy and scipy bundle different OpenBLAS builds (see
    ``bench/bench_cka.py``, ``machine.blas``).
    """
    return xc.T @ xc if xc.shape[1] <= xc.shape[0] else xc @ xc.T


def _centre_once(arr: np.ndarray, self_term: bool) -> tuple[np.ndarray, np.ndarray, float, float | None]:
    # float64 accumulation even for float32 input: a float32 column sum over
    # thousands of rows loses digits that CKA's 1e-6 budget needs. NaN/inf and
    # overflow are dealt with by the caller, so their warnings are noise here.
    with np.errstate(invalid="ignore", over="ignore"):
        mu = arr.mean(axis=0, dtype=np.float64)
        xc = np.empty(arr.shape, dtype=np.float64)
        np.subtract(arr, mu, out=xc)
        if not self_term:
            return xc, mu, math.sqrt(float(np.vdot(xc, xc))), None
        # The diagonal of X^T X (or X X^T) holds the squared norms: ||X||_F^2 is its trace, no extra pass.
        gram = _self_product(xc)
        return xc, mu, math.sqrt(max(float(np.trace(gram)), 0.0)), _sq_fro(gram)


def _centre(arr: np.ndarray, rtol: float, name: str, self_term: bool) -> tuple[np.ndarray, float, float | None]:
    """Centre the columns of ``arr`` ``(n_items, n_features)`` in float64; reject NaN/inf or constant input.

    Returns ``(xc, norm, self_sq)``: the centred matrix (possibly times a
    positive constant, which no metric here sees), its Frobenius norm and,
    if ``self_term``, ``||xc^T xc||_F^2`` (else None).
    """
    xc, mu, norm, self_sq = _centre_once(arr, self_term)
    if not (np.isfinite(mu).all() and _SAFE_NORM[0] < norm < _SAFE_NORM[1]):
        # Rare path: a NaN/inf, or magnitudes whose squares leave float64's range.
        _check_finite(arr, name)
        peak = float(np.abs(arr).max())
        if peak > 0:
            xc, mu, norm, self_sq = _centre_once(arr / peak, self_term)
    total = math.hypot(norm, math.sqrt(arr.shape[0]) * float(np.linalg.norm(mu)))
    if norm <= rtol * total:
        raise RepresentationError(
            f"{name} is constant across items (all {arr.shape[0]} rows equal up to rounding: "
            f"||{name} - mean||_F = {norm:.3g} <= {rtol:.2g} * ||{name}||_F); similarity is undefined "
            f"for a representation that does not vary, e.g. the first-token vector at layer 0"
        )
    return xc, norm, self_sq


# -- prepared representations -------------------------------------------------
class Prepared:
    """One representation checked and reduced once, for many comparisons (made by :func:`prepare`).

    Attributes:
        metric: the metric it was prepared for; ``linear_cka``,
            ``debiased_cka`` and ``procrustes`` share one preparation.
        n_items: number of items (rows).
        n_features: number of features of the original input.
        name: label used in error messages.
        centred: float64 ``(n_items, n_features)``, column-centred, possibly
            times a positive constant; None for ``rbf_cka``.
        norm: ``||centred||_F`` (None for ``rbf_cka``).
        kernel: ``rbf_cka`` only: the double-centred RBF Gram matrix
            ``(n_items, n_items)``; else None.
        sigma_frac: ``rbf_cka`` only: the bandwidth fraction of ``kernel``.
    """

    def __init__(self, metric: str, n_items: int, n_features: int, name: str, *, centred: np.ndarray | None = None,
                 norm: float | None = None, self_sq: float | None = None, kernel: np.ndarray | None = None,
                 sigma_frac: float | None = None):
        self.metric, self.n_items, self.n_features, self.name = metric, n_items, n_features, name
        self.centred, self.norm, self.kernel, self.sigma_frac = centred, norm, kernel, sigma_frac
        self._self_sq, self._diag = self_sq, None
        # <K, L> with each partner, so linear and debiased CKA of one pair share a product.
        self._cross: weakref.WeakKeyDictionary[Prepared, dict[bool, float]] = weakref.WeakKeyDictionary()

    @property
    def self_sq(self) -> float:
        """``<K, K>``: ``||HKH||_F^2`` for RBF, else ``||centred^T centred||_F^2`` (computed on first use)."""
        if self._self_sq is None:
            self._self_sq = _sq_fro(_self_product(self.centred))
        return self._self_sq

    @property
    def diag(self) -> np.ndarray:
        """Squared row norms of ``centred``, shape ``(n_items,)``: the diagonal of ``K`` (debiased CKA)."""
        if self._diag is None:
            self._diag = np.einsum("ij,ij->i", self.centred, self.centred)
        return self._diag

    def __repr__(self) -> str:
        return f"Prepared({self.metric!r}, n_items={self.n_items}, n_features={self.n_features}, name={self.name!r})"


def _build(arr: np.ndarray, rtol: float, metric: str, name: str, sigma_frac: float) -> Prepared:
    n, d = arr.shape
    xc, norm, self_sq = _centre(arr, rtol, name, self_term=metric in ("linear_cka", "debiased_cka"))
    if metric != "rbf_cka":
        return Prepared(metric, n, d, name, centred=xc, norm=norm, self_sq=self_sq)
    kernel = _rbf_gram(xc, sigma_frac, name)
    return Prepared(metric, n, d, name, kernel=kernel, self_sq=_sq_fro(kernel), sigma_frac=sigma_frac)


def _check_sigma(sigma_frac: Any) -> float:
    if not (isinstance(sigma_frac, numbers.Real) and math.isfinite(sigma_frac) and sigma_frac > 0):
        raise ValueError(f"sigma_frac must be a positive finite number; got {sigma_frac!r}")
    return float(sigma_frac)


def prepare(X: Any, metric: str = "linear_cka", *, name: str = "X", sigma_frac: float = 1.0) -> Prepared:
    """Check and reduce ``X`` once for many comparisons with ``metric``.

    For the linear metrics: the float64 centred copy and (``linear_cka``,
    ``debiased_cka``) the self-term ``||X^T X||_F^2``; for ``rbf_cka`` the
    centred kernel (``n_items^2`` floats). Pass the result to any metric of
    the same family in place of ``X``; results equal the unprepared call.

    Args:
        X: shape ``(n_items, d)``, numpy array or torch tensor.
        metric: a key of :data:`SIMILARITIES`.
        name: how error messages call this input.
        sigma_frac: ``rbf_cka`` only, as in :func:`rbf_cka`.

    Returns:
        A :class:`Prepared`.
    """
    lookup(metric)
    sigma = _check_sigma(sigma_frac) if metric == "rbf_cka" else 1.0
    arr, rtol = _as_matrix(X, name)
    if arr.shape[0] < MIN_ITEMS:
        raise RepresentationError(f"{name} needs at least {MIN_ITEMS} items (centring leaves nothing); "
                                  f"got {arr.shape[0]}")
    return _build(arr, rtol, metric, name, sigma)


def _compatible(p: Prepared, metric: str, sigma_frac: float) -> Prepared:
    if (p.metric in _LINEAR_FAMILY) != (metric in _LINEAR_FAMILY) or (metric == "rbf_cka" and p.sigma_frac != sigma_frac):
        had = f"{p.metric!r}" + (f", sigma_frac={p.sigma_frac}" if p.metric == "rbf_cka" else "")
        need = f"{metric!r}" + (f", sigma_frac={sigma_frac}" if metric == "rbf_cka" else "")
        raise ValueError(f"{p.name} was prepared with ({had}); {metric} needs prepare(..., {need})")
    return p


def _operands(X: Any, Y: Any, metric: str, min_items: int, sigma_frac: float = 1.0) -> tuple[Prepared, Prepared]:
    """Validate a pair (arrays or :class:`Prepared`), then prepare what is not yet prepared."""
    raw = [(v, None) if isinstance(v, Prepared) else _as_matrix(v, label) for v, label in ((X, "X"), (Y, "Y"))]
    nx, ny = (v.n_items if isinstance(v, Prepared) else v.shape[0] for v, _ in raw)
    if nx != ny:
        raise RepresentationError(f"X has {nx} items (rows) but Y has {ny}; both must describe the same items")
    if nx < min_items:
        why = "its unbiased HSIC divides by n(n-3)" if min_items > MIN_ITEMS else "centring leaves nothing"
        raise RepresentationError(f"{metric} needs at least {min_items} items ({why}); got {nx}")
    return tuple(_compatible(v, metric, sigma_frac) if rtol is None else _build(v, rtol, metric, label, sigma_frac)
                 for (v, rtol), label in zip(raw, ("X", "Y")))


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


def _cross_term(px: Prepared, py: Prepared, method: str) -> float:
    """``<K, L>`` for ``K = x x^T``, ``L = y y^T`` (Frobenius product) of two centred inputs.

    In feature space ``<K, L> = ||y^T x||_F^2`` (Kornblith et al. 2019): one
    general product, no ``n x n`` matrix. The self-terms ``<K, K>``,
    ``<L, L>`` are each input's :attr:`Prepared.self_sq`.
    """
    x, y = px.centred, py.centred
    gram = _use_gram(method, x.shape[0], x.shape[1], y.shape[1])
    known = px._cross.get(py, {}).get(gram, py._cross.get(px, {}).get(gram))
    if known is None:
        known = float(np.vdot(x @ x.T, y @ y.T)) if gram else _sq_fro(y.T @ x)
        px._cross.setdefault(py, {})[gram] = known
    return known


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

    Cost: one float64 centred copy per input, a symmetric rank-k update (BLAS
    syrk) per input for ``||X^T X||_F`` (``n d^2`` flops; ``n^2 d`` with
    ``X X^T`` when ``d > n``) and one general product (gemm) for ``Y^T X``
    (``2 n d1 d2``):
    about ``4 n d^2`` flops against ``2 n^2 d`` plus several ``n x n``
    passes for the Gram form. Prepared inputs (:func:`prepare`) skip their
    share.

    Args:
        X: shape ``(n_items, d1)``, numpy array, torch tensor or :class:`Prepared`.
        Y: shape ``(n_items, d2)``.
        method: how the cross term is formed: ``"feature"`` (``Y^T X``,
            O(n d1 d2)), ``"gram"`` (``n x n`` products, O(n^2 d)) or
            ``"auto"``: the Gram form when ``d1 + d2 > n``, the feature form
            otherwise.

    Returns:
        Linear CKA.
    """
    _check_method(method)
    px, py = _operands(X, Y, "linear_cka", MIN_ITEMS)
    return _ratio(_cross_term(px, py, method), px.self_sq, py.self_sq, "linear_cka")


def linear_cka_many(X: Any, Ys: Sequence[Any], *, method: str = "auto", progress: bool = False) -> np.ndarray:
    """Linear CKA of one representation against several, preparing ``X`` once.

    Args:
        X: shape ``(n_items, d)``, array, tensor or :class:`Prepared` (e.g. a
            pre-trained state).
        Ys: each of shape ``(n_items, d_k)`` (e.g. that state after
            fine-tuning with each seed), arrays, tensors or :class:`Prepared`.
        method: as in :func:`linear_cka`.
        progress: show a progress bar over ``Ys``.

    Returns:
        Float64 array of shape ``(len(Ys),)``.
    """
    _check_method(method)
    px = X if isinstance(X, Prepared) else prepare(X, "linear_cka")
    return np.array([linear_cka(px, Y, method=method) for Y in tqdm(Ys, desc="linear_cka", disable=not progress)],
                    dtype=np.float64)


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
        X: shape ``(n_items, d1)``, at least :data:`MIN_ITEMS_DEBIASED` items
            (array, tensor or :class:`Prepared`).
        Y: shape ``(n_items, d2)``.
        method: as in :func:`linear_cka`.

    Returns:
        Debiased CKA. Raises :class:`RepresentationError` where it is
        undefined: ``HSIC_1(K, K) <= 0`` (e.g. one-hot items, ``X = I``).
    """
    _check_method(method)
    px, py = _operands(X, Y, "debiased_cka", MIN_ITEMS_DEBIASED)
    n = px.n_items
    xy, xx, yy = _cross_term(px, py, method), px.self_sq, py.self_sq
    dx, dy = px.diag, py.diag
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
        X: shape ``(n_items, d1)``, array, tensor or :class:`Prepared` (made
            with the same ``sigma_frac``).
        Y: shape ``(n_items, d2)``.
        sigma_frac: positive, finite fraction of the median distance.

    Returns:
        RBF CKA.
    """
    px, py = _operands(X, Y, "rbf_cka", MIN_ITEMS, _check_sigma(sigma_frac))
    return _ratio(float(np.vdot(px.kernel, py.kernel)), px.self_sq, py.self_sq, "rbf_cka")


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
    px, py = _operands(X, Y, "procrustes", MIN_ITEMS)
    cross = _thin(px.centred).T @ _thin(py.centred)
    nuclear = np.linalg.svd(cross, compute_uv=False).sum() / (px.norm * py.norm)
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


def lookup(name: str) -> Callable[..., float]:
    """The metric function registered as ``name``.

    Raises:
        ValueError: ``name`` is not a key of :data:`SIMILARITIES` (the message lists the valid names).
    """
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
    return lookup(name)(X, Y, **kwargs)


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
    metric = lookup(name)
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


# -- prepared stacks of layers ------------------------------------------------
def preparation(metric: str, metrics: Sequence[str]) -> str:
    """The metric to :func:`prepare` for, so that one preparation serves all of ``metrics`` in its family.

    ``rbf_cka`` has its own kernel. The linear family (:data:`_LINEAR_FAMILY`)
    shares one centred copy; it is prepared for ``linear_cka`` (self-term
    computed with the centring) unless ``procrustes`` is the only linear metric
    asked for, which needs no self-term.

    Args:
        metric: the metric about to be scored.
        metrics: every metric the prepared input will serve.

    Returns:
        ``"rbf_cka"``, ``"linear_cka"`` or ``"procrustes"``.
    """
    lookup(metric)
    if metric not in _LINEAR_FAMILY:
        return metric
    linear = [m for m in metrics if m in _LINEAR_FAMILY]
    return "procrustes" if all(m == "procrustes" for m in linear) else "linear_cka"


class PreparedStack:
    """A stack of per-layer representations, each layer prepared on first use and kept for every metric.

    Comparing one stack with many others (the pre-trained state against each
    seed's fine-tuned state, the source against every target) then checks and
    reduces each of its layers once per metric family.

    Args:
        arrays: shape ``(n_layers, n_items, d)`` (array, tensor or a sequence of 2-D arrays).
        label: how error messages name the stack (e.g. ``"pre e5 [de, cls]"``).
        metrics: keys of :data:`SIMILARITIES` the stack will be scored with.
    """

    def __init__(self, arrays: Any, label: str, metrics: Sequence[str]):
        for m in metrics:
            lookup(m)
        self.arrays, self.label, self.metrics = arrays, label, tuple(metrics)
        self._cache: dict[tuple[int, str], Prepared] = {}

    def get(self, layer: int, metric: str) -> Prepared:
        """Layer ``layer`` prepared for ``metric`` (see :func:`preparation`)."""
        how = preparation(metric, self.metrics)
        key = (layer, how)
        if key not in self._cache:
            self._cache[key] = prepare(self.arrays[layer], how, name=f"{self.label} layer {layer}")
        return self._cache[key]

    def similarity(self, other: PreparedStack, layer: int, metric: str) -> float:
        """``similarity(metric)`` of this stack's and ``other``'s layer ``layer``.

        Raises:
            RepresentationError: the layer cannot be scored; the message names both stacks and the layer.
        """
        try:
            return similarity(metric, self.get(layer, metric), other.get(layer, metric))
        except RepresentationError as err:
            raise RepresentationError(f"{metric} of {self.label} vs {other.label}, layer {layer}: {err}") from err
