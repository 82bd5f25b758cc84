"""Tests of triangle motifs: hand counts, brute force, properties."""

import itertools
import math

import numpy as np
import pytest
import scipy.sparse as sp

from gbs_core.graphs import knn_graph
from gbs_core.metrics import MotifCounts, motif_profile, triangle_motifs


def brute_force(A, y):
    A = np.asarray(A)
    counts = [0, 0, 0]
    for i, j, q in itertools.combinations(range(len(A)), 3):
        if A[i, j] != 0 and A[j, q] != 0 and A[i, q] != 0:
            counts[len({y[i], y[j], y[q]}) - 1] += 1
    return MotifCounts(*counts)


def complete(n):
    return np.ones((n, n)) - np.eye(n)


def test_hand_counts():
    # K4, classes 0,0,0,1: {012} one class; {013}, {023}, {123} two classes.
    assert triangle_motifs(complete(4), [0, 0, 0, 1]) == (1, 3, 0)
    assert triangle_motifs(complete(4), [0, 1, 2, 3]) == (0, 0, 4)
    # K5, classes 0,0,1,1,2: 10 triangles, none of one class, 2*2*1 = 4 all different, 6 two classes.
    m = triangle_motifs(complete(5), [0, 0, 1, 1, 2])
    assert m == (0, 6, 4)
    assert m.total == 10
    assert m.fractions == pytest.approx((0.0, 0.6, 0.4))
    assert triangle_motifs(complete(4), [0, 0, 0, 1]).same_class_fraction == 0.25


def test_weights_and_diagonal_ignored_zero_entries_not_edges():
    A = complete(4) * 0.3
    A[0, 0] = 5.0
    A[1, 2] = A[2, 1] = 0.0  # removes triangles {0,1,2} and {1,2,3}
    assert triangle_motifs(A, [0, 0, 0, 1]) == (0, 2, 0)
    explicit_zero = sp.csr_array((np.array([0.0, 0.0]), (np.array([0, 1]), np.array([1, 0]))), shape=(3, 3))
    assert triangle_motifs(explicit_zero, [0, 0, 0]) == (0, 0, 0)


def test_no_triangles_gives_nan_fractions():
    m = triangle_motifs(np.zeros((5, 5)), [0, 1, 0, 1, 0])
    assert m == (0, 0, 0)
    assert all(math.isnan(f) for f in m.fractions)
    path = np.diag(np.ones(3), 1)
    assert triangle_motifs(path + path.T, [0, 0, 0, 0]).total == 0


@pytest.mark.parametrize("seed", range(6))
def test_matches_brute_force_on_random_graphs(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(4, 30))
    W = np.triu(rng.random((n, n)) * (rng.random((n, n)) < rng.uniform(0.1, 0.7)), 1)
    A = W + W.T
    y = rng.integers(0, int(rng.integers(1, 5)), n)
    expected = brute_force(A, y)
    assert triangle_motifs(A, y) == expected
    assert triangle_motifs(sp.csr_array(A), y) == expected


def test_invariant_to_node_permutation_and_relabelling():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(30, 4))
    y = rng.integers(0, 3, 30)
    A = knn_graph(X, 5).toarray()
    m = triangle_motifs(A, y)
    p = rng.permutation(30)
    assert triangle_motifs(A[np.ix_(p, p)], y[p]) == m
    assert triangle_motifs(A, np.array(["a", "b", "c"])[y]) == m


def test_motif_profile_matches_per_layer_calls():
    rng = np.random.default_rng(8)
    y = np.repeat(np.arange(3), 10)
    feats = {"pure": np.eye(3)[y] * 5 + 0.1 * rng.normal(size=(30, 3)), "noise": rng.normal(size=(30, 6))}
    prof = motif_profile(feats, y)
    assert list(prof) == ["pure", "noise"]
    for name, X in feats.items():
        assert prof[name] == brute_force(knn_graph(X, 5).toarray(), y)
    assert prof["pure"].same_class_fraction > prof["noise"].same_class_fraction


def test_errors():
    with pytest.raises(ValueError, match="must be symmetric"):
        triangle_motifs(np.triu(complete(3)), [0, 0, 0])
    with pytest.raises(ValueError, match="must be symmetric"):
        triangle_motifs(sp.csr_array(np.triu(complete(3))), [0, 0, 0])
    with pytest.raises(ValueError, match="must be square"):
        triangle_motifs(np.ones((2, 3)), [0, 0])
    with pytest.raises(ValueError, match="must be square"):
        triangle_motifs(sp.csr_array(np.ones((2, 3))), [0, 0])
    with pytest.raises(ValueError, match="non-finite"):
        triangle_motifs(sp.csr_array(np.array([[0, np.nan], [np.nan, 0]])), [0, 0])
    with pytest.raises(ValueError, match="labels has 2 entries but the data has 3"):
        triangle_motifs(complete(3), [0, 1])
    with pytest.raises(ValueError, match="k=5 neighbours need more than 5 samples"):
        motif_profile({"a": np.ones((5, 2))}, np.zeros(5))
    with pytest.raises(ValueError, match=r"features\['b'\] has 6 samples but the first layer has 8"):
        motif_profile({"a": np.random.rand(8, 2), "b": np.random.rand(6, 2)}, np.zeros(8), k=2)
