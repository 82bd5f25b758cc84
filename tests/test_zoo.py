import json
import shutil

import pytest
import torch
from torch import nn

from gbs_core.data import load_digits
from gbs_core.zoo import (
    ARCHITECTURES,
    CheckpointError,
    CifarResNet,
    Tiny10,
    TrainConfig,
    build_model,
    build_torchvision_model,
    count_parameters,
    evaluate,
    fit,
    list_zoo,
    load_state_dict_file,
    load_zoo_model,
    zoo_dir,
)

REQUIRED = {"resnet20", "resnet56", "vgg11", "vgg16", "mlp8"} | {f"tiny10-s{i}" for i in range(10)}


def test_zoo_has_required_models_and_stays_small():
    names = {e.name for e in list_zoo()}
    assert REQUIRED <= names
    total = sum(p.stat().st_size for p in zoo_dir().iterdir())
    assert total < 30 * 1024 * 1024


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_zoo_model_matches_manifest_and_reproduces_accuracy(name):
    model, entry = load_zoo_model(name)
    assert not model.training
    assert count_parameters(model) == entry.n_params
    assert entry.test_accuracy >= 0.95
    acc = evaluate(model, load_digits("test"))
    # one image's worth of tolerance for float-summation differences across thread counts
    assert abs(acc - entry.test_accuracy) <= 1 / 540 + 1e-12


def test_tampered_weights_fail_the_hash_check(tmp_path, monkeypatch):
    folder = tmp_path / "zoo"
    shutil.copytree(zoo_dir(), folder)
    monkeypatch.setenv("GBS_ZOO_DIR", str(folder))
    with open(folder / "tiny10-s0.pt", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(CheckpointError, match="sha256 .* the manifest says"):
        load_zoo_model("tiny10-s0")
    (folder / "tiny10-s1.pt").unlink()
    with pytest.raises(CheckpointError, match="is missing"):
        load_zoo_model("tiny10-s1")
    with pytest.raises(KeyError, match="no zoo model named 'nope'"):
        load_zoo_model("nope")


def _hand_count_tiny10(in_ch=1, n_cls=10):
    convs = [(in_ch, 16, 3), (16, 16, 3), (16, 32, 3), (32, 32, 3), (32, 32, 3), (32, 64, 3), (64, 64, 3), (64, 64, 1)]
    return sum(ci * co * k * k + 2 * co for ci, co, k in convs) + 64 * n_cls + n_cls


def test_architecture_parameter_counts_by_hand():
    assert count_parameters(Tiny10()) == _hand_count_tiny10()
    # ResNet with one block per stage: stem, 3 blocks (two with projection shortcuts), fc
    m = CifarResNet(blocks_per_stage=[1, 1, 1])
    stem = 1 * 16 * 9 + 32
    b1 = 2 * (16 * 16 * 9 + 32)
    b2 = 16 * 32 * 9 + 64 + 32 * 32 * 9 + 64 + 16 * 32 + 64
    b3 = 32 * 64 * 9 + 128 + 64 * 64 * 9 + 128 + 32 * 64 + 128
    assert count_parameters(m) == stem + b1 + b2 + b3 + 64 * 10 + 10


def test_architectures_run_and_list_default_layers():
    x = load_digits("test").images[:3]
    expected_counts = {"tiny10": 8, "resnet20": 10, "resnet56": 28, "vgg11": 8, "vgg16": 13, "mlp8": 8}
    for arch in ARCHITECTURES:
        model = build_model(arch).eval()
        assert model(x).shape == (3, 10)
        assert len(model.default_layers()) == expected_counts[arch]
    with pytest.raises(ValueError, match="unknown architecture 'alexnet'"):
        build_model("alexnet")


def test_training_is_reproducible_and_learns():
    train = load_digits("train").subsample(200, seed=0)
    cfg = TrainConfig(epochs=2, seed=5, batch_size=64)
    torch.manual_seed(5)
    a = Tiny10()
    torch.manual_seed(5)
    b = Tiny10()
    logs_a = fit(a, train, cfg)
    fit(b, train, cfg)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb), ka
    assert len(logs_a) == 2 and logs_a[1].loss < logs_a[0].loss
    assert not a.training


@pytest.mark.parametrize("name", ["resnet18", "vgg11_bn", "mobilenet_v3_small"])
def test_torchvision_models_run_on_digits(name):
    model = build_torchvision_model(name, num_classes=10)
    out = model(load_digits("test").images[:2])
    assert out.shape == (2, 10)
    assert len(model.default_layers()) >= 5


def test_import_torchvision_and_forward():
    from gbs_core._torchvision_fix import import_torchvision

    tv = import_torchvision()
    net = tv.models.resnet18(weights=None, num_classes=3).eval()
    with torch.no_grad():
        assert net(torch.zeros(1, 3, 32, 32)).shape == (1, 3)


def test_state_dict_round_trip_and_mismatch_message(tmp_path):
    model = build_torchvision_model("resnet18")
    path = tmp_path / "r18.pt"
    torch.save(model.net.state_dict(), path)  # bare torchvision keys
    fresh = build_torchvision_model("resnet18", state_dict_path=path)
    for (k, v), (_, w) in zip(model.state_dict().items(), fresh.state_dict().items(), strict=True):
        assert torch.equal(v, w), k
    torch.save({"state_dict": {"module." + k: v for k, v in model.state_dict().items()}}, path)
    load_state_dict_file(path, build_torchvision_model("resnet18"))
    with pytest.raises(CheckpointError, match=r"does not fit this architecture. Missing keys: .*Unexpected keys: "):
        build_torchvision_model("mobilenet_v3_small", state_dict_path=path)
    wrong = Tiny10(num_classes=5)
    torch.save(wrong.state_dict(), path)
    with pytest.raises(CheckpointError, match=r"Shape mismatches: classifier.bias \(file \(5,\), model \(10,\)\)"):
        load_state_dict_file(path, Tiny10())


def test_checkpoint_loading_is_weights_only(tmp_path):
    path = tmp_path / "whole.pt"
    torch.save(nn.Linear(2, 2), path)  # a whole pickled module, not a state_dict
    with pytest.raises(CheckpointError, match="weights-only checkpoint"):
        load_state_dict_file(path, nn.Linear(2, 2))
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="cannot read junk.pt"):
        load_state_dict_file(tmp_path / "junk.pt", nn.Linear(2, 2))
    with pytest.raises(CheckpointError, match="does not exist"):
        load_state_dict_file(tmp_path / "none.pt", nn.Linear(2, 2))
    torch.save({"a": 1}, tmp_path / "notsd.pt")
    with pytest.raises(CheckpointError, match="does not hold a state_dict"):
        load_state_dict_file(tmp_path / "notsd.pt", nn.Linear(2, 2))


def test_manifest_records_training_settings():
    manifest = json.loads((zoo_dir() / "manifest.json").read_text())["models"]
    for name in REQUIRED:
        rec = manifest[name]
        for field in ("arch", "seed", "epochs", "optimizer", "test_accuracy", "n_params", "sha256"):
            assert field in rec, (name, field)
    assert sorted(manifest[f"tiny10-s{i}"]["seed"] for i in range(10)) == list(range(10))
