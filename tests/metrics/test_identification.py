"""Tests of the layer-identification sanity check."""

import numpy as np
import pytest

from gbs_core.metrics import layer_identification_accuracy


def neg_sq_dist(x, y):
    return -float(((x - y) ** 2).sum())


def scalar_model(values):
    return {f"l{i}": np.full((1, 1), v) for i, v in enumerate(values)}


def test_hand_example_with_failures():
    # Model 0 layers = 0, 1, 2; model 1 layers = 0, 1.9, 2.5; similarity = -(x - y)^2.
    # (0,1): l0 -> l0, l1 (1) -> l1 (0.81 < 1, 1.21), l2 (2) -> l1 (0.01 < 0.25): 2/3.
    # (1,0): l0 -> l0, l1 (1.9) -> l2 (0.01), l2 (2.5) -> l2: 2/3. Overall 4/6.
    res = layer_identification_accuracy([scalar_model([0, 1, 2]), scalar_model([0, 1.9, 2.5])], neg_sq_dist)
    assert res.accuracy == pytest.approx(2 / 3)
    assert res.layers == ["l0", "l1", "l2"]
    assert res.per_layer == pytest.approx({"l0": 1.0, "l1": 0.5, "l2": 0.5})
    assert [(p.a, p.b) for p in res.pairs] == [(0, 1), (1, 0)]
    np.testing.assert_array_equal(res.pairs[0].predicted, [0, 1, 1])
    np.testing.assert_array_equal(res.pairs[1].predicted, [0, 2, 2])
    assert res.failures() == [(0, 1, "l2", "l1"), (1, 0, "l1", "l2")]


def test_exclude_and_ties_go_to_first_layer():
    # l1 of model 1 equals l0 and l1 of model 0 equally (tie) -> the first (l0) wins -> wrong.
    m0 = scalar_model([0, 0, 5])
    m1 = scalar_model([0, 0, 5])
    res = layer_identification_accuracy([m0, m1], neg_sq_dist)
    np.testing.assert_array_equal(res.pairs[0].predicted, [0, 0, 2])
    assert res.accuracy == pytest.approx(4 / 6)
    res = layer_identification_accuracy([m0, m1], neg_sq_dist, exclude=["l1"])
    assert res.accuracy == 1.0 and res.layers == ["l0", "l2"]


def test_rotated_copies_are_identified_by_cka_and_gbs():
    rng = np.random.default_rng(0)
    n = 60
    x = rng.normal(size=(n, 6))
    base = {}
    for i in range(4):
        x = np.maximum(x @ rng.normal(size=(x.shape[1], 6)) / 2, 0) + 0.5 * rng.normal(size=(n, 6))
        base[f"layer{i}"] = x
    models = []
    for s in range(3):
        Q, _ = np.linalg.qr(np.random.default_rng(s + 10).normal(size=(6, 6)))
        models.append({k: v @ Q * (s + 1) for k, v in base.items()})
    for metric in ("linear_cka", "gbs_dense", "rbf_cka"):
        res = layer_identification_accuracy(models, metric)
        assert res.accuracy == 1.0
        assert len(res.pairs) == 6
        # symmetric metric: the (1, 0) matrix is the transpose of the (0, 1) one
        np.testing.assert_allclose(res.pairs[2].similarity, res.pairs[0].similarity.T)


def test_nan_rows_count_as_wrong():
    m0 = {"a": np.zeros((5, 2)), "b": np.random.default_rng(1).normal(size=(5, 2))}
    with pytest.warns(RuntimeWarning):
        res = layer_identification_accuracy([m0, m0], "linear_cka")
    assert res.pairs[0].predicted[0] == -1
    assert res.accuracy == pytest.approx(0.5)
    assert res.failures()[0][3] == "none"


def test_errors():
    m = scalar_model([0, 1])
    with pytest.raises(ValueError, match="need features of at least 2 models; got 1"):
        layer_identification_accuracy([m], neg_sq_dist)
    with pytest.raises(
        ValueError, match=r"models_features\[1\] has different layers from model 0 \(differing: \['l1', 'x'\]\)"
    ):
        layer_identification_accuracy([m, {"l0": m["l0"], "x": m["l1"]}], neg_sq_dist)
    with pytest.raises(ValueError, match=r"exclude names layers that do not exist: \['logits'\]"):
        layer_identification_accuracy([m, m], neg_sq_dist, exclude=["logits"])
    with pytest.raises(ValueError, match="need at least 2 layers to identify; got 1"):
        layer_identification_accuracy([m, m], neg_sq_dist, exclude=["l0"])
    with pytest.raises(ValueError, match="metric='foo' is not one of"):
        layer_identification_accuracy([m, m], "foo")
