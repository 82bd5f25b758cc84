"""The core on every device this machine has: the CPU always, CUDA when torch sees one (skipped otherwise). Each
device's results agree with the CPU's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gbs_core.activations import extract_activations
from gbs_core.bounded import analyze_model, gram_matrix
from gbs_core.digits_noise import load_digits_noise
from gbs_core.graphs import knn_graph
from gbs_core.metrics import linear_cka, modularity_curve, similarity_matrix
from gbs_core.pipeline import ModelSpec, load_model

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                  reason="no CUDA device on this machine"))]


def _clustered(n=300, d=64, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 5
    X = (rng.normal(size=(5, d))[y] + rng.normal(size=(n, d))).astype(np.float32)
    return X, y


@pytest.mark.parametrize("device", DEVICES)
def test_knn_graph_and_modularity_on_the_device(device):
    X, y = _clustered()
    A, B = knn_graph(X, 3, device=device), knn_graph(X, 3, device="cpu")
    np.testing.assert_array_equal(A.indices, B.indices)
    np.testing.assert_allclose(A.data, B.data, atol=1e-12)
    q = modularity_curve({"x": X}, y, k=3, device=device)["x"]
    np.testing.assert_allclose(q, modularity_curve({"x": X}, y, k=3, device="cpu")["x"], atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_similarity_on_the_device(device):
    X, _ = _clustered()
    Y = np.maximum(X @ np.random.default_rng(1).normal(size=(64, 32)).astype(np.float32), 0)
    feats = {"x": X, "y": Y}
    for metric in ("linear_cka", "gbs_dense", "gbs_knn"):
        np.testing.assert_allclose(similarity_matrix(feats, metric=metric, device=device),
                                   similarity_matrix(feats, metric=metric, device="cpu"), atol=1e-9, err_msg=metric)
    assert abs(linear_cka(X, Y, device=device) - linear_cka(X, Y)) < 1e-9
    np.testing.assert_allclose(gram_matrix(X, device=device), gram_matrix(X), rtol=1e-6, atol=1e-3)


@pytest.mark.parametrize("device", DEVICES)
def test_extraction_and_bounded_analysis_on_the_device(device):
    loaded = load_model(ModelSpec("zoo", "tiny10-s0"))
    data = load_digits_noise("test").subsample(60, seed=0)
    here = extract_activations(loaded.model, data, ["features.0", "features.7"], device=device)
    cpu = extract_activations(loaded.model.cpu(), data, ["features.0", "features.7"])
    for name in cpu.features:
        np.testing.assert_allclose(here.features[name], cpu.features[name], atol=1e-4)
    a = analyze_model(loaded, data, metrics=("linear_cka",), memory_budget=600_000, device=device)
    b = analyze_model(loaded.__class__(**{**loaded.__dict__, "model": loaded.model.cpu()}), data,
                      metrics=("linear_cka",), memory_budget=600_000)
    assert a.bounded
    np.testing.assert_allclose(a.matrices["linear_cka"], b.matrices["linear_cka"], atol=1e-5)
