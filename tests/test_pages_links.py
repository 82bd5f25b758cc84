"""A link keeps the view (issue 13): each page's own choices are query parameters, so opening a copied URL shows the
page as it was; values a page cannot take are dropped, not obeyed. A choice shown through a label (the scatter's
"PCA", a section's title) travels as that label, as Streamlit's URL binding writes it."""

from __future__ import annotations

import pytest
from apptest_helpers import assert_clean, by_key, open_page

SMALL = {"zoo": "tiny10-s0", "n": "120"}


def test_sample_graph_link_keeps_layer_scatter_and_compare():
    at = open_page("pages/1_Sample_graph.py", **SMALL)
    slider = next(s for s in at.select_slider if s.key.startswith("sg0_layer_"))
    at = open_page("pages/1_Sample_graph.py", **SMALL, sg_method="PCA", sg_compare="true",
                   **{slider.key: "features.2"})
    assert_clean(at)
    assert by_key(at.radio, "sg_method").value == "pca" and by_key(at.toggle, "sg_compare").value is True
    assert by_key(at.select_slider, slider.key).value == "features.2"
    assert any("features.2" in m.value for m in at.markdown)  # the view is of that layer
    assert len([s for s in at.select_slider if s.key.startswith("sg")]) == 2  # and side by side


def test_modularity_link_keeps_threshold_and_batches():
    at = open_page("pages/2_Modularity.py", **SMALL, mod_threshold="0.05", mod_batches="2")
    assert_clean(at)
    assert by_key(at.slider, "mod_threshold").value == pytest.approx(0.05)
    assert by_key(at.number_input, "mod_batches").value == 2


def test_similarity_link_keeps_variant_graph_and_sigma():
    at = open_page("pages/3_Similarity.py", **SMALL, sim_cka="RBF", sim_sigma="0.8", sim_gbs="kNN")
    assert_clean(at)
    assert by_key(at.selectbox, "sim_cka").value == "RBF" and by_key(at.selectbox, "sim_gbs").value == "kNN"
    assert by_key(at.slider, "sim_sigma").value == pytest.approx(0.8)
    titles = [c.proto.spec for c in at.get("plotly_chart")]
    assert any("CKA (RBF)" in t for t in titles) and any("GBS (kNN)" in t for t in titles)


def test_similarity_link_keeps_the_column_model():
    at = open_page("pages/3_Similarity.py", zoo=["tiny10-s0", "tiny10-s1"], n="120", sim_b="tiny10-s1")
    assert_clean(at)
    assert by_key(at.selectbox, "sim_a").value == "tiny10-s0" and by_key(at.selectbox, "sim_b").value == "tiny10-s1"


def test_report_link_keeps_sections_and_nodes():
    at = open_page("pages/11_Report.py", **SMALL, report_sections=["Modularity over depth", "Sample graphs"],
                   report_nodes="100")
    assert_clean(at)
    assert by_key(at.multiselect, "report_sections").value == ["modularity", "graphs"]
    assert by_key(at.number_input, "report_nodes").value == 100


def test_sanity_link_keeps_samples_and_indices():
    from gbs_core.experiments.sanity import SANITY_METRICS

    label = {m.key: m.label for m in SANITY_METRICS}
    at = open_page("pages/6_Sanity_check.py", sanity_n="60", sanity_metrics=[label["linear_cka"], label["gbs_dense"]])
    assert_clean(at)
    assert by_key(at.number_input, "sanity_n").value == 60
    assert by_key(at.multiselect, "sanity_metrics").value == ["linear_cka", "gbs_dense"]


def test_a_value_the_widget_cannot_take_is_dropped():
    at = open_page("pages/3_Similarity.py", **SMALL, sim_cka="no-such-variant", sim_sigma="99")
    assert_clean(at)
    assert by_key(at.selectbox, "sim_cka").value == "linear"  # the default, not an error
    assert "sim_cka" not in at.query_params or at.query_params["sim_cka"] != "no-such-variant"


def test_the_report_page_makes_a_report_with_the_linked_sections():
    at = open_page("pages/11_Report.py", **SMALL, report_sections=["Modularity over depth", "Sample graphs"],
                   report_nodes="60")
    at.button(key="report_make").click().run()
    assert_clean(at)
    assert at.success and "self-contained" in at.success[0].value
    assert [b.label for b in at.get("download_button")] == ["Download the report (HTML)"]


def _widget(at, key):
    for kind in ("selectbox", "multiselect", "number_input", "slider", "select_slider", "radio", "toggle",
                 "text_input"):
        for element in getattr(at, kind):
            if element.key == key:
                return element
    raise AssertionError(f"no widget {key!r} on the page")


@pytest.mark.parametrize(("page", "query", "expected"), [
    ("pages/5_Pruning.py", {"zoo": "tiny10-s0", "prune_epochs": "3", "prune_lr": "0.05", "prune_controls": "1"},
     {"prune_epochs": 3, "prune_lr": 0.05, "prune_controls": 1}),
    ("pages/7_Training_dynamics.py", {"dyn_n": "40", "dyn_metric": "linear CKA to the last checkpoint's same layer"},
     {"dyn_n": 40, "dyn_metric": "cka_to_last"}),
    ("pages/8_Adversarial.py", {"zoo": "tiny10-s0", "adv_n": "40", "adv_eps": "0.05"},
     {"adv_n": 40, "adv_eps": "0.05"}),
    ("pages/9_Stitching.py", {"stitch_epochs": "0", "stitch_lr": "0.01"}, {"stitch_epochs": 0, "stitch_lr": 0.01}),
], ids=["pruning", "training_dynamics", "adversarial", "stitching"])
def test_experiment_page_links_keep_their_settings(page, query, expected):
    at = open_page(page, **query)
    assert not at.exception, [e.value for e in at.exception]
    for key, value in expected.items():
        got = _widget(at, key).value
        assert got == (pytest.approx(value) if isinstance(value, float) else value), key


def test_the_report_includes_a_sanity_check_that_is_in_the_cache():
    """A sanity check run with the page's defaults in one session is in the disk cache; another session's report
    reads it from there (without running one)."""
    first = open_page("pages/6_Sanity_check.py")
    assert_clean(first)
    at = open_page("pages/11_Report.py", **SMALL, report_sections=["Layer identification (sanity check)"])
    at.button(key="report_make").click().run()
    assert_clean(at)
    page = at.session_state["report_page"]["html"]
    assert "Models: tiny10-s0, tiny10-s1, tiny10-s2, tiny10-s3" in page and "No sanity-check result" not in page
