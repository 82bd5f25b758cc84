"""Tests of similarity_matrix: every registered metric against its pair function, streaming, errors."""

import math

import numpy as np
import pytest

from gbs_core.metrics import (
    SIMILARITY_METRICS,
    gbs_similarity,
    linear_cka,
    linear_regression_similarity,
    mean_cca,
    mean_squared_cca,
    metric_is_symmetric,
    pwcca,
    rbf_cka,
    similarity_matrix,
    svcca,
)

PAIR_FUNCTIONS = {
    "linear_cka": linear_cka,
    "debiased_linear_cka": lambda x, y: linear_cka(x, y, debiased=True),
    "rbf_cka": rbf_cka,
    "gbs_dense": gbs_similarity,
    "gbs_knn": lambda x, y: gbs_similarity(x, y, graph="knn"),
    "mean_cca": mean_cca,
    "mean_squared_cca": mean_squared_cca,
    "svcca": svcca,
    "pwcca": pwcca,
    "linear_regression": linear_regression_similarity,
}


def layers(seed, n=36):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, 3))
    a = {
        f"a{i}": np.tanh(base @ rng.normal(size=(3, 2 + 3 * i))) + 0.3 * i * rng.normal(size=(n, 2 + 3 * i))
        for i in range(3)
    }
    b = {
        f"b{i}": np.maximum(base @ rng.normal(size=(3, 4 + 30 * i)), 0) + 0.1 * rng.normal(size=(n, 4 + 30 * i))
        for i in range(2)
    }
    return a, b


def test_registry_is_complete():
    assert set(SIMILARITY_METRICS) == set(PAIR_FUNCTIONS)


@pytest.mark.parametrize("metric", sorted(PAIR_FUNCTIONS))
def test_matrix_equals_pair_by_pair(metric):
    a, b = layers(0)
    f = PAIR_FUNCTIONS[metric]
    M = similarity_matrix(a, b, metric=metric)
    expected = np.array([[f(x, y) for y in b.values()] for x in a.values()])
    assert M.shape == (3, 2)
    np.testing.assert_allclose(M, expected, atol=1e-12)
    W = similarity_matrix(a, metric=metric)
    expected_w = np.array([[f(x, y) for y in a.values()] for x in a.values()])
    np.testing.assert_allclose(W, expected_w, atol=1e-12)
    if metric_is_symmetric(metric):
        np.testing.assert_allclose(W, W.T, atol=1e-12)
    if metric != "linear_regression":
        np.testing.assert_allclose(np.diag(W), 1.0, atol=1e-10)


@pytest.mark.parametrize("metric", ["linear_cka", "debiased_linear_cka", "gbs_dense"])
def test_streamed_blocks_equal_feature_form(metric):
    a, b = layers(1)
    ref = similarity_matrix(a, b, metric=metric, method="feature")
    for bs in (1, 5, 100):
        np.testing.assert_allclose(
            similarity_matrix(a, b, metric=metric, method="gram", block_size=bs), ref, atol=1e-12
        )
        np.testing.assert_allclose(
            similarity_matrix(a, metric=metric, method="blocks", block_size=bs),
            similarity_matrix(a, metric=metric, method="feature"),
            atol=1e-12,
        )


def test_metric_kwargs_are_passed():
    a, b = layers(2)
    x, y = a["a1"], b["b0"]
    assert similarity_matrix({"x": x}, {"y": y}, metric="rbf_cka", sigma_fraction=0.8, debiased=True)[
        0, 0
    ] == pytest.approx(rbf_cka(x, y, sigma_fraction=0.8, debiased=True), abs=1e-12)
    assert similarity_matrix({"x": x}, {"y": y}, metric="gbs_knn", k=2)[0, 0] == pytest.approx(
        gbs_similarity(x, y, graph="knn", k=2)
    )
    assert similarity_matrix({"x": x}, {"y": y}, metric="svcca", variance=0.5)[0, 0] == pytest.approx(
        svcca(x, y, variance=0.5)
    )
    M = similarity_matrix({"x": x}, {"y": y}, metric="linear_regression", symmetric=False)
    assert M[0, 0] == pytest.approx(linear_regression_similarity(x, y, symmetric=False))
    assert not metric_is_symmetric("linear_regression", symmetric=False)
    assert not metric_is_symmetric("pwcca")


def test_hand_values():
    X4 = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    Y4 = np.array([[1.0], [0.0], [-1.0], [0.0]])
    M = similarity_matrix({"x": X4, "y": Y4})
    r = 1 / math.sqrt(2)
    np.testing.assert_allclose(M, [[1, r], [r, 1]], atol=1e-15)


def test_callable_metric():
    a, b = layers(3)
    M = similarity_matrix(a, b, metric=lambda x, y: float(x.shape[1] * 100 + y.shape[1]))
    np.testing.assert_array_equal(M, [[204, 234], [504, 534], [804, 834]])


def test_constant_layer_gives_nan_with_warning():
    a, _ = layers(4)
    a["dead"] = np.zeros((36, 3))
    with pytest.warns(RuntimeWarning, match="undefined"):
        M = similarity_matrix(a, metric="linear_cka")
    assert np.all(np.isnan(M[3])) and np.all(np.isnan(M[:, 3])) and np.isfinite(M[:3, :3]).all()
    with pytest.warns(RuntimeWarning, match="undefined"):
        M = similarity_matrix(a, metric="mean_cca")
    assert np.all(np.isnan(M[3]))


def test_errors():
    a, b = layers(5)
    with pytest.raises(ValueError, match="metric='cka' is not one of 'linear_cka'"):
        similarity_matrix(a, metric="cka")
    with pytest.raises(ValueError, match="metric 'linear_cka' takes no keyword 'k'; its keywords: method, block_size"):
        similarity_matrix(a, metric="linear_cka", k=3)
    with pytest.raises(ValueError, match="metric 'mean_cca' takes no keyword 'variance'; its keywords: none"):
        similarity_matrix(a, metric="mean_cca", variance=0.9)
    with pytest.raises(ValueError, match=r"features_b\['y'\] has 35 samples; the other layers have 36"):
        similarity_matrix(a, {"y": np.ones((35, 2))})
    with pytest.raises(ValueError, match="features_a is empty"):
        similarity_matrix({})
    with pytest.raises(ValueError, match="method='svd' is not one of"):
        similarity_matrix(a, method="svd")
    with pytest.raises(ValueError, match="block_size must be an integer >= 1"):
        similarity_matrix(a, block_size=0)
    with pytest.raises(ValueError, match="sigma_fraction must be positive"):
        similarity_matrix(a, metric="rbf_cka", sigma_fraction=-1)
    with pytest.raises(ValueError, match="has 3 samples; this metric needs at least 4"):
        similarity_matrix({"x": np.eye(3)}, metric="debiased_linear_cka")
    with pytest.raises(ValueError, match=r"variance must be in \(0, 1\]"):
        similarity_matrix(a, metric="svcca", variance=2)
    with pytest.raises(ValueError, match="k=40 neighbours need more than 40 samples"):
        similarity_matrix(a, metric="gbs_knn", k=40)
