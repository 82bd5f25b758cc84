"""Bounded-memory analysis: the same results as the in-memory path, in groups and with streamed layers."""

import json

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from gbs_core import analysis, bounded
from gbs_core.bounded import (
    LayerGroup,
    analyze_model,
    gram_matrix,
    knn_graph_from_gram,
    layer_sizes,
    parse_bytes,
    plan_layer_groups,
)
from gbs_core.cache import DiskCache
from gbs_core.digits_noise import load_digits_noise
from gbs_core.graphs import knn_graph
from gbs_core.pipeline import ModelSpec, load_model

METRICS = ("linear_cka", "debiased_linear_cka", "gbs_dense", "gbs_knn")


@pytest.fixture(scope="module")
def model_and_data():
    loaded = load_model(ModelSpec("zoo", "tiny10-s0"))
    data = load_digits_noise("test").subsample(120, seed=0)
    return loaded, data


@pytest.fixture(scope="module")
def in_memory(model_and_data):
    """The dashboard's path: all features in memory, the analysis functions one by one, no cache."""
    loaded, data = model_and_data
    fs = analysis.feature_set(loaded, data)
    curve = analysis.modularity_by_layer(fs, k=3, n_batches=2, seed=1)
    motifs = analysis.motifs_by_layer(fs, k=5)
    matrices = {m: analysis.layer_similarity(fs, metric=m) for m in METRICS}
    return fs, curve, motifs, matrices


def _check_equal(result, in_memory):
    """Equal up to the Gram matrices' float32 products (summed in float64): 1e-7, where the in-memory path works in
    float64 throughout; the kNN graphs' edges and the motif counts exactly."""
    fs, curve, motifs, matrices = in_memory
    assert result.layers == fs.layers
    for layer in fs.layers:
        np.testing.assert_allclose(result.curve[layer], curve[layer], rtol=0, atol=1e-7)
    cols = ["same_class", "two_classes", "all_different"]
    np.testing.assert_array_equal(result.motifs[cols].to_numpy(), motifs[cols].to_numpy())
    for m in METRICS:
        np.testing.assert_allclose(result.matrices[m], matrices[m], rtol=0, atol=1e-7, err_msg=m)
    np.testing.assert_array_equal(result.predictions, fs.predictions)


def _budget(loaded, data, fraction):
    sizes = layer_sizes(loaded, data, loaded.default_layers())
    return int(sum(sizes.values()) * len(data) * 4 * fraction)


def test_held_and_streamed_layers_give_the_in_memory_results(model_and_data, in_memory, tmp_path):
    loaded, data = model_and_data
    budget = _budget(loaded, data, 0.6)
    result = analyze_model(loaded, data, k=3, n_batches=2, seed=1, motif_k=5, metrics=METRICS,
                           memory_budget=budget, scratch_dir=tmp_path)
    kinds = [g.streamed for g in result.groups]
    assert result.bounded and kinds[0] is False and any(kinds)
    _check_equal(result, in_memory)
    assert list(tmp_path.iterdir()) == []  # the scratch folder is removed


def test_streamed_layers_give_the_in_memory_results(model_and_data, in_memory, tmp_path, monkeypatch):
    loaded, data = model_and_data
    n = len(data)
    budget = 16 * n * n * 8 + 100_000  # room for the Gram matrices; only the three narrowest layers fit the rest
    sizes = layer_sizes(loaded, data, loaded.default_layers())
    narrow = sorted(sizes, key=sizes.get)[:3]
    assert sum(sizes[name] for name in narrow) * n * 4 <= budget - 8 * n * n * 8
    cache = DiskCache(tmp_path / "cache")
    seen = []
    result = analyze_model(loaded, data, k=3, n_batches=2, seed=1, motif_k=5, metrics=METRICS, memory_budget=budget,
                           cache=cache, scratch_dir=tmp_path, progress=lambda d, t, msg: seen.append((d, t, msg)))
    assert result.groups[0] == LayerGroup(tuple(n_ for n_ in sizes if n_ in narrow), sum(sizes[name] for name in narrow) * n * 4)
    assert [g.layers[0] for g in result.groups[1:]] == [n_ for n_ in sizes if n_ not in narrow]
    _check_equal(result, in_memory)
    assert any("Gram matrix from blocks" in msg for *_, msg in seen) and seen[-1][0] == seen[-1][1]
    assert "3 layer(s) held in memory and 5 streamed through disk" in result.notes[0]
    # the in-memory path reads the bounded path's cache entries: same keys, same values
    fs, curve, _, matrices = in_memory
    stub = analysis.FeatureSet(fs.name, fs.model_id, fs.dataset_id, False, {n: np.empty((0, 0)) for n in fs.layers},
                               fs.labels, None, fs.class_names)
    again = analysis.modularity_by_layer(stub, k=3, n_batches=2, seed=1, cache=cache)
    for layer in fs.layers:
        np.testing.assert_allclose(again[layer], curve[layer], atol=1e-7)
    np.testing.assert_allclose(analysis.layer_similarity(stub, metric="linear_cka", cache=cache),
                               matrices["linear_cka"], atol=1e-7)
    # a rerun finds every result cached and extracts nothing
    def no_extraction(*args, **kwargs):
        raise AssertionError("features extracted although every result is cached")

    monkeypatch.setattr(bounded, "stream_activations", no_extraction)
    monkeypatch.setattr(analysis, "feature_set", no_extraction)
    warm = analyze_model(loaded, data, k=3, n_batches=2, seed=1, motif_k=5, metrics=METRICS,
                         memory_budget=budget, cache=cache)
    assert warm.groups == [] and "nothing was extracted" in warm.notes[0]
    _check_equal(warm, in_memory)


def test_under_the_budget_it_is_the_in_memory_path_with_any_metric(model_and_data, in_memory):
    loaded, data = model_and_data
    result = analyze_model(loaded, data, k=3, n_batches=2, seed=1, metrics=(*METRICS, "svcca"), memory_budget=2**34)
    assert not result.bounded and result.groups[0].layers == tuple(in_memory[0].layers)
    _check_equal(result, in_memory)
    assert result.matrices["svcca"].shape == (len(result.layers),) * 2


def test_over_the_budget_a_metric_needing_raw_features_is_refused(model_and_data):
    loaded, data = model_and_data
    with pytest.raises(ValueError, match=r"svcca need\(s\) the raw features of two layers at once"):
        analyze_model(loaded, data, metrics=("linear_cka", "svcca"), memory_budget=_budget(loaded, data, 0.6))


def test_gram_matrices_over_the_budget_are_refused(model_and_data):
    loaded, data = model_and_data
    with pytest.raises(ValueError, match="120 samples make 112 KiB Gram matrices; the similarity matrices hold up to 8"):
        analyze_model(loaded, data, metrics=("linear_cka",), memory_budget=200_000)


def test_plan_layer_groups_by_hand():
    sizes = {"a": 10, "b": 10, "c": 100, "d": 5, "e": 20}
    # 10 samples: a, b 400 B each, c 4000 B, d 200 B, e 800 B; budget 1000 B
    # the smallest first while they fit: d, a, b (1000 B); e and c are streamed, in depth order
    assert plan_layer_groups(sizes, 10, 1000) == [
        LayerGroup(("a", "b", "d"), 1000), LayerGroup(("c",), 4000, streamed=True), LayerGroup(("e",), 800, True)]
    assert plan_layer_groups(sizes, 10, 100) == [LayerGroup((name,), d * 40, True) for name, d in sizes.items()]
    assert plan_layer_groups(sizes, 10, 10**9) == [LayerGroup(tuple(sizes), 5800)]


def test_gram_and_knn_from_gram_agree_with_the_features():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 20_000)).astype(np.float32)  # more features than one chunk
    G = gram_matrix(X)
    exact = X.astype(np.float64) @ X.astype(np.float64).T
    scale = np.sqrt(np.outer(np.diag(exact), np.diag(exact)))  # errors relative to the rows' norms: cosines to 1e-6
    assert np.all(np.abs(G - exact) <= 1e-6 * scale)
    X[7] = 0.0  # an all-zero row keeps no edges
    for k in (1, 3, 5):
        A, B = knn_graph_from_gram(gram_matrix(X), k), knn_graph(X, k)
        assert np.abs((A - B).data).max(initial=0.0) < 1e-7  # cosines from the Gram matrix
        np.testing.assert_array_equal(A.indptr, B.indptr)
        np.testing.assert_array_equal(A.indices, B.indices)
        assert sp.csr_array(A)[[7], :].nnz == 0


def test_parse_bytes():
    assert parse_bytes("1.5G") == 3 * 2**29
    assert parse_bytes("512MiB") == parse_bytes("512 mb") == 2**29
    assert parse_bytes("3e9") == 3_000_000_000 and parse_bytes(4096) == 4096
    with pytest.raises(ValueError, match="is not a size; write e.g. 4G"):
        parse_bytes("four gigs")
    with pytest.raises(ValueError, match="must be positive"):
        parse_bytes("0")


def test_analyze_command_over_the_budget_writes_the_in_memory_files(run, tmp_path):
    common = ["analyze", "tiny10-s0", "--n-samples", "120", "--metrics", "linear_cka,gbs_knn", "--n-batches", "2"]
    low = run("--no-cache", *common, "--memory-budget", "2.5M", "--out", str(tmp_path / "low"))
    assert "(memory budget 2.5 MiB; over it: the layers that do not fit streamed through disk" in low.output
    assert "streamed through disk" in low.output and "Gram matrix from blocks of rows" in low.output
    run("--no-cache", *common, "--memory-budget", "4G", "--out", str(tmp_path / "high"))
    summary = json.loads((tmp_path / "low" / "summary.json").read_text())
    assert summary["memory"]["bounded"] and summary["memory"]["budget_bytes"] == int(2.5 * 2**20)
    assert not json.loads((tmp_path / "high" / "summary.json").read_text())["memory"]["bounded"]
    for name in ("modularity.csv", "similarity_linear_cka.csv", "similarity_gbs_knn.csv"):
        a = pd.read_csv(tmp_path / "low" / name).select_dtypes("number").to_numpy()
        b = pd.read_csv(tmp_path / "high" / name).select_dtypes("number").to_numpy()
        np.testing.assert_allclose(a, b, atol=1e-7, err_msg=name)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "low" / "motifs.csv"),
                                  pd.read_csv(tmp_path / "high" / "motifs.csv"))


def test_analyze_command_refuses_bad_budgets_and_raw_feature_metrics(run, tmp_path):
    bad = run("analyze", "tiny10-s0", "--memory-budget", "lots", "--out", str(tmp_path / "o"), ok=False)
    assert "--memory-budget" in bad.output and "is not a size" in bad.output
    cca = run("analyze", "tiny10-s0", "--n-samples", "120", "--memory-budget", "2.5M", "--metrics", "svcca",
              "--out", str(tmp_path / "o"), ok=False)
    assert "svcca need(s) the raw features of two layers at once" in cca.output
    gpu = run("--device", "cuda:7", "analyze", "tiny10-s0", "--out", str(tmp_path / "o"), ok=False)
    assert "--device" in gpu.output


def test_features_larger_than_half_the_cache_are_not_cached(model_and_data, tmp_path):
    from gbs_core.pipeline import _key, cached_activations

    loaded, data = model_and_data
    small = DiskCache(tmp_path / "small", max_bytes=8 * 2**20)  # the 8 layers hold 7.3 MiB
    cached_activations(loaded, data, cache=small)
    assert all(small.get(_key(loaded.model_id, data, name, False)) is None for name in loaded.default_layers())
    assert small.get(_key(loaded.model_id, data, "__predictions__", False)) is not None
    big = DiskCache(tmp_path / "big", max_bytes=64 * 2**20)
    cached_activations(loaded, data, cache=big)
    assert all(big.get(_key(loaded.model_id, data, name, False)) is not None for name in loaded.default_layers())


def test_analyze_two_models_on_a_local_cluster_equals_serial(run, tmp_path):
    common = ["analyze", "tiny10-s0", "tiny10-s1", "--n-samples", "120", "--metrics", "linear_cka,gbs_knn"]
    serial = run("--no-cache", *common, "--memory-budget", "2.5M", "--out", str(tmp_path / "serial"))
    folders = sorted(p.name for p in (tmp_path / "serial").iterdir())
    assert folders == ["01_tiny10-s0", "02_tiny10-s1"] and "streamed through disk" in serial.output
    cluster = run(*common, "--memory-budget", "2.5M", "--scheduler", "local", "--workers", "2",
                  "--out", str(tmp_path / "cluster"))
    assert "Dask: 2 worker(s)" in cluster.output
    for folder in folders:
        for name in ("modularity.csv", "similarity_linear_cka.csv", "similarity_gbs_knn.csv", "motifs.csv"):
            a = pd.read_csv(tmp_path / "serial" / folder / name)
            b = pd.read_csv(tmp_path / "cluster" / folder / name)
            pd.testing.assert_frame_equal(a, b)  # the same code on the same inputs: identical
    # the client wrote the workers' results into its cache: a serial rerun extracts nothing
    again = run(*common, "--memory-budget", "2.5M", "--out", str(tmp_path / "again"))
    assert again.output.count("every result was in the cache: nothing was extracted") == 2
