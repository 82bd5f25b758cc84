"""Training dynamics over checkpoints: the last row is the single-model analysis, accuracy per checkpoint is the
model's own, the cache serves a second run, user files are ordered and labelled, and the bundled ResNet-20 shows the
paper's pattern (deep layers gain far more modularity over training than the stem)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gbs_core.analysis import feature_set, modularity_by_layer, motifs_by_layer
from gbs_core.cache import DiskCache
from gbs_core.data import load_bundled
from gbs_core.experiments.dynamics import (
    DynamicsPlan,
    DynamicsResult,
    files_dynamics_plan,
    models_with_checkpoints,
    run_dynamics,
    zoo_dynamics_plan,
)
from gbs_core.pipeline import ModelSpec, load_model
from gbs_core.zoo.architectures import Tiny10


@pytest.fixture(scope="module")
def data():
    return load_bundled("digits-noise", "test").subsample(120, seed=0)


@pytest.fixture(scope="module")
def tiny_run(data, tmp_path_factory):
    cache = DiskCache(tmp_path_factory.mktemp("dyn_cache"))
    steps = []
    result = run_dynamics(zoo_dynamics_plan("tiny10-s0"), data, cache=cache,
                          progress=lambda d, n, m: steps.append((d, n, m)))
    return result, cache, steps


def test_the_zoo_keeps_checkpoints_of_three_architectures():
    assert {"tiny10-s0", "resnet20", "vgg16"} <= set(models_with_checkpoints())
    plan = zoo_dynamics_plan("resnet20")
    assert [c.epoch for c in plan.checkpoints] == [0, 1, 2, 4, 8, 16, 32, 40]
    assert plan.checkpoints[-1].spec == ModelSpec("zoo", "resnet20")


def test_last_checkpoint_row_equals_the_single_model_analysis(tiny_run, data):
    result, _, _ = tiny_run
    fs = feature_set(load_model(ModelSpec("zoo", "tiny10-s0")), data)
    curve = modularity_by_layer(fs, k=3)
    assert result.layers == fs.layers
    np.testing.assert_allclose(result.matrix("q")[-1], [curve[n].mean() for n in fs.layers], rtol=0, atol=1e-12)
    motifs = motifs_by_layer(fs, k=5)
    np.testing.assert_allclose(result.matrix("same_class_fraction")[-1], motifs["same_class_fraction"], atol=1e-12)
    np.testing.assert_allclose(result.matrix("cka_to_last")[-1], 1.0, atol=1e-5)


def test_accuracy_of_each_checkpoint_is_its_own(tiny_run, data):
    result, _, _ = tiny_run
    for i in (0, 4):
        model = load_model(zoo_dynamics_plan("tiny10-s0").checkpoints[i].spec).model
        with torch.no_grad():
            pred = model(data.images).argmax(1).numpy()
        assert result.accuracy[i] == pytest.approx(float(np.mean(pred == data.labels)))
    assert result.accuracy[-1] > 0.85 > result.accuracy[0]


def test_progress_moves_to_the_end_and_a_second_run_reads_the_cache(tiny_run, data):
    result, cache, steps = tiny_run
    done = [d for d, _, _ in steps]
    assert done == sorted(done) and steps[-1][0] == steps[-1][1] and len(steps) > len(result.checkpoints)
    hits = cache.stats.hits
    again = run_dynamics(zoo_dynamics_plan("tiny10-s0"), data, cache=cache)
    assert cache.stats.hits > hits
    for m in result.metrics:
        np.testing.assert_array_equal(again.matrix(m), result.matrix(m))
    assert DynamicsResult.from_dict(result.to_dict()).to_dict() == result.to_dict()


def test_users_state_dict_files_in_training_order(tmp_path, data):
    paths = []
    for epoch, seed in ((3, 0), (7, 1)):
        torch.manual_seed(seed)
        paths.append(tmp_path / f"run_ep{epoch}.pt")
        torch.save(Tiny10().state_dict(), paths[-1])
    plan = files_dynamics_plan("tiny10", paths)
    assert [c.epoch for c in plan.checkpoints] == [3, 7]
    result = run_dynamics(plan, data.subsample(40, seed=1))
    assert result.epochs == [3, 7] and result.matrix("q").shape == (2, 8)
    assert files_dynamics_plan("tiny10", [tmp_path / "a.pt", tmp_path / "b.pt"]).checkpoints[1].epoch == 1
    with pytest.raises(ValueError, match="training order"):
        files_dynamics_plan("tiny10", paths, epochs=[5, 2])
    with pytest.raises(ValueError, match="at least 2 checkpoints"):
        DynamicsPlan("x", plan.checkpoints[:1])


def test_a_model_without_checkpoints_is_refused_with_the_ones_that_have_them():
    with pytest.raises(ValueError, match="no training checkpoints.*resnet20"):
        zoo_dynamics_plan("resnet56")


def test_resnet20_deep_layers_gain_modularity_over_training_and_the_stem_does_not(data):
    result = run_dynamics(zoo_dynamics_plan("resnet20"), data)
    change = result.change_table().set_index("layer")["q_change"]
    assert abs(change["stem"]) < 0.1
    assert change["layer3.2"] > 0.5
    assert change["layer3.2"] > change["layer1.0"] + 0.3


def test_epochs_in_file_names_order_the_files_and_need_a_word_boundary(tmp_path):
    names = ["x_ep1.pt", "x_ep16.pt", "x_ep2.pt", "x_ep32.pt", "x_ep4.pt", "x_ep8.pt"]  # as an upload or a glob lists them
    plan = files_dynamics_plan("tiny10", [tmp_path / n for n in names])
    assert [c.epoch for c in plan.checkpoints] == [1, 2, 4, 8, 16, 32]
    assert plan.checkpoints[1].spec.checkpoint.endswith("x_ep2.pt")
    plan = files_dynamics_plan("tiny10", [tmp_path / "sweep2_ep10.pt", tmp_path / "ckpt_step1000_epoch1.pt"])
    assert [c.epoch for c in plan.checkpoints] == [1, 10]  # "sweep2" and "step1000" are not epochs
