"""Tests of GBS layer similarity: hand values, invariances, a slow dense reference."""

import math

import numpy as np
import pytest
import torch

from gbs_core.graphs import knn_graph
from gbs_core.metrics import gbs_similarity


def slow_gbs(A, B):
    A, B = np.asarray(A), np.asarray(B)
    total = 0.0
    for a, b in zip(A, B, strict=True):
        na, nb = np.linalg.norm(a), np.linalg.norm(b)
        total += 0.0 if na == 0 or nb == 0 else a @ b / (na * nb)
    return total / len(A)


def slow_dense_graph(X):
    X = np.asarray(X, float)
    n = len(X)
    S = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if i != j:
                ni, nj = max(np.linalg.norm(X[i]), 1e-8), max(np.linalg.norm(X[j]), 1e-8)
                S[i, j] = X[i] @ X[j] / (ni * nj)
    return S


X3 = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
Y3 = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])


def test_dense_hand_value():
    # r = 1/sqrt2. A rows: (0,0,r), (0,0,r), (r,r,0); B rows: (0,r,0), (r,0,r), (0,r,0).
    # NSim = 0, (r^2)/(r*1) = r, (r^2)/(1*r) = r: GBS = 2r/3 = sqrt2/3.
    for method in ("blocks", "feature"):
        assert gbs_similarity(X3, Y3, method=method) == pytest.approx(math.sqrt(2) / 3, abs=1e-15)


def test_knn_hand_value():
    # k=1 (ties to the lower index): A rows (0,0,r), (0,0,r/2), (r,r/2,0); B rows (0,r,0), (r,0,r/2), (0,r/2,0).
    # NSim = 0, 1/sqrt5, 1/sqrt5: GBS = 2 / (3 sqrt5).
    assert gbs_similarity(X3, Y3, graph="knn", k=1) == pytest.approx(2 / (3 * math.sqrt(5)), abs=1e-15)


def test_zero_row_contributes_zero():
    X = np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    # A rows: (0,0,r), 0, (r,0,0); B = Y3's rows (0,r,0), (r,0,r), (0,r,0): NSim = 0, 0, 0.
    assert gbs_similarity(X, Y3) == 0.0
    assert gbs_similarity(X, Y3, method="feature") == 0.0


@pytest.mark.parametrize("seed", range(4))
def test_matches_slow_dense_and_knn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 30))
    X, Y = rng.normal(size=(n, 4)), rng.normal(size=(n, 6)) + 0.5
    expected = slow_gbs(slow_dense_graph(X), slow_dense_graph(Y))
    assert gbs_similarity(X, Y, method="blocks", block_size=int(rng.integers(1, 9))) == pytest.approx(
        expected, abs=1e-13
    )
    assert gbs_similarity(X, Y, method="feature") == pytest.approx(expected, abs=1e-12)
    assert gbs_similarity(X, Y) == pytest.approx(expected, abs=1e-12)
    k = int(rng.integers(1, 5))
    expected_knn = slow_gbs(knn_graph(X, k).toarray(), knn_graph(Y, k).toarray())
    assert gbs_similarity(X, Y, graph="knn", k=k) == pytest.approx(expected_knn, abs=1e-14)


def test_properties():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(40, 6))
    Y = np.tanh(X @ rng.normal(size=(6, 8))) + 0.3 * rng.normal(size=(40, 8))
    base = gbs_similarity(X, Y)
    Q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    assert gbs_similarity(X @ Q, Y) == pytest.approx(base, abs=1e-12)
    assert gbs_similarity(2.5 * X, 0.1 * Y) == pytest.approx(base, abs=1e-12)
    assert abs(gbs_similarity(X + 2.0, Y) - base) > 1e-3  # not translation invariant
    assert gbs_similarity(Y, X) == pytest.approx(base, abs=1e-14)
    assert gbs_similarity(X, X) == pytest.approx(1.0, abs=1e-12)
    assert gbs_similarity(X, X, graph="knn") == pytest.approx(1.0, abs=1e-12)
    assert -1.0 <= base <= 1.0
    assert gbs_similarity(np.abs(X), np.abs(Y)) >= 0.0
    assert gbs_similarity(torch.from_numpy(X), torch.from_numpy(Y)) == pytest.approx(base, abs=1e-14)


def test_errors():
    X = np.random.default_rng(0).normal(size=(6, 3))
    with pytest.raises(ValueError, match="graph='sparse' is not one of 'dense', 'knn'"):
        gbs_similarity(X, X, graph="sparse")
    with pytest.raises(ValueError, match="method='x' is not one of"):
        gbs_similarity(X, X, method="x")
    with pytest.raises(ValueError, match="k=3 applies to graph='knn' only"):
        gbs_similarity(X, X, k=3)
    with pytest.raises(ValueError, match="k=5 neighbours need more than 5 samples"):
        gbs_similarity(X[:5], X[:5], graph="knn")
    with pytest.raises(ValueError, match="X has 6, Y has 5"):
        gbs_similarity(X, X[:5])
    with pytest.raises(ValueError, match="X has 1 samples; GBS needs at least 2"):
        gbs_similarity(X[:1], X[:1])
    with pytest.raises(ValueError, match="block_size must be an integer >= 1"):
        gbs_similarity(X, X, block_size=-1)


def test_gbs_redundant_layers_on_a_hand_made_curve():
    from gbs_core.metrics import gbs_redundant_layers

    sims = {"l0": 123.0, "l1": 0.95, "l2": 0.99, "l3": 0.96, "l4": 0.2}  # l0 has no previous layer: ignored
    flagged = gbs_redundant_layers(sims, threshold=0.955)
    assert [(r.position, r.name, r.similarity) for r in flagged] == [(2, "l2", 0.99), (3, "l3", 0.96)]
    assert gbs_redundant_layers([np.nan, 0.5], threshold=0.5) == []  # strictly above
    with pytest.raises(ValueError, match="layer 'l1' is nan"):
        gbs_redundant_layers({"l0": 1.0, "l1": np.nan}, threshold=0.5)
    with pytest.raises(ValueError, match="finite number"):
        gbs_redundant_layers([np.nan, 0.5], threshold=np.inf)
