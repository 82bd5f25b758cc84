"""Tests of the CCA baselines: hand values, invariances, a slow whitening-based reference."""

import math

import numpy as np
import pytest

from gbs_core.metrics import (
    canonical_correlations,
    linear_regression_similarity,
    mean_cca,
    mean_squared_cca,
    pwcca,
    svcca,
)


def inv_sqrt(C):
    w, V = np.linalg.eigh(C)
    return V @ np.diag(w**-0.5) @ V.T


def slow_cca(X, Y):
    """Classical CCA: SVD of Cxx^-1/2 Cxy Cyy^-1/2 (full-rank inputs); returns rho and the X canonical variables."""
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    Wx, Wy = inv_sqrt(Xc.T @ Xc), inv_sqrt(Yc.T @ Yc)
    U, rho, _ = np.linalg.svd(Wx @ Xc.T @ Yc @ Wy)
    m = min(X.shape[1], Y.shape[1])
    return rho[:m], Xc @ Wx @ U[:, :m]


def slow_pwcca(X, Y):
    rho, H = slow_cca(X, Y)
    alpha = np.array(
        [sum(abs(np.corrcoef(H[:, i], X[:, j])[0, 1]) for j in range(X.shape[1])) for i in range(len(rho))]
    )
    return float(alpha @ rho / alpha.sum())


def slow_regression_r2(X, Y):
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    B, *_ = np.linalg.lstsq(Yc, Xc, rcond=None)
    return 1 - np.sum((Xc - Yc @ B) ** 2) / np.sum(Xc**2)


a = np.array([1.0, -1.0, 0.0, 0.0])
b = np.array([0.0, 0.0, 1.0, -1.0])
c = np.array([1.0, 1.0, -1.0, -1.0])  # centred, orthogonal to a and b


def test_hand_values_one_dimensional():
    # corr(x, y) for x = 0..3, y = (0,1,0,1): x.y = 1, |x|^2 = 5, |y|^2 = 1 after centring -> 1/sqrt5.
    x, y = np.arange(4.0)[:, None], np.array([[0.0], [1.0], [0.0], [1.0]])
    assert mean_cca(x, y) == pytest.approx(1 / math.sqrt(5), abs=1e-15)
    assert mean_squared_cca(x, y) == pytest.approx(1 / 5, abs=1e-15)
    assert pwcca(x, y) == pytest.approx(1 / math.sqrt(5), abs=1e-15)
    assert linear_regression_similarity(x, y) == pytest.approx(1 / 5, abs=1e-15)


def test_hand_values_subspaces():
    X = np.stack([a, b], 1)
    # y = a + c: its projection on span(a, b) is a, rho = |a| / |y| = sqrt2 / sqrt6.
    assert canonical_correlations(X, (a + c)[:, None]) == pytest.approx([1 / math.sqrt(3)], abs=1e-15)
    # span(a, b) vs span(b, c): rho = (1, 0).
    Y = np.stack([b, c], 1)
    np.testing.assert_allclose(canonical_correlations(X, Y), [1.0, 0.0], atol=1e-15)
    assert mean_cca(X, Y) == pytest.approx(0.5, abs=1e-15)
    assert mean_squared_cca(X, Y) == pytest.approx(0.5, abs=1e-15)
    # SVCCA: X = [10a, 0.5b] keeps only a (200 / 200.5 > 0.99); a is orthogonal to span(b, c): 0.
    Xs = np.stack([10 * a, 0.5 * b], 1)
    assert svcca(Xs, Y) == pytest.approx(0.0, abs=1e-15)
    assert svcca(Xs, Y, variance=1.0) == pytest.approx(0.5, abs=1e-15)
    # Regression: X = [a, b] (|X|^2 = 4) from y = a: R^2 = 2/4; y from X: 1. Symmetrised 3/4.
    assert linear_regression_similarity(X, a[:, None], symmetric=False) == pytest.approx(0.5, abs=1e-15)
    assert linear_regression_similarity(X, a[:, None]) == pytest.approx(0.75, abs=1e-15)


@pytest.mark.parametrize("seed", range(4))
def test_match_slow_implementations(seed):
    rng = np.random.default_rng(seed)
    n, dx, dy = 60, int(rng.integers(2, 6)), int(rng.integers(2, 6))
    X = rng.normal(size=(n, dx))
    Y = X @ rng.normal(size=(dx, dy)) + rng.normal(size=(n, dy)) + 3.0
    rho, _ = slow_cca(X, Y)
    np.testing.assert_allclose(canonical_correlations(X, Y), rho, atol=1e-12)
    assert mean_cca(X, Y) == pytest.approx(rho.mean(), abs=1e-12)
    assert mean_squared_cca(X, Y) == pytest.approx((rho**2).mean(), abs=1e-12)
    assert pwcca(X, Y) == pytest.approx(slow_pwcca(X, Y), abs=1e-12)
    assert linear_regression_similarity(X, Y, symmetric=False) == pytest.approx(slow_regression_r2(X, Y), abs=1e-12)
    assert svcca(X, Y, variance=1.0) == pytest.approx(rho.mean(), abs=1e-12)


def test_properties():
    rng = np.random.default_rng(9)
    X = rng.normal(size=(50, 4))
    Y = np.tanh(X @ rng.normal(size=(4, 6))) + 0.5 * rng.normal(size=(50, 6))
    M = rng.normal(size=(4, 4)) + 3 * np.eye(4)  # invertible: CCA is invariant to it
    for f in (mean_cca, mean_squared_cca, svcca, linear_regression_similarity):
        base = f(X, Y)
        assert f(Y, X) == pytest.approx(base, abs=1e-12)
        assert f(X, X) == pytest.approx(1.0, abs=1e-12)
        assert 0.0 <= base <= 1.0
        if f in (mean_cca, mean_squared_cca):  # CCA: invariant to any invertible map and translation
            assert f(X @ M + 5.0, Y) == pytest.approx(base, abs=1e-10)
        Q, _ = np.linalg.qr(M)
        assert f(2.0 * X @ Q + 5.0, Y) == pytest.approx(base, abs=1e-10)
    # Regression fit of X is not invariant to a general invertible map of X (only of the predictor).
    assert abs(linear_regression_similarity(X @ M, Y) - linear_regression_similarity(X, Y)) > 1e-3
    assert pwcca(X, X) == pytest.approx(1.0, abs=1e-12)
    # Rank-deficient layer (a duplicated and a dead unit) gives the same as the full-rank one.
    Xd = np.column_stack([X, X[:, 0], np.zeros(50)])
    assert mean_cca(Xd, Y) == pytest.approx(mean_cca(X, Y), abs=1e-12)


def test_constant_layer_is_nan_with_warning():
    X = np.random.default_rng(0).normal(size=(10, 3))
    for f in (mean_cca, mean_squared_cca, svcca, pwcca, linear_regression_similarity):
        with pytest.warns(RuntimeWarning, match="constant"):
            assert math.isnan(f(X, np.ones((10, 2))))
    assert canonical_correlations(X, np.ones((10, 2))).size == 0


def test_errors():
    X = np.random.default_rng(1).normal(size=(10, 3))
    with pytest.raises(ValueError, match=r"variance must be in \(0, 1\]; got 0"):
        svcca(X, X, variance=0)
    with pytest.raises(ValueError, match="X has 10, Y has 9"):
        mean_cca(X, X[:9])
    with pytest.raises(ValueError, match="X has 1 samples; CCA needs at least 2"):
        pwcca(X[:1], X[:1])
