"""Where to draw a sample graph: which samples (a stratified subset when there are many) and their 2-D positions.

Plain numpy/networkx, shared by the dashboard's pyvis view and the report's static graph, so both draw a layer's
graph the same way (and read the same cached layout).
"""

from __future__ import annotations

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

    ForceAtlas2 (Jacomy et al. 2014; the same family of forces vis-network uses in the browser), unweighted, seeded,
    so the same graph is always drawn the same way. Each of ``max_iter`` steps moves node i by its local speed times

        F_i = sum_j k_r m_i m_j (x_i - x_j) / |x_i - x_j|^2      repulsion between every pair (k_r = 2)
            - sum_{j ~ i} (x_i - x_j)                             attraction along each edge, linear in its length
            - k_g m_i x_i / |x_i|                                 gravity towards the centre (k_g = 1)

    with masses ``m_i = deg_i + 1``. The speed adapts as in the paper: globally ``tau * sum m traction / sum m swing``
    (swing ``|F_i(t) - F_i(t-1)|``, traction ``|F_i(t) + F_i(t-1)| / 2``; it may rise by at most half per step;
    ``tau = max(e, sqrt(e))`` with ``e = 0.05 sqrt(len(nodes))``), per node divided by ``1 + sqrt(speed * swing_i)``,
    and no node moves more than 10 units in a step. Every step is a handful of vectorised m x m float32 array
    operations (no m x m x 2 array): about a tenth of ``networkx.forceatlas2_layout``'s time for the same steps,
    with layouts of the same quality (``bench/bench_layout.py``).

    Centred on 0 and scaled so the larger side spans ``40 * sqrt(len(nodes))`` pixels (vis-network zooms to fit).
    An empty ``nodes`` gives ``(0, 2)``, one node ``[[0, 0]]``.
    """
    A = sp.csr_array(adjacency)
    nodes = np.arange(A.shape[0]) if nodes is None else np.asarray(nodes)
    m = len(nodes)
    if m == 0:
        return np.zeros((0, 2))
    sub = sp.coo_array(A[nodes][:, nodes])
    off = sub.row != sub.col
    rows, cols = sub.row[off].astype(np.int64), sub.col[off].astype(np.int64)
    xy = _forceatlas2(m, rows, cols, seed=int(seed), steps=int(max_iter)).astype(float)
    xy -= (xy.max(axis=0) + xy.min(axis=0)) / 2
    span = float(np.ptp(xy, axis=0).max())
    return xy * (40 * np.sqrt(m) / span) if span > 0 else np.zeros_like(xy)


_REPULSION, _GRAVITY, _MAX_STEP = 2.0, 1.0, 10.0


def _forceatlas2(m: int, rows: np.ndarray, cols: np.ndarray, *, seed: int, steps: int) -> np.ndarray:
    """ForceAtlas2 positions (m, 2) of the graph with directed edge list ``rows -> cols`` (both directions listed)."""
    mass = (np.bincount(rows, minlength=m) + 1).astype(np.float32)
    pos = (np.random.default_rng(seed).random((m, 2)) * 2 - 1).astype(np.float32)
    if m == 1:
        return pos
    pair_mass = _REPULSION * np.outer(mass, mass)
    diagonal = np.eye(m, dtype=bool)
    e = 0.05 * np.sqrt(m)
    tolerance = max(e, np.sqrt(e))
    prev = np.zeros_like(pos)
    speed = 1.0
    for step in range(steps):
        dx = pos[:, :1] - pos[:, 0]
        dy = pos[:, 1:] - pos[:, 1]
        w = dx * dx + dy * dy
        w[diagonal] = np.inf
        np.maximum(w, 1e-9, out=w)
        np.divide(pair_mass, w, out=w)  # k_r m_i m_j / d^2: times (x_i - x_j), the repulsion's components
        force = np.stack([(w * dx).sum(axis=1), (w * dy).sum(axis=1)], axis=1)
        np.subtract.at(force, rows, pos[rows] - pos[cols])
        force -= _GRAVITY * mass[:, None] * pos / np.maximum(np.linalg.norm(pos, axis=1, keepdims=True), 1e-9)
        swing = np.linalg.norm(force - prev, axis=1)
        traction = np.linalg.norm(force + prev, axis=1) / 2
        target = tolerance * float(mass @ traction) / max(float(mass @ swing), 1e-12)
        speed = target if step == 0 else speed + min(target - speed, 0.5 * speed)
        local = speed / (1 + np.sqrt(speed * swing))
        local = np.minimum(local, _MAX_STEP / np.maximum(np.linalg.norm(force, axis=1), 1e-9))
        pos = pos + (local[:, None] * force).astype(np.float32)
        prev = force
    return pos
