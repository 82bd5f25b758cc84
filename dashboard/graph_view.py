"""Self-contained HTML of a sample graph, drawn with pyvis (vis-network inlined, no request off the machine).

Every string that comes from data or from the user (class names, model and layer names) is HTML-escaped before it
enters the page: in the header and legend we write ourselves, and in the node tooltips pyvis serialises into a script.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from pyvis.network import Network

from dashboard.charts import class_colors

__all__ = ["MAX_NODES", "graph_html", "stratified_nodes", "strip_external_resources", "external_references"]

MAX_NODES = 1000
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


def stratified_nodes(labels: np.ndarray, max_nodes: int, *, seed: int = 0) -> np.ndarray:
    """Indices of at most ``max_nodes`` samples, each class in proportion to its size (sorted; all when few enough)."""
    labels = np.asarray(labels)
    n = labels.size
    if n <= max_nodes:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.floor(counts * max_nodes / n).astype(int)
    leftover = max_nodes - quota.sum()
    quota[np.argsort(-(counts * max_nodes / n - quota), kind="stable")[:leftover]] += 1
    picked = [
        rng.choice(np.flatnonzero(labels == c), size=q, replace=False) for c, q in zip(classes, quota, strict=True)
    ]
    return np.sort(np.concatenate(picked))


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
    title: str = "",
    seed: int = 0,
    height: int = 520,
) -> str:
    """A standalone HTML page drawing the graph induced by ``nodes`` (default: all) of ``adjacency``.

    Nodes are coloured by class (legend on top); hovering one shows its sample index, true and predicted class;
    misclassified samples get a dark border. The page references nothing outside itself.
    """
    A = sp.csr_array(adjacency)
    labels = np.asarray(labels)
    nodes = np.arange(A.shape[0]) if nodes is None else np.asarray(nodes)
    sub = sp.triu(A[nodes][:, nodes], k=1).tocoo()
    colors = class_colors(len(class_names))
    names = [html.escape(str(c)) for c in class_names]

    net = Network(height=f"{height}px", width="100%", cdn_resources="in_line", bgcolor="#ffffff", heading="")
    for idx in nodes:
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
        )
    for i, j, w in zip(sub.row, sub.col, sub.data, strict=True):
        net.add_edge(int(nodes[i]), int(nodes[j]), title=f"cosine {w:.3f}")
    net.set_options(_OPTIONS % int(seed))
    page = strip_external_resources(net.generate_html())
    note = f"{len(nodes)} samples, {sub.nnz} edges. Drag to move, scroll to zoom."
    page = page.replace("<body>", "<body>" + _legend(class_names, colors, title, note), 1)
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
