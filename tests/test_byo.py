"""A researcher's own models and data in the core: any head, safetensors, torchvision and timm by name, the input
adapter, data sources by name, N clamped, splits of a folder, heads replaced for fine-tuning, and ``import
torchvision`` in the project's environment. The files come from the ``byo`` fixture (conftest.py)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from gbs_core.analysis import feature_set
from gbs_core.data import DataError, Dataset
from gbs_core.experiments.pruning import experiment_data, removable_units
from gbs_core.pipeline import AdapterChoice, ModelSpec, load_model
from gbs_core.sources import DataSpec, analysis_data, clamp_samples, parse_data_spec, train_test
from gbs_core.zoo import CheckpointError
from gbs_core.zoo.families import IMAGENET_MEAN, IMAGENET_STD, InputAdapter, choose_adapter, resolve_arch


def folder_data(byo) -> Dataset:
    return analysis_data(DataSpec("folder", str(byo / "folder")))


# --- any head, any family -------------------------------------------------------------------------------------------


def test_torchvision_resnet18_with_imagenet_head_loads_for_three_classes(byo):
    data = folder_data(byo)
    loaded = load_model(ModelSpec("checkpoint", "resnet18", str(byo / "resnet18.pth")), data_shape=data.input_shape,
                        num_classes=data.n_classes)
    assert loaded.head == "net.fc" and loaded.head_classes == 1000
    assert not loaded.head_fits(data)
    assert any("1000 classes" in n and "not used" in n for n in loaded.notes)
    assert "net.fc" not in loaded.default_layers()
    assert loaded.default_layers()[0] == "net.conv1" and len(loaded.default_layers()) == 9  # conv1 + 8 blocks
    saved = torch.load(byo / "resnet18.pth", weights_only=True)
    for key in ("conv1.weight", "layer4.1.bn2.running_var", "fc.weight"):  # every weight is the file's, head too
        assert torch.equal(loaded.model.net.state_dict()[key], saved[key])
    fs = feature_set(loaded, data)
    assert fs.predictions is None  # accuracy is not applicable
    assert fs.features["net.conv1"].shape == (36, 64 * 16 * 16)  # 20 px upsampled to 32, stride 2


def test_timm_safetensors_and_pth_give_the_same_model(byo):
    a = load_model(ModelSpec("checkpoint", "timm:resnet10t", str(byo / "resnet10t.safetensors")),
                   data_shape=(3, 32, 32), num_classes=10)
    b = load_model(ModelSpec("checkpoint", "timm:resnet10t", str(byo / "resnet10t.pth")),
                   data_shape=(3, 32, 32), num_classes=10)
    assert a.model_id == b.model_id and a.family == "timm" and a.head_classes == 1000
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(a.model(x), b.model(x))


def test_random_torchvision_and_timm_networks_get_the_data_classes():
    for spec in (ModelSpec("torchvision", "mobilenet_v3_small"), ModelSpec("timm", "resnet10t", seed=3)):
        loaded = load_model(spec, data_shape=(1, 16, 16), num_classes=7)
        assert loaded.head_classes == 7 and loaded.model(torch.rand(2, 1, 16, 16)).shape == (2, 7)
        assert "grey repeated to RGB" in loaded.adapter and "32x32" in loaded.adapter
    assert resolve_arch("resnet18") == ("torchvision", "resnet18")
    assert resolve_arch("timm:resnet18") == ("timm", "resnet18")
    assert resolve_arch("resnet56") == ("zoo", "resnet56")
    with pytest.raises(ValueError, match="unknown architecture"):
        resolve_arch("timm:no_such_net")


def test_whole_pickled_models_folders_and_wrong_keys_are_refused_with_what_to_do(byo, tmp_path):
    with pytest.raises(CheckpointError, match=r"state_dict\(\)"):
        load_model(ModelSpec("checkpoint", "resnet18", str(byo / "whole_model.pt")))
    with pytest.raises(CheckpointError, match="is a folder"):
        load_model(ModelSpec("checkpoint", "resnet18", str(byo)))
    with pytest.raises(CheckpointError, match="Missing keys: layer1.2"):  # not only the head differs: still refused
        load_model(ModelSpec("checkpoint", "resnet34", str(byo / "resnet18.pth")))
    bad = tmp_path / "junk.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="safetensors"):
        load_model(ModelSpec("checkpoint", "resnet18", str(bad)))


def test_a_zoo_model_on_other_data_is_adapted_and_its_accuracy_is_not_claimed(byo):
    cifar = analysis_data(DataSpec("cifar10", str(byo / "cifar")))
    loaded = load_model(ModelSpec("zoo", "tiny10-s0"), data_shape=cifar.input_shape, num_classes=cifar.n_classes)
    assert loaded.adapter == "3x32x32 data -> 3 channels averaged to grey, resized to 16x16"
    assert not loaded.head_fits(cifar)  # ten classes, but not the digits
    assert feature_set(loaded, cifar).predictions is None
    own = load_model(ModelSpec("zoo", "tiny10-s0"))
    assert own.adapter == "" and own.head_fits(analysis_data(DataSpec("digits-noise")))


# --- the input adapter ----------------------------------------------------------------------------------------------


def test_adapter_steps_exactly():
    grey = torch.full((1, 1, 4, 4), 0.5)
    out = InputAdapter(3, 8, IMAGENET_MEAN, IMAGENET_STD)(grey)
    assert out.shape == (1, 3, 8, 8)
    expected = [(0.5 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)]
    np.testing.assert_allclose(out[0, :, 3, 5].numpy(), expected, rtol=1e-6)
    rgb = torch.stack([torch.full((2, 2), v) for v in (0.0, 0.3, 0.9)])[None]
    np.testing.assert_allclose(InputAdapter(1, 2)(rgb).numpy(), 0.4, rtol=1e-6)  # mean of the channels
    net = torch.nn.Conv2d(3, 4, 3)
    assert choose_adapter("zoo", net, (3, 32, 32), net_channels=3, net_size=None) is None  # fits as it is
    assert choose_adapter("torchvision", net, (3, 64, 64), net_channels=3, net_size=None).size == 64
    assert choose_adapter("torchvision", net, (3, 20, 20), net_channels=3, net_size=None).size == 32
    chosen = choose_adapter("torchvision", net, (3, 20, 20), net_channels=3, net_size=None,
                            choice=AdapterChoice(size=48, normalise="none"))
    assert chosen.size == 48 and not chosen.normalised
    with pytest.raises(ValueError):
        AdapterChoice(size=2)


def test_the_adapter_override_changes_the_model_id(byo):
    spec = ModelSpec("checkpoint", "resnet18", str(byo / "resnet18.pth"))
    a = load_model(spec, data_shape=(3, 20, 20), num_classes=3)
    b = load_model(spec, data_shape=(3, 20, 20), num_classes=3, adapter=AdapterChoice(size=40))
    assert a.model_id != b.model_id and "resized to 40x40" in b.adapter


# --- data sources ---------------------------------------------------------------------------------------------------


def test_data_specs_parse_and_say_what_to_write():
    assert parse_data_spec("digits-noise") == DataSpec("digits-noise")
    assert parse_data_spec("folder:/data/pets") == DataSpec("folder", "/data/pets")
    assert parse_data_spec("image_folder:/x").kind == "folder"
    assert parse_data_spec("cifar100:/c") == DataSpec("cifar100", "/c")
    assert DataSpec("folder", "/d").text == "folder:/d"
    for bad in ("imagenet:/x", "folder", "digits:/x"):
        with pytest.raises(ValueError, match="folder:PATH|needs a path|takes no path"):
            parse_data_spec(bad)


def test_n_is_clamped_to_the_data_with_a_note(byo):
    data = folder_data(byo)
    same, note = clamp_samples(data, 500)
    assert same is data and note == "N = 500 asked, but the data has 36 samples: using all 36"
    sub, note = clamp_samples(data, 9)
    assert len(sub) == 9 and note == "" and np.bincount(sub.labels).tolist() == [3, 3, 3]
    with pytest.raises(DataError):
        clamp_samples(data, 0)


def test_a_folder_splits_stratified_and_cifar_keeps_its_own_split(byo):
    train, test = train_test(DataSpec("folder", str(byo / "folder")), seed=0)
    assert len(train) + len(test) == 36 and len(test) == 11  # scikit-learn rounds 0.3 x 36 = 10.8 up
    assert set(np.bincount(test.labels).tolist()) <= {3, 4}  # 0.3 x 12 = 3.6 per class
    rows = {t.numpy().tobytes() for t in train.images} | {t.numpy().tobytes() for t in test.images}
    assert len(rows) == 36  # disjoint, and together every image
    assert train.dataset_id != test.dataset_id
    again = train_test(DataSpec("folder", str(byo / "folder")), seed=0)[1]
    assert again.dataset_id == test.dataset_id  # seeded
    ctrain, ctest = train_test(DataSpec("cifar10", str(byo / "cifar")))
    assert (len(ctrain), len(ctest)) == (60, 30)
    with pytest.raises(DataError, match="saved activations"):
        analysis_data(DataSpec("npz", str(byo / "acts.npz")))


# --- pruning and fine-tuning on a user's model and data -------------------------------------------------------------


def test_resnet18_blocks_with_identity_shortcuts_are_removable(byo):
    pdata = experiment_data(DataSpec("folder", str(byo / "folder")), curve_samples=None)
    loaded = load_model(ModelSpec("checkpoint", "resnet18", str(byo / "resnet18.pth")),
                        data_shape=pdata.test.input_shape, num_classes=3)
    units = {u.name: u for u in removable_units(loaded.model, loaded.default_layers(), pdata.test.input_shape)}
    removable = sorted(n for n, u in units.items() if u.removable)
    assert removable == ["net.layer1.0", "net.layer1.1", "net.layer2.1", "net.layer3.1", "net.layer4.1"]
    assert "channels from 64 to 128" in units["net.layer2.0"].reason
    net, note = loaded.trainable_for(pdata.test, seed=0)
    assert net.net.fc.out_features == 3 and loaded.model.net.fc.out_features == 1000  # a copy: the original kept
    assert "new 3-class head" in note
    assert pdata.augment == "shift" and len(pdata.train) + len(pdata.test) == 36


# --- the project's environment --------------------------------------------------------------------------------------


def test_import_torchvision_just_works_in_a_fresh_interpreter():
    """The virtualenv's hook (scripts/setup.sh installs it) runs the fix before any ``import torchvision``."""
    code = "import torchvision, timm; m = torchvision.models.resnet18(); print(type(m).__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ResNet"
