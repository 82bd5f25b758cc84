"""Every dashboard page, headless through Streamlit's AppTest: what it shows with the default workspace and what it
says for bad input (N larger than the data, k >= N, a constant layer, a checkpoint that does not fit).

The default workspace is the bundled digits in noise (N = 500, seed 0) with the zoo's ResNet-56 and its 28 default
layers.
All tests share one disk cache in a temporary folder and Streamlit's in-process caches, so only the first page run
extracts activations and fits UMAP.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from apptest_helpers import ROOT, assert_clean, open_page, values
from streamlit.testing.v1 import AppTest

from gbs_core.activations import save_activations
from gbs_core.pipeline import ModelSpec, load_model

PAGES = ["pages/1_Sample_graph.py", "pages/2_Modularity.py", "pages/3_Similarity.py", "pages/4_Motifs.py"]
N_RESNET56_LAYERS = 28  # stem + 27 residual blocks

pytestmark = pytest.mark.usefixtures("module_disk_cache")


def figures(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def graph_nodes(at: AppTest, i: int = 0) -> list[dict]:
    page = at.get("iframe")[i].proto.srcdoc
    match = re.search(r"nodes = new vis\.DataSet\((\[.*?\])\);", page, re.S)
    assert match, "no vis.DataSet of nodes in the graph HTML"
    return json.loads(match.group(1))


def error_text(at: AppTest) -> str:
    return " ".join(e.value for e in at.error)


# --- default workspace ----------------------------------------------------------------------------------------------


def test_home_shows_one_card_per_model_and_links():
    at = open_page()
    assert_clean(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Layers analysed"] == str(N_RESNET56_LAYERS)
    assert metrics["Accuracy (test split)"].endswith("%")
    q = float(metrics["Final-layer modularity Q"])
    assert 0.3 < q <= 1.0  # a trained ResNet-56 separates the ten digits in its last block
    flagged, of = metrics["Flagged by dQ < 0.03"].split(" of ")
    assert int(of) == N_RESNET56_LAYERS and 0 <= int(flagged) <= N_RESNET56_LAYERS - 1
    links = [link.proto.page for link in at.get("page_link")]  # every page of pages/, in order, by its URL path
    assert links == ["Sample_graph", "Modularity", "Similarity", "Motifs", "Pruning", "Sanity_check",
                     "Training_dynamics", "Adversarial", "Stitching", "Transfer", "Report"]
    assert "resnet56" in at.info[0].value and "digits in noise" in at.info[0].value


def test_sample_graph_draws_every_sample_with_hover_and_a_scatter():
    at = open_page(PAGES[0])
    assert_clean(at)
    nodes = graph_nodes(at)
    assert len(nodes) == 500
    assert {int(n["id"]) for n in nodes} == set(range(500))
    assert all(re.fullmatch(r"sample \d+ · true: \d · predicted: \d", n["title"]) for n in nodes)
    page = at.get("iframe")[0].proto.srcdoc
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", page)  # self-contained
    (scatter,) = figures(at)
    assert len(scatter["data"]) == 10  # one trace per digit class
    assert sum(len(values(t["x"])) for t in scatter["data"]) == 500
    slider = at.select_slider[0]
    assert len(slider.options) == N_RESNET56_LAYERS and slider.value == "layer3.8"
    assert not any("Drawing" in i.value for i in at.info)  # N = 500 is under the drawing cap


def test_sample_graph_slider_and_side_by_side():
    at = open_page(PAGES[0])
    at.select_slider[0].set_value("stem").run()
    assert_clean(at)
    assert "stem" in at.markdown[0].value or any("stem" in m.value for m in at.markdown)
    at.toggle(key="sg_compare").set_value(True).run()
    assert_clean(at)
    assert len(at.get("iframe")) == 2 and len(figures(at)) == 2
    at.radio(key="sg_method").set_value("pca").run()
    assert_clean(at)
    assert all(fig["layout"]["xaxis"]["title"]["text"] == "PCA 1" for fig in figures(at))


def test_modularity_chart_and_prunable_table():
    at = open_page(PAGES[1])
    assert_clean(at)
    (fig,) = figures(at)
    lines = [t for t in fig["data"] if t.get("mode") == "lines+markers"]
    assert len(lines) == 1 and len(values(lines[0]["x"])) == N_RESNET56_LAYERS
    assert fig["layout"]["xaxis"]["title"]["text"] == "layer depth"
    assert "exact cosine search over all pairs" in at.caption[0].value  # which search built the graphs
    table = at.dataframe[0].value
    assert list(table.columns) == ["model", "depth", "layer", "Q", "dQ", "kind"]
    assert set(table["kind"]) <= {"plateau", "degradation"}
    assert (table["dQ"] < 0.03).all()
    shaded = [s for s in fig["layout"].get("shapes", []) if s["type"] == "rect"]
    assert len(shaded) == len(table)

    at.slider(key="mod_threshold").set_value(0.0).run()
    assert_clean(at)
    table0 = at.dataframe[0].value
    assert (table0["dQ"] < 0).all() and set(table0["kind"]) <= {"degradation"}
    assert len(table0) <= len(table)


def test_modularity_of_two_models_with_batches_uses_normalised_depth():
    at = open_page(PAGES[1], zoo=["resnet56", "resnet20"])
    at.number_input(key="mod_batches").set_value(3).run()
    assert_clean(at)
    (fig,) = figures(at)
    lines = {t["name"]: t for t in fig["data"] if t.get("mode") == "lines+markers"}
    assert set(lines) == {"resnet56", "resnet20"}
    x20 = values(lines["resnet20"]["x"])
    assert len(x20) == 10 and x20.max() == 1.0
    assert fig["layout"]["xaxis"]["title"]["text"] == "normalised depth"
    assert sum(t.get("fill") == "toself" for t in fig["data"]) == 2  # a spread band per model


def test_similarity_heatmaps_in_depth_order():
    at = open_page(PAGES[2])
    assert_clean(at)
    cka, gbs = figures(at)
    for fig in (cka, gbs):
        z = values(fig["data"][0]["z"]).astype(float)
        assert z.shape == (N_RESNET56_LAYERS, N_RESNET56_LAYERS)
        np.testing.assert_allclose(np.diag(z), 1.0, atol=1e-6)  # every layer is identical to itself
        np.testing.assert_allclose(z, z.T, atol=1e-6)
        assert fig["layout"]["yaxis"]["ticktext"][0] == "stem"
    assert cka["layout"]["title"]["text"].startswith("CKA (linear)")
    assert gbs["layout"]["title"]["text"].startswith("GBS (dense)")

    at.selectbox(key="sim_cka").set_value("RBF").run()
    assert_clean(at)
    assert at.slider(key="sim_sigma").value == 0.4
    assert figures(at)[0]["layout"]["title"]["text"].startswith("CKA (RBF)")


def test_similarity_across_two_models():
    at = open_page(PAGES[2], zoo=["resnet56", "resnet20"])
    at.selectbox(key="sim_b").set_value("resnet20").run()
    assert_clean(at)
    z = values(figures(at)[0]["data"][0]["z"])
    assert z.shape == (N_RESNET56_LAYERS, 10)


def test_motifs_stacked_fractions_and_line_beside_modularity():
    at = open_page(PAGES[3])
    assert_clean(at)
    bars, lines = figures(at)
    assert [t["type"] for t in bars["data"]] == ["bar"] * 3
    assert bars["layout"]["barmode"] == "stack"
    totals = np.sum([values(t["y"]).astype(float) for t in bars["data"]], axis=0)
    np.testing.assert_allclose(totals, 1.0, atol=1e-9)  # the three fractions of a layer add up to one
    assert [t["name"] for t in lines["data"]] == ["resnet56: same-class triangles", "resnet56: modularity Q"]
    assert len(at.get("download_button")) >= 2


# --- bad input ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("page", ["app.py", PAGES[1]])
def test_n_larger_than_the_data_uses_all_of_it_with_a_note(page):
    at = open_page(page, n="600")
    assert_clean(at)
    assert "N = 600 asked, but the data has 540 samples: all 540 are used." in [c.value for c in at.caption]


def test_k_not_below_n_says_how_to_fix_it():
    at = open_page(PAGES[3], n="10", km="10")
    assert not at.exception
    text = error_text(at)
    assert "k" in text and "Graph parameters" in text


def test_constant_layer_is_named_in_the_error(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 10)
    path = save_activations(
        tmp_path / "acts.npz",
        {"conv": rng.normal(size=(30, 8)), "dead": np.ones((30, 4))},
        labels,
        class_names=["a", "b", "c"],
    )
    at = open_page(PAGES[1], data="npz", path=str(path), n="30")
    assert not at.exception
    text = error_text(at)
    assert "'dead'" in text and "constant" in text and "Layers" in text
    assert "'conv'" not in text


def test_checkpoint_that_does_not_fit_keeps_the_selection(tmp_path):
    at = open_page()
    wrong = (ROOT / "assets" / "zoo" / "digits-noise" / "resnet20.pt").read_bytes()  # a ResNet-20 state_dict offered as a ResNet-56
    at.selectbox(key="ckpt_arch").set_value("resnet56").run()
    at.file_uploader(key="ckpt_file").set_value(("resnet20.pt", wrong, "application/octet-stream")).run()
    at.button(key="ckpt_add").click().run()
    assert not at.exception
    text = error_text(at)
    assert "Checkpoint not added" in text and "Unexpected keys" in text and "layer1.3" in text
    assert len([m for m in at.metric if m.label == "Layers analysed"]) == 1  # still only resnet56


def test_checkpoint_that_fits_joins_the_selection():
    at = open_page()
    good = (ROOT / "assets" / "zoo" / "digits-noise" / "tiny10-s0.pt").read_bytes()
    at.selectbox(key="ckpt_arch").set_value("tiny10").run()
    at.file_uploader(key="ckpt_file").set_value(("tiny.pt", good, "application/octet-stream")).run()
    at.button(key="ckpt_add").click().run()
    assert_clean(at)
    cards = [m.value for m in at.metric if m.label == "Layers analysed"]
    expected = len(load_model(ModelSpec("zoo", "tiny10-s0")).default_layers())
    assert cards == [str(N_RESNET56_LAYERS), str(expected)]
    assert any("tiny.pt" in s.value for s in at.subheader)


def test_selection_survives_page_switches_and_goes_into_the_url():
    at = open_page()
    at.number_input(key="km").set_value(4).run()
    at.multiselect(key="zoo").set_value(["resnet20"]).run()
    assert_clean(at)
    assert at.query_params["km"] in ("4", ["4"]) and at.query_params["zoo"] in ("resnet20", ["resnet20"])
    assert "n" not in at.query_params  # defaults stay out of the URL
    for page in PAGES[3:] + ["app.py"]:
        at.switch_page(page).run()
        assert_clean(at)
        assert at.number_input(key="km").value == 4
        assert at.multiselect(key="zoo").value == ["resnet20"]
    assert any(s.value == "resnet20" for s in at.subheader)
