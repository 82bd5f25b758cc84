"""Tests of gbs_core.graphs: exact values, properties, and a slow obvious kNN graph."""

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from gbs_core.graphs import cosine_similarity_blocks, dense_cosine_graph, knn_graph, normalize_rows


def slow_knn_graph(X, k, symmetrize=True):
    """Obvious kNN graph: full cosine matrix, per row a stable sort (ties to the lower index)."""
    X = np.asarray(X, dtype=np.float64)
    n = len(X)
    Xn = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-8)
    S = Xn @ Xn.T
    D = np.zeros((n, n))
    for i in range(n):
        others = [j for j in range(n) if j != i]
        others.sort(key=lambda j: (-S[i, j], j))
        for j in others[:k]:
            D[i, j] = S[i, j]
    return (D + D.T) / 2 if symmetrize else D


# --- exact values -------------------------------------------------------------------------------------------------


def test_knn_graph_hand_example_with_ties():
    # Angles 0, 45, 90, 180 degrees. Cosines: (0,1)=(1,2)=1/sqrt2, (0,2)=(2,3)=0, (1,3)=-1/sqrt2, (0,3)=-1.
    X = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [-1.0, 0.0]])
    D = knn_graph(X, 1, symmetrize=False).toarray()
    r = 1 / math.sqrt(2)
    # node 1 has a tie between 0 and 2: the lower index (0) wins; node 3's best is node 2 with weight 0 (dropped).
    expected_D = np.zeros((4, 4))
    expected_D[0, 1] = r
    expected_D[1, 0] = r
    expected_D[2, 1] = r
    np.testing.assert_allclose(D, expected_D, atol=1e-15)
    A = knn_graph(X, 1).toarray()
    expected_A = np.zeros((4, 4))
    expected_A[0, 1] = expected_A[1, 0] = r  # mutual pair keeps S_ij
    expected_A[1, 2] = expected_A[2, 1] = r / 2  # one-sided pair gets S_ij / 2
    np.testing.assert_allclose(A, expected_A, atol=1e-15)


def test_knn_graph_output_type_and_no_self_loops():
    X = np.random.default_rng(0).normal(size=(30, 5))
    A = knn_graph(X, 4)
    assert isinstance(A, sp.csr_array)
    assert A.dtype == np.float64 and A.shape == (30, 30)
    assert np.all(A.diagonal() == 0)
    assert abs(A - A.T).max() == 0
    D = knn_graph(X, 4, symmetrize=False)
    assert np.all(np.diff(D.indptr) == 4)


def test_all_zero_row_has_no_edges():
    X = np.random.default_rng(1).normal(size=(10, 3))
    X[4] = 0.0
    D = knn_graph(X, 2, symmetrize=False).toarray()
    assert np.all(D[4] == 0)
    assert np.all(D[:, 4] == 0)


def test_dense_cosine_graph_hand_example():
    X = np.array([[3.0, 4.0], [4.0, 3.0], [0.0, 0.0]])
    S = dense_cosine_graph(X)
    expected = np.array([[0, 24 / 25, 0], [24 / 25, 0, 0], [0, 0, 0]])
    np.testing.assert_allclose(S, expected, atol=1e-15)


def test_normalize_rows_floor():
    Xn = normalize_rows(np.array([[3.0, 4.0], [0.0, 0.0], [1e-9, 0.0]]))
    np.testing.assert_allclose(Xn.numpy(), [[0.6, 0.8], [0.0, 0.0], [0.1, 0.0]])


# --- properties ---------------------------------------------------------------------------------------------------


def test_knn_graph_invariant_to_rotation_and_scaling():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(40, 6))
    Q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    A = knn_graph(X, 3).toarray()
    np.testing.assert_allclose(knn_graph(3.7 * X @ Q, 3).toarray(), A, atol=1e-12)


def test_block_size_does_not_change_result():
    X = np.random.default_rng(3).normal(size=(37, 5))
    A = knn_graph(X, 3).toarray()
    for bs in (1, 5, 36, 100):
        np.testing.assert_array_equal(knn_graph(X, 3, block_size=bs).toarray(), A)


def test_cosine_blocks_assemble_to_dense():
    X = np.random.default_rng(4).normal(size=(23, 4))
    parts = [S.numpy() for _, _, S in cosine_similarity_blocks(X, block_size=7)]
    np.testing.assert_allclose(np.vstack(parts), dense_cosine_graph(X), atol=1e-14)


# --- agreement with the slow implementation -----------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("search_dtype", ["float32", "float64"])
def test_knn_graph_matches_slow(seed, search_dtype):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(int(rng.integers(8, 40)), int(rng.integers(2, 9))))
    k = int(rng.integers(1, 6))
    got = knn_graph(X, k, search_dtype=search_dtype, block_size=int(rng.integers(1, 20)))
    np.testing.assert_allclose(got.toarray(), slow_knn_graph(X, k), atol=1e-14)
    got_d = knn_graph(X, k, symmetrize=False, search_dtype=search_dtype)
    np.testing.assert_allclose(got_d.toarray(), slow_knn_graph(X, k, symmetrize=False), atol=1e-14)


def test_knn_graph_ties_on_duplicates_match_slow():
    # Many exact ties: duplicated rows.
    base = np.random.default_rng(5).normal(size=(4, 3))
    X = np.repeat(base, 3, axis=0)
    np.testing.assert_allclose(knn_graph(X, 4).toarray(), slow_knn_graph(X, 4), atol=1e-14)


def test_torch_input_matches_numpy():
    X = np.random.default_rng(6).normal(size=(20, 4)).astype(np.float32)
    np.testing.assert_array_equal(knn_graph(torch.from_numpy(X), 3).toarray(), knn_graph(X, 3).toarray())


# --- errors -------------------------------------------------------------------------------------------------------


def test_errors():
    X = np.zeros((5, 2))
    with pytest.raises(ValueError, match="k=5 neighbours need more than 5 samples"):
        knn_graph(X, 5)
    with pytest.raises(ValueError, match="k must be at least 1"):
        knn_graph(X, 0)
    with pytest.raises(ValueError, match="k must be an integer"):
        knn_graph(X, 2.0)
    with pytest.raises(ValueError, match="must be 2-D"):
        knn_graph(np.zeros(5), 2)
    with pytest.raises(ValueError, match="non-finite"):
        knn_graph(np.array([[np.nan, 1.0], [1.0, 1.0], [0.0, 1.0]]), 1)
    with pytest.raises(ValueError, match="has 1 samples; a kNN graph needs at least 2"):
        knn_graph(np.zeros((1, 3)), 1)
    with pytest.raises(ValueError, match="search_dtype='float16' is not one of"):
        knn_graph(X, 2, search_dtype="float16")
    with pytest.raises(ValueError, match="block_size must be an integer >= 1"):
        knn_graph(X, 2, block_size=0)
    with pytest.raises(ValueError, match="has no features"):
        knn_graph(np.zeros((5, 0)), 2)
    with pytest.raises(ValueError, match="real numeric array"):
        knn_graph(np.array([["a", "b"], ["c", "d"]]), 1)
