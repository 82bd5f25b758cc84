"""Tests of modularity, modularity_curve and prunable_layers."""

import warnings

import networkx as nx
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from gbs_core.graphs import knn_graph
from gbs_core.metrics import (
    disjoint_batches,
    modularity,
    modularity_curve,
    modularity_curve_stats,
    modularity_difference,
    prunable_layers,
)


def nx_modularity(A, labels, resolution=1.0):
    G = nx.from_numpy_array(np.asarray(A))
    labels = np.asarray(labels)
    comms = [set(np.flatnonzero(labels == c).tolist()) for c in np.unique(labels)]
    return nx.algorithms.community.modularity(G, comms, weight="weight", resolution=resolution)


def two_triangles():
    A = np.zeros((6, 6))
    for i, j in [(0, 1), (1, 2), (0, 2), (3, 4), (4, 5), (3, 5), (2, 3)]:
        A[i, j] = A[j, i] = 1.0
    return A


# --- exact values -------------------------------------------------------------------------------------------------


def test_two_triangles_joined_by_an_edge():
    # 7 edges, 2W = 14; each class: e_c = 6, d_c = 2 + 2 + 3 = 7. Q = 2 * (6/14 - (7/14)^2) = 5/14.
    assert modularity(two_triangles(), [0, 0, 0, 1, 1, 1]) == pytest.approx(5 / 14, abs=1e-15)
    # gamma = 1/2: Q = 2 * (6/14 - (1/2) * (1/2)^2) = 6/7 - 1/4 = 17/28.
    assert modularity(two_triangles(), [0, 0, 0, 1, 1, 1], resolution=0.5) == pytest.approx(17 / 28, abs=1e-15)


def test_weighted_path():
    # 0 -2- 1 -1- 2, classes [0, 0, 1]: 2W = 6, e = (4, 0), d = (5, 1): Q = 4/6 - 25/36 - 1/36 = -1/18.
    A = np.array([[0, 2, 0], [2, 0, 1], [0, 1, 0]], float)
    assert modularity(A, ["a", "a", "b"]) == pytest.approx(-1 / 18, abs=1e-15)


def test_self_loop_counts_twice_like_networkx():
    # Loop of weight 1 at node 0, edge 0-1 of weight 1. Undirected: m = 2, degrees (3, 1), L_0 = 1.
    # Q = 1/2 - (3/4)^2 - (1/4)^2 = -1/8.
    A = np.array([[1.0, 1.0], [1.0, 0.0]])
    assert modularity(A, [0, 1]) == pytest.approx(-1 / 8, abs=1e-15)
    assert modularity(sp.csr_array(A), [0, 1]) == pytest.approx(nx_modularity(A, [0, 1]), abs=1e-15)


def test_single_class_is_zero_and_singletons():
    A = two_triangles()
    assert modularity(A, np.zeros(6)) == pytest.approx(0.0, abs=1e-15)
    # every node alone (a class of one sample): Q = -sum (d_i / 2W)^2 = -(4*4 + 2*9) / 196 = -34/196
    assert modularity(A, np.arange(6)) == pytest.approx(-34 / 196, abs=1e-15)


# --- properties ---------------------------------------------------------------------------------------------------


def test_relabelling_classes_and_permuting_nodes():
    rng = np.random.default_rng(0)
    W = np.triu(rng.random((25, 25)) * (rng.random((25, 25)) < 0.3), 1)
    A = W + W.T
    y = rng.integers(0, 4, 25)
    q = modularity(A, y)
    assert modularity(A, (y + 1) % 4 * 10) == pytest.approx(q, abs=1e-14)
    p = rng.permutation(25)
    assert modularity(A[np.ix_(p, p)], y[p]) == pytest.approx(q, abs=1e-14)


def test_input_forms_agree():
    A = two_triangles()
    y = [0, 0, 0, 1, 1, 1]
    q = modularity(A, y)
    assert modularity(sp.csr_array(A), y) == q
    assert modularity(sp.coo_matrix(A), y) == q
    assert modularity(torch.from_numpy(A), torch.tensor(y)) == q


# --- agreement with networkx --------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_matches_networkx_on_random_weighted_graphs(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 60))
    W = np.triu(rng.random((n, n)) * (rng.random((n, n)) < rng.uniform(0.05, 0.6)), 1)
    A = W + W.T
    if seed % 2:
        A[np.diag_indices(n)] = rng.random(n) * (rng.random(n) < 0.3)  # some self loops
    if A.sum() == 0:
        A[0, 1] = A[1, 0] = 1.0
    y = rng.integers(0, int(rng.integers(1, 6)), n)
    gamma = float(rng.choice([0.5, 1.0, 1.7]))
    expected = nx_modularity(A, y, gamma)
    assert abs(modularity(A, y, resolution=gamma) - expected) < 1e-10
    assert abs(modularity(sp.csr_array(A), y, resolution=gamma) - expected) < 1e-10


def test_matches_networkx_on_knn_graph():
    rng = np.random.default_rng(11)
    X = rng.normal(size=(80, 6)) + np.repeat(rng.normal(size=(4, 6)) * 2, 20, axis=0)
    y = np.repeat(np.arange(4), 20)
    A = knn_graph(X, 3)
    G = nx.from_scipy_sparse_array(A)
    comms = [set(np.flatnonzero(y == c).tolist()) for c in range(4)]
    assert abs(modularity(A, y) - nx.algorithms.community.modularity(G, comms)) < 1e-10


# --- modularity_curve ---------------------------------------------------------------------------------------------


def clustered(n_per_class, n_classes, dim, spread, seed):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_classes, dim)) * 3
    y = np.repeat(np.arange(n_classes), n_per_class)
    return centers[y] + spread * rng.normal(size=(len(y), dim)), y


def test_curve_single_batch_equals_direct():
    X1, y = clustered(15, 3, 5, 4.0, 0)
    X2, _ = clustered(15, 3, 5, 0.5, 0)
    feats = {"late": X2, "early": X1}
    curve = modularity_curve(feats, y)
    assert list(curve) == ["late", "early"]
    assert curve["early"].shape == (1,)
    assert curve["early"][0] == pytest.approx(modularity(knn_graph(X1, 3), y), abs=1e-15)
    assert curve["late"][0] == pytest.approx(modularity(knn_graph(X2, 3), y), abs=1e-15)
    assert curve["late"][0] > curve["early"][0]


def test_curve_batches_are_disjoint_and_each_value_is_direct():
    X, y = clustered(20, 3, 4, 1.0, 1)
    batches = disjoint_batches(y, 4, seed=3)
    allidx = np.concatenate(batches)
    assert sorted(allidx.tolist()) == list(range(60))
    assert {len(b) for b in batches} == {15}
    for b in batches:  # stratified: 20 per class dealt over 4 batches -> 5 each
        assert np.all(np.bincount(y[b], minlength=3) == 5)
    curve = modularity_curve({"x": X}, y, k=3, n_batches=4, seed=3)
    expected = [modularity(knn_graph(X[b], 3), y[b]) for b in batches]
    np.testing.assert_allclose(curve["x"], expected, atol=1e-15)
    stats = modularity_curve_stats(curve)
    assert stats.names == ["x"]
    assert stats.mean[0] == pytest.approx(np.mean(expected))
    assert stats.std[0] == pytest.approx(np.std(expected, ddof=1))


def test_unstratified_batches_cover_all_samples():
    b = disjoint_batches(np.zeros(10), 3, stratified=False, seed=0)
    assert sorted(np.concatenate(b).tolist()) == list(range(10))
    assert sorted(len(x) for x in b) == [3, 3, 4]


def test_curve_stats_hand_values():
    s = modularity_curve_stats({"a": [0.1, 0.3], "b": np.array([0.5])})
    np.testing.assert_allclose(s.mean, [0.2, 0.5])
    np.testing.assert_allclose(s.std, [np.sqrt(0.02), 0.0])


def test_curve_all_zero_layer_is_nan_with_warning():
    X, y = clustered(5, 2, 3, 1.0, 2)
    with pytest.warns(RuntimeWarning, match="no edges"):
        curve = modularity_curve({"dead": np.zeros_like(X), "ok": X}, y)
    assert np.isnan(curve["dead"][0]) and np.isfinite(curve["ok"][0])


# --- prunable_layers ----------------------------------------------------------------------------------------------


def test_prunable_layers_hand_example():
    flagged = prunable_layers({"a": 0.5, "b": 0.2, "c": 0.3, "d": 0.31, "e": 0.25})
    # first layer never flagged even though b < a ... b is flagged as degradation (dQ = -0.3)
    assert [(f.position, f.name, f.kind) for f in flagged] == [
        (1, "b", "degradation"),
        (3, "d", "plateau"),
        (4, "e", "degradation"),
    ]
    assert flagged[1].dq == pytest.approx(0.01)
    assert flagged[1].q == pytest.approx(0.31)


def test_prunable_layers_threshold_and_sequence():
    q = [0.0, 0.05, 0.07]
    assert [f.position for f in prunable_layers(q)] == [2]
    assert [f.position for f in prunable_layers(q, threshold=0.06)] == [1, 2]
    assert prunable_layers(q, threshold=0.0) == []
    assert prunable_layers([0.4]) == []
    assert prunable_layers(q)[0].name is None


def test_prunable_layers_from_batched_curve_uses_mean():
    flagged = prunable_layers({"a": np.array([0.1, 0.3]), "b": np.array([0.2, 0.22])})
    assert flagged[0].dq == pytest.approx(0.01)


# --- errors -------------------------------------------------------------------------------------------------------


def test_errors():
    A = two_triangles()
    y = [0, 0, 0, 1, 1, 1]
    with pytest.raises(ValueError, match="no edges"):
        modularity(np.zeros((3, 3)), [0, 1, 1])
    with pytest.raises(ValueError, match="no edges"):
        modularity(sp.csr_array((3, 3)), [0, 1, 1])
    B = A.copy()
    B[0, 1] = 5
    with pytest.raises(ValueError, match="must be symmetric"):
        modularity(B, y)
    with pytest.raises(ValueError, match="must be symmetric"):
        modularity(sp.csr_array(B), y)
    with pytest.raises(ValueError, match="must be square"):
        modularity(np.ones((2, 3)), [0, 1])
    with pytest.raises(ValueError, match="must be square"):
        modularity(sp.csr_array(np.ones((2, 3))), [0, 1])
    with pytest.raises(ValueError, match="labels has 5 entries but the data has 6"):
        modularity(A, y[:5])
    with pytest.raises(ValueError, match="labels must be 1-D"):
        modularity(A, np.zeros((6, 1)))
    with pytest.raises(ValueError, match="labels contains NaN"):
        modularity(A, [0, 0, 0, 1, 1, np.nan])
    with pytest.raises(ValueError, match="non-finite"):
        modularity(sp.csr_array(np.array([[0, np.inf], [np.inf, 0]])), [0, 1])
    with pytest.raises(ValueError, match="resolution must be finite"):
        modularity(A, y, resolution=np.nan)
    with pytest.raises(ValueError, match="neighbours need more than"):
        modularity_curve({"x": np.ones((8, 2))}, np.arange(8) % 2, k=4, n_batches=2)
    with pytest.raises(ValueError, match="features is empty"):
        modularity_curve({}, [0, 1])
    with pytest.raises(ValueError, match="must be a mapping"):
        modularity_curve([np.ones((4, 2))], [0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"features\['b'\] has 4 samples but the first layer has 6"):
        modularity_curve({"a": np.random.rand(6, 2), "b": np.random.rand(4, 2)}, [0, 1] * 3, k=1)
    with pytest.raises(ValueError, match="n_batches=7 is more than the 6 samples"):
        disjoint_batches([0, 1] * 3, 7)
    with pytest.raises(ValueError, match="n_batches must be an integer >= 1"):
        disjoint_batches([0, 1] * 3, 0)
    with pytest.raises(ValueError, match="Q of layer 'b' is nan"):
        prunable_layers({"a": 0.1, "b": np.nan})
    with pytest.raises(ValueError, match="Q of layer at position 0 is inf"):
        prunable_layers([np.inf, 0.1])
    with pytest.raises(ValueError, match="threshold must be a number"):
        prunable_layers([0.1], threshold="x")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        modularity(A, y)  # no spurious warnings


# --- modularity_difference ------------------------------------------------------------------------------------------


def test_modularity_difference_on_a_hand_made_curve():
    # Q = 0.1, 0.4, 0.35, 0.9: every entry worked out by hand
    D = modularity_difference([0.1, 0.4, 0.35, 0.9])
    expected = np.array([
        [0.0, 0.3, 0.25, 0.8],
        [0.3, 0.0, 0.05, 0.5],
        [0.25, 0.05, 0.0, 0.55],
        [0.8, 0.5, 0.55, 0.0],
    ])
    np.testing.assert_allclose(D, expected, atol=1e-12)


def test_modularity_difference_of_a_batched_curve_uses_the_batch_means_and_keeps_nan_in_its_row():
    D = modularity_difference({"a": [0.1, 0.3], "b": [0.6], "c": [np.nan]})
    assert D.shape == (3, 3)
    np.testing.assert_allclose(D[:2, :2], [[0.0, 0.4], [0.4, 0.0]], atol=1e-12)
    assert np.isnan(D[2]).all() and np.isnan(D[:, 2]).all()


def test_modularity_difference_is_symmetric_nonnegative_with_a_zero_diagonal():
    q = np.random.default_rng(0).random(9)
    D = modularity_difference(q)
    np.testing.assert_array_equal(D, D.T)
    assert (D >= 0).all() and (np.diag(D) == 0).all()
    # the triangle inequality of |a - b|: D[i, k] <= D[i, j] + D[j, k] for all i, j, k
    assert (D[:, None, :] <= D[:, :, None] + D[None, :, :] + 1e-12).all()
