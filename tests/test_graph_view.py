"""The pyvis graph page: self-contained, every data string escaped, the drawn subgraph exactly the induced one; the
seeded layout; the page variant that loads vis-network from the app's static folder."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dashboard.graph_view import (  # noqa: E402
    VIS_NETWORK_DIR,
    VIS_NETWORK_FILES,
    external_references,
    force_layout,
    graph_html,
    link_vis_network,
    stratified_nodes,
    strip_external_resources,
)


def _path_graph(n: int) -> sp.csr_array:
    """0 - 1 - 2 - ... - (n-1), symmetric, weight 0.5."""
    rows = np.arange(n - 1)
    A = sp.coo_array((np.full(n - 1, 0.5), (rows, rows + 1)), shape=(n, n))
    return sp.csr_array(A + A.T)


def _dataset(page: str, name: str) -> list[dict]:
    match = re.search(rf"{name} = new vis\.DataSet\((\[.*?\])\);", page, re.S)
    assert match, f"no {name} DataSet in the page"
    return json.loads(match.group(1))


def test_page_is_self_contained():
    page = graph_html(_path_graph(4), np.array([0, 0, 1, 1]), ["a", "b"])
    assert external_references(page) == []
    assert "cdn.jsdelivr" not in page and "cdnjs" not in page
    assert "vis.Network" in page  # vis-network is inlined, not linked


def test_strip_removes_cdn_tags_and_keeps_local_ones():
    page = (
        '<link href="https://cdn.example/b.css" rel="stylesheet" />\n'
        '<script\n  src="//cdn.example/b.js"\n  crossorigin="anonymous"\n></script>'
        '<script src="local.js"></script><style>x{}</style>'
    )
    stripped = strip_external_resources(page)
    assert external_references(stripped) == []
    assert stripped.endswith('<script src="local.js"></script><style>x{}</style>')
    assert len(external_references(page)) == 2


def test_every_data_string_is_escaped():
    evil = '<img src=x onerror="alert(1)">'
    page = graph_html(
        _path_graph(3),
        np.array([0, 1, 1]),
        [evil, "</script><b>"],
        predictions=np.array([1, 1, 0]),
        title=f"model {evil} layer </script>",
    )
    assert evil not in page and "</script><b>" not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page  # legend and heading show it as text
    nodes = _dataset(page, "nodes")
    assert (
        nodes[0]["title"] == "sample 0 · true: &lt;img src=x onerror=&quot;alert(1)&quot;&gt; · predicted: "
        "&lt;/script&gt;&lt;b&gt;"
    )


def test_nodes_edges_and_hover_of_the_induced_subgraph():
    A = _path_graph(6)
    labels = np.array([0, 0, 1, 1, 2, 2])
    predictions = np.array([0, 1, 1, 1, 2, 0])
    page = graph_html(A, labels, ["zero", "one", "two"], nodes=np.array([1, 2, 3, 5]), predictions=predictions)
    nodes = {n["id"]: n for n in _dataset(page, "nodes")}
    edges = {(e["from"], e["to"]) for e in _dataset(page, "edges")}
    assert set(nodes) == {1, 2, 3, 5}
    assert edges == {(1, 2), (2, 3)}  # 3-4 and 4-5 leave the drawn set; each undirected edge once
    assert nodes[1]["title"] == "sample 1 · true: zero · predicted: one"
    assert nodes[1]["borderWidth"] == 3 and nodes[2]["borderWidth"] == 1  # misclassified samples stand out
    assert nodes[2]["color"]["background"] == nodes[3]["color"]["background"] != nodes[1]["color"]["background"]
    assert "4 samples, 2 edges" in page


def test_without_predictions_the_hover_has_no_predicted_class():
    page = graph_html(_path_graph(2), np.array([0, 1]), ["a", "b"])
    assert [n["title"] for n in _dataset(page, "nodes")] == ["sample 0 · true: a", "sample 1 · true: b"]


def test_stratified_nodes_keep_class_proportions():
    labels = np.repeat([0, 1, 2], [600, 300, 100])
    picked = stratified_nodes(labels, 100, seed=0)
    assert len(picked) == 100 and len(np.unique(picked)) == 100
    assert np.bincount(labels[picked]).tolist() == [60, 30, 10]
    assert np.all(np.diff(picked) > 0)
    np.testing.assert_array_equal(picked, stratified_nodes(labels, 100, seed=0))
    assert not np.array_equal(picked, stratified_nodes(labels, 100, seed=1))


def test_stratified_nodes_return_everything_under_the_cap():
    np.testing.assert_array_equal(stratified_nodes(np.array([1, 0, 1]), 1000), [0, 1, 2])


@pytest.mark.parametrize("n_classes", [3, 10, 37])
def test_every_class_gets_its_own_colour_in_the_legend(n_classes):
    labels = np.arange(n_classes)
    page = graph_html(sp.csr_array((n_classes, n_classes)), labels, [f"c{i}" for i in range(n_classes)])
    legend_colours = re.findall(r'class="gbs-dot" style="background:(#[0-9A-Fa-f]{6})"', page)
    assert len(legend_colours) == n_classes
    assert len(set(legend_colours)) == min(n_classes, 10 if n_classes <= 10 else 50)


def test_force_layout_is_seeded_centred_and_scaled():
    A = _path_graph(6)
    xy = force_layout(A, np.array([0, 1, 2, 4]), seed=3)
    assert xy.shape == (4, 2)
    np.testing.assert_array_equal(xy, force_layout(A, np.array([0, 1, 2, 4]), seed=3))
    np.testing.assert_allclose(xy.max(axis=0) + xy.min(axis=0), 0.0, atol=1e-9)  # centred on 0
    assert np.ptp(xy, axis=0).max() == pytest.approx(40 * np.sqrt(4))
    assert force_layout(A, np.array([], dtype=int)).shape == (0, 2)
    np.testing.assert_array_equal(force_layout(A, np.array([2])), [[0.0, 0.0]])  # one node: nothing to scale


def test_force_layout_puts_neighbours_closer_than_strangers():
    # two 5-cliques joined by one edge: the mean distance inside a clique is below the mean distance across
    clique = np.ones((5, 5)) - np.eye(5)
    dense = np.block([[clique, np.zeros((5, 5))], [np.zeros((5, 5)), clique]])
    dense[4, 5] = dense[5, 4] = 1
    xy = force_layout(sp.csr_array(dense), seed=0)
    d = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    inside = (d[:5, :5].sum() + d[5:, 5:].sum()) / 40
    assert inside < d[:5, 5:].mean() / 2


def test_given_positions_are_drawn_with_physics_off():
    xy = np.array([[0.0, 1.0], [2.5, -3.0]])
    page = graph_html(_path_graph(3), np.array([0, 1, 1]), ["a", "b"], nodes=np.array([0, 2]), positions=xy)
    nodes = _dataset(page, "nodes")
    assert [(n["x"], n["y"]) for n in nodes] == [(0.0, 1.0), (2.5, -3.0)]
    assert re.search(r'"physics":\s*\{\s*"enabled":\s*false', page)
    assert "network.once('stabilizationIterationsDone'" not in page  # nothing to settle
    with pytest.raises(ValueError, match=r"positions has shape \(3, 2\); expected \(2, 2\)"):
        graph_html(_path_graph(3), np.array([0, 1, 1]), ["a", "b"], nodes=np.array([0, 2]), positions=np.zeros((3, 2)))


def test_linked_page_loads_vis_network_from_the_static_folder():
    page = graph_html(_path_graph(4), np.array([0, 0, 1, 1]), ["a", "b"])
    linked = link_vis_network(page, "app/static/")
    assert '<script src="app/static/vis-network.min.js"></script>' in linked
    assert '<link rel="stylesheet" href="app/static/vis-network.css">' in linked
    assert external_references(linked) == []  # relative: it resolves against the app's own address
    assert len(linked) < len(page) - 600_000  # vis-network's 690 KB are gone
    assert linked.count("vis.DataSet") == page.count("vis.DataSet")  # the graph itself is untouched
    with pytest.raises(ValueError, match="does not inline the vis-network files"):
        link_vis_network(linked, "app/static")


@pytest.mark.parametrize("name", VIS_NETWORK_FILES)
def test_static_copy_of_vis_network_is_the_one_pyvis_inlines(name):
    # the iframe in the app loads static/<name>; the downloaded file inlines pyvis's copy: they must be the same build
    assert (ROOT / "static" / name).read_bytes() == (VIS_NETWORK_DIR / name).read_bytes()


def test_forceatlas2_two_nodes_settle_at_the_hand_computed_distance():
    # masses 2 and 2: repulsion 2 * 2 * 2 / d outwards, attraction d and gravity 2 inwards on each node, so at rest
    # 8 / d = d + 2, d = 2, on a line through the centre (gravity, constant in size, then cancels between them)
    from gbs_core.graph_layout import _forceatlas2

    xy = _forceatlas2(2, np.array([0, 1]), np.array([1, 0]), seed=5, steps=400)
    assert np.linalg.norm(xy[0] - xy[1]) == pytest.approx(2.0, abs=1e-3)
    cos = xy[0] @ xy[1] / (np.linalg.norm(xy[0]) * np.linalg.norm(xy[1]))
    assert cos == pytest.approx(-1.0, abs=1e-6)


def test_force_layout_matches_networkx_forceatlas2_in_quality():
    # the same forces as networkx's ForceAtlas2 (an independent implementation): classes as separate and edges as
    # short, relative to the drawing's size, on a clustered kNN graph
    import networkx as nx
    from sklearn.metrics import silhouette_score

    from gbs_core.graphs import knn_graph

    rng = np.random.default_rng(0)
    y = np.arange(300) % 6
    A = knn_graph(rng.standard_normal((6, 32))[y] + 1.2 * rng.standard_normal((300, 32)), 3)
    pos = nx.forceatlas2_layout(nx.from_scipy_sparse_array(A), seed=0, max_iter=100)
    theirs = np.array([pos[i] for i in range(300)])
    ours = force_layout(A, seed=0)
    coo = sp.coo_array(A)

    def edge_ratio(xy):
        d = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
        return d[coo.row, coo.col].mean() / d[np.triu_indices(300, 1)].mean()

    assert silhouette_score(ours, y) > silhouette_score(theirs, y) - 0.1
    assert edge_ratio(ours) < 1.3 * edge_ratio(theirs)
    assert silhouette_score(ours, y) > 0.5 and edge_ratio(ours) < 0.2
