"""Every page on a researcher's own material (AppTest): an image folder of 36 images (fewer than the default N),
a CIFAR-10 pickle folder, an uploaded torchvision resnet18 state_dict with its 1000-class head, a timm model as
.safetensors, and timm networks by name. Each page must show its results or, for a pair that cannot work, say on the
page what to change. Files from the ``byo`` fixture (conftest.py)."""

from __future__ import annotations

import json
import re

import pytest
from apptest_helpers import assert_clean, by_key, open_page, values

pytestmark = pytest.mark.usefixtures("module_disk_cache")


def folder(byo) -> dict:
    return {"data": "image_folder", "path": str(byo / "folder")}


def upload(at, byo, name: str, arch: str) -> None:
    if ":" in arch:
        by_key(at.selectbox, "ckpt_arch").set_value("other (torchvision or timm name)")
        at.run()
        by_key(at.text_input, "ckpt_arch_name").set_value(arch)
    else:
        by_key(at.selectbox, "ckpt_arch").set_value(arch)
    at.run()
    by_key(at.file_uploader, "ckpt_file").set_value((name, (byo / name).read_bytes(), "application/octet-stream"))
    at.run()
    by_key(at.button, "ckpt_add").click()
    at.run()


def captions(at) -> list[str]:
    return [c.value for c in at.caption]


def test_home_with_an_imagenet_resnet18_on_a_small_folder(byo):
    at = open_page(**folder(byo), zoo="")
    upload(at, byo, "resnet18.pth", "resnet18")
    assert_clean(at)
    text = captions(at)
    assert "N = 500 asked, but the data has 36 samples: all 36 are used." in text
    note = next(c for c in text if c.startswith("**resnet18 (resnet18.pth)**"))
    assert "3x20x20 data -> resized to 32x32, ImageNet normalisation" in note and "1000 classes" in note
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Layers analysed"] == "9"
    acc_label = next(k for k in metrics if k.startswith("Accuracy"))
    assert metrics[acc_label] == "n/a" and "not applicable" in acc_label


def test_analysis_pages_with_a_timm_safetensors_beside_a_zoo_model_on_cifar(byo):
    at = open_page("pages/2_Modularity.py", data="cifar10", path=str(byo / "cifar"), n="30")
    upload(at, byo, "resnet10t.safetensors", "timm:resnet10t")
    assert_clean(at)
    assert any("resnet56**: input: 3x32x32 data -> 3 channels averaged to grey, resized to 16x16" in c
               for c in captions(at))
    names = {t["name"] for c in at.get("plotly_chart") for t in json.loads(c.proto.spec)["data"] if "name" in t}
    assert any(n.startswith("resnet56") for n in names) and any("resnet10t.safetensors" in n for n in names)
    for page in ("pages/1_Sample_graph.py", "pages/3_Similarity.py", "pages/4_Motifs.py"):
        at.switch_page(page).run()
        assert_clean(at)


def test_sample_graph_of_a_timm_network_by_name_draws_every_sample(byo):
    at = open_page("pages/1_Sample_graph.py", **folder(byo), zoo="", arch="timm:resnet10t")
    assert_clean(at)
    page = at.get("iframe")[0].proto.srcdoc
    nodes = json.loads(re.search(r"nodes = new vis\.DataSet\((\[.*?\])\);", page, re.S).group(1))
    assert sorted(int(n["id"]) for n in nodes) == list(range(36))
    assert {n["title"].split("true: ")[1].split(" ")[0] for n in nodes} == {"cats", "dogs", "fish"}
    (scatter,) = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert sum(len(values(t["x"])) for t in scatter["data"]) == 36 and len(scatter["data"]) == 3


def test_an_adapter_size_the_model_cannot_take_is_named_on_the_page(byo):
    at = open_page("pages/2_Modularity.py", **folder(byo), zoo="mlp8", in_size="8")  # an MLP takes 16x16 only
    assert not at.exception
    text = " ".join(e.value for e in at.error)
    assert "Image size" in text and "Input adapter" in text


def test_pruning_page_prunes_a_torchvision_checkpoint_on_the_folder(byo):
    at = open_page("pages/5_Pruning.py", **folder(byo), zoo="")
    upload(at, byo, "resnet18.pth", "resnet18")
    by_key(at.number_input, "prune_epochs").set_value(1)
    by_key(at.number_input, "prune_controls").set_value(1)
    by_key(at.selectbox, "prune_rule").set_value("median dQ")
    at.run()
    by_key(at.button, "prune_run").click()
    at.run()
    assert_clean(at)
    assert any(c.startswith("Data: folder") for c in captions(at))
    assert any("new 3-class head" in c for c in captions(at))
    table = at.dataframe[1].value
    assert table["variant"].tolist()[:2] == ["original", "flagged"]
    units = at.dataframe[0].value.set_index("layer")
    assert units.loc["net.layer1.1", "removable"] and not units.loc["net.layer2.0", "removable"]


def test_adversarial_page_on_the_folder_and_a_head_that_does_not_fit(byo):
    at = open_page("pages/8_Adversarial.py", **folder(byo), zoo="", arch="timm:resnet10t")
    by_key(at.multiselect, "adv_kinds").set_value(["fgsm"])
    by_key(at.text_input, "adv_eps").set_value("0.05")
    at.run()
    assert_clean(at)
    assert at.dataframe[0].value["attack"].tolist() == ["clean", "FGSM eps=0.05"]
    other = open_page("pages/8_Adversarial.py", **folder(byo), zoo="")
    upload(other, byo, "resnet18.pth", "resnet18")
    assert not other.exception
    assert any("does not classify this data's 3 classes" in e.value for e in other.error)


def test_sanity_page_on_the_sidebars_models_finds_every_layer_of_identical_weights(byo):
    at = open_page("pages/6_Sanity_check.py", **folder(byo), zoo="")
    upload(at, byo, "resnet10t.pth", "timm:resnet10t")
    upload(at, byo, "resnet10t.safetensors", "timm:resnet10t")
    by_key(at.selectbox, "sanity_family").set_value("the sidebar's models")
    by_key(at.multiselect, "sanity_metrics").set_value(["linear_cka"])
    at.run()
    assert_clean(at)
    table = at.dataframe[0].value
    assert table["ours_pct"].tolist() == [100.0]  # the same weights twice: every layer is its own best match


def test_dynamics_page_on_uploaded_timm_checkpoints(byo):
    at = open_page("pages/7_Training_dynamics.py", **folder(byo), zoo="")
    by_key(at.selectbox, "dyn_model").set_value("your checkpoint files")
    at.run()
    by_key(at.selectbox, "dyn_arch").set_value("other (torchvision or timm name)")
    at.run()
    by_key(at.text_input, "dyn_arch_name").set_value("timm:resnet10t")
    by_key(at.file_uploader, "dyn_files").set_value([
        ("ep0.pth", (byo / "resnet10t.pth").read_bytes(), "application/octet-stream"),
        ("ep1.safetensors", (byo / "resnet10t.safetensors").read_bytes(), "application/octet-stream")])
    at.run()
    assert_clean(at)
    assert at.dataframe[0].value["q_change"].abs().max() < 1e-9  # the same weights twice


def test_stitching_page_with_the_sidebars_timm_network(byo):
    at = open_page("pages/9_Stitching.py", **folder(byo), zoo="", arch="timm:resnet10t")
    label = "resnet10t (timm, random init, seed 0)"
    by_key(at.selectbox, "stitch_a").set_value(label)
    by_key(at.selectbox, "stitch_b").set_value(label)
    by_key(at.number_input, "stitch_epochs").set_value(0)
    at.run()
    by_key(at.button, "stitch_run").click()
    at.run()
    assert_clean(at)
    pairs = at.dataframe[1].value
    assert list(pairs["layer_a"]) == list(pairs["layer_b"]) and len(pairs) >= 1


def test_transfer_page_to_the_sidebars_folder(byo):
    at = open_page("pages/10_Transfer.py", **folder(byo), zoo="", arch="timm:resnet10t")
    by_key(at.multiselect, "transfer_sources").set_value(
        ["resnet10t (timm, random init, seed 0)", "tiny10-s0", "tiny10-s0-ep0"])
    by_key(at.number_input, "transfer_epochs").set_value(0)
    by_key(at.radio, "transfer_target").set_value("sidebar")
    at.run()
    assert_clean(at)
    table = at.dataframe[1].value
    assert len(table) == 3 and table["probe_accuracy"].between(0, 1).all()
    assert any("25 training and 11 held-out images" in c.value for c in at.caption)
