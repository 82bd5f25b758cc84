"""Tests of the CKA family: exact values, invariances, slow reference implementations, minibatch CKA."""

import itertools
import math

import numpy as np
import pytest
import torch

from gbs_core.metrics import (
    MinibatchCKA,
    cka_from_gram,
    gram_linear,
    gram_rbf,
    hsic_gretton,
    hsic_song,
    linear_cka,
    rbf_cka,
)

# --- slow, obvious implementations --------------------------------------------------------------------------------


def slow_hsic_biased(K, L):
    n = len(K)
    H = np.eye(n) - np.ones((n, n)) / n
    return np.trace(K @ H @ L @ H) / (n - 1) ** 2


def slow_hsic_unbiased(K, L):
    """The U-statistic over all ordered quadruples of distinct indices (Song et al. 2012), O(n^4)."""
    n = len(K)
    total = 0.0
    for i, j, q, r in itertools.permutations(range(n), 4):
        total += K[i, j] * L[i, j] + K[i, j] * L[q, r] - 2 * K[i, j] * L[i, q]
    return total / (n * (n - 1) * (n - 2) * (n - 3))


def slow_cka(K, L, hsic):
    return hsic(K, L) / math.sqrt(hsic(K, K) * hsic(L, L))


def slow_rbf_gram(X, frac):
    X = np.asarray(X, float)
    D2 = np.array([[np.sum((a - b) ** 2) for b in X] for a in X])
    return np.exp(-D2 / (2 * frac**2 * np.median(D2)))


def data(seed, n=30, dx=5, dy=7):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, dx))
    Y = X @ rng.normal(size=(dx, dy)) + 0.5 * rng.normal(size=(n, dy))
    return X, Y


def random_orthogonal(d, seed):
    Q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return Q


# Four points on the axes (centred) and a 1-D feature.
X4 = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
Y4 = np.array([[1.0], [0.0], [-1.0], [0.0]])


# --- exact values -------------------------------------------------------------------------------------------------


def test_linear_cka_hand_values():
    # X^T X = 2I (||.||_F = 2 sqrt 2), Y^T Y = 2, Y^T X = [2, 0]: CKA = 4 / (2 sqrt2 * 2) = 1/sqrt2.
    assert linear_cka(X4, Y4) == pytest.approx(1 / math.sqrt(2), abs=1e-15)
    # 1-D: CKA = squared correlation; x = 0..3 centred (-1.5,-.5,.5,1.5), y = (0,1,0,1) centred: (x.y)^2/(|x|^2|y|^2) = 1/5
    assert linear_cka([[0.0], [1.0], [2.0], [3.0]], [[0.0], [1.0], [0.0], [1.0]]) == pytest.approx(0.2, abs=1e-15)


def test_hsic_hand_values():
    K, L = X4 @ X4.T, Y4 @ Y4.T
    # Biased: K, L already centred; tr(KL) = 4, / (N-1)^2 = 4/9.
    assert hsic_gretton(K, L) == pytest.approx(4 / 9, abs=1e-15)
    # Unbiased: tr(K~L~) = 2, 1'K~1 = -4, 1'L~1 = -2, 1'K~L~1 = 2: [2 + 8/6 - 2] / 4 = 1/3.
    assert hsic_song(K, L) == pytest.approx(1 / 3, abs=1e-15)
    assert hsic_song(K, K) == pytest.approx(2 / 3, abs=1e-15)  # [4 + 16/6 - 4] / 4
    assert hsic_song(L, L) == pytest.approx(1 / 6, abs=1e-15)  # [2 + 4/6 - 2] / 4
    # So debiased CKA = (1/3) / sqrt(2/3 * 1/6) = 1 while the biased one is 1/sqrt2.
    assert linear_cka(X4, Y4, debiased=True) == pytest.approx(1.0, abs=1e-14)
    assert cka_from_gram(K, L, debiased=True) == pytest.approx(1.0, abs=1e-14)
    assert cka_from_gram(K, L) == pytest.approx(1 / math.sqrt(2), abs=1e-15)


def test_rbf_gram_uses_numpy_style_median_of_full_matrix():
    # X = (0, 2): D2 entries {0, 0, 4, 4}, median (0 + 4)/2 = 2; fraction 1: sigma^2 = 2, K_01 = exp(-4 / 4).
    K = gram_rbf([[0.0], [2.0]], sigma_fraction=1.0)
    np.testing.assert_allclose(K, [[1.0, math.exp(-1)], [math.exp(-1), 1.0]], rtol=1e-15)
    # X = 0..3: D2 has 4 zeros, 6 ones, 4 fours, 2 nines: median 1; fraction 0.4: K_ij = exp(-d^2 / 0.32).
    K = gram_rbf(np.arange(4.0)[:, None])
    assert K[0, 1] == pytest.approx(math.exp(-1 / 0.32), rel=1e-14)
    assert K[0, 3] == pytest.approx(math.exp(-9 / 0.32), rel=1e-14)


def test_gram_linear():
    np.testing.assert_array_equal(gram_linear([[1.0, 2.0], [3.0, 4.0]]), [[5.0, 11.0], [11.0, 25.0]])


# --- properties ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("debiased", [False, True])
def test_linear_cka_invariances(debiased):
    X, Y = data(0)
    base = linear_cka(X, Y, debiased=debiased)
    Q = random_orthogonal(5, 1)
    assert linear_cka(X @ Q, Y, debiased=debiased) == pytest.approx(base, abs=1e-12)
    assert linear_cka(3.5 * X, 0.2 * Y, debiased=debiased) == pytest.approx(base, abs=1e-12)
    assert linear_cka(X + 7.0, Y - np.arange(7), debiased=debiased) == pytest.approx(base, abs=1e-12)
    # Not invariant to a general invertible linear map.
    M = np.diag([10.0, 1.0, 1.0, 0.1, 1.0]) + 0.3 * np.random.default_rng(2).normal(size=(5, 5))
    assert abs(np.linalg.det(M)) > 1e-3
    assert abs(linear_cka(X @ M, Y, debiased=debiased) - base) > 1e-3


def test_rbf_cka_invariances():
    X, Y = data(3)
    base = rbf_cka(X, Y)
    assert rbf_cka(X @ random_orthogonal(5, 4), Y) == pytest.approx(base, abs=1e-12)
    assert rbf_cka(4.0 * X, Y) == pytest.approx(base, abs=1e-12)
    assert rbf_cka(X + 3.0, Y) == pytest.approx(base, abs=1e-12)
    M = np.diag([10.0, 1.0, 1.0, 0.1, 1.0])
    assert abs(rbf_cka(X @ M, Y) - base) > 1e-3


@pytest.mark.parametrize("fn", [linear_cka, rbf_cka])
def test_self_similarity_symmetry_bounds(fn):
    for seed in range(4):
        X, Y = data(seed)
        assert fn(X, X) == pytest.approx(1.0, abs=1e-12)
        assert fn(X, X, debiased=True) == pytest.approx(1.0, abs=1e-12)
        assert fn(X, Y) == pytest.approx(fn(Y, X), abs=1e-14)
        assert 0.0 <= fn(X, Y) <= 1.0 + 1e-12


def test_debiased_can_be_negative_and_is_not_clamped():
    rng = np.random.default_rng(0)
    values = [linear_cka(rng.normal(size=(6, 3)), rng.normal(size=(6, 3)), debiased=True) for _ in range(30)]
    assert min(values) < 0


@pytest.mark.parametrize("shape", [(12, 3, 4), (9, 20, 2), (15, 15, 15), (6, 1, 1)])
@pytest.mark.parametrize("debiased", [False, True])
def test_gram_form_equals_feature_form(shape, debiased):
    n, dx, dy = shape
    X, Y = data(n + dx, n, dx, dy)
    X = X + 5.0  # uncentred input
    g = linear_cka(X, Y, debiased=debiased, method="gram")
    f = linear_cka(X, Y, debiased=debiased, method="feature")
    assert g == pytest.approx(f, abs=1e-12)
    assert linear_cka(X, Y, debiased=debiased) == pytest.approx(g, abs=1e-12)


def test_torch_input_and_float32():
    X, Y = data(5)
    expected = linear_cka(X, Y)
    assert linear_cka(torch.from_numpy(X), torch.from_numpy(Y)) == pytest.approx(expected, abs=1e-14)
    assert linear_cka(X.astype(np.float32), Y.astype(np.float32)) == pytest.approx(expected, abs=1e-6)


# --- agreement with slow implementations --------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_hsic_estimators_match_slow(seed):
    X, Y = data(seed, n=6, dx=3, dy=2)
    K, L = X @ X.T, np.tanh(Y) @ np.tanh(Y).T
    assert hsic_gretton(K, L) == pytest.approx(slow_hsic_biased(K, L), rel=1e-12)
    assert hsic_song(K, L) == pytest.approx(slow_hsic_unbiased(K, L), rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_cka_matches_slow(seed):
    X, Y = data(seed, n=7, dx=3, dy=4)
    K, L = X @ X.T, Y @ Y.T
    assert linear_cka(X, Y) == pytest.approx(slow_cka(K, L, slow_hsic_biased), rel=1e-12)
    assert linear_cka(X, Y, debiased=True) == pytest.approx(slow_cka(K, L, slow_hsic_unbiased), rel=1e-10)
    for frac in (0.2, 0.4, 0.8):
        Kr, Lr = slow_rbf_gram(X, frac), slow_rbf_gram(Y, frac)
        assert rbf_cka(X, Y, sigma_fraction=frac) == pytest.approx(slow_cka(Kr, Lr, slow_hsic_biased), rel=1e-12)
        got = rbf_cka(X, Y, sigma_fraction=frac, debiased=True)
        assert got == pytest.approx(slow_cka(Kr, Lr, slow_hsic_unbiased), rel=1e-10)


# --- minibatch CKA ------------------------------------------------------------------------------------------------


def test_minibatch_one_batch_equals_debiased_cka():
    X, Y = data(7, n=40)
    acc = MinibatchCKA()
    acc.update({"x": X, "y": Y})
    M = acc.compute()
    assert M.shape == (2, 2)
    assert M[0, 1] == pytest.approx(linear_cka(X, Y, debiased=True), abs=1e-12)
    assert M[0, 0] == pytest.approx(1.0, abs=1e-12)


def test_minibatch_streamed_matrix_equals_pair_by_pair():
    rng = np.random.default_rng(8)
    n_batches, n = 4, 10
    layers_a = {f"a{i}": rng.normal(size=(n_batches * n, 3 + i)) for i in range(3)}
    layers_b = {
        f"b{i}": np.tanh(layers_a["a0"] @ rng.normal(size=(3, 4))) + rng.normal(size=(n_batches * n, 4)) * i
        for i in range(2)
    }
    acc = MinibatchCKA()
    for b in range(n_batches):
        sl = slice(b * n, (b + 1) * n)
        acc.update({k: v[sl] for k, v in layers_a.items()}, {k: v[sl] for k, v in layers_b.items()})
    M = acc.compute()
    assert M.shape == (3, 2) and acc.layers_a == ["a0", "a1", "a2"] and acc.layers_b == ["b0", "b1"]
    for i, xa in enumerate(layers_a.values()):
        for j, yb in enumerate(layers_b.values()):
            grams = [(xa[b * n : (b + 1) * n], yb[b * n : (b + 1) * n]) for b in range(n_batches)]
            cross = np.mean([hsic_song(x @ x.T, y @ y.T) for x, y in grams])
            sx = np.mean([hsic_song(x @ x.T, x @ x.T) for x, _ in grams])
            sy = np.mean([hsic_song(y @ y.T, y @ y.T) for _, y in grams])
            assert M[i, j] == pytest.approx(cross / math.sqrt(sx * sy), abs=1e-12)


def test_minibatch_one_model_is_symmetric_with_unit_diagonal():
    rng = np.random.default_rng(9)
    acc = MinibatchCKA()
    for _ in range(3):
        x = rng.normal(size=(16, 5))
        acc.update({"p": x, "q": x**2, "r": rng.normal(size=(16, 2))})
    M = acc.compute()
    np.testing.assert_allclose(M, M.T, atol=1e-14)
    np.testing.assert_allclose(np.diag(M), 1.0, atol=1e-12)
    assert acc.n_batches == 3
    acc.reset()
    with pytest.raises(ValueError, match="no batches were added"):
        acc.compute()


def test_minibatch_constant_layer_is_nan_with_warning():
    rng = np.random.default_rng(10)
    acc = MinibatchCKA()
    acc.update({"c": np.ones((8, 3)), "x": rng.normal(size=(8, 3))})
    with pytest.warns(RuntimeWarning, match=r"\['c'\]"):
        M = acc.compute()
    assert np.isnan(M[0, 1]) and np.isnan(M[0, 0]) and M[1, 1] == pytest.approx(1.0)


# --- degenerate inputs and errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [linear_cka, rbf_cka])
def test_constant_features_give_nan_with_warning(fn):
    X, _ = data(11)
    with pytest.warns(RuntimeWarning, match="Y is constant"):
        assert math.isnan(fn(X, np.full((30, 2), 0.3)))
    with pytest.warns(RuntimeWarning, match="X is constant"):
        assert math.isnan(fn(np.zeros((30, 4)), X, debiased=True))


def test_rbf_zero_median_distance():
    X = np.zeros((6, 2))
    X[0] = 1.0  # more than half of the pairs have distance 0
    Y = np.random.default_rng(0).normal(size=(6, 2))
    with pytest.warns(RuntimeWarning, match="X is constant"):
        assert math.isnan(rbf_cka(X, Y))
    with pytest.raises(ValueError, match="median squared distance between samples is 0"):
        gram_rbf(X)


def test_cka_from_gram_non_positive_self_hsic_is_nan():
    with pytest.warns(RuntimeWarning, match="self-HSIC is not positive"):
        assert math.isnan(cka_from_gram(np.ones((4, 4)), X4 @ X4.T))


def test_errors():
    X, Y = data(12)
    with pytest.raises(ValueError, match="X has 3 samples; debiased HSIC needs at least 4"):
        linear_cka(X[:3], Y[:3], debiased=True)
    with pytest.raises(ValueError, match="X has 1 samples; CKA needs at least 2"):
        linear_cka(X[:1], Y[:1])
    with pytest.raises(ValueError, match="same number of samples.*X has 30, Y has 29"):
        linear_cka(X, Y[:29])
    with pytest.raises(ValueError, match="method='svd' is not one of 'auto', 'gram', 'feature'"):
        linear_cka(X, Y, method="svd")
    with pytest.raises(ValueError, match="sigma_fraction must be positive"):
        rbf_cka(X, Y, sigma_fraction=0)
    with pytest.raises(ValueError, match="sigma_fraction must be finite"):
        gram_rbf(X, sigma_fraction=np.inf)
    with pytest.raises(ValueError, match="K must be a square Gram matrix"):
        hsic_gretton(X, Y)
    with pytest.raises(ValueError, match="K has 3 samples; debiased HSIC needs at least 4"):
        hsic_song(np.eye(3), np.eye(3))
    Ybad = Y.copy()
    Ybad[4, 3] = np.nan
    with pytest.raises(ValueError, match="Y has 1 non-finite"):
        linear_cka(X, Ybad)
    with pytest.raises(ValueError, match="must be 2-D"):
        rbf_cka(X[:, 0], Y)
    acc = MinibatchCKA()
    with pytest.raises(ValueError, match="each batch needs at least 4"):
        acc.update({"x": X[:3]})
    acc = MinibatchCKA()
    acc.update({"x": X[:10]})
    with pytest.raises(ValueError, match="started with one model"):
        acc.update({"x": X[:10]}, {"y": Y[:10]})
    with pytest.raises(ValueError, match="layer names differ"):
        acc.update({"z": X[:10]})
    with pytest.raises(ValueError, match="features_b\\['y'\\] has 9 samples in this batch; other layers have 10"):
        MinibatchCKA().update({"x": X[:10]}, {"y": Y[:9]})
    with pytest.raises(ValueError, match="features_a is empty"):
        MinibatchCKA().update({})
