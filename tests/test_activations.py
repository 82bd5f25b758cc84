import warnings
from collections import namedtuple

import numpy as np
import pytest
import torch
from torch import nn

from gbs_core.activations import (
    MemoryBudgetWarning,
    default_layers,
    estimate_feature_bytes,
    extract_activations,
    heuristic_default_layers,
    list_layers,
    load_saved_activations,
    save_activations,
)
from gbs_core.data import load_digits
from gbs_core.zoo import ARCHITECTURES, build_model, build_torchvision_model


def _hook_count(model):
    return sum(len(m._forward_hooks) for m in model.modules())


class TwoLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 2, bias=False)
        self.b = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.a.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1, 1]]))
            self.b.weight.copy_(torch.tensor([[1.0, -1], [2, 0]]))

    def forward(self, x):
        return self.b(self.a(x))


def test_exact_values_and_depth_order():
    x = torch.tensor([[1.0, 2, 3], [0, 1, 0]])
    acts = extract_activations(TwoLayer(), x, ["b", "a"], batch_size=1)
    assert list(acts.features) == ["a", "b"]  # depth order, whatever order asked
    np.testing.assert_array_equal(acts.features["a"], [[1, 5], [0, 1]])
    np.testing.assert_array_equal(acts.features["b"], [[-4, 2], [-1, 0]])
    assert acts.predictions.tolist() == [1, 1]  # argmax of [-4, 2] and of [-1, 0]
    assert acts.features["a"].dtype == np.float32


@pytest.mark.parametrize("arch", [*ARCHITECTURES, "resnet18"])
def test_extract_every_architecture_and_hooks_removed(arch):
    model = build_model(arch)
    data = load_digits("test").subsample(20, seed=0)
    layers = default_layers(model)
    infos = {i.name: i for i in list_layers(model, data.images[:2])}
    calls = []
    acts = extract_activations(model, data, layers, batch_size=8, progress=lambda d, t: calls.append((d, t)))
    assert list(acts.features) == layers
    for name, feats in acts.features.items():
        assert feats.shape == (20, infos[name].n_features)
    assert calls == [(8, 20), (16, 20), (20, 20)]
    assert _hook_count(model) == 0
    assert acts.predictions.shape == (20,)


def test_batching_does_not_change_values():
    model = build_model("resnet20").eval()
    data = load_digits("test").subsample(30, seed=1)
    a = extract_activations(model, data, ["stem", "layer3.2"], batch_size=7)
    b = extract_activations(model, data, ["stem", "layer3.2"], batch_size=30)
    with torch.no_grad():
        logits = model(data.images)
    for k in a.features:
        np.testing.assert_allclose(a.features[k], b.features[k], rtol=1e-5, atol=1e-5)
    assert np.array_equal(a.predictions, logits.argmax(1).numpy())


def test_pooling_is_channel_mean():
    model = build_model("tiny10")
    x = load_digits("test").images[:4]
    full = extract_activations(model, x, ["features.0"]).features["features.0"].reshape(4, 16, 16, 16)
    pooled = extract_activations(model, x, ["features.0"], pool=True).features["features.0"]
    assert pooled.shape == (4, 16)
    np.testing.assert_allclose(pooled, full.mean(axis=(2, 3)), rtol=1e-5, atol=1e-6)


class Exploding(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 2)

    def forward(self, x):
        self.lin(x)
        raise RuntimeError("boom")


def test_hooks_removed_after_error_and_mode_restored():
    model = Exploding().train()
    with pytest.raises(RuntimeError, match="boom"):
        extract_activations(model, torch.zeros(3, 2), ["lin"])
    assert _hook_count(model) == 0
    assert model.training


Pair = namedtuple("Pair", "main aux")


class TupleNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(2, 3)

    def forward(self, x):
        h = self.body(x)
        return Pair(h * 2, h), {"logits": h[:, :2], "extra": h}


class DictLayer(nn.Module):
    def forward(self, x):
        return {"feat": x + 1, "other": x - 1}


class DictNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = DictLayer()

    def forward(self, x):
        return self.inner(x)["feat"]


def test_tuple_and_dict_outputs():
    x = torch.ones(2, 2)
    net = TupleNet()
    acts = extract_activations(net, x, ["body"])
    assert acts.features["body"].shape == (2, 3)
    acts = extract_activations(DictNet(), x, ["inner"], output_key="other")
    np.testing.assert_array_equal(acts.features["inner"], np.zeros((2, 2)))
    acts = extract_activations(DictNet(), x, ["inner"])
    np.testing.assert_array_equal(acts.features["inner"], np.full((2, 2), 2.0))


def test_list_layers_shapes_order_and_reuse():
    model = build_torchvision_model("resnet18")
    infos = list_layers(model, torch.zeros(1, 1, 16, 16))
    names = [i.name for i in infos]
    assert names.index("net.layer1.0") < names.index("net.layer2.0") < names.index("net.fc")
    by = {i.name: i for i in infos}
    assert by["net.layer1.0"].output_shape == (64, 8, 8)
    assert by["net.layer1.0.relu"].calls == 2  # torchvision reuses the block's ReLU
    assert by["net.fc"].output_shape == (10,)
    assert _hook_count(model) == 0


def test_heuristic_defaults():
    tv = build_torchvision_model("resnet18")
    assert heuristic_default_layers(tv.net)[:3] == ["conv1", "layer1.0", "layer1.1"]
    vgg = build_torchvision_model("vgg11_bn")
    assert all(n.startswith("net.features.") for n in default_layers(vgg))
    mlp = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4), nn.Linear(4, 2))
    assert heuristic_default_layers(mlp) == ["0", "2"]


def test_unknown_layer_and_empty_requests():
    model = build_model("tiny10")
    with pytest.raises(ValueError, match=r"unknown layer name\(s\): 'features.99' \(close: \["):
        extract_activations(model, torch.zeros(1, 1, 16, 16), ["features.99"])
    with pytest.raises(ValueError, match="no layers requested"):
        extract_activations(model, torch.zeros(1, 1, 16, 16), [])
    with pytest.raises(ValueError, match="no samples"):
        extract_activations(model, torch.zeros(0, 1, 16, 16), ["features.0"])


def test_memory_budget_warning():
    model = build_model("tiny10")
    x = torch.zeros(10, 1, 16, 16)
    infos = list_layers(model, x[:1])
    info0 = next(i for i in infos if i.name == "features.0")
    assert estimate_feature_bytes([info0], 10) == 10 * 4096 * 4
    assert estimate_feature_bytes([info0], 10, pool=True) == 10 * 16 * 4
    with pytest.warns(MemoryBudgetWarning, match="fewer samples, pool conv maps"):
        extract_activations(model, x, ["features.0"], memory_budget=1000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        extract_activations(model, x, ["features.0"], pool=True, memory_budget=1000)


def test_saved_activations_round_trip_and_errors(tmp_path):
    feats = {"conv": np.arange(24, dtype=np.float32).reshape(3, 2, 2, 2), "fc": np.ones((3, 4), np.float32)}
    path = save_activations(tmp_path / "a.npz", feats, np.array([0, 1, 1]), class_names=["x", "y"])
    f, labels, preds, names = load_saved_activations(path)
    assert list(f) == ["conv", "fc"] and f["conv"].shape == (3, 8)
    assert labels.tolist() == [0, 1, 1] and preds is None and names == ("x", "y")
    np.savez(tmp_path / "bad.npz", **{"layer:a": np.ones((2, 2)), "labels": np.zeros(3)})
    with pytest.raises(ValueError, match="has 2 samples but there are 3 labels"):
        load_saved_activations(tmp_path / "bad.npz")
    np.savez(tmp_path / "nolab.npz", **{"layer:a": np.ones((2, 2))})
    with pytest.raises(ValueError, match="has no 'labels' array"):
        load_saved_activations(tmp_path / "nolab.npz")
    np.savez(tmp_path / "nan.npz", **{"layer:a": np.full((2, 2), np.nan), "labels": np.zeros(2)})
    with pytest.raises(ValueError, match="NaN or infinite"):
        load_saved_activations(tmp_path / "nan.npz")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(ValueError, match="cannot read junk.npz"):
        load_saved_activations(tmp_path / "junk.npz")
    np.savez(tmp_path / "obj.npz", labels=np.array([{"a": 1}], dtype=object), **{"layer:a": np.ones((1, 2))})
    with pytest.raises(ValueError, match="cannot read obj.npz"):
        load_saved_activations(tmp_path / "obj.npz")


def test_memory_budget_warning_is_shown_by_default_and_comes_before_the_work():
    assert issubclass(MemoryBudgetWarning, UserWarning)  # Python ignores ResourceWarning unless asked
    model = build_model("tiny10")
    x = torch.zeros(10, 1, 16, 16)
    seen = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        extract_activations(model, x, ["features.0"], memory_budget=1000, batch_size=4,
                            progress=lambda done, total: seen.append((len(caught), done)))
    assert [w.category for w in caught] == [MemoryBudgetWarning]
    assert seen[0] == (1, 4)  # the warning was out before the first batch was done
    assert "0.00 GiB" in str(caught[0].message) and "10 samples" in str(caught[0].message)
