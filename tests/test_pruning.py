"""Modularity-guided pruning: removability, surgery, hand-counted sizes, the control, and a full tiny run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gbs_core.cache import DiskCache
from gbs_core.data import Dataset
from gbs_core.experiments import pruning
from gbs_core.experiments.pruning import (
    PruningResult,
    choose_control_units,
    count_flops,
    plan_pruning,
    removable_units,
    remove_units,
    resolve_threshold,
    run_pruning,
)
from gbs_core.zoo.architectures import MLP, VGG, CifarResNet, Tiny10
from gbs_core.zoo.train import TrainConfig, count_parameters


def _small_resnet(blocks=(2, 2, 2), widths=(4, 8, 8)) -> CifarResNet:
    torch.manual_seed(0)
    return CifarResNet(in_channels=1, num_classes=10, blocks_per_stage=blocks, widths=widths).eval()


def _toy_data(n: int = 48, size: int = 8, seed: int = 0, tag: str = "toy") -> Dataset:
    g = torch.Generator().manual_seed(seed)
    labels = np.arange(n) % 3
    images = torch.randn(n, 1, size, size, generator=g) * 0.1
    images[:, 0, 0, 0] += torch.as_tensor(labels, dtype=torch.float32)  # a learnable class signal
    return Dataset(images, labels.astype(np.int64), ("a", "b", "c"), f"{tag}-{seed}-{n}")


def test_removable_units_resnet_identity_blocks_only():
    model = _small_resnet()
    units = {u.name: u for u in removable_units(model, model.default_layers(), (1, 8, 8))}
    assert [n for n, u in units.items() if u.removable] == ["layer1.0", "layer1.1", "layer2.1", "layer3.1"]
    assert "channels from 1 to 4" in units["stem"].reason
    assert "channels from 4 to 8" in units["layer2.0"].reason and "spatial size from 8x8 to 4x4" in units["layer2.0"].reason
    # same width, stride 2: only the spatial size changes
    assert "channels" not in units["layer3.0"].reason and "spatial size from 4x4 to 2x2" in units["layer3.0"].reason
    assert units["layer2.1"].in_shape == units["layer2.1"].out_shape == (8, 4, 4)


def test_removable_units_conv_stacks_and_mlp():
    vgg = VGG([4, 4, "M", 8, 8], in_channels=1, num_classes=10).eval()
    v = {u.name: u.removable for u in removable_units(vgg, vgg.default_layers(), (1, 8, 8))}
    assert v == {"features.0": False, "features.1": True, "features.3": False, "features.4": True}
    tiny = Tiny10().eval()
    t = {u.name: u for u in removable_units(tiny, tiny.default_layers(), (1, 16, 16))}
    assert [n for n, u in t.items() if u.removable] == ["features.1", "features.3", "features.4", "features.7"]
    assert "spatial size from 4x4 to 2x2" in t["features.6"].reason  # valid padding
    mlp = MLP(in_features=16, hidden=8, depth=3).eval()
    m = {u.name: u for u in removable_units(mlp, mlp.default_layers(), (1, 4, 4))}
    assert [n for n, u in m.items() if u.removable] == ["hidden.1", "hidden.2"]
    assert "width from 16 to 8" in m["hidden.0"].reason


def test_removable_units_rejects_unknown_layer():
    model = _small_resnet()
    with pytest.raises(ValueError, match="not modules of this model"):
        removable_units(model, ["stem", "layer9.0"], (1, 8, 8))


def test_remove_units_drops_the_right_blocks_and_runs():
    model = _small_resnet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pruned = remove_units(model, ["layer1.0", "layer3.1"])
    assert [len(s) for s in pruned.stages()] == [1, 2, 1]
    # the survivor of layer1 is the old layer1.1, the survivor of layer3 the old layer3.0
    assert torch.equal(pruned.layer1[0].conv1.weight, model.layer1[1].conv1.weight)
    assert torch.equal(pruned.layer3[0].conv1.weight, model.layer3[0].conv1.weight)
    assert pruned.default_layers() == ["stem", "layer1.0", "layer2.0", "layer2.1", "layer3.0"]
    assert pruned(torch.randn(3, 1, 8, 8)).shape == (3, 10)
    # the original is untouched
    assert [len(s) for s in model.stages()] == [2, 2, 2]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_remove_units_vgg_keeps_pools_and_runs():
    vgg = VGG([4, 4, "M", 8, 8], in_channels=1, num_classes=10).eval()
    pruned = remove_units(vgg, ["features.1", "features.4"])
    kinds = [type(m).__name__ for m in pruned.features]
    assert kinds == ["ConvBNReLU", "MaxPool2d", "ConvBNReLU"]
    assert pruned(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_remove_units_rejects_non_sequential_member():
    with pytest.raises(ValueError, match="not an element of an nn.Sequential"):
        remove_units(_small_resnet(), ["stem"])


def test_parameter_and_flop_counts_match_a_hand_count():
    # ResNet with blocks (2, 1, 1), widths (4, 8, 8), 1 input channel, 10 classes, 8x8 inputs.
    model = _small_resnet(blocks=(2, 1, 1))
    stem = 1 * 4 * 9 + 2 * 4  # conv 3x3 1->4, BN (weight, bias)
    identity_4 = 2 * (4 * 4 * 9 + 2 * 4)  # two conv 3x3 4->4, two BN
    proj_4_8 = (4 * 8 * 9 + 2 * 8) + (8 * 8 * 9 + 2 * 8) + (4 * 8 + 2 * 8)  # conv1, conv2, 1x1 shortcut, each + BN
    proj_8_8 = (8 * 8 * 9 + 2 * 8) + (8 * 8 * 9 + 2 * 8) + (8 * 8 + 2 * 8)
    fc = 8 * 10 + 10
    assert count_parameters(model) == stem + 2 * identity_4 + proj_4_8 + proj_8_8 + fc
    pruned = remove_units(model, ["layer1.1"])
    assert count_parameters(pruned) == stem + identity_4 + proj_4_8 + proj_8_8 + fc
    # one 4->4 block at 8x8 holds two 3x3 convs: 2 FLOPs per multiply-add, 4*4*9 MACs per output pixel
    block_flops = 2 * (2 * 4 * 4 * 9 * 8 * 8)
    assert count_flops(model, (1, 8, 8)) - count_flops(pruned, (1, 8, 8)) == block_flops

    mlp = MLP(in_features=16, hidden=8, depth=3)
    hand = (16 * 8 + 2 * 8) + 2 * (8 * 8 + 2 * 8) + (8 * 10 + 10)
    assert count_parameters(mlp) == hand
    assert count_parameters(remove_units(mlp, ["hidden.2"])) == hand - (8 * 8 + 2 * 8)
    assert count_flops(mlp, (1, 4, 4)) == 2 * (16 * 8 + 8 * 8 + 8 * 8 + 8 * 10)


def _plan_for_small_resnet(q):
    model = _small_resnet()
    units = removable_units(model, model.default_layers(), (1, 8, 8))
    return plan_pruning(units, dict(zip(model.default_layers(), q, strict=True)), threshold=0.03)


def test_plan_splits_flagged_into_removable_and_not():
    # layers: stem, layer1.0, layer1.1, layer2.0, layer2.1, layer3.0, layer3.1
    plan = _plan_for_small_resnet([0.1, 0.11, 0.3, 0.31, 0.5, 0.7, 0.69])
    assert plan.flagged == ("layer1.0", "layer2.0", "layer3.1")
    assert plan.kinds == {"layer1.0": "plateau", "layer2.0": "plateau", "layer3.1": "degradation"}
    assert plan.to_remove == ("layer1.0", "layer3.1")
    assert [u.name for u in plan.not_removable_flagged] == ["layer2.0"]
    assert plan.control_pool == ("layer1.1", "layer2.1")


def test_control_picks_only_unflagged_removable_units():
    model = CifarResNet(56, in_channels=1).eval()
    layers = model.default_layers()
    units = removable_units(model, layers, (1, 16, 16))
    q = np.cumsum([0.001 if i % 3 == 0 else 0.08 for i in range(len(layers))])  # every third layer on a plateau
    plan = plan_pruning(units, dict(zip(layers, q, strict=True)), threshold=0.03)
    removable = {u.name for u in units if u.removable}
    assert 0 < len(plan.to_remove) <= len(plan.control_pool)
    picks = set()
    for seed in range(20):
        chosen = choose_control_units(plan, seed)
        assert len(chosen) == len(set(chosen)) == len(plan.to_remove)
        assert set(chosen) <= removable and not set(chosen) & set(plan.flagged)
        picks.add(tuple(chosen))
    assert len(picks) > 1  # the seed matters
    assert choose_control_units(plan, 3) == choose_control_units(plan, 3)


def test_control_takes_the_whole_pool_when_it_is_small():
    plan = _plan_for_small_resnet([0.1, 0.11, 0.12, 0.13, 0.5, 0.7, 0.69])  # flags 1.0, 1.1, 2.0, 3.1
    assert plan.to_remove == ("layer1.0", "layer1.1", "layer3.1")
    assert choose_control_units(plan, 0) == ["layer2.1"]


def test_median_threshold_and_errors():
    q = {"a": 0.0, "b": 0.1, "c": 0.15, "d": 0.16, "e": 0.3}  # dQ 0.1, 0.05, 0.01, 0.14 -> median 0.075
    assert resolve_threshold(q, "median") == pytest.approx(0.075)
    assert resolve_threshold(q, 0.02) == 0.02
    with pytest.raises(ValueError, match="a number or 'median'"):
        resolve_threshold(q, "mean")
    model = _small_resnet()
    units = removable_units(model, model.default_layers(), (1, 8, 8))
    with pytest.raises(ValueError, match="differ from the units"):
        plan_pruning(units, {"stem": 0.1, "layer1.0": 0.2})


def test_gbs_criterion_flags_layers_too_similar_to_the_one_before():
    model = _small_resnet()
    layers = model.default_layers()  # stem, layer1.0, layer1.1, layer2.0, layer2.1, layer3.0, layer3.1
    units = removable_units(model, layers, (1, 8, 8))
    sims = [np.nan, 0.99, 0.90, 0.995, 0.80, 0.97, 0.999]  # GBS(layer l-1, layer l); the stem has none
    plan = plan_pruning(units, dict(zip(layers, sims, strict=True)), threshold=0.95, criterion="gbs")
    assert plan.criterion == "gbs"
    assert plan.flagged == ("layer1.0", "layer2.0", "layer3.0", "layer3.1")
    assert plan.kinds == dict.fromkeys(plan.flagged, "redundant")
    assert plan.dq == {"layer1.0": 0.99, "layer2.0": 0.995, "layer3.0": 0.97, "layer3.1": 0.999}
    # layer2.0 and layer3.0 change the shape (stride 2), so only the identity blocks go
    assert plan.to_remove == ("layer1.0", "layer3.1")
    assert plan.control_pool == ("layer1.1", "layer2.1")
    # the median of the six similarities after the stem is (0.97 + 0.99) / 2 = 0.98: flags the three above it
    assert resolve_threshold(dict(zip(layers, sims, strict=True)), "median", "gbs") == pytest.approx(0.98)
    median = plan_pruning(units, dict(zip(layers, sims, strict=True)), threshold="median", criterion="gbs")
    assert median.flagged == ("layer1.0", "layer2.0", "layer3.1")
    with pytest.raises(ValueError, match="unknown pruning criterion 'cka'"):
        plan_pruning(units, dict(zip(layers, sims, strict=True)), criterion="cka")
    back = PruningResult.from_dict(_result_with_plan(plan).to_dict()).plan
    np.testing.assert_array_equal(back.q, plan.q)  # NaN for the stem
    assert back.criterion == "gbs" and (back.flagged, back.dq, back.to_remove) == (plan.flagged, plan.dq, plan.to_remove)


def _result_with_plan(plan):
    return PruningResult("m", "id", {}, plan, 10, 10, 0.5, None, [])


def test_gbs_to_previous_matches_gbs_of_each_consecutive_pair():
    from gbs_core.analysis import feature_set_from_arrays
    from gbs_core.metrics import gbs_similarity

    rng = np.random.default_rng(0)
    feats = {n: rng.normal(size=(30, 5)).astype(np.float32) for n in ("a", "b", "c")}  # the FeatureSet's dtype
    fs = feature_set_from_arrays("m", feats, np.arange(30) % 3)
    got = pruning.gbs_to_previous(fs)
    assert np.isnan(got["a"])
    assert got["b"] == pytest.approx(gbs_similarity(feats["a"], feats["b"]))
    assert got["c"] == pytest.approx(gbs_similarity(feats["b"], feats["c"]))


def test_pruning_run_on_a_tiny_model_reports_every_field_and_is_cached(tmp_path, monkeypatch):
    model = _small_resnet()
    train, test = _toy_data(48, seed=0, tag="train"), _toy_data(30, seed=1, tag="test")
    q = dict(zip(model.default_layers(), [0.1, 0.11, 0.3, 0.31, 0.5, 0.7, 0.69], strict=True))
    events = []
    cache = DiskCache(tmp_path / "cache")
    cfg = TrainConfig(epochs=1, lr=0.01, batch_size=16)
    res = run_pruning(model, q, train, test, finetune=cfg, control_seeds=[0, 1], model_label="toy", cache=cache,
                      progress=events.append)
    assert res.flagged is not None and res.flagged.removed == ["layer1.0", "layer3.1"]
    # the pool (layer1.1, layer2.1) is no larger than the count: both seeds draw all of it, trained once
    assert len(res.controls) == 1 and sorted(res.controls[0].removed) == ["layer1.1", "layer2.1"]
    for v in res.variants():
        assert v.n_params < res.original_params and v.flops < res.original_flops
        assert 0 <= v.accuracy_before <= 1 and 0 <= v.accuracy_after <= 1
        assert len(v.history) == 1 and set(v.history[0]) == {"epoch", "loss", "train_accuracy", "seconds"}
    assert res.original_params == count_parameters(model)
    table = res.table()
    assert list(table["variant"]) == ["original", "flagged", "control"]
    assert {"n_params", "params_reduction_pct", "flops", "flops_reduction_pct", "accuracy_before_finetune",
            "accuracy_after_finetune"} <= set(table.columns)
    expected_pct = 100 * (res.original_params - res.flagged.n_params) / res.original_params
    assert table.loc[1, "params_reduction_pct"] == pytest.approx(expected_pct)
    summary = res.control_summary()
    assert summary["n_controls"] == 1
    assert summary["flagged_minus_control_mean"] == pytest.approx(
        res.flagged.accuracy_after - np.mean([c.accuracy_after for c in res.controls]))
    assert events[-1].done == events[-1].total == 2 and any(e.log is not None for e in events)
    # JSON round trip
    assert PruningResult.from_dict(res.to_dict()).to_dict() == res.to_dict()

    # a second run reads every variant from the cache instead of fine-tuning again
    def no_training(*args, **kwargs):
        raise AssertionError("fit called although the result was cached")

    monkeypatch.setattr(pruning, "fit", no_training)
    again = run_pruning(model, q, train, test, finetune=cfg, control_seeds=[0, 1], model_label="toy", cache=cache,
                        require_cached=True)
    assert again.to_dict() == res.to_dict()
    with pytest.raises(LookupError, match="not in the cache"):
        run_pruning(model, q, train, test, finetune=cfg, control_seeds=[5], cache=DiskCache(tmp_path / "empty"),
                    require_cached=True)


def test_pruning_run_with_nothing_removable_flagged():
    model = _small_resnet()
    q = dict(zip(model.default_layers(), [0.1, 0.2, 0.3, 0.31, 0.5, 0.7, 0.8], strict=True))  # flags layer2.0 only
    res = run_pruning(model, q, _toy_data(), _toy_data(tag="test"), finetune=TrainConfig(epochs=1), control_seeds=[0])
    assert res.plan.flagged == ("layer2.0",) and res.flagged is None and res.controls == []
    assert list(res.table()["variant"]) == ["original"]


def test_pruning_data_follows_the_models_training_data():
    from gbs_core.experiments.pruning import pruning_data

    noisy = pruning_data("digits-noise-v1-16px", curve_samples=50, train_samples=80)
    assert noisy.curve.dataset_id.startswith("digits-noise-v1-train-16px/") and len(noisy.curve) == 50
    assert noisy.train.dataset_id.startswith("digits-train-16px/") and len(noisy.train) == 80  # augmented per epoch
    assert noisy.test.dataset_id == "digits-noise-v1-test-16px" and len(noisy.test) == 540
    cfg = noisy.finetune_config(3, 0.02)
    assert (cfg.epochs, cfg.lr, cfg.augment, cfg.max_shift) == (3, 0.02, "digits-noise", 0)
    plain = pruning_data("digits-16px", curve_samples=None)
    assert plain.curve.dataset_id == "digits-train-16px" and plain.test.dataset_id == "digits-test-16px"
    assert plain.finetune_config().augment == "shift" and plain.finetune_config().max_shift == 2
    with pytest.raises(ValueError, match="unknown training data 'cifar'"):
        pruning_data("cifar")
