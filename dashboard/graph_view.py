"""Self-contained HTML of a sample graph, drawn with pyvis (vis-network inlined, no request off the machine).

The layout can be computed here (:func:`force_layout`, ForceAtlas2 on the drawn subgraph) and passed in as node
positions: the browser then draws at once with physics off, instead of running a force simulation on every redraw.
Inside the dashboard the iframe loads vis-network from the app's own static folder (:func:`link_vis_network`), so a
redraw sends about 180 KB instead of 850 KB and the browser reuses the script it has cached; the downloadable file keeps
vis-network inline.

Every string that comes from data or from the user (class names, model and layer names) is HTML-escaped before it
enters the page: in the header and legend we write ourselves, and in the node tooltips pyvis serialises into a script.
"""

from __future__ import annotations

import html
import importlib.util
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from gbs_core.figures import class_colors
from gbs_core.graph_layout import MAX_NODES, force_layout, stratified_nodes

__all__ = [
    "MAX_NODES",
    "VIS_NETWORK_DIR",
    "VIS_NETWORK_FILES",
    "graph_html",
    "force_layout",
    "link_vis_network",
    "stratified_nodes",
    "strip_external_resources",
    "external_references",
]

# the vis-network build that pyvis inlines (``cdn_resources="in_line"``); the dashboard serves the same two files
# (found without importing pyvis, which loads networkx and IPython: about 0.5 s off every page but the graph's)
VIS_NETWORK_DIR = Path(importlib.util.find_spec("pyvis").origin).parent / "templates" / "lib" / "vis-9.1.2"
VIS_NETWORK_FILES = ("vis-network.min.js", "vis-network.css")
_EXTERNAL_LINK = re.compile(r"<link\b[^>]*\bhref\s*=\s*[\"']?(?:https?:)?//[^>]*>", re.I | re.S)
_EXTERNAL_SCRIPT = re.compile(r"<script\b[^>]*\bsrc\s*=\s*[\"']?(?:https?:)?//[^>]*>\s*</script\s*>", re.I | re.S)
_EXTERNAL_ATTR = re.compile(r"\b(?:src|href)\s*=\s*[\"']?(?:https?:)?//", re.I)
_OPTIONS = """{
  "nodes": {"shape": "dot", "size": 7, "borderWidth": 1},
  "edges": {"color": {"color": "#9aa0a6", "opacity": 0.55}, "smooth": false, "width": 0.7},
  "interaction": {"hover": true, "tooltipDelay": 80, "navigationButtons": false},
  "physics": {
    "solver": "forceAtlas2Based",
    "forceAtlas2Based": {"gravitationalConstant": -40, "springLength": 40, "springConstant": 0.08, "avoidOverlap": 0.2},
    "stabilization": {"enabled": true, "iterations": 200, "updateInterval": 25, "fit": true},
    "minVelocity": 1.0
  },
  "layout": {"randomSeed": %d, "improvedLayout": false}
}"""
# positions given: draw them as they are (nodes can still be dragged)
_OPTIONS_FIXED = """{
  "nodes": {"shape": "dot", "size": 7, "borderWidth": 1},
  "edges": {"color": {"color": "#9aa0a6", "opacity": 0.55}, "smooth": false, "width": 0.7},
  "interaction": {"hover": true, "tooltipDelay": 80, "navigationButtons": false},
  "physics": {"enabled": false},
  "layout": {"randomSeed": %d, "improvedLayout": false}
}"""


def link_vis_network(page: str, base_url: str) -> str:
    """``page`` (from :func:`graph_html`) loading vis-network from ``base_url`` instead of carrying it inline.

    ``base_url`` is where :data:`VIS_NETWORK_FILES` are served, e.g. ``"app/static"`` for Streamlit's static folder
    (relative, so it resolves against the app's own address). Raises ``ValueError`` when the page does not hold
    pyvis's inline copy (a pyvis upgrade changed it: update :data:`VIS_NETWORK_DIR`).
    """
    js, css = ((VIS_NETWORK_DIR / name).read_text(encoding="utf-8") for name in VIS_NETWORK_FILES)
    base = html.escape(base_url.rstrip("/"), quote=True)
    inline_js, inline_css = f"<script>{js}</script>", f"<style>{css}</style>"
    if inline_js not in page or inline_css not in page:
        raise ValueError(f"the page does not inline the vis-network files of {VIS_NETWORK_DIR}")
    page = page.replace(inline_js, f'<script src="{base}/{VIS_NETWORK_FILES[0]}"></script>', 1)
    return page.replace(inline_css, f'<link rel="stylesheet" href="{base}/{VIS_NETWORK_FILES[1]}">', 1)


def strip_external_resources(page: str) -> str:
    """Remove ``<link href=//...>`` and ``<script src=//...></script>`` tags (pyvis always links Bootstrap from a CDN)."""
    return _EXTERNAL_SCRIPT.sub("", _EXTERNAL_LINK.sub("", page))


def external_references(page: str) -> list[str]:
    """Every ``src=`` / ``href=`` attribute of ``page`` that points off the machine (empty for a self-contained page)."""
    return [page[m.start() : m.start() + 80] for m in _EXTERNAL_ATTR.finditer(page)]


def _legend(class_names: Sequence[str], colors: Sequence[str], title: str, note: str) -> str:
    items = "".join(
        f'<span class="gbs-key"><span class="gbs-dot" style="background:{c}"></span>{html.escape(str(name))}</span>'
        for name, c in zip(class_names, colors, strict=True)
    )
    return (
        "<style>body{margin:0;font-family:sans-serif;font-size:13px}"
        ".gbs-head{padding:4px 6px}.gbs-key{display:inline-block;margin:2px 10px 2px 0;white-space:nowrap}"
        ".gbs-dot{display:inline-block;width:11px;height:11px;border-radius:50%;margin-right:4px;vertical-align:-1px}"
        ".gbs-miss{display:inline-block;width:9px;height:9px;border-radius:50%;border:2px solid #111;margin-right:4px;"
        "vertical-align:-1px}</style>"
        f'<div class="gbs-head"><b>{html.escape(title)}</b><br>{items}'
        f'<span class="gbs-key"><span class="gbs-miss"></span>misclassified</span>'
        f'<br><span style="color:#666">{html.escape(note)}</span></div>'
    )


def graph_html(
    adjacency: sp.csr_array,
    labels: np.ndarray,
    class_names: Sequence[str],
    *,
    nodes: np.ndarray | None = None,
    predictions: np.ndarray | None = None,
    positions: np.ndarray | None = None,
    title: str = "",
    seed: int = 0,
    height: int = 520,
) -> str:
    """A standalone HTML page drawing the graph induced by ``nodes`` (default: all) of ``adjacency``.

    Nodes are coloured by class (legend on top); hovering one shows its sample index, true and predicted class;
    misclassified samples get a dark border. ``positions`` ``(len(nodes), 2)`` (e.g. :func:`force_layout`) are drawn
    as given with physics off; without them vis-network lays the graph out in the browser (a force simulation that
    differs between runs). The page references nothing outside itself.
    """
    A = sp.csr_array(adjacency)
    labels = np.asarray(labels)
    nodes = np.arange(A.shape[0]) if nodes is None else np.asarray(nodes)
    if positions is not None and np.shape(positions) != (len(nodes), 2):
        raise ValueError(f"positions has shape {np.shape(positions)}; expected ({len(nodes)}, 2), one row per node")
    sub = sp.triu(A[nodes][:, nodes], k=1).tocoo()
    colors = class_colors(len(class_names))
    names = [html.escape(str(c)) for c in class_names]

    from pyvis.network import Network

    net = Network(height=f"{height}px", width="100%", cdn_resources="in_line", bgcolor="#ffffff", heading="")
    for row, idx in enumerate(nodes):
        y = int(labels[idx])
        tip = f"sample {int(idx)} · true: {names[y]}"
        wrong = False
        if predictions is not None:
            p = int(predictions[idx])
            tip += f" · predicted: {names[p] if 0 <= p < len(names) else p}"
            wrong = p != y
        net.add_node(
            int(idx),
            label=" ",
            title=tip,
            color={"background": colors[y], "border": "#111111" if wrong else colors[y]},
            borderWidth=3 if wrong else 1,
            **({} if positions is None else {"x": float(positions[row, 0]), "y": float(positions[row, 1])}),
        )
    for i, j, w in zip(sub.row, sub.col, sub.data, strict=True):
        net.add_edge(int(nodes[i]), int(nodes[j]), title=f"cosine {w:.3f}")
    net.set_options((_OPTIONS if positions is None else _OPTIONS_FIXED) % int(seed))
    page = strip_external_resources(net.generate_html())
    note = f"{len(nodes)} samples, {sub.nnz} edges. Drag to move, scroll to zoom."
    page = page.replace("<body>", "<body>" + _legend(class_names, colors, title, note), 1)
    if positions is None:  # settle once, then hold still
        page = page.replace(
            "</body>",
            "<script>network.once('stabilizationIterationsDone',"
            "function(){network.setOptions({physics:false});});</script></body>",
            1,
        )
    leftover = external_references(page)
    if leftover:  # a pyvis upgrade added a CDN reference we do not strip: fail loudly rather than render blank offline
        raise RuntimeError(f"graph HTML still references external resources: {leftover[:3]}")
    return page
