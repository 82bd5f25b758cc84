"""Where to draw a sample graph: which samples (a stratified subset when there are many) and their 2-D positions.

Plain numpy/networkx, shared by the dashboard's pyvis view and the report's static graph, so both draw a layer's
graph the same way (and read the same cached layout).
"""

from __future__ import annotations

import networkx as nx
import numpy as np
import scipy.sparse as sp

__all__ = ["MAX_NODES", "force_layout", "stratified_nodes"]

MAX_NODES = 1000  # more nodes than this are unreadable in a browser graph and slow to lay out


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


def force_layout(
    adjacency: sp.csr_array, nodes: np.ndarray | None = None, *, seed: int = 0, max_iter: int = 100
) -> np.ndarray:
    """Positions ``(len(nodes), 2)``, in screen pixels, of the subgraph of ``adjacency`` induced by ``nodes``.

    ForceAtlas2 (``networkx.forceatlas2_layout``, unweighted, gravity 1: the same family of forces vis-network used
    in the browser), seeded, so the same graph is always drawn the same way. Centred on 0 and scaled so the larger
    side spans ``40 * sqrt(len(nodes))`` pixels (vis-network zooms to fit). An empty ``nodes`` gives ``(0, 2)``.
    """
    A = sp.csr_array(adjacency)
    nodes = np.arange(A.shape[0]) if nodes is None else np.asarray(nodes)
    m = len(nodes)
    if m == 0:
        return np.zeros((0, 2))
    graph = nx.from_scipy_sparse_array(A[nodes][:, nodes])
    pos = nx.forceatlas2_layout(graph, seed=int(seed), max_iter=int(max_iter))
    xy = np.array([pos[i] for i in range(m)], dtype=float)
    xy -= (xy.max(axis=0) + xy.min(axis=0)) / 2
    span = float(np.ptp(xy, axis=0).max())
    return xy * (40 * np.sqrt(m) / span) if span > 0 else xy
