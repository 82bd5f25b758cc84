"""The report, the one look of the figures and the figure files (issue 13): exact values on small inputs."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from dashboard.graph_view import external_references
from gbs_core import export, figures
from gbs_core.analysis import feature_set_from_arrays, modularity_by_layer, modularity_table
from gbs_core.experiments.sanity import run_sanity_check
from gbs_core.report import SECTIONS, ReportModel, ReportSettings, graph_layers, report_html

HOSTILE = "<script>alert(1)</script>"


def _fs(name="toy", seed=0, class_names=("a", "b", "c")):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), 15)
    feats = {f"l{i}": rng.normal(size=(45, 6)) + labels[:, None] * i for i in range(4)}
    return feature_set_from_arrays(name, feats, labels, class_names=list(class_names))


def _body(page: str) -> str:
    """The page without the inlined plotly.js (whose code holds URL strings it never loads)."""
    start = page.index('<script type="text/javascript">')
    return page[:start] + page[page.index("</script>", start):]


# --- the figures' look ------------------------------------------------------------------------------------------------


def test_settings_text_and_file_stem():
    assert figures.settings_text(data="digits-noise", n=500, seed=0, k=3, motif_k=5) == \
        "digits-noise · N = 500 · seed 0 · k = 3 · motif k = 5"
    assert figures.settings_text(model=None, data="x", n=10) == "x · N = 10"
    assert figures.file_stem("modularity", model="resnet56", data="digits-noise", n=500, k=3) == \
        "modularity_resnet56_digits-noise_n500_k3"
    assert figures.file_stem("a b/c", models=["m 1", "m2"], n=5) == "a-b-c_m-1-m2_n5"
    assert figures.file_stem("x", data="folder:/etc/../x") == "x_folder-etc-..-x"  # no path separators survive


def test_wrap_keeps_words_and_bounds_lines():
    text = "resnet56-e30-digits-noise (checkpoint epoch 30): same-class triangles"
    lines = figures._wrap(text, 38).split("<br>")
    assert all(len(line) <= 38 for line in lines) and " ".join(lines) == text
    assert figures._wrap("short", 38) == "short"


def test_user_strings_are_escaped_in_figures():
    table = pd.DataFrame({"depth": [1, 2], "normalized_depth": [0, 1], "layer": ["a", "b"], "q": [0.1, 0.2],
                          "q_std": [0, 0], "dq": [np.nan, 0.1], "prunable": [False, False], "kind": ["", ""],
                          "model": [HOSTILE, HOSTILE]})
    fig = figures.modularity_chart([table], normalized=False)
    figures.stamp(fig, f"data {HOSTILE}")
    names = [t.name for t in fig.data if t.name]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in names and HOSTILE not in fig.to_json()


@pytest.mark.parametrize("make", [
    lambda M, L: figures.similarity_heatmap(M, L, L, title="t", row_title="r", col_title="c"),
    lambda M, L: figures.layer_difference_heatmap(M, L, title="t"),
    lambda M, L: figures.identification_heatmap(M, L, np.arange(len(L)), title="t"),
    lambda M, L: figures.stitching_heatmap(M, L, L, title="t", model_a="a", model_b="b"),
    lambda M, L: figures.dynamics_heatmap(M, L, [0.5] * len(L), L, title="t", metric_label="Q"),
], ids=["similarity", "layer_difference", "identification", "stitching", "dynamics"])
def test_every_heatmap_has_the_first_layer_top_left(make):
    layers = ["first", "second", "third"]
    M = np.arange(9, dtype=float).reshape(3, 3) / 9
    fig = make(M, layers)
    heat = next(t for t in fig.data if t.type == "heatmap")
    assert fig.layout.yaxis.autorange == "reversed"  # row 0 drawn at the top
    assert fig.layout.xaxis.autorange in (None, True)  # column 0 at the left
    z = np.asarray(heat.z, dtype=float)
    np.testing.assert_allclose(z / z.max(), M / M.max())  # rows in depth order, not flipped to fit the axis


def test_sample_graph_draws_each_edge_once_and_every_node():
    import scipy.sparse as sp

    A = sp.csr_array(np.array([[0, 1, 1, 0], [1, 0, 0, 0], [1, 0, 0, 1], [0, 0, 1, 0]], dtype=float))
    xy = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], dtype=float)
    fig = figures.sample_graph(A, np.arange(4), xy, np.array([0, 0, 1, 1]), ["x", "y"], title="g")
    edges = fig.data[0]
    assert np.isnan(np.asarray(edges.x, dtype=float)).sum() == 3  # three undirected edges, one segment each
    assert sum(len(t.x) for t in fig.data[1:]) == 4 and [t.name for t in fig.data[1:]] == ["x", "y"]


# --- the report -------------------------------------------------------------------------------------------------------


def test_report_holds_every_section_once_and_only_local_resources():
    fs = _fs()
    calls = []
    page = report_html([ReportModel(fs, 0.9, "test")], ReportSettings(data="toy data", n_samples=45),
                       progress=lambda d, t, m: calls.append((d, t, m)))
    for key, title in SECTIONS.items():
        assert page.count(f'<h2 id="{key}">{title}</h2>') == 1
    # modularity 1, similarity 2 (linear CKA, dense GBS), motifs 2 (beside Q, bars), graphs 3 (first, middle, last)
    assert page.count('<div class="figure">') == 8 and page.count("Plotly.newPlot") == 8
    assert page.count("* plotly.js v") == 1  # inlined once for all eight
    assert external_references(_body(page)) == []
    assert calls[-1][0] == calls[-1][1] and [c[0] for c in calls] == sorted(c[0] for c in calls)
    assert "No pruning result" in page and "No sanity-check result" in page


def test_report_table_agrees_with_the_analysis():
    fs = _fs()
    table = modularity_table(modularity_by_layer(fs, k=3), threshold=0.03)
    page = report_html([ReportModel(fs)], ReportSettings(data="toy", n_samples=45, sections=("modularity",)))
    for q in table["q"]:
        assert f"<td>{q:.3f}</td>" in page
    assert f"{int(table['prunable'].sum())} of 4 layers flagged" in page


def test_report_escapes_user_strings():
    fs = _fs(name=HOSTILE, class_names=(HOSTILE, "b", "c"))
    page = report_html([ReportModel(fs, notes=(HOSTILE,))], ReportSettings(data=HOSTILE, n_samples=45))
    assert HOSTILE not in _body(page)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_report_includes_a_sanity_result():
    feats = [_fs(seed=s).features for s in range(2)]
    result = run_sanity_check(feats, ["m0", "m1"], metrics=["linear_cka"])
    page = report_html([ReportModel(_fs())], ReportSettings(data="toy", n_samples=45, sections=("sanity",)),
                       sanity=result)
    assert "Models: m0, m1" in page and page.count('<div class="figure">') == 1
    assert f"{result.table()['ours_pct'].iloc[0]:.3f}" in page


def test_report_settings_are_checked():
    with pytest.raises(ValueError, match="unknown report section"):
        ReportSettings(data="x", n_samples=5, sections=("modularity", "nope"))
    with pytest.raises(ValueError, match="at least 1"):
        ReportSettings(data="x", n_samples=5, k=0)
    with pytest.raises(ValueError, match="at least one model"):
        report_html([], ReportSettings(data="x", n_samples=5))


def test_graph_layers_default_and_chosen():
    assert graph_layers(["a", "b", "c", "d", "e"]) == ["a", "c", "e"]
    assert graph_layers(["a", "b"]) == ["a", "b"]
    assert graph_layers(["a", "b", "c"], ["c", "zz", "a"]) == ["a", "c"]  # depth order, unknown dropped
    assert graph_layers(["a", "b", "c"], ["zz"]) == ["a", "b", "c"]


# --- figure files -----------------------------------------------------------------------------------------------------


def test_parse_formats():
    assert export.parse_formats("png, svg,png") == ("png", "svg")
    with pytest.raises(export.ExportError, match="unknown figure format"):
        export.parse_formats("png,gif")


def test_without_chromium_the_message_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(export, "chromium_path", lambda: None)
    fig = figures.motif_bars(pd.DataFrame({"layer": ["a"], "same_class_fraction": [1.0], "two_classes_fraction": [0.0],
                                           "all_different_fraction": [0.0]}), title="m")
    with pytest.raises(export.ExportError, match="apt-get install chromium"):
        export.write_static({"m": fig}, tmp_path, ["png"])
    with pytest.raises(export.ExportError, match="apt-get install chromium"):
        export.print_pdf(tmp_path / "x.html", tmp_path / "x.pdf")


needs_chromium = pytest.mark.skipif(export.chromium_path() is None, reason="no Chromium on this machine")


@needs_chromium
def test_static_files_are_real_images(tmp_path):
    fig = figures.similarity_heatmap(np.eye(3), ["a", "b", "c"], ["a", "b", "c"], title="t", row_title="r",
                                     col_title="c")
    paths = export.write_static({"heat": fig}, tmp_path, ["png", "svg", "pdf"])
    heads = {p.suffix: p.read_bytes()[:8] for p in paths}
    assert heads[".png"] == b"\x89PNG\r\n\x1a\n" and heads[".pdf"].startswith(b"%PDF")
    assert b"<svg" in (tmp_path / "heat.svg").read_bytes()[:400]




def test_cli_report_of_two_models_with_a_sanity_folder(run, tmp_path):
    run("sanity-check", "--out", str(tmp_path / "s"), "--models", "tiny10-s0,tiny10-s1", "--n-samples", "40",
        "--metrics", "linear_cka")
    res = run("report", "tiny10-s0", "tiny10-s1", "--out", str(tmp_path / "r"), "--n-samples", "60",
              "--sections", "modularity,graphs,sanity", "--graph-layers", "features.0,features.7", "--max-nodes",
              "30", "--results", str(tmp_path / "s"))
    page = (tmp_path / "r" / "report.html").read_text()
    assert "report of tiny10-s0, tiny10-s1" in res.output
    assert [m for m in re.findall(r'<h2 id="(\w+)">', page)] == ["settings", "modularity", "graphs", "sanity"]
    # modularity 1 + graphs 2 per model + sanity 1
    assert page.count('<div class="figure">') == 1 + 4 + 1
    assert page.count("30 of 60") == 4 and "Models: tiny10-s0, tiny10-s1" in page


def test_cli_report_rejects_bad_options(run, tmp_path):
    res = run("report", "tiny10-s0", "--out", str(tmp_path / "r"), "--sections", "modularity,cake", ok=False)
    assert res.exit_code == 2 and "unknown section" in res.output
    (tmp_path / "empty").mkdir()
    res = run("report", "tiny10-s0", "--out", str(tmp_path / "r"), "--results", str(tmp_path / "empty"), ok=False)
    assert res.exit_code == 2 and "neither pruning.json nor sanity.json" in res.output
    res = run("report", "--out", str(tmp_path / "r"), ok=False)
    assert res.exit_code == 2 and "give one or more MODELS" in res.output
    res = run("analyze", "tiny10-s0", "--out", str(tmp_path / "a"), "--format", "png,gif", ok=False)
    assert res.exit_code == 2 and "unknown figure format" in res.output


@needs_chromium
def test_cli_static_figures_are_named_with_the_settings(run, tmp_path):
    out = tmp_path / "a"
    run("analyze", "tiny10-s0", "--out", str(out), "--n-samples", "60", "--metrics", "linear_cka", "--k", "4",
        "--format", "svg,pdf")
    names = sorted(p.name for p in out.iterdir() if p.suffix in (".svg", ".pdf"))
    assert names == sorted(f"{fig}_tiny10-s0_digits-noise_n60_seed0_k4.{fmt}" for fig in
                           ("modularity", "similarity_linear_cka", "motifs") for fmt in ("svg", "pdf"))
    svg = (out / "modularity_tiny10-s0_digits-noise_n60_seed0_k4.svg").read_text()
    assert "tiny10-s0 · digits-noise · N = 60 · seed 0 · k = 4" in svg  # the settings as the subtitle


@needs_chromium
def test_an_invalid_browser_path_falls_back_to_the_chromium_found(tmp_path, monkeypatch):
    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "no-such-browser"))
    fig = figures.motif_bars(pd.DataFrame({"layer": ["a"], "same_class_fraction": [1.0], "two_classes_fraction": [0.0],
                                           "all_different_fraction": [0.0]}), title="m")
    paths = export.write_static({"m": fig}, tmp_path, ["svg"])
    assert paths[0].read_bytes().startswith(b"<svg")
