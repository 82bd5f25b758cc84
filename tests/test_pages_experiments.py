"""AppTest for the Training dynamics, Adversarial and Stitching pages: what they show, on small settings so the runs
stay short."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from apptest_helpers import assert_clean, by_key, open_page, values

from gbs_core.zoo.architectures import Tiny10

pytestmark = pytest.mark.usefixtures("module_disk_cache")


def _plotly(at, key):
    import json

    return json.loads(next(e for e in at.get("plotly_chart") if e.proto.id and key in e.proto.id).proto.spec)


def test_training_dynamics_page_shows_the_heatmap_curves_and_layer_difference():
    at = open_page("pages/7_Training_dynamics.py")
    by_key(at.number_input, "dyn_n").set_value(60)
    at.run()
    assert_clean(at)
    assert by_key(at.selectbox, "dyn_model").value == "tiny10-s0" or "resnet20" in by_key(
        at.selectbox, "dyn_model").options
    by_key(at.selectbox, "dyn_model").set_value("resnet20")
    at.run()
    assert_clean(at)
    heat = _plotly(at, "dyn_heat")["data"][0]
    assert heat["type"] == "heatmap" and len(heat["y"]) == 8 and len(heat["x"]) == 10
    assert heat["y"][0].startswith("epoch 0 ·") and heat["y"][-1].startswith("epoch 40 ·")
    change = at.dataframe[0].value.set_index("layer")
    assert change.loc["layer3.2", "q_change"] > change.loc["stem", "q_change"] + 0.3
    diff = values(_plotly(at, "dyn_diff")["data"][0]["z"])
    assert diff.shape == (10, 10) and (diff.diagonal() == 0).all() and (diff == diff.T).all()
    cka = values(_plotly(at, "dyn_cka")["data"][0]["z"])
    assert abs(cka[3, 3] - 1.0) < 1e-6
    by_key(at.radio, "dyn_metric").set_value("cka_to_last")
    at.run()
    assert_clean(at)
    z = values(_plotly(at, "dyn_heat")["data"][0]["z"])
    assert (abs(z[-1] - 1.0) < 1e-5).all()  # the last checkpoint against itself


def test_training_dynamics_page_takes_the_users_own_checkpoint_files():
    at = open_page("pages/7_Training_dynamics.py")
    by_key(at.number_input, "dyn_n").set_value(40)
    by_key(at.selectbox, "dyn_model").set_value("your checkpoint files")
    at.run()
    assert_clean(at)
    assert any("at least two checkpoints" in i.value for i in at.info)
    files = []
    for epoch in (1, 5):
        torch.manual_seed(epoch)
        buf = io.BytesIO()
        torch.save(Tiny10().state_dict(), buf)
        files.append((f"mine_ep{epoch}.pt", buf.getvalue(), "application/octet-stream"))
    by_key(at.get("file_uploader"), "dyn_files").set_value(files)
    at.run()
    assert_clean(at)
    heat = _plotly(at, "dyn_heat")["data"][0]
    assert [y.split(" ·")[0] for y in heat["y"]] == ["epoch 1 (mine_ep1.pt)", "epoch 5 (mine_ep5.pt)"]


def test_adversarial_page_shows_attacked_curves_below_the_clean_one():
    at = open_page("pages/8_Adversarial.py", zoo="tiny10-s0")
    by_key(at.number_input, "adv_n").set_value(60)
    by_key(at.text_input, "adv_eps").set_value("0, 0.1")
    at.run()
    assert_clean(at)
    table = at.dataframe[0].value
    assert list(table["attack"]) == ["clean", "FGSM eps=0", "FGSM eps=0.1", "PGD (L-inf, 10 steps) eps=0",
                                     "PGD (L-inf, 10 steps) eps=0.1"]
    acc = table.set_index("attack")["accuracy"]
    assert acc["FGSM eps=0"] == acc["clean"] > acc["FGSM eps=0.1"] + 0.3
    q_last = table.set_index("attack").iloc[:, -1]
    assert q_last["PGD (L-inf, 10 steps) eps=0.1"] < q_last["clean"]
    names = [t["name"] for t in _plotly(at, "adv_curves")["data"]]
    assert names[0].startswith("clean (accuracy") and len(names) == 5

    # a slow attack waits for the button, then runs with the others read back from the cache
    by_key(at.multiselect, "adv_kinds").set_value(["fgsm", "one-pixel"])
    by_key(at.number_input, "adv_n").set_value(20)
    at.run()
    assert_clean(at)
    assert any("slow attack" in i.value for i in at.info)
    by_key(at.button, "adv_run").click()
    at.run()
    assert_clean(at)
    assert "One-pixel pixels=1" in list(at.dataframe[0].value["attack"])


def test_adversarial_page_explains_bad_eps():
    at = open_page("pages/8_Adversarial.py", zoo="tiny10-s0")
    by_key(at.text_input, "adv_eps").set_value("0.1, lots")
    at.run()
    assert not at.exception
    assert any("write the eps values as numbers" in e.value for e in at.error)


def test_stitching_page_trains_on_request_then_shows_accuracy_and_correlations():
    at = open_page("pages/9_Stitching.py")
    by_key(at.number_input, "stitch_epochs").set_value(0)  # the closed-form stitch: quick
    at.run()
    assert_clean(at)
    assert any("not in the cache" in i.value for i in at.info)
    by_key(at.button, "stitch_run").click()
    at.run()
    assert_clean(at)
    heat = values(_plotly(at, "stitch_heat")["data"][0]["z"])
    assert heat.shape == (8, 8) and (np.isnan(heat) == ~np.eye(8, dtype=bool)).all()  # the matched layers only
    assert (heat.diagonal() > 50).all()  # two seeds of one architecture stitch well at every depth
    corr = at.dataframe[0].value
    assert list(corr.columns) == ["label", "rho", "p", "n"]
    assert set(corr["n"]) == {8}
    pairs = at.dataframe[1].value
    assert list(pairs["layer_a"]) == list(pairs["layer_b"]) == [f"features.{i}" for i in range(8)]
    assert {"same_class_fraction_a", "linear_cka", "gbs_dense"} <= set(pairs.columns)
    again = open_page("pages/9_Stitching.py")  # a new session reads the finished stitches from the disk cache
    by_key(again.number_input, "stitch_epochs").set_value(0)
    again.run()
    assert_clean(again)
    assert not any("not in the cache" in i.value for i in again.info)


def test_transfer_page_ranks_the_sources_and_takes_an_image_folder(tmp_path):
    from PIL import Image

    at = open_page("pages/10_Transfer.py")
    by_key(at.multiselect, "transfer_sources").set_value(["tiny10-s0", "tiny10-s0-digits", "tiny10-s0-ep0"])
    by_key(at.number_input, "transfer_epochs").set_value(0)
    by_key(at.number_input, "transfer_n").set_value(100)
    at.run()
    assert_clean(at)
    corr, table = at.dataframe[0].value, at.dataframe[1].value
    assert set(corr["truth"]) == {"probe_accuracy"} and set(corr["n"]) == {3}
    table = table.set_index("source")
    assert table.loc["tiny10-s0-digits", "probe_accuracy"] > table.loc["tiny10-s0-ep0", "probe_accuracy"]

    for c in range(3):  # a user's folder: three classes of noise with a bright square in a class-specific corner
        (tmp_path / f"c{c}").mkdir()
        for i in range(12):
            img = np.random.default_rng(c * 100 + i).random((16, 16)) * 80
            img[c * 5:c * 5 + 6, c * 5:c * 5 + 6] = 255
            Image.fromarray(img.astype(np.uint8)).save(tmp_path / f"c{c}" / f"{i}.png")
    by_key(at.radio, "transfer_target").set_value("image_folder")
    at.run()
    assert any("path of an image folder" in i.value for i in at.info)
    by_key(at.text_input, "transfer_folder").set_value(str(tmp_path))
    at.run()
    assert_clean(at)
    assert at.dataframe[1].value["probe_accuracy"].between(0, 1).all()
    assert any("25 training and 11 held-out images" in c.value for c in at.caption)


def test_stitching_page_says_when_nothing_can_be_stitched():
    at = open_page("pages/9_Stitching.py")
    by_key(at.selectbox, "stitch_a").set_value("mlp8")
    by_key(at.selectbox, "stitch_b").set_value("tiny10-s0")
    by_key(at.number_input, "stitch_epochs").set_value(0)
    at.run()  # no pair can be trained, so there is nothing to wait for: no button, the warning at once
    assert not at.exception and not at.error
    assert any("No pair of layers could be stitched" in w.value for w in at.warning)
