"""Representation-level instability: distances between two m x d matrices of hidden states.

Du & Nguyen, "Measuring the Instability of Fine-Tuning", ACL 2023 (arXiv 2302.07778), section on
representation-level measures: per layer, the first-token hidden state of each instance (embeddings and
pooler excluded), distance between the m x d matrices of two runs, averaged over unordered pairs of runs.

Distances (each 0 for identical inputs, each invariant to orthogonal transformations of the feature space
and to isotropic scaling; rows are instances, columns features):

* ``svcca_distance``  (Raghu et al. 2017): 1 - mean canonical correlation after an SVD reduction.
* ``procrustes_distance`` (orthogonal Procrustes, OP): 1 - ||X^T Y||_* after centring and unit-norm scaling.
* ``cka_distance`` (Kornblith et al. 2019): 1 - linear CKA with the unbiased HSIC estimator
  (Song et al. 2012), as Du & Nguyen use it.

OP and CKA are not invariant to general (non-orthogonal) invertible linear maps; CCA is, so SVCCA is
invariant to them up to the SVD truncation. OP and CKA are invariant to translating every instance by
the same vector (OP centres; CKA's U-centring removes it). SVCCA is not exactly: its SVD reduction is
uncentred (as METHODS.md specifies), so a shift can change which directions are kept.

Pure numpy; numerically stable formulations (SVD / QR), no explicit matrix inverses.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = [
    "svcca_distance",
    "procrustes_distance",
    "cka_distance",
    "pairwise_layer_distances",
    "REPRESENTATION_DISTANCES",
]


def _check_pair(X, Y, min_rows: int = 2) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if X.ndim != 2 or Y.ndim != 2:
        raise ValueError(f"X and Y must be 2-D (instances, features), got shapes {X.shape} and {Y.shape}")
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X and Y must have the same instances (rows): {X.shape[0]} != {Y.shape[0]}")
    if X.shape[0] < min_rows:
        raise ValueError(f"need at least {min_rows} instances (rows), got {X.shape[0]}")
    if X.shape[1] == 0 or Y.shape[1] == 0:
        raise ValueError("X and Y need at least one feature (column)")
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(Y))):
        raise ValueError("X and Y must be finite")
    return X, Y


# --------------------------------------------------------------------------------------------------
# SVCCA
# --------------------------------------------------------------------------------------------------


def _svcca_basis(X: np.ndarray, threshold: float) -> np.ndarray:
    """Orthonormal basis (m x r) of the centred, SVD-reduced X."""
    # 1. uncentred SVD; keep the leading k directions, k the smallest number whose cumulative sum of
    #    singular values (not squared) reaches `threshold` of the total.
    U, s, _ = np.linalg.svd(X, full_matrices=False)
    total = s.sum()
    if total <= 0:
        raise ValueError("a representation matrix is all zeros; SVCCA is undefined")
    frac = np.cumsum(s) / total
    k = int(np.searchsorted(frac, threshold - 1e-12) + 1)
    k = min(k, s.shape[0])
    reduced = U[:, :k] * s[:k]  # = X V_k, the projection on the leading right singular vectors
    # 2. centre the reduced matrix; orthonormal basis of its column space by SVD with a rank cut
    reduced = reduced - reduced.mean(axis=0, keepdims=True)
    Q, sv, _ = np.linalg.svd(reduced, full_matrices=False)
    if sv.size == 0 or sv[0] <= 0:
        raise ValueError("a representation matrix is constant over instances; SVCCA is undefined")
    rank = int(np.sum(sv > sv[0] * max(reduced.shape) * np.finfo(np.float64).eps))
    return Q[:, :rank]


def _cca_mean_corr(Qx: np.ndarray, Qy: np.ndarray) -> float:
    # canonical correlations are the singular values of Qx^T Qy (Bjorck & Golub 1973)
    rho = np.linalg.svd(Qx.T @ Qy, compute_uv=False)
    rho = np.clip(rho[: min(Qx.shape[1], Qy.shape[1])], 0.0, 1.0)
    return float(rho.mean())


def svcca_distance(X, Y, *, threshold: float = 0.99) -> float:
    """SVCCA distance: 1 - mean canonical correlation of the SVD-reduced representations.

    Parameters
    ----------
    X, Y : array-like of shape (m, d1) and (m, d2)
        Hidden states of two runs on the same m instances (rows), finite.
    threshold : float in (0, 1], default=0.99
        Share of the sum of singular values the SVD reduction keeps.

    Returns
    -------
    float
        ``1 - mean(rho)``, in [0, 1]; 0 for identical inputs.

    Notes
    -----
    1. Reduce each matrix by an *uncentred* SVD ``X = U S V^T``, keeping the leading k directions, k the
       smallest number with ``sum_{i<=k} s_i / sum_i s_i >= threshold`` (singular values, not squared;
       reading of METHODS.md "cumulative sum ... stays within 99%": we keep directions until the 99% is
       reached, including the one that crosses it, as the anatome/SVCCA implementations do).
    2. Centre the reduced matrices ``X V_k`` (columns), CCA between them by the QR/SVD method: with
       orthonormal bases Qx, Qy of their column spaces, the canonical correlations are the singular values
       of ``Qx^T Qy`` (Bjorck & Golub 1973); there are min(rank_x, rank_y) of them.
    3. ``d = 1 - mean(rho)``.

    Invariant to orthogonal maps and isotropic scaling of the features. Not exactly invariant to
    translation (the reduction is uncentred).

    References
    ----------
    Raghu, Gilmer, Yosinski & Sohl-Dickstein, "SVCCA: Singular Vector Canonical Correlation Analysis for Deep
    Learning Dynamics and Interpretability", NeurIPS 2017;
    Du & Nguyen, "Measuring the Instability of Fine-Tuning", ACL 2023 (arXiv 2302.07778):
    representation-level measures.
    """
    X, Y = _check_pair(X, Y)
    if not (0.0 < threshold <= 1.0):
        raise ValueError(f"threshold must lie in (0, 1], got {threshold}")
    return float(1.0 - _cca_mean_corr(_svcca_basis(X, threshold), _svcca_basis(Y, threshold)))


# --------------------------------------------------------------------------------------------------
# orthogonal Procrustes
# --------------------------------------------------------------------------------------------------


def _op_prepare(X: np.ndarray) -> np.ndarray:
    Xc = X - X.mean(axis=0, keepdims=True)
    nrm = np.linalg.norm(Xc)
    if nrm == 0:
        raise ValueError("a representation matrix is constant over instances; Procrustes distance is undefined")
    return Xc / nrm


def _op_pair(Xn: np.ndarray, Yn: np.ndarray) -> float:
    nuc = np.linalg.svd(Xn.T @ Yn, compute_uv=False).sum()
    return float(max(1.0 - nuc, 0.0))


def procrustes_distance(X, Y) -> float:
    """Orthogonal Procrustes distance between two representation matrices.

    Parameters
    ----------
    X, Y : array-like of shape (m, d1) and (m, d2)
        Hidden states of two runs on the same m instances (rows), finite, not constant.

    Returns
    -------
    float
        ``1 - ||X^T Y||_*`` after centring columns and scaling each matrix to unit Frobenius norm; in [0, 1].

    Notes
    -----
    ``1 - ||X^T Y||_* = min_R ||X - Y R||_F^2 / 2`` over orthogonal R (the nuclear norm is the sum of the
    singular values of the d1 x d2 cross product). Du & Nguyen's normalisation; Ding et al. 2021 report
    twice this. Invariant to orthogonal maps, isotropic scaling and translation; not to general linear maps.

    References
    ----------
    Ding, Denain & Steinhardt, "Grounding Representation Similarity with Statistical Testing", NeurIPS 2021;
    Du & Nguyen, "Measuring the Instability of Fine-Tuning", ACL 2023 (arXiv 2302.07778):
    representation-level measures.
    """
    X, Y = _check_pair(X, Y)
    return _op_pair(_op_prepare(X), _op_prepare(Y))


# --------------------------------------------------------------------------------------------------
# linear CKA, unbiased HSIC
# --------------------------------------------------------------------------------------------------


def _cka_prepare(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(X, row squared norms, column sums, unbiased HSIC(X, X))."""
    # centring columns changes nothing in the unbiased estimator (U-centring removes it) but improves
    # floating-point accuracy
    X = X - X.mean(axis=0, keepdims=True)
    r = np.einsum("ij,ij->i", X, X)
    colsum = X.sum(axis=0)
    return X, r, colsum, _hsic_unbiased(X, r, colsum, X, r, colsum)


def _hsic_unbiased(X, rx, sx, Y, ry, sy) -> float:
    """Unbiased HSIC of linear kernels K = X X^T, L = Y Y^T (Song et al. 2012), without forming m x m Grams.

    With K~, L~ the Grams with zeroed diagonals::

        HSIC = [tr(K~ L~) + (1^T K~ 1)(1^T L~ 1) / ((m-1)(m-2)) - 2/(m-2) 1^T K~ L~ 1] / (m (m-3))

    and, for linear kernels, tr(K~ L~) = ||X^T Y||_F^2 - sum_i |x_i|^2 |y_i|^2,
    1^T K~ 1 = |sum_i x_i|^2 - sum_i |x_i|^2, (K~ 1)_i = x_i . (sum_j x_j) - |x_i|^2.
    """
    m = X.shape[0]
    xty = X.T @ Y
    tr = float(np.sum(xty * xty) - np.dot(rx, ry))
    k1 = float(sx @ sx - rx.sum())
    l1 = float(sy @ sy - ry.sum())
    kv = X @ sx - rx
    lv = Y @ sy - ry
    cross = float(kv @ lv)
    return (tr + k1 * l1 / ((m - 1) * (m - 2)) - 2.0 * cross / (m - 2)) / (m * (m - 3))


def _cka_pair(px, py) -> float:
    X, rx, sx, hxx = px
    Y, ry, sy, hyy = py
    hxy = _hsic_unbiased(X, rx, sx, Y, ry, sy)
    den = hxx * hyy
    if not den > 0:
        return float("nan")
    return float(1.0 - hxy / np.sqrt(den))


def cka_distance(X, Y) -> float:
    """1 - linear CKA with the unbiased HSIC estimator.

    Parameters
    ----------
    X, Y : array-like of shape (m, d1) and (m, d2)
        Hidden states of two runs on the same m >= 4 instances (rows), finite.

    Returns
    -------
    float
        ``1 - CKA``; NaN when a self-HSIC estimate is not positive (possible only for tiny m). The unbiased
        CKA can be slightly negative, so the distance can slightly exceed 1.

    Notes
    -----
    ``CKA = HSIC_u(K, L) / sqrt(HSIC_u(K, K) HSIC_u(L, L))`` with linear kernels K = X X^T, L = Y Y^T, the
    Gram diagonals set to zero (K~, L~) and::

        HSIC_u = [tr(K~ L~) + (1^T K~ 1)(1^T L~ 1) / ((m-1)(m-2)) - 2/(m-2) 1^T K~ L~ 1] / (m (m-3))

    computed in O(m d1 d2) without m x m matrices. Invariant to orthogonal maps, isotropic scaling and
    translation; not to general linear maps. 0 for identical inputs.

    References
    ----------
    Kornblith, Norouzi, Lee & Hinton, "Similarity of Neural Network Representations Revisited", ICML 2019;
    Song, Smola, Gretton, Bedo & Borgwardt, "Feature Selection via Dependence Maximization", JMLR 13, 2012
    (unbiased HSIC); Nguyen, Raghu & Kornblith, "Do Wide and Deep Networks Learn the Same Things?", ICLR 2021;
    Du & Nguyen, "Measuring the Instability of Fine-Tuning", ACL 2023 (arXiv 2302.07778):
    representation-level measures.
    """
    X, Y = _check_pair(X, Y, min_rows=4)
    return _cka_pair(_cka_prepare(X), _cka_prepare(Y))


# --------------------------------------------------------------------------------------------------
# many runs x layers
# --------------------------------------------------------------------------------------------------

#: the representation distances by name, in reporting order (the analysis computes each of them per layer)
REPRESENTATION_DISTANCES: dict[str, Callable[..., float]] = {
    "svcca": svcca_distance,
    "procrustes": procrustes_distance,
    "cka": cka_distance,
}

_PREPARED = {
    "svcca": (lambda X: _svcca_basis(X, 0.99), lambda a, b: 1.0 - _cca_mean_corr(a, b)),
    "procrustes": (_op_prepare, _op_pair),
    "cka": (_cka_prepare, _cka_pair),
}


def pairwise_layer_distances(reps, *, measure: str | Callable[[np.ndarray, np.ndarray], float] = "cka") -> np.ndarray:
    """Representation instability per layer: the mean distance over unordered pairs of runs.

    Parameters
    ----------
    reps : array-like of shape (n_runs, L, m, d)
        The first-token hidden state of each instance at each layer (embeddings and pooler excluded by
        the caller), n_runs >= 2.
    measure : str or callable, default="cka"
        A name of ``REPRESENTATION_DISTANCES`` (``"svcca"`` with threshold 0.99, ``"procrustes"``,
        ``"cka"``) or a callable ``f(X, Y) -> float``.

    Returns
    -------
    ndarray of shape (L,)
        ``D_l = (2 / (n (n-1))) sum_{i<j} d(reps[i, l], reps[j, l])``.

    Notes
    -----
    Only pairs of distinct runs enter (no zero-distance self-pairs); a seed bootstrap that duplicates runs
    must therefore pass distinct runs, not resampled copies. Each run's matrix is prepared once per layer
    (SVD basis, centring), then every pair is compared.

    References
    ----------
    Du & Nguyen, "Measuring the Instability of Fine-Tuning", ACL 2023 (arXiv 2302.07778):
    representation-level measures.
    """
    reps = np.asarray(reps, dtype=np.float64)
    if reps.ndim != 4:
        raise ValueError(f"reps must be 4-D (runs, layers, instances, features), got shape {reps.shape}")
    n, L, m, d = reps.shape
    if n < 2:
        raise ValueError(f"need at least 2 runs to form pairs, got {n}")
    if callable(measure):
        prep, pair = (lambda X: X), measure
    else:
        if measure not in _PREPARED:
            raise ValueError(f"unknown measure {measure!r} (valid: {', '.join(_PREPARED)})")
        if measure == "cka" and m < 4:
            raise ValueError(f"cka needs at least 4 instances, got {m}")
        if not np.all(np.isfinite(reps)):
            raise ValueError("reps must be finite")
        prep, pair = _PREPARED[measure]
    out = np.empty(L)
    for layer in range(L):
        prepared = [prep(reps[i, layer]) for i in range(n)]
        vals = [pair(prepared[i], prepared[j]) for i in range(n) for j in range(i + 1, n)]
        out[layer] = float(np.mean(vals))
    return out
