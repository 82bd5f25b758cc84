import numpy as np
import pytest

from gbs_core.analysis import (
    feature_set,
    feature_set_from_arrays,
    layer_knn_graph,
    layer_similarity,
    modularity_by_layer,
    modularity_table,
    motifs_by_layer,
)
from gbs_core.cache import DiskCache
from gbs_core.data import load_digits
from gbs_core.metrics import linear_cka, modularity, triangle_motifs
from gbs_core.pipeline import ModelSpec, load_model


@pytest.fixture(scope="module")
def fs(tmp_path_factory):
    cache = DiskCache(tmp_path_factory.mktemp("cache"))
    data = load_digits("test").subsample(60, seed=0)
    return feature_set(load_model(ModelSpec("zoo", "tiny10-s0")), data, ["features.0", "features.4", "features.7"],
                       cache=cache), cache


def test_modularity_by_layer_matches_direct_and_is_cached(fs):
    fs, cache = fs
    curve = modularity_by_layer(fs, k=3, cache=cache)
    for layer, q in curve.items():
        assert q.shape == (1,)
        A = layer_knn_graph(fs, layer, k=3, cache=cache)
        assert q[0] == pytest.approx(modularity(A, fs.labels), abs=1e-12)
    hits = cache.stats.hits
    again = modularity_by_layer(fs, k=3, cache=cache)
    assert cache.stats.hits == hits + 3
    assert all(np.array_equal(curve[k], again[k]) for k in curve)


def test_modularity_table_by_hand():
    table = modularity_table({"a": np.array([0.1]), "b": np.array([0.5, 0.3]), "c": np.array([0.41]),
                              "d": np.array([0.45])}, threshold=0.05)
    assert list(table.columns) == ["depth", "normalized_depth", "layer", "q", "q_std", "dq", "prunable", "kind"]
    assert table["q"].tolist() == pytest.approx([0.1, 0.4, 0.41, 0.45])
    assert table["q_std"][1] == pytest.approx(np.std([0.5, 0.3], ddof=1))
    assert np.isnan(table["dq"][0]) and table["dq"][2] == pytest.approx(0.01)
    assert table["prunable"].tolist() == [False, False, True, True]
    assert table["kind"].tolist() == ["", "", "plateau", "plateau"]
    assert table["normalized_depth"].tolist() == pytest.approx([0, 1 / 3, 2 / 3, 1])


def test_motifs_by_layer_matches_triangle_counts(fs):
    fs, cache = fs
    table = motifs_by_layer(fs, k=5, cache=cache)
    assert table["layer"].tolist() == fs.layers
    for _, row in table.iterrows():
        counts = triangle_motifs(layer_knn_graph(fs, row["layer"], k=5), fs.labels)
        assert (row["same_class"], row["two_classes"], row["all_different"]) == tuple(counts)
        assert row["same_class_fraction"] == pytest.approx(counts.same_class / sum(counts))


def test_similarity_minibatch_one_batch_equals_debiased(fs):
    fs, cache = fs
    m = layer_similarity(fs, metric="minibatch_cka", batch_size=1000, cache=cache)
    X, Y = fs.features["features.0"], fs.features["features.7"]
    assert m[0, 2] == pytest.approx(linear_cka(X, Y, debiased=True), abs=1e-9)
    lin = layer_similarity(fs, metric="linear_cka", cache=cache)
    assert lin.shape == (3, 3) and np.allclose(np.diag(lin), 1.0)
    assert lin[0, 2] == pytest.approx(linear_cka(X, Y), abs=1e-9)
    batched = layer_similarity(fs, metric="minibatch_cka", batch_size=16, cache=cache)
    assert batched.shape == (3, 3) and not np.allclose(batched, m)
    with pytest.raises(ValueError, match="needs at least 4 samples per batch"):
        layer_similarity(fs, metric="minibatch_cka", batch_size=2)


def test_similarity_across_different_samples_is_refused(fs):
    fs, _ = fs
    other = feature_set_from_arrays("saved", {"x": np.random.default_rng(0).normal(size=(60, 3))}, fs.labels)
    with pytest.raises(ValueError, match="computed on different samples"):
        layer_similarity(fs, other)


def test_feature_set_from_arrays_identity():
    rng = np.random.default_rng(1)
    feats = {"a": rng.normal(size=(10, 4)), "b": rng.normal(size=(10, 2, 2))}
    labels = np.arange(10) % 2
    one = feature_set_from_arrays("x", feats, labels)
    two = feature_set_from_arrays("y", feats, labels)
    assert one.model_id == two.model_id and one.features["b"].shape == (10, 4)
    three = feature_set_from_arrays("x", {**feats, "a": feats["a"] + 1}, labels)
    assert three.model_id != one.model_id
    assert one.class_names == ("0", "1")


def _hsic_unbiased(K: np.ndarray, L: np.ndarray) -> float:
    """Song et al.'s unbiased HSIC_1, written out naively (an independent check of the streaming accumulator)."""
    n = len(K)
    K, L = K.copy(), L.copy()
    np.fill_diagonal(K, 0.0)
    np.fill_diagonal(L, 0.0)
    one = np.ones(n)
    return float((np.trace(K @ L) + (one @ K @ one) * (one @ L @ one) / ((n - 1) * (n - 2))
                  - 2 / (n - 2) * one @ K @ L @ one) / (n * (n - 3)))


def test_minibatch_batches_are_equal():
    from gbs_core.analysis import minibatch_batches

    assert minibatch_batches(500, 128) == (4, 125)
    assert minibatch_batches(501, 128) == (4, 125)  # one sample left out
    assert minibatch_batches(512, 128) == (4, 128)
    assert minibatch_batches(9, 4) == (2, 4)  # three batches of 3 would be below the minimum of 4
    assert minibatch_batches(100, 1000) == (1, 100)


def test_minibatch_cka_equals_the_reference_accumulator_with_equal_batches():
    """At N = 500 and batches of at most 128, the page's number is the mean over 4 equal batches of 125 (the
    reference's), not a mean that weighs a last batch of 116 like the others."""
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(5), 100)
    X = rng.normal(size=(500, 12)) + labels[:, None]
    Y = np.tanh(X @ rng.normal(size=(12, 7))) + 0.3 * rng.normal(size=(500, 7))
    X, Y = X.astype(np.float32).astype(np.float64), Y.astype(np.float32).astype(np.float64)  # what the set stores
    fs = feature_set_from_arrays("m", {"x": X, "y": Y}, labels)
    got = layer_similarity(fs, metric="minibatch_cka", batch_size=128, seed=5)[0, 1]
    order = np.random.default_rng(5).permutation(500)
    xy = xx = yy = 0.0
    for b in range(4):
        idx = order[b * 125:(b + 1) * 125]
        Xc = X[idx] - X[idx].mean(0)
        Yc = Y[idx] - Y[idx].mean(0)
        K, L = Xc @ Xc.T, Yc @ Yc.T
        xy += _hsic_unbiased(K, L)
        xx += _hsic_unbiased(K, K)
        yy += _hsic_unbiased(L, L)
    assert got == pytest.approx(xy / np.sqrt(xx * yy), abs=1e-9)
