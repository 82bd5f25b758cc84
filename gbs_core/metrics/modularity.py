"""Graph modularity with the classes as communities, the per-layer modularity curve, and prunable layers.

References
----------
Lu et al., "Understanding the Dynamics of DNNs Using Graph Modularity", ECCV 2022, arXiv 2111.12485.
Newman, "Analysis of weighted networks", Phys. Rev. E 70, 056131 (2004).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Literal, NamedTuple

import numpy as np
import scipy.sparse as sp
import torch

from gbs_core._validation import (
    ArrayLike,
    as_matrix,
    check_finite_number,
    check_k,
    check_labels,
    check_layers,
    check_positive_int,
    resolve_device,
)
from gbs_core.graphs import knn_graph

__all__ = [
    "CurveStats",
    "PrunableLayer",
    "disjoint_batches",
    "modularity",
    "modularity_curve",
    "modularity_curve_stats",
    "modularity_difference",
    "prunable_layers",
    "PAPER_PRUNE_THRESHOLD",
]

PAPER_PRUNE_THRESHOLD = 0.03  # the modularity paper's rule: a layer whose gain dQ is below this is a pruning candidate


def _adjacency_parts(adjacency) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(row, col, weight, n) of the nonzero entries, for sparse or dense input, after the shape/finite/symmetry checks."""
    if sp.issparse(adjacency):
        A = sp.coo_array(adjacency)
        A.sum_duplicates()
        if A.ndim != 2 or A.shape[0] != A.shape[1]:
            raise ValueError(f"adjacency must be square (n, n); got shape {A.shape}")
        row, col, w = A.row.astype(np.int64), A.col.astype(np.int64), np.asarray(A.data, dtype=np.float64)
        n = A.shape[0]
        if not np.all(np.isfinite(w)):
            raise ValueError("adjacency has non-finite (NaN or inf) weights")
        diff = abs(sp.csr_array(A, dtype=np.float64) - sp.csr_array(A.T, dtype=np.float64))
        asym = diff.max() if diff.nnz else 0.0
    else:
        M = as_matrix(adjacency, "adjacency", device=torch.device("cpu")).numpy()
        if M.shape[0] != M.shape[1]:
            raise ValueError(f"adjacency must be square (n, n); got shape {M.shape}")
        n = M.shape[0]
        asym = float(np.abs(M - M.T).max())
        row, col = np.nonzero(M)
        w = M[row, col]
    scale = float(np.abs(w).max()) if w.size else 0.0
    if asym > 1e-9 * max(scale, 1e-300):
        raise ValueError(
            f"adjacency must be symmetric (an undirected graph); max |A - A^T| = {asym:.3g}. Symmetrise with (A + A.T) / 2"
        )
    return row, col, w, n


def modularity(adjacency, labels: ArrayLike, *, resolution: float = 1.0) -> float:
    """Weighted modularity of the partition of the nodes by their class label.

    ``Q = (1 / 2W) * sum_ij (a_ij - gamma * s_i s_j / 2W) * [c_i == c_j]`` with ``s_i = sum_j a_ij`` and
    ``2W = sum_ij a_ij``. Computed in the equivalent per-class form ``Q = sum_c (e_c / 2W - gamma * (d_c / 2W)^2)``,
    ``e_c`` the weight inside class c (both directions) and ``d_c`` its total degree, in O(edges).

    A diagonal entry ``a_ii`` is a self loop and counts twice, as in an undirected graph (and in networkx): the
    formula is applied to ``A + diag(A)``. This makes the value equal ``networkx.algorithms.community.modularity``
    of ``networkx.from_numpy_array(A)`` (or ``from_scipy_sparse_array``) with the classes as communities.

    Parameters
    ----------
    adjacency : scipy sparse matrix/array or dense array/tensor, shape (n_nodes, n_nodes)
        Symmetric weighted adjacency. Negative weights are used as given.
    labels : array, shape (n_nodes,)
        Class of each node (any hashable values); each class is one community. A class of one node is a community
        of one node.
    resolution : float, default 1.0
        ``gamma``; below 1 favours larger communities.

    Returns
    -------
    float
        In [-1/2, 1] for non-negative weights; higher means edges stay inside classes more than chance.

    Raises
    ------
    ValueError
        If the adjacency is not square and symmetric, has a non-finite weight, the labels do not match, or the graph
        has no edges (total weight ``2W <= 0``): modularity is undefined for an edgeless graph.

    Examples
    --------
    Two disjoint edges, one per class: ``Q = 2 * (1/2 - (2/4)^2) = 1/2``.

    >>> import numpy as np
    >>> A = np.array([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]], float)
    >>> modularity(A, [0, 0, 1, 1])
    0.5
    """
    row, col, w, n = _adjacency_parts(adjacency)
    codes = check_labels(labels, n)
    gamma = check_finite_number(resolution, "resolution")
    return _modularity_parts(row, col, w, codes, gamma)


def _modularity_parts(row: np.ndarray, col: np.ndarray, w: np.ndarray, codes: np.ndarray, gamma: float) -> float:
    w = np.where(row == col, 2.0 * w, w)  # self loops count twice
    two_w = float(w.sum())
    if not two_w > 0:
        raise ValueError(f"the graph has no edges (total weight {two_w:.3g}); modularity is undefined for it")
    n_classes = int(codes.max()) + 1 if codes.size else 0
    cr = codes[row]
    inside = cr == codes[col]
    e = np.bincount(cr[inside], weights=w[inside], minlength=n_classes)
    d = np.bincount(cr, weights=w, minlength=n_classes)
    return float(np.sum(e / two_w - gamma * (d / two_w) ** 2))


def disjoint_batches(
    labels: ArrayLike, n_batches: int, *, stratified: bool = True, seed: int | np.random.Generator | None = 0
) -> list[np.ndarray]:
    """Split sample indices into ``n_batches`` disjoint batches covering all samples (sizes differ by at most one).

    With ``stratified=True`` the samples of each class are shuffled and dealt round-robin, so every batch gets the
    same class proportions up to one sample per class; otherwise one random permutation is cut into equal parts.

    Returns
    -------
    list of ``n_batches`` sorted int64 index arrays.
    """
    codes = np.asarray(labels).reshape(-1)
    codes = check_labels(codes, codes.shape[0])
    n_batches = check_positive_int(n_batches, "n_batches")
    if n_batches > codes.size:
        raise ValueError(f"n_batches={n_batches} is more than the {codes.size} samples")
    rng = np.random.default_rng(seed)
    if stratified:
        order = np.concatenate([rng.permutation(np.flatnonzero(codes == c)) for c in range(codes.max() + 1)])
    else:
        order = rng.permutation(codes.size)
    assignment = np.empty(codes.size, dtype=np.int64)
    assignment[order] = np.arange(codes.size) % n_batches
    return [np.flatnonzero(assignment == b) for b in range(n_batches)]


def modularity_curve(
    features: Mapping[str, ArrayLike],
    labels: ArrayLike,
    *,
    k: int = 3,
    n_batches: int = 1,
    seed: int | np.random.Generator | None = 0,
    stratified: bool = True,
    resolution: float = 1.0,
    knn_method: str = "exact",
    block_size: int | None = None,
    device: str | torch.device | None = None,
) -> dict[str, np.ndarray]:
    """Modularity Q of every layer's cosine kNN graph, with the classes as communities (the paper's curve).

    For each layer: ``knn_graph(X_l, k)`` (symmetrised) then ``modularity(A, labels)``. With ``n_batches > 1`` the
    samples are split into disjoint batches (``disjoint_batches``) and Q is computed on each batch separately, as the
    paper averages over 5 disjoint batches of 500; use ``modularity_curve_stats`` for the mean and spread.

    Parameters
    ----------
    features : mapping layer name -> array, shape (n_samples, n_features_l)
        Layers in depth order; the result keeps that order.
    labels : array, shape (n_samples,)
    k : int, default 3
        Neighbours per node; each batch needs more than k samples.
    n_batches : int, default 1
    seed : int or Generator, default 0
        Seeds the batch split (unused when ``n_batches == 1``).
    stratified : bool, default True
        Stratify the batches by class.
    knn_method : {"exact", "approx", "auto"}, default "exact"
        ``knn_graph``'s neighbour search (``method``); NN-descent, when used, is seeded with ``seed``.
    resolution, block_size, device : passed to ``modularity`` and ``knn_graph``.

    Returns
    -------
    dict layer name -> np.ndarray of shape (n_batches,), Q per batch. A layer whose kNN graph has no edges (e.g. all
    features zero) gets NaN with a ``RuntimeWarning``, since its modularity is undefined.

    Raises
    ------
    ValueError
        On an empty mapping, layers of different sample counts, non-finite features, or ``k >= batch size``.
    """
    names = check_layers(features)
    dev = resolve_device(device, *features.values())
    n = int(np.shape(features[names[0]])[0])
    codes = check_labels(labels, n)
    gamma = check_finite_number(resolution, "resolution")
    batches = disjoint_batches(codes, n_batches, stratified=stratified, seed=seed) if n_batches != 1 else [np.arange(n)]
    check_k(k, min(len(b) for b in batches))
    nn_seed = seed if isinstance(seed, int | np.integer) else 0
    curve: dict[str, np.ndarray] = {}
    for name in names:
        # float32 features stay float32 (knn_graph accumulates norms and weights in float64); one batch is the
        # layer itself, not an indexed copy
        X = as_matrix(features[name], f"features[{name!r}]", dtype=None, device=dev)
        if X.shape[0] != n:
            raise ValueError(f"features[{name!r}] has {X.shape[0]} samples but the first layer has {n}")
        q = np.empty(len(batches))
        for b, idx in enumerate(batches):
            Xb = X if len(batches) == 1 else X[torch.as_tensor(idx, device=dev)]
            A = knn_graph(Xb, k, method=knn_method, seed=nn_seed, block_size=block_size, device=dev).tocoo()
            del Xb
            try:
                q[b] = _modularity_parts(A.row.astype(np.int64), A.col.astype(np.int64), A.data, codes[idx], gamma)
            except ValueError:
                warnings.warn(
                    f"layer {name!r}: the kNN graph has no edges; its modularity is NaN", RuntimeWarning, stacklevel=2
                )
                q[b] = np.nan
        curve[name] = q
    return curve


class CurveStats(NamedTuple):
    """Mean and spread of a batched modularity curve, in layer order."""

    names: list[str]
    mean: np.ndarray
    std: np.ndarray


def modularity_curve_stats(curve: Mapping[str, ArrayLike]) -> CurveStats:
    """Per-layer mean and standard deviation (ddof=1; 0 for a single batch) of a ``modularity_curve`` result."""
    names = check_layers(curve, "curve")
    vals = [np.asarray(curve[n], dtype=np.float64).reshape(-1) for n in names]
    mean = np.array([v.mean() for v in vals])
    std = np.array([v.std(ddof=1) if v.size > 1 else 0.0 for v in vals])
    return CurveStats(names, mean, std)


class PrunableLayer(NamedTuple):
    """A layer flagged by ``prunable_layers``."""

    position: int
    name: str | None
    q: float
    dq: float
    kind: Literal["plateau", "degradation"]


def prunable_layers(
    q_values: Sequence[float] | Mapping[str, ArrayLike] | np.ndarray, *, threshold: float = PAPER_PRUNE_THRESHOLD
) -> list[PrunableLayer]:
    """Layers whose modularity gain over the previous layer is below ``threshold`` (paper 2's redundancy rule).

    ``dQ_l = Q_l - Q_(l-1)``; layer l (l >= 1) is flagged when ``dQ_l < threshold``, as a "degradation" when
    ``dQ_l < 0`` and a "plateau" otherwise. The first layer is never flagged.

    Parameters
    ----------
    q_values : sequence of floats, 1-D array, or mapping layer name -> Q (or -> per-batch Q array, averaged)
        Modularity in depth order, e.g. the output of ``modularity_curve``.
    threshold : float, default 0.03

    Returns
    -------
    list of PrunableLayer(position, name, q, dq, kind), in depth order; ``name`` is None for a plain sequence.

    Raises
    ------
    ValueError
        If a Q value is NaN or infinite (e.g. a layer with an edgeless graph): decide about that layer first.

    Examples
    --------
    >>> [(p.position, p.kind) for p in prunable_layers([0.1, 0.3, 0.31, 0.2])]
    [(2, 'plateau'), (3, 'degradation')]
    """
    thr = check_finite_number(threshold, "threshold")
    if isinstance(q_values, Mapping):
        names: list[str | None] = list(q_values.keys())
        q = np.array([float(np.mean(np.asarray(q_values[n], dtype=np.float64))) for n in names])
    else:
        q = np.asarray(q_values, dtype=np.float64).reshape(-1)
        names = [None] * q.size
    if not np.all(np.isfinite(q)):
        bad = int(np.flatnonzero(~np.isfinite(q))[0])
        label = f"{names[bad]!r}" if names[bad] is not None else f"at position {bad}"
        raise ValueError(f"Q of layer {label} is {q[bad]}; prunable_layers needs finite modularity values")
    flagged = []
    for pos in range(1, q.size):
        dq = float(q[pos] - q[pos - 1])
        if dq < thr:
            flagged.append(PrunableLayer(pos, names[pos], float(q[pos]), dq, "degradation" if dq < 0 else "plateau"))
    return flagged


def modularity_difference(q_values: Sequence[float] | Mapping[str, ArrayLike] | np.ndarray) -> np.ndarray:
    """The layer-difference matrix of a modularity curve: ``D[i, j] = |Q_i - Q_j|`` (the modularity paper's measure
    of how far apart two layers' representations are; 0 on the diagonal, symmetric).

    ``q_values`` is a curve in depth order: a sequence of Q, or a mapping layer -> Q (or -> per-batch Q, averaged).
    A NaN Q (an edgeless layer graph) gives NaN in its row and column.

    Examples
    --------
    >>> modularity_difference([0.1, 0.4, 0.3]).round(2).tolist()
    [[0.0, 0.3, 0.2], [0.3, 0.0, 0.1], [0.2, 0.1, 0.0]]
    """
    if isinstance(q_values, Mapping):
        q = np.array([float(np.mean(np.asarray(q_values[n], dtype=np.float64))) for n in q_values])
    else:
        q = np.asarray(q_values, dtype=np.float64).reshape(-1)
    return np.abs(q[:, None] - q[None, :])
