"""Tests of the approximate kNN graph (NN-descent), knn_method_used and knn_recall.

NN-descent is JIT-compiled by numba on its first call in a process (tens of seconds), so the approximate graphs of
the shared blob data are built once, in a module-scoped fixture.
"""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import gbs_core.graphs as graphs
from gbs_core.graphs import APPROX_MIN_SAMPLES, KNN_METHODS, knn_graph, knn_method_used, knn_recall
from gbs_core.metrics.modularity import modularity

K = 3


def blobs(n=2000, d=32, n_classes=10, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    X = rng.standard_normal((n_classes, d))[y] + 1.5 * rng.standard_normal((n, d))
    return X.astype(np.float32), y


def slow_cosine(X, i, j):
    """Cosine of rows i and j in float64, the obvious way."""
    a, b = X[i].astype(np.float64), X[j].astype(np.float64)
    return float(a @ b / (max(np.sqrt(a @ a), 1e-8) * max(np.sqrt(b @ b), 1e-8)))


@pytest.fixture(scope="module")
def blob_graphs():
    X, y = blobs()
    X_before = X.copy()
    approx = knn_graph(X, K, symmetrize=False, method="approx")
    out = {
        "X": X,
        "X_before": X_before,
        "y": y,
        "approx": approx,
        "approx_sym": knn_graph(X, K, method="approx"),
        "exact": knn_graph(X, K, symmetrize=False),
        "exact_sym": knn_graph(X, K),
    }
    return out


# --- exact values: recall by hand, the candidate clean-up by hand -------------------------------------------------


def test_recall_hand_example_two_of_three():
    # Node 0: approx {1, 2, 4}, exact {1, 2, 3}: 2 of 3 found. Nodes 1..4 all found.
    exact = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2], [0, 1, 2]])
    approx = exact.copy()
    approx[0] = [1, 2, 4]
    assert knn_recall(approx, exact, 3) == pytest.approx((2 / 3 + 4) / 5, abs=1e-15)
    # Every node: exact = its first three others, approx = its last three: 2 of 3 shared by each.
    others = [[j for j in range(5) if j != i] for i in range(5)]
    exact = np.array([o[:3] for o in others])
    approx = np.array([o[1:] for o in others])
    assert knn_recall(approx, exact, 3) == pytest.approx(2 / 3, abs=1e-15)


def test_recall_from_graphs_ignores_weights_and_order():
    exact = sp.csr_array(np.array([[0, 0.9, 0.8, 0], [0.9, 0, 0.1, 0], [0.8, 0.7, 0, 0], [0.2, 0.3, 0, 0]]))
    approx = sp.csr_array(np.array([[0, 0.5, 0, 0.4], [0.9, 0, 0.1, 0], [0.8, 0.7, 0, 0], [0, 0.3, 0.6, 0]]))
    # Node 0: {1, 3} vs {1, 2} -> 1/2; nodes 1, 2: 1; node 3: {1, 2} vs {0, 1} -> 1/2.
    assert knn_recall(approx, exact, 2) == pytest.approx(3 / 4, abs=1e-15)
    assert knn_recall(approx, np.array([[1, 2], [0, 2], [0, 1], [0, 1]]), 2) == pytest.approx(3 / 4, abs=1e-15)


def test_recall_leaves_out_nodes_without_exact_neighbours():
    exact = sp.csr_array(np.array([[0, 1.0, 0], [1.0, 0, 0], [0, 0, 0]]))  # node 2: an all-zero row, no edges
    approx = sp.csr_array(np.array([[0, 1.0, 0], [0, 0, 1.0], [0, 0, 0]]))
    assert knn_recall(approx, exact, 1) == pytest.approx(1 / 2, abs=1e-15)


class _FakeIndex:
    """Stands in for pynndescent.NNDescent with a hand-made neighbour graph."""

    graph = None

    def __init__(self, data, **kwargs):
        self.kwargs = kwargs

    @property
    def neighbor_graph(self):
        return type(self).graph


def test_approx_candidates_drop_self_padding_and_repeats(monkeypatch):
    import pynndescent

    # Row 0: self not first (a duplicate point at distance 0 came before it), then a tie at 0.2 (3 before 4).
    # Row 1: a repeated index and a -1 pad. Row 2: only one other node found (short: -1 in the output).
    idx = np.array([[5, 0, 4, 3, 1], [1, 2, 2, -1, 0], [2, 1, -1, -1, -1]], dtype=np.int32)
    dist = np.array(
        [[0.0, 0.0, 0.2, 0.2, 0.5], [0.0, 0.1, 0.1, np.inf, 0.3], [0.0, 0.4, np.inf, np.inf, np.inf]],
        dtype=np.float32,
    )
    _FakeIndex.graph = (idx, dist)
    monkeypatch.setattr(pynndescent, "NNDescent", _FakeIndex)
    got = graphs._approx_neighbours(torch.zeros((3, 2)), 3, 5, 0)
    np.testing.assert_array_equal(got, [[5, 3, 4], [2, 0, -1], [1, -1, -1]])


def test_short_rows_are_completed_by_the_exact_search(monkeypatch):
    X, _ = blobs(n=60, d=5, seed=3)
    exact = knn_graph(X, K, symmetrize=False)
    real = np.stack([exact[[i]].indices for i in range(len(X))])

    def fake(Xin, k, n_neighbors, seed):
        cols = real.copy()
        cols[[4, 17]] = -1  # as if NN-descent had found no other node for 4 and 17, and one for 30
        cols[30, 1:] = -1
        return cols

    monkeypatch.setattr(graphs, "_approx_neighbours", fake)
    got = knn_graph(X, K, symmetrize=False, method="approx")
    assert (got != exact).nnz == 0


# --- properties of the approximate graph --------------------------------------------------------------------------


def test_approx_recall_on_blobs(blob_graphs):
    assert knn_recall(blob_graphs["approx"], blob_graphs["exact"], K) >= 0.95


def test_approx_directed_form(blob_graphs):
    D = blob_graphs["approx"]
    n = len(blob_graphs["X"])
    assert isinstance(D, sp.csr_array) and D.dtype == np.float64 and D.shape == (n, n)
    assert np.all(np.diff(D.indptr) == K)  # exactly k out-neighbours per node
    assert np.all(D.diagonal() == 0)
    assert D.has_sorted_indices


def test_approx_weights_are_exact_float64_cosines(blob_graphs):
    X, D = blob_graphs["X"], blob_graphs["approx"].tocoo()
    slow = np.array([slow_cosine(X, i, j) for i, j in zip(D.row, D.col, strict=True)])
    np.testing.assert_allclose(D.data, slow, rtol=0, atol=1e-12)


def test_approx_symmetrised_is_half_sum_of_directed(blob_graphs):
    A, D = blob_graphs["approx_sym"], blob_graphs["approx"]
    assert abs(A - A.T).max() == 0
    assert np.all(A.diagonal() == 0)
    # Mutual pairs keep S_ij, one-sided pairs get S_ij / 2, from the slow cosines.
    X, Dc = blob_graphs["X"], D.tocoo()
    S = sp.csr_array(
        ([slow_cosine(X, i, j) for i, j in zip(Dc.row, Dc.col, strict=True)], (Dc.row, Dc.col)), shape=D.shape
    )
    np.testing.assert_allclose(A.toarray(), ((S + S.T) / 2).toarray(), rtol=0, atol=1e-12)


def test_approx_modularity_close_to_exact(blob_graphs):
    y = blob_graphs["y"]
    q_exact = modularity(blob_graphs["exact_sym"], y)
    q_approx = modularity(blob_graphs["approx_sym"], y)
    assert 0.2 < q_exact < 0.9  # a graph with real class structure, not a trivially separable one
    assert abs(q_approx - q_exact) < 0.02


def test_approx_leaves_input_unchanged_and_is_reproducible(blob_graphs):
    np.testing.assert_array_equal(blob_graphs["X"], blob_graphs["X_before"])
    again = knn_graph(blob_graphs["X"], K, symmetrize=False, method="approx", seed=0)
    assert (again != blob_graphs["approx"]).nnz == 0


def test_approx_with_duplicates_and_a_zero_row():
    X, _ = blobs(n=300, d=8, seed=1)
    X[5] = 0.0
    X[7] = X[9] = X[8]
    D = knn_graph(X, K, symmetrize=False, method="approx")
    assert np.all(D.diagonal() == 0)
    counts = np.diff(D.indptr)
    assert counts[5] == 0 and np.all(D[:, [5]].toarray() == 0)  # a zero row has similarity 0 to all: no edges
    assert np.all(np.delete(counts, 5) == K)
    # The three copies are each other's nearest neighbours at cosine 1.
    for i, twins in [(7, [8, 9]), (8, [7, 9]), (9, [7, 8])]:
        np.testing.assert_allclose(D[[i]].toarray()[0, twins], 1.0, atol=1e-12)


# --- method="auto" and knn_method_used ----------------------------------------------------------------------------


def test_auto_below_threshold_is_exact(blob_graphs):
    X = blob_graphs["X"]
    assert len(X) < APPROX_MIN_SAMPLES
    assert knn_method_used(len(X), "auto") == "exact"
    got = knn_graph(X, K, method="auto")
    exact = blob_graphs["exact_sym"]
    assert (got != exact).nnz == 0
    np.testing.assert_array_equal(got.indices, exact.indices)
    np.testing.assert_array_equal(got.data, exact.data)


def test_auto_at_threshold_is_approx(blob_graphs, monkeypatch):
    monkeypatch.setattr(graphs, "APPROX_MIN_SAMPLES", len(blob_graphs["X"]))
    assert knn_method_used(len(blob_graphs["X"]), "auto") == "approx"
    got = knn_graph(blob_graphs["X"], K, symmetrize=False, method="auto")
    assert (got != blob_graphs["approx"]).nnz == 0


def test_knn_method_used():
    assert knn_method_used(APPROX_MIN_SAMPLES - 1) == "exact"
    assert knn_method_used(APPROX_MIN_SAMPLES) == "approx"
    assert knn_method_used(10**7, "exact") == "exact"
    assert knn_method_used(10, "approx") == "approx"
    assert KNN_METHODS == ("exact", "approx", "auto")


def test_exact_recall_against_itself_is_one(blob_graphs):
    assert knn_recall(blob_graphs["exact"], blob_graphs["exact"], K) == 1.0


# --- errors -------------------------------------------------------------------------------------------------------


def test_method_errors():
    X = np.random.default_rng(0).normal(size=(10, 3))
    with pytest.raises(ValueError, match="method='fast' is not one of 'exact', 'approx', 'auto'"):
        knn_graph(X, 2, method="fast")
    with pytest.raises(ValueError, match="method='nndescent' is not one of 'exact', 'approx', 'auto'"):
        knn_method_used(100, "nndescent")
    with pytest.raises(ValueError, match="n_samples must be an integer >= 1"):
        knn_method_used(0)
    with pytest.raises(ValueError, match="approx_neighbors must be an integer >= 1"):
        knn_graph(X, 2, method="approx", approx_neighbors=0)
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        knn_graph(X, 2, method="approx", seed=-1)
    with pytest.raises(ValueError, match="seed must be below 2\\*\\*32"):
        knn_graph(X, 2, method="approx", seed=2**32)


def test_recall_errors(blob_graphs):
    E = blob_graphs["exact"]
    with pytest.raises(ValueError, match="lists [0-9]+ neighbours for node [0-9]+ but k=3; pass the directed graph"):
        knn_recall(blob_graphs["approx_sym"], E, K)
    with pytest.raises(ValueError, match="same nodes"):
        knn_recall(E[:10, :10], E, K)
    with pytest.raises(ValueError, match="square"):
        knn_recall(E[:10], E, K)
    with pytest.raises(ValueError, match="outside \\[0, 3\\)"):
        knn_recall([[1], [5], [0]], [[1], [0], [0]], 1)
    with pytest.raises(ValueError, match="integer array \\(n, k\\) of neighbour indices"):
        knn_recall(np.ones((3, 1)), [[1], [0], [0]], 1)
    with pytest.raises(ValueError, match="exact has no edges"):
        knn_recall(sp.csr_array((3, 3)), sp.csr_array((3, 3)), 1)
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        knn_recall(E, E, 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_approx_on_cuda_matches_cpu(blob_graphs):
    got = knn_graph(torch.from_numpy(blob_graphs["X"]).cuda(), K, symmetrize=False, method="approx")
    np.testing.assert_array_equal(got.indices, blob_graphs["approx"].indices)
    np.testing.assert_allclose(got.data, blob_graphs["approx"].data, rtol=0, atol=1e-12)


# --- the approximate search through the analyses and the command line ----------------------------------------------


def _same_graph(a, b):
    return a.shape == b.shape and (a != b).nnz == 0


def test_analyses_cache_the_approx_graph_apart_from_the_exact(blob_graphs, tmp_path, monkeypatch):
    from gbs_core import analysis
    from gbs_core.cache import DiskCache

    X, y = blob_graphs["X"], blob_graphs["y"]
    fs = analysis.feature_set_from_arrays("blobs", {"l": X}, y)
    cache = DiskCache(tmp_path / "cache")
    exact = analysis.layer_knn_graph(fs, "l", k=K, cache=cache)
    assert len(cache.entries()) == 1
    approx = analysis.layer_knn_graph(fs, "l", k=K, method="approx", cache=cache)
    assert len(cache.entries()) == 2  # its own entry: an exact run never reads an approximate graph
    assert _same_graph(exact, blob_graphs["exact_sym"]) and _same_graph(approx, blob_graphs["approx_sym"])
    q_exact = analysis.modularity_by_layer(fs, k=K, cache=cache)["l"]
    q_approx = analysis.modularity_by_layer(fs, k=K, knn_method="approx", cache=cache)["l"]
    assert q_exact[0] == pytest.approx(modularity(blob_graphs["exact_sym"], y), abs=1e-12)
    assert q_approx[0] == pytest.approx(modularity(blob_graphs["approx_sym"], y), abs=1e-12)
    # read back without searching again; "auto" below the crossover is the exact search, the same entries
    monkeypatch.setattr(analysis, "knn_graph", lambda *a, **kw: pytest.fail("searched again"))
    assert _same_graph(analysis.layer_knn_graph(fs, "l", k=K, method="approx", cache=cache), approx)
    assert _same_graph(analysis.layer_knn_graph(fs, "l", k=K, method="auto", cache=cache), exact)
    assert analysis.modularity_by_layer(fs, k=K, knn_method="auto", cache=cache)["l"][0] == q_exact[0]


def test_analyze_command_with_the_approximate_search(blob_graphs, run, tmp_path):
    import json

    import pandas as pd

    from gbs_core.activations import save_activations

    X, y = blob_graphs["X"], blob_graphs["y"]
    acts = save_activations(tmp_path / "acts.npz", {"l": X}, y)
    for method, used, graph in (("approx", "approx", "approx_sym"), ("auto", "exact", "exact_sym")):
        out = tmp_path / method
        run("analyze", "--data", f"npz:{acts}", "--knn", method, "--metrics", "linear_cka", "--out", str(out))
        assert json.loads((out / "summary.json").read_text())["knn_search"] == used
        q = pd.read_csv(out / "modularity.csv")["q"].item()
        assert q == pytest.approx(modularity(blob_graphs[graph], y), abs=1e-12)
    bad = run("analyze", "--data", f"npz:{acts}", "--knn", "nearest", "--out", str(tmp_path / "o"), ok=False)
    assert "--knn" in bad.output


def test_approximate_search_over_the_memory_budget_is_refused(run, tmp_path):
    result = run("--no-cache", "analyze", "tiny10-s0", "--n-samples", "120", "--metrics", "linear_cka",
                 "--memory-budget", "2.5M", "--knn", "approx", "--out", str(tmp_path / "o"), ok=False)
    assert "the approximate kNN search needs a layer's features in memory" in result.output


def test_the_dashboards_sample_counts_stay_below_the_crossover():
    # the Sample graph and Modularity pages say their graphs come from the exact search
    from gbs_core.data import MAX_SAMPLES

    assert knn_method_used(MAX_SAMPLES, "auto") == "exact"
