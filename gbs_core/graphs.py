"""Sample graphs built from a layer's features: cosine similarity in row blocks, kNN graphs, dense cosine graphs.

A layer's features ``X`` (n_samples, n_features) define a graph on the samples. Rows are L2-normalised with the norm
floored at 1e-8 (so an all-zero row stays zero), and the cosine similarity is ``S = Xn Xn^T`` with a zero diagonal.
Everything is computed in blocks of rows so that no N x N matrix is ever held at once.

The kNN graph's neighbours come from an exact all-pairs search or, for large N, from NN-descent (approximate
neighbours, exact float64 weights); ``knn_recall`` measures how many true neighbours an approximate graph found.

References
----------
Lu et al., "Understanding the Dynamics of DNNs Using Graph Modularity", ECCV 2022 (kNN graph, k = 3).
Chen et al., "Graph-Based Similarity of Deep Neural Networks", Neurocomputing 614 (2024) 128722 (dense graph, k = 5 motifs).
Dong, Charikar and Li, "Efficient k-nearest neighbor graph construction for generic similarity measures", WWW 2011
(NN-descent, as implemented by pynndescent).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch

from gbs_core._validation import ArrayLike, as_matrix, check_choice, check_k, check_positive_int, resolve_device

__all__ = [
    "APPROX_MIN_SAMPLES",
    "APPROX_NEIGHBORS",
    "KNN_METHODS",
    "cosine_similarity_blocks",
    "dense_cosine_graph",
    "knn_graph",
    "knn_method_used",
    "knn_recall",
    "normalize_rows",
]

KnnMethod = Literal["exact", "approx", "auto"]
KNN_METHODS: tuple[str, ...] = ("exact", "approx", "auto")
# method="auto" switches from the exact search to NN-descent at this many samples. Measured (bench/bench_knn_scale.py,
# D = 1024, k = 3, 2 shared cores): with approx_neighbors=30 NN-descent is faster than exact from N = 10000 once numba
# has compiled it (N = 20000: 7 s vs 14 s), but its first call in a process adds a 30-55 s JIT compile, so it only
# wins in a fresh process from N = 50000 (24 s + 31 s vs 79 s; N = 100000: 50 s + 33 s vs 353 s). Its neighbours are
# also biased (see knn_graph's Notes), so it is used only where the exact search takes minutes.
APPROX_MIN_SAMPLES = 50_000
# NN-descent's graph degree (search effort) for method="approx".
APPROX_NEIGHBORS = 30

NORM_FLOOR = 1e-8
# Elements of one block of rows of an N x N matrix: 2**25 float32 is 128 MiB.
_BLOCK_ELEMENTS = 2**25


def _default_block(n_rows: int, n_cols: int, elements: int = _BLOCK_ELEMENTS) -> int:
    return max(1, min(n_rows, elements // max(n_cols, 1)))


def _normalize(X: torch.Tensor) -> torch.Tensor:
    # Norms in float64 whatever the working precision, so the floor of 1e-8 means the same thing everywhere.
    norms = torch.linalg.vector_norm(X.to(torch.float64), dim=1).clamp_min(NORM_FLOOR)
    return X / norms.to(X.dtype).unsqueeze(1)


def normalize_rows(X: ArrayLike, *, device: str | torch.device | None = None) -> torch.Tensor:
    """L2-normalise the rows of ``X``: ``Xn_i = x_i / max(||x_i||, 1e-8)``.

    Parameters
    ----------
    X : array or tensor, shape (n_samples, n_features)
    device : torch device, optional. Defaults to ``X``'s device when it is a tensor, else the CPU.

    Returns
    -------
    torch.Tensor, float64, shape (n_samples, n_features). Rows have norm 1, except all-zero rows, which stay zero.
    """
    dev = resolve_device(device, X)
    return _normalize(as_matrix(X, "X", device=dev))


def _cosine_blocks(Xn: torch.Tensor, block_size: int) -> Iterator[tuple[int, int, torch.Tensor]]:
    n = Xn.shape[0]
    for start in range(0, n, block_size):
        stop = min(n, start + block_size)
        S = Xn[start:stop] @ Xn.T
        idx = torch.arange(stop - start, device=S.device)
        S[idx, idx + start] = 0.0
        yield start, stop, S


def cosine_similarity_blocks(
    X: ArrayLike, *, block_size: int | None = None, device: str | torch.device | None = None
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Yield the cosine similarity matrix of the rows of ``X`` one block of rows at a time.

    ``S_ij = <x_i, x_j> / (max(||x_i||, 1e-8) * max(||x_j||, 1e-8))`` with the diagonal set to 0 (no self loops).

    Parameters
    ----------
    X : array or tensor, shape (n_samples, n_features)
    block_size : int, optional. Rows per block; by default about 2**25 / n_samples.
    device : torch device, optional.

    Yields
    ------
    (start, stop, S_block) with ``S_block`` a float64 tensor of shape (stop - start, n_samples), entries in [-1, 1].
    """
    dev = resolve_device(device, X)
    Xt = as_matrix(X, "X", device=dev)
    n = Xt.shape[0]
    bs = _default_block(n, n) if block_size is None else check_positive_int(block_size, "block_size")
    yield from _cosine_blocks(_normalize(Xt), bs)


def dense_cosine_graph(X: ArrayLike, *, device: str | torch.device | None = None) -> np.ndarray:
    """The dense cosine graph of GBS: ``A = S`` with zero diagonal, every pair connected.

    Holds the full N x N matrix: meant for small N (display, tests). ``gbs_similarity`` never calls it.

    Parameters
    ----------
    X : array or tensor, shape (n_samples, n_features)

    Returns
    -------
    np.ndarray, float64, shape (n_samples, n_samples), symmetric, zero diagonal, entries in [-1, 1].
    """
    dev = resolve_device(device, X)
    Xn = _normalize(as_matrix(X, "X", device=dev))
    S = Xn @ Xn.T
    S.fill_diagonal_(0.0)
    return S.cpu().numpy()


def _topk_stable(S: torch.Tensor, k: int) -> torch.Tensor:
    """Column indices of the k largest entries of each row; ties at the k-th value go to the lower column index."""
    # The (k+1)-th largest equal to the k-th is the only way a tie can make the choice ambiguous.
    vals, idx = torch.topk(S, min(k + 1, S.shape[1]), dim=1, largest=True, sorted=True)
    if vals.shape[1] == k:
        return idx
    kth = vals[:, k - 1 : k]
    tied_rows = torch.nonzero(vals[:, k] == vals[:, k - 1]).flatten()
    idx = idx[:, :k]
    if tied_rows.numel() == 0:
        return idx
    # torch.topk's choice among equal values is unspecified; make it deterministic for the rows that need it.
    St, kt = S[tied_rows], kth[tied_rows]
    greater = St > kt
    need = k - greater.sum(dim=1, keepdim=True)
    equal = St == kt
    take = greater | (equal & (torch.cumsum(equal.to(torch.int32), dim=1) <= need))
    fixed = torch.nonzero(take)[:, 1].reshape(-1, k)
    idx = idx.clone()
    idx[tied_rows] = fixed
    return idx


def _pair_cosines(Xin: torch.Tensor, norms: torch.Tensor, start: int, cols: torch.Tensor) -> torch.Tensor:
    """Exact float64 cosines between rows ``start : start + len(cols)`` and their chosen neighbours ``cols``."""
    out = torch.empty(cols.shape, dtype=torch.float64, device=cols.device)
    gather_rows = max(1, _BLOCK_ELEMENTS // (4 * cols.shape[1] * Xin.shape[1]))
    # Small chunks: the gathered neighbours are (rows, k, D) in float64.
    for s in range(0, cols.shape[0], gather_rows):
        e = min(cols.shape[0], s + gather_rows)
        c = cols[s:e]
        nb = Xin[c].to(torch.float64)
        dots = torch.bmm(nb, Xin[start + s : start + e].to(torch.float64).unsqueeze(2)).squeeze(2)
        out[s:e] = dots / (norms[start + s : start + e].unsqueeze(1) * norms[c])
    return out


def _exact_neighbours(Xs: torch.Tensor, rows: torch.Tensor, k: int, block_size: int) -> torch.Tensor:
    """The k most similar other rows of each row in ``rows`` (``Xs`` normalised, in the search dtype)."""
    cols = torch.empty((rows.numel(), k), dtype=torch.int64, device=Xs.device)
    for start in range(0, rows.numel(), block_size):
        r = rows[start : start + block_size]
        S = Xs[r] @ Xs.T
        S[torch.arange(r.numel(), device=S.device), r] = -torch.inf
        cols[start : start + r.numel()] = _topk_stable(S, k)
    return cols


def _approx_neighbours(Xin: torch.Tensor, k: int, n_neighbors: int, seed: int) -> np.ndarray:
    """Approximate cosine neighbours from NN-descent: (n, k) column indices, -1 where fewer than k were found.

    Candidates are ordered by pynndescent's float32 cosine distance, ties to the lower index, after dropping the
    point itself by index (with duplicated or all-zero rows, self need not come first) and any repeated index.
    """
    # Importing pynndescent loads numba (seconds) and its first NN-descent in a process is JIT-compiled (tens of
    # seconds), so neither happens unless the approximate search is asked for.
    from pynndescent import NNDescent

    data = np.ascontiguousarray(Xin.detach().to("cpu", torch.float32).numpy())
    with warnings.catch_warnings():
        # Rows left short are completed by an exact search in knn_graph, so the warning would mislead.
        warnings.filterwarnings("ignore", message="Failed to correctly find n_neighbors")
        # One thread: NN-descent's result depends on its thread count (measured: 81% of the rows of a 30-neighbour
        # graph at N = 20000 differ between 1 and 2 threads), so a seed's graph does not depend on the core count.
        # On 2 shared cores one thread was no slower (5.8 s vs 6.7 s).
        index = NNDescent(data, metric="cosine", n_neighbors=n_neighbors, random_state=seed, n_jobs=1)
        idx, dist = index.neighbor_graph
    n = idx.shape[0]
    idx = idx.astype(np.int64)
    bad = (idx < 0) | (idx == np.arange(n)[:, None]) | ~np.isfinite(dist)
    key = np.where(bad, np.inf, dist)
    order = np.lexsort((np.where(bad, n, idx), key), axis=1)  # by distance, then by index
    idx, bad = np.take_along_axis(idx, order, 1), np.take_along_axis(bad, order, 1)
    # A repeated index sorts next to its twin (same distance); keep the first.
    bad[:, 1:] |= idx[:, 1:] == idx[:, :-1]
    order = np.argsort(bad, axis=1, kind="stable")[:, :k]
    cols = np.take_along_axis(idx, order, 1)
    cols[np.take_along_axis(bad, order, 1)] = -1
    return cols


def knn_method_used(n_samples: int, method: KnnMethod = "auto") -> Literal["exact", "approx"]:
    """Which neighbour search ``knn_graph(X, k, method=method)`` runs for ``n_samples`` samples.

    ``"auto"`` resolves to ``"exact"`` below ``APPROX_MIN_SAMPLES`` samples and to ``"approx"`` at or above it;
    ``"exact"`` and ``"approx"`` resolve to themselves.

    Raises
    ------
    ValueError
        If ``method`` is not one of ``"exact"``, ``"approx"``, ``"auto"`` or ``n_samples`` is not a positive integer.

    Examples
    --------
    >>> knn_method_used(500), knn_method_used(10**6), knn_method_used(10**6, "exact")
    ('exact', 'approx', 'exact')
    """
    check_choice(method, "method", KNN_METHODS)
    n = check_positive_int(n_samples, "n_samples")
    if method == "auto":
        return "approx" if n >= APPROX_MIN_SAMPLES else "exact"
    return method


def knn_graph(
    X: ArrayLike,
    k: int,
    *,
    symmetrize: bool = True,
    method: KnnMethod = "exact",
    approx_neighbors: int = APPROX_NEIGHBORS,
    seed: int = 0,
    block_size: int | None = None,
    search_dtype: Literal["float32", "float64"] = "float32",
    device: str | torch.device | None = None,
) -> sp.csr_array:
    """Cosine k-nearest-neighbour graph of the samples, symmetrised as ``A = (D + D^T) / 2``.

    Each node i keeps the k largest entries of row i of the cosine similarity ``S`` (itself excluded) as directed
    edges ``i -> j`` of weight ``S_ij``, forming ``D``. With ``symmetrize=True``, ``A = (D + D^T) / 2``: a mutual pair
    keeps weight ``S_ij``, a one-sided pair gets ``S_ij / 2``.

    ``method="exact"`` searches all pairs, in blocks of rows with a top-k per block: O(N^2 * D) time, memory
    O(N*k + block_size*N), never N x N. ``method="approx"`` finds the neighbours with NN-descent (pynndescent,
    ``metric="cosine"`` on the float32 features) in roughly O(N * approx_neighbors^2 * D) time: a node's k neighbours
    are then the k most similar among the candidates it found, which may miss some true neighbours (recall@k below 1,
    see ``knn_recall``). Only the choice of neighbours is approximate: in both methods the edge weights are the exact
    float64 cosines of the chosen pairs, and symmetrisation, dropping of zero-weight edges and ordering are the same,
    so the result has the same form. ``method="auto"`` is exact below ``APPROX_MIN_SAMPLES`` samples and approximate
    at or above it (``knn_method_used`` tells which).

    Parameters
    ----------
    X : array or tensor, shape (n_samples, n_features)
        A layer's flattened features. Needs ``n_samples > k``.
    k : int
        Neighbours per node, ``1 <= k < n_samples`` (3 in the modularity paper, 5 for motifs).
    symmetrize : bool, default True
        Return ``(D + D^T) / 2``; with False return the directed ``D`` (row i holds i's k neighbours).
    method : {"exact", "approx", "auto"}, default "exact"
        Neighbour search: all pairs, NN-descent, or chosen by the sample count.
    approx_neighbors : int, default 30
        Search effort of ``method="approx"``: NN-descent builds a graph of ``max(approx_neighbors, k + 1)``
        neighbours per node (itself included), cut to the best k. More is slower and closer to exact (issue 15
        measured at N = 20000, D = 4096, k = 3: recall@3 about 0.65 with 15, 0.92 with 30; recall falls as N and the
        features' intrinsic dimension grow). Ignored by the exact search.
    seed : int, default 0
        Seeds NN-descent (``random_state``; it runs on one thread, so the graph does not depend on the core count).
        Ignored by the exact search, which is deterministic.
    block_size : int, optional
        Rows per block of the exact search; by default about 2**25 / n_samples (128 MiB of float32 per block).
    search_dtype : {"float32", "float64"}, default "float32"
        Precision of the exact similarity search (the N^2 * D matrix multiply). Edge weights are always recomputed in
        float64 for the chosen pairs, so only the choice between neighbours within ~1e-6 of each other can depend on
        it. NN-descent always compares in float32.
    device : torch device, optional
        Where to compute; defaults to ``X``'s device when it is a CUDA tensor, else the CPU. NN-descent runs on the
        CPU whatever the device (pynndescent is CPU-only); the features are copied there as float32 and the edge
        weights are computed on ``device``.

    Returns
    -------
    scipy.sparse.csr_array, float64, shape (n_samples, n_samples)
        Weights are cosine similarities in [-1, 1]; no diagonal. Edges of weight exactly 0 (e.g. from an all-zero
        row, whose similarity to everything is 0) are dropped, so an all-zero row has no edges.

    Notes
    -----
    Ties: when several columns share the k-th largest value of a row (in ``search_dtype``; for NN-descent, among the
    candidates found, in float32), the lower column indices are kept. Negative similarities are kept as negative
    weights. A node for which NN-descent found fewer than k other nodes (rare; pynndescent pads such rows) gets its
    neighbours from the exact search, so every node has exactly k out-edges before zero-weight edges are dropped.

    NN-descent looks for neighbours among neighbours' neighbours, so the true neighbours it misses are mostly ones
    across clusters: on features of high intrinsic dimension, where many exact neighbours cross classes, the
    approximate graph has more same-class edges and a higher modularity than the exact one (measured with 10 noisy
    Gaussian classes in D = 1024, approx_neighbors=30: recall@3 0.74 and Q 0.81 vs 0.69 at N = 20000). On
    low-dimensional, well-clustered features recall is near 1 and Q agrees closely. Check with ``knn_recall`` on a
    subsample before relying on small modularity differences.

    The first approximate search in a process includes numba's JIT compile of pynndescent (30-55 s measured on two
    busy cores); later calls do not.

    Raises
    ------
    ValueError
        If ``X`` is not a finite 2-D array, ``k`` is not an integer with ``1 <= k < n_samples``, ``method`` or
        ``search_dtype`` is not one of its allowed values, or ``approx_neighbors``, ``seed`` or ``block_size`` is
        out of range.

    References
    ----------
    Dong, Charikar and Li, "Efficient k-nearest neighbor graph construction for generic similarity measures",
    WWW 2011 (NN-descent).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> knn_graph(X, 1).nnz  # two mutual pairs
    4
    """
    dtype = {"float32": torch.float32, "float64": torch.float64}[
        check_choice(search_dtype, "search_dtype", ("float32", "float64"))
    ]
    check_choice(method, "method", KNN_METHODS)
    approx_neighbors = check_positive_int(approx_neighbors, "approx_neighbors")
    seed = check_positive_int(seed, "seed", minimum=0)
    if seed >= 2**32:
        raise ValueError(f"seed must be below 2**32; got {seed}")
    dev = resolve_device(device, X)
    Xin = as_matrix(X, "X", dtype=None, device=dev, min_samples=2, why="a kNN graph needs at least 2")
    n = Xin.shape[0]
    k = check_k(k, n)
    bs = _default_block(n, n) if block_size is None else check_positive_int(block_size, "block_size")

    # Norms in float64 without a float64 copy of X; the exact search runs on one normalised copy in search_dtype.
    norms = torch.linalg.vector_norm(Xin, dim=1, dtype=torch.float64).clamp_min(NORM_FLOOR)
    if knn_method_used(n, method) == "exact":
        Xs = Xin.to(dtype) / norms.to(dtype).unsqueeze(1)
        cols = _exact_neighbours(Xs, torch.arange(n, device=dev), k, bs)
    else:
        found = _approx_neighbours(Xin, k, min(n, max(approx_neighbors, k + 1)), seed)
        cols = torch.from_numpy(found).to(dev)
        short = torch.nonzero((cols < 0).any(dim=1)).flatten()
        if short.numel():
            Xs = Xin.to(dtype) / norms.to(dtype).unsqueeze(1)
            cols[short] = _exact_neighbours(Xs, short, k, bs)
    weights = torch.empty((n, k), dtype=torch.float64, device=dev)
    for start in range(0, n, bs):
        stop = min(n, start + bs)
        weights[start:stop] = _pair_cosines(Xin, norms, start, cols[start:stop])

    rows = np.repeat(np.arange(n, dtype=np.int64), k)
    D = sp.csr_array(
        (weights.cpu().numpy().ravel(), (rows, cols.cpu().numpy().ravel())), shape=(n, n), dtype=np.float64
    )
    A = ((D + D.T) * 0.5).tocsr() if symmetrize else D
    A.eliminate_zeros()
    A.sort_indices()
    return A


def _neighbour_indicator(nbrs, name: str, n: int | None, k: int) -> sp.csr_array:
    """0/1 matrix (n, n) with a 1 at (i, j) for each neighbour j of node i, from a directed graph or (n, m) indices."""
    if sp.issparse(nbrs):
        G = sp.csr_array(nbrs)
        if G.ndim != 2 or G.shape[0] != G.shape[1]:
            raise ValueError(f"{name} must be a square (n, n) graph; got shape {G.shape}")
        G = G.copy()
        G.eliminate_zeros()
    else:
        idx = np.asarray(nbrs.detach().cpu().numpy() if isinstance(nbrs, torch.Tensor) else nbrs)
        if idx.ndim != 2 or idx.dtype.kind not in "iu":
            raise ValueError(
                f"{name} must be a sparse (n, n) graph or an integer array (n, k) of neighbour indices; "
                f"got {idx.dtype} array of shape {idx.shape}"
            )
        m = idx.shape[0] if n is None else n
        if idx.size and (idx.min() < 0 or idx.max() >= m):
            raise ValueError(f"{name} has neighbour indices outside [0, {m}); got [{idx.min()}, {idx.max()}]")
        rows = np.repeat(np.arange(idx.shape[0]), idx.shape[1])
        G = sp.csr_array((np.ones(idx.size), (rows, idx.ravel())), shape=(idx.shape[0], m))
    G.sum_duplicates()
    G.data[:] = 1.0
    counts = np.diff(G.indptr)
    if counts.size and counts.max() > k:
        i = int(np.argmax(counts))
        raise ValueError(
            f"{name} lists {counts[i]} neighbours for node {i} but k={k}; pass the directed graph "
            "(knn_graph(..., symmetrize=False)) or the (n, k) neighbour indices"
        )
    return G


def knn_recall(approx, exact, k: int) -> float:
    """recall@k of approximate k-nearest neighbours against the exact ones: the share of true neighbours found.

    ``recall = mean_i |N_approx(i) ∩ N_exact(i)| / |N_exact(i)|``, where ``N(i)`` is the set of node i's
    out-neighbours; ``|N_exact(i)| = k`` except for nodes whose zero-weight edges were dropped (nodes with no exact
    neighbour, e.g. an all-zero feature row, are left out of the mean). Compare directed graphs
    (``knn_graph(X, k, symmetrize=False, method=...)``): the symmetrised graph adds in-neighbours.

    Parameters
    ----------
    approx, exact : scipy sparse (n, n) directed kNN graph, or integer array (n, m) with m <= k of neighbour indices
        Row i lists node i's neighbours (the stored nonzero entries of a graph). Weights are ignored.
    k : int
        Neighbours per node the graphs were built with; no row may list more than k.

    Returns
    -------
    float in [0, 1]; 1 when every exact neighbour was found (the value of ``knn_recall(E, E, k)``).

    Raises
    ------
    ValueError
        If the inputs have different numbers of nodes, a row lists more than k neighbours (a symmetrised graph), an
        index is out of range, or no node has an exact neighbour (recall undefined).

    Examples
    --------
    >>> knn_recall([[1, 2], [0, 3], [0, 1], [0, 1]], [[1, 2], [0, 2], [0, 1], [1, 2]], 2)  # (2+1+2+1) / 8
    0.75
    """
    k = check_positive_int(k, "k")
    E = _neighbour_indicator(exact, "exact", None, k)
    A = _neighbour_indicator(approx, "approx", E.shape[1], k)
    if A.shape != E.shape:
        raise ValueError(f"approx and exact must describe the same nodes; got shapes {A.shape} and {E.shape}")
    hits = np.asarray(A.multiply(E).sum(axis=1)).ravel()
    denom = np.diff(E.indptr)
    keep = denom > 0
    if not keep.any():
        raise ValueError("exact has no edges: recall is undefined")
    return float(np.mean(hits[keep] / denom[keep]))
