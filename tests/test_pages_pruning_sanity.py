"""AppTest for the Pruning and Sanity check pages: what they show, on small settings so the runs stay short."""

from __future__ import annotations

import pytest
from apptest_helpers import assert_clean, by_key, open_page

pytestmark = pytest.mark.usefixtures("module_disk_cache")


def test_pruning_page_runs_shows_results_and_reads_them_back():
    at = open_page("pages/5_Pruning.py", zoo="tiny10-s0")
    assert_clean(at)
    by_key(at.selectbox, "prune_rule").set_value("median dQ")
    by_key(at.number_input, "prune_epochs").set_value(1)
    by_key(at.number_input, "prune_controls").set_value(1)
    by_key(at.number_input, "prune_train_n").set_value(100)
    by_key(at.number_input, "prune_curve_n").set_value(60)
    at.run()
    assert_clean(at)
    assert any("not in the cache" in i.value for i in at.info)
    by_key(at.button, "prune_run").click()
    at.run()
    assert_clean(at)
    units = at.dataframe[0].value
    assert list(units["layer"]) == [f"features.{i}" for i in range(8)]
    # Tiny-10's stride-2 and valid-padding convs can never be removed, and the table says why
    assert not units.set_index("layer").loc[["features.0", "features.2", "features.5", "features.6"], "removable"].any()
    table = at.dataframe[1].value
    assert list(table["variant"]) == ["original", "flagged", "control"]
    assert (table["n_params"].iloc[1:] < table["n_params"].iloc[0]).all()
    assert any("Flagged vs control" in m.value for m in at.markdown)
    assert at.metric[1].value == str(int(table["n_removed"].iloc[1]))  # "Removed in the pruned model"

    # a fresh session with the same settings reads the finished run from the disk cache: no button needed
    again = open_page("pages/5_Pruning.py", zoo="tiny10-s0")
    by_key(again.selectbox, "prune_rule").set_value("median dQ")
    by_key(again.number_input, "prune_epochs").set_value(1)
    by_key(again.number_input, "prune_controls").set_value(1)
    by_key(again.number_input, "prune_train_n").set_value(100)
    by_key(again.number_input, "prune_curve_n").set_value(60)
    again.run()
    assert_clean(again)
    assert not any("not in the cache" in i.value for i in again.info)
    assert list(again.dataframe[1].value["variant"]) == ["original", "flagged", "control"]


def test_sanity_page_shows_table_and_heatmap():
    at = open_page("pages/6_Sanity_check.py")
    by_key(at.multiselect, "sanity_models_tiny10").set_value(["tiny10-s0", "tiny10-s1", "tiny10-s2"])
    by_key(at.number_input, "sanity_n").set_value(60)
    by_key(at.multiselect, "sanity_metrics").set_value(["linear_cka", "gbs_dense"])
    at.run()
    assert_clean(at)
    table = at.dataframe[0].value
    assert list(table["index"]) == ["CKA (linear)", "GBS (dense graphs)"]
    assert list(table["paper_pct"]) == ["99.3", ""] and table["ours_pct"].between(0, 100).all()
    assert (table["ordered_pairs"] == 6).all()
    assert any("correct" in c.value for c in at.caption)
    per_layer = at.dataframe[1].value
    assert per_layer.shape == (2, 8)
    by_key(at.selectbox, "sanity_heat_metric").set_value("gbs_dense")
    at.run()
    assert_clean(at)
    assert any("GBS (dense graphs)" in c.value or "of 8 correct" in c.value for c in at.caption)


def test_sanity_page_needs_two_networks():
    at = open_page("pages/6_Sanity_check.py")
    by_key(at.multiselect, "sanity_models_tiny10").set_value(["tiny10-s0"])
    at.run()
    assert_clean(at)
    assert any("at least two networks" in w.value for w in at.warning)
