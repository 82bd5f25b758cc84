"""Every command of ``python -m gbs_core`` on a researcher's own material (the ``byo`` fixture, conftest.py): a
torchvision resnet18 state_dict with its ImageNet head, a timm model as .safetensors, an image folder smaller than
the default N, a CIFAR-10 pickle folder and saved activations. Bad data gives a message, never a traceback."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from gbs_core.cli import parse_model_spec


def test_model_specs_of_every_family():
    assert parse_model_spec("timm:resnet10t:2") == parse_model_spec("timm:resnet10t:2")
    t = parse_model_spec("timm:resnet10t:2")
    assert (t.source, t.name, t.seed) == ("timm", "resnet10t", 2)
    c = parse_model_spec("checkpoint:timm:resnet10t:/w/m.safetensors")
    assert (c.source, c.name, c.checkpoint) == ("checkpoint", "timm:resnet10t", "/w/m.safetensors")
    c = parse_model_spec("checkpoint:resnet18:/w/r.pth")
    assert (c.name, c.checkpoint) == ("resnet18", "/w/r.pth")


def test_analyze_a_torchvision_checkpoint_on_an_image_folder(run, tmp_path, byo):
    out = tmp_path / "out"
    result = run("analyze", f"checkpoint:resnet18:{byo / 'resnet18.pth'}", "--data", f"folder:{byo / 'folder'}",
                 "--metrics", "linear_cka", "--out", str(out))
    assert "N = 500 asked, but the data has 36 samples" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_samples"] == 36 and summary["accuracy_on_data"] is None
    assert summary["layers"][0] == "net.conv1" and "net.fc" not in summary["layers"]
    assert "1000 classes" in summary["notes"][0] and "ImageNet normalisation" in summary["input_adapter"]
    q = pd.read_csv(out / "modularity.csv")
    assert len(q) == 9 and q["q"].between(-0.5, 1).all()


def test_analyze_a_timm_safetensors_on_cifar_with_an_adapter_override(run, tmp_path, byo):
    out = tmp_path / "out"
    result = run("analyze", f"checkpoint:timm:resnet10t:{byo / 'resnet10t.safetensors'}", "--data",
                 f"cifar10:{byo / 'cifar'}", "--input-size", "40", "--normalise", "none", "--metrics", "gbs_dense",
                 "--n-samples", "20", "--out", str(out))
    assert "resized to 40x40" in result.output and "normalisation" not in result.output.split("input adapter")[1][:60]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_samples"] == 20 and summary["data_source"] == f"cifar10:{byo / 'cifar'}"


def test_analyze_saved_activations_needs_no_model(run, tmp_path, byo):
    out = tmp_path / "out"
    run("analyze", "--data", f"npz:{byo / 'acts.npz'}", "--metrics", "linear_cka", "--out", str(out))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["layers"] == ["a", "b"] and summary["n_samples"] == 30


def test_layers_on_the_data_mark_the_head(run, tmp_path, byo):
    run("layers", f"checkpoint:resnet18:{byo / 'resnet18.pth'}", "--data", f"folder:{byo / 'folder'}",
        "--out", str(tmp_path))
    table = pd.read_csv(tmp_path / "layers.csv")
    assert table.loc[table["head"], "layer"].tolist() == ["net.fc"]
    assert table.loc[table["layer"] == "net.conv1", "output_shape"].item() == "64x16x16"


def test_prune_a_torchvision_checkpoint_on_a_folder(run, tmp_path, byo):
    result = run("prune", f"checkpoint:resnet18:{byo / 'resnet18.pth'}", "--data", f"folder:{byo / 'folder'}",
                 "--epochs", "0", "--control-seeds", "0", "--threshold", "median", "--out", str(tmp_path))
    assert "new 3-class head" in result.output
    table = pd.read_csv(tmp_path / "pruning.csv")
    assert table["variant"].tolist()[:2] == ["original", "flagged"]
    units = pd.read_csv(tmp_path / "units.csv").set_index("layer")
    assert units.loc["net.layer1.1", "removable"] and not units.loc["net.layer2.0", "removable"]


def test_prune_on_saved_activations_says_it_needs_images(run, tmp_path, byo):
    result = run("prune", "resnet20", "--data", f"npz:{byo / 'acts.npz'}", "--out", str(tmp_path), ok=False)
    assert "saved activations, not images" in result.output


def test_sanity_check_of_two_timm_seeds_on_cifar(run, tmp_path, byo):
    run("sanity-check", "--models", "timm:resnet10t:0,timm:resnet10t:1", "--data", f"cifar10:{byo / 'cifar'}",
        "--metrics", "linear_cka", "--n-samples", "30", "--out", str(tmp_path))
    table = pd.read_csv(tmp_path / "sanity.csv")
    assert table["index"].tolist() == ["CKA (linear)"] and 0 <= table["ours_pct"].item() <= 100


def test_dynamics_over_checkpoint_files_on_a_folder(run, tmp_path, byo):
    files = f"{byo / 'resnet10t.pth'},{byo / 'resnet10t.safetensors'}"
    run("dynamics", "timm:resnet10t", "--files", files, "--epochs", "0,1", "--data", f"folder:{byo / 'folder'}",
        "--out", str(tmp_path))
    q = pd.read_csv(tmp_path / "dynamics_q.csv")
    assert q["epoch"].tolist() == [0, 1]
    assert q.drop(columns=["checkpoint", "epoch", "accuracy"]).diff().iloc[1].abs().max() < 1e-9  # same weights


def test_adversarial_needs_a_head_of_the_data_and_runs_with_one(run, tmp_path, byo):
    result = run("adversarial", f"checkpoint:resnet18:{byo / 'resnet18.pth'}", "--data", f"folder:{byo / 'folder'}",
                 "--out", str(tmp_path), ok=False)
    assert "does not classify this data's 3 classes" in result.output
    run("adversarial", "timm:resnet10t:0", "--data", f"folder:{byo / 'folder'}", "--attacks", "fgsm:0.05",
        "--n-samples", "24", "--out", str(tmp_path))
    table = pd.read_csv(tmp_path / "adversarial.csv")
    assert table["attack"].tolist() == ["clean", "FGSM eps=0.05"]


def test_stitch_two_timm_seeds_on_a_folder(run, tmp_path, byo):
    run("stitch", "timm:resnet10t:0", "timm:resnet10t:1", "--data", f"folder:{byo / 'folder'}", "--epochs", "0",
        "--index-samples", "11", "--out", str(tmp_path))
    pairs = pd.read_csv(tmp_path / "stitching.csv")
    assert len(pairs) >= 1 and pairs["stitched_accuracy"].between(0, 1).all()


def test_transfer_to_an_image_folder_from_every_family(run, tmp_path, byo):
    run("transfer", "--data", f"folder:{byo / 'folder'}", "--sources",
        f"resnet20,timm:resnet10t:0,checkpoint:resnet18:{byo / 'resnet18.pth'}", "--finetune-epochs", "0",
        "--score-samples", "25", "--out", str(tmp_path))
    table = pd.read_csv(tmp_path / "transfer.csv")
    assert len(table) == 3 and table["probe_accuracy"].between(0, 1).all()


@pytest.mark.parametrize(("data", "says"), [
    ("imagenet:/x", "write one of digits-noise, digits, folder:PATH"),
    ("folder", "needs a path: write folder:PATH"),
    ("folder:/no/such/folder", "image folder /no/such/folder does not exist"),
    ("cifar10:/no/such", "CIFAR-10 folder /no/such does not exist"),
])
def test_bad_data_is_a_message(run, tmp_path, data, says):
    result = run("analyze", "resnet20", "--data", data, "--out", str(tmp_path), ok=False)
    assert "Error" in result.output and says in result.output
