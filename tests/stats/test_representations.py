"""SVCCA, orthogonal Procrustes, linear CKA (unbiased): zeros, invariances, and non-invariances."""

import numpy as np
import pytest
from scipy.stats import ortho_group

from seedlab.stats import representations as rep

MEASURES = [rep.svcca_distance, rep.procrustes_distance, rep.cka_distance]


def _pair(seed=0, m=120, d=16):
    rng = np.random.default_rng(seed)
    # low-rank-ish structure plus noise, so the SVD truncation of SVCCA actually bites
    Z = rng.normal(size=(m, 6))
    X = Z @ rng.normal(size=(6, d)) + 0.3 * rng.normal(size=(m, d)) + 2.0
    Y = Z @ rng.normal(size=(6, d)) + 0.5 * rng.normal(size=(m, d)) - 1.0
    return X, Y


def _cka_gram_reference(X, Y):
    """Unbiased-HSIC CKA with explicit m x m Gram matrices (Song et al. 2012 formula)."""

    def hsic(K, L):
        m = K.shape[0]
        K = K.copy()
        L = L.copy()
        np.fill_diagonal(K, 0)
        np.fill_diagonal(L, 0)
        one = np.ones(m)
        return (np.trace(K @ L) + (one @ K @ one) * (one @ L @ one) / ((m - 1) * (m - 2))
                - 2 / (m - 2) * one @ K @ L @ one) / (m * (m - 3))

    K, L = X @ X.T, Y @ Y.T
    return 1 - hsic(K, L) / np.sqrt(hsic(K, K) * hsic(L, L))


@pytest.mark.parametrize("dist", MEASURES)
def test_zero_for_identical_inputs(dist):
    X, _ = _pair()
    assert abs(dist(X, X)) < 1e-6


@pytest.mark.parametrize("dist", MEASURES)
def test_invariant_to_rotation_scaling_translation(dist):
    X, Y = _pair(1)
    d0 = dist(X, Y)
    Q = ortho_group.rvs(X.shape[1], random_state=3)
    assert dist(X @ Q, Y) == pytest.approx(d0, abs=1e-8)
    assert dist(X, 7.5 * Y) == pytest.approx(d0, abs=1e-8)
    if dist is not rep.svcca_distance:  # SVCCA's SVD step is uncentred (METHODS.md), so not shift-invariant
        assert dist(X + 3.0, Y) == pytest.approx(d0, abs=1e-8)
    assert dist(Y, X) == pytest.approx(d0, abs=1e-8)  # symmetric
    assert 0 < d0 < 1


@pytest.mark.parametrize("dist", [rep.procrustes_distance, rep.cka_distance])
def test_not_invariant_to_general_linear_maps(dist):
    X, Y = _pair(2)
    rng = np.random.default_rng(5)
    A = rng.normal(size=(X.shape[1], X.shape[1])) + np.diag(np.linspace(0.1, 5, X.shape[1]))
    assert abs(dist(X @ A, Y) - dist(X, Y)) > 1e-3
    # an anisotropic scaling is also a non-orthogonal map
    assert abs(dist(X * np.linspace(0.2, 3, X.shape[1]), Y) - dist(X, Y)) > 1e-3


def test_cka_matches_explicit_gram_formula():
    X, Y = _pair(3, m=40, d=7)
    assert rep.cka_distance(X, Y) == pytest.approx(_cka_gram_reference(X, Y), abs=1e-10)


def test_procrustes_matches_orthogonal_alignment():
    X, Y = _pair(4)
    from scipy.linalg import orthogonal_procrustes

    Xc = X - X.mean(0)
    Yc = Y - Y.mean(0)
    Xc /= np.linalg.norm(Xc)
    Yc /= np.linalg.norm(Yc)
    R, _ = orthogonal_procrustes(Yc, Xc)
    # 1 - ||X^T Y||_* = min_R ||X - Y R||_F^2 / 2
    assert rep.procrustes_distance(X, Y) == pytest.approx(np.linalg.norm(Xc - Yc @ R) ** 2 / 2, abs=1e-10)


def test_svcca_cca_is_invariant_to_invertible_maps_without_truncation():
    X, Y = _pair(5, d=5)
    A = np.random.default_rng(0).normal(size=(5, 5)) + 3 * np.eye(5)
    # threshold 1.0 keeps every direction: plain CCA, which no invertible linear map changes
    assert rep.svcca_distance(X @ A, Y, threshold=1.0) == pytest.approx(rep.svcca_distance(X, Y, threshold=1.0), abs=1e-8)


def test_pairwise_layer_distances():
    rng = np.random.default_rng(6)
    n, L, m, d = 4, 3, 30, 5
    base = rng.normal(size=(L, m, d))
    noise = np.array([0.0, 0.3, 1.0])  # instability rising with depth
    reps = base[None] + noise[None, :, None, None] * rng.normal(size=(n, L, m, d))
    for name, fn in (("cka", rep.cka_distance), ("procrustes", rep.procrustes_distance), ("svcca", rep.svcca_distance)):
        out = rep.pairwise_layer_distances(reps, measure=name)
        assert out.shape == (L,)
        manual = [np.mean([fn(reps[i, layer], reps[j, layer]) for i in range(n) for j in range(i + 1, n)])
                  for layer in range(L)]
        assert np.allclose(out, manual, atol=1e-10)
        assert out[0] < 1e-6 and out[0] < out[1] < out[2]
    assert np.allclose(rep.pairwise_layer_distances(reps, measure=rep.cka_distance),
                       rep.pairwise_layer_distances(reps, measure="cka"))
    with pytest.raises(ValueError, match="unknown measure"):
        rep.pairwise_layer_distances(reps, measure="rsa")
    with pytest.raises(ValueError, match="at least 2 runs"):
        rep.pairwise_layer_distances(reps[:1], measure="cka")


def test_validation():
    with pytest.raises(ValueError, match="same instances"):
        rep.cka_distance(np.ones((5, 2)), np.ones((6, 2)))
    with pytest.raises(ValueError, match="constant"):
        rep.procrustes_distance(np.ones((5, 2)), np.random.default_rng(0).normal(size=(5, 2)))
    with pytest.raises(ValueError, match="at least 4"):
        rep.cka_distance(np.eye(3), np.eye(3))
