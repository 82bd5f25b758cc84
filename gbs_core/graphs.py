"""Sample graphs built from a layer's features: cosine similarity in row blocks, kNN graphs, dense cosine graphs.

A layer's features ``X`` (n_samples, n_features) define a graph on the samples. Rows are L2-normalised with the norm
floored at 1e-8 (so an all-zero row stays zero), and the cosine similarity is ``S = Xn Xn^T`` with a zero diagonal.
Everything is computed in blocks of rows so that no N x N matrix is ever held at once.

References
----------
Lu et al., "Understanding the Dynamics of DNNs Using Graph Modularity", ECCV 2022 (kNN graph, k = 3).
Chen et al., "Graph-Based Similarity of Deep Neural Networks", Neurocomputing 614 (2024) 128722 (dense graph, k = 5 motifs).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch

from gbs_core._validation import ArrayLike, as_matrix, check_choice, check_k, check_positive_int, resolve_device

__all__ = ["cosine_similarity_blocks", "dense_cosine_graph", "knn_graph", "normalize_rows"]

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


def knn_graph(
    X: ArrayLike,
    k: int,
    *,
    symmetrize: bool = True,
    block_size: int | None = None,
    search_dtype: Literal["float32", "float64"] = "float32",
    device: str | torch.device | None = None,
) -> sp.csr_array:
    """Cosine k-nearest-neighbour graph of the samples, symmetrised as ``A = (D + D^T) / 2``.

    Each node i keeps the k largest entries of row i of the cosine similarity ``S`` (itself excluded) as directed
    edges ``i -> j`` of weight ``S_ij``, forming ``D``. With ``symmetrize=True``, ``A = (D + D^T) / 2``: a mutual pair
    keeps weight ``S_ij``, a one-sided pair gets ``S_ij / 2``.

    Computed in blocks of rows with a top-k per block: memory is O(N*k + block_size*N), never N x N.

    Parameters
    ----------
    X : array or tensor, shape (n_samples, n_features)
        A layer's flattened features. Needs ``n_samples > k``.
    k : int
        Neighbours per node, ``1 <= k < n_samples`` (3 in the modularity paper, 5 for motifs).
    symmetrize : bool, default True
        Return ``(D + D^T) / 2``; with False return the directed ``D`` (row i holds i's k neighbours).
    block_size : int, optional
        Rows per block; by default about 2**25 / n_samples (128 MiB of float32 per block).
    search_dtype : {"float32", "float64"}, default "float32"
        Precision of the similarity search (the N^2 * D matrix multiply). Edge weights are always recomputed in
        float64 for the chosen pairs, so only the choice between neighbours within ~1e-6 of each other can depend on it.
    device : torch device, optional
        Where to compute; defaults to ``X``'s device when it is a CUDA tensor, else the CPU.

    Returns
    -------
    scipy.sparse.csr_array, float64, shape (n_samples, n_samples)
        Weights are cosine similarities in [-1, 1]; no diagonal. Edges of weight exactly 0 (e.g. from an all-zero
        row, whose similarity to everything is 0) are dropped, so an all-zero row has no edges.

    Notes
    -----
    Ties: when several columns share the k-th largest value of a row (in ``search_dtype``), the lower column indices
    are kept. Negative similarities are kept as negative weights.

    Raises
    ------
    ValueError
        If ``X`` is not a finite 2-D array, or ``k`` is not an integer with ``1 <= k < n_samples``.

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
    dev = resolve_device(device, X)
    Xin = as_matrix(X, "X", dtype=None, device=dev, min_samples=2, why="a kNN graph needs at least 2")
    n = Xin.shape[0]
    k = check_k(k, n)
    bs = _default_block(n, n) if block_size is None else check_positive_int(block_size, "block_size")

    # Norms in float64 without a float64 copy of X; the search runs on one normalised copy in search_dtype.
    norms = torch.linalg.vector_norm(Xin, dim=1, dtype=torch.float64).clamp_min(NORM_FLOOR)
    Xs = Xin.to(dtype) / norms.to(dtype).unsqueeze(1)
    cols = torch.empty((n, k), dtype=torch.int64, device=dev)
    weights = torch.empty((n, k), dtype=torch.float64, device=dev)
    gather_rows = max(1, _BLOCK_ELEMENTS // (4 * k * Xin.shape[1]))
    for start in range(0, n, bs):
        stop = min(n, start + bs)
        S = Xs[start:stop] @ Xs.T
        r = torch.arange(stop - start, device=dev)
        S[r, r + start] = -torch.inf
        cols[start:stop] = _topk_stable(S, k)
        del S
        # Exact float64 cosines of the chosen pairs, from the input values, in small chunks.
        for s2 in range(start, stop, gather_rows):
            e2 = min(stop, s2 + gather_rows)
            c = cols[s2:e2]
            nb = Xin[c].to(torch.float64)  # (rows, k, D)
            dots = torch.bmm(nb, Xin[s2:e2].to(torch.float64).unsqueeze(2)).squeeze(2)
            weights[s2:e2] = dots / (norms[s2:e2].unsqueeze(1) * norms[c])

    rows = np.repeat(np.arange(n, dtype=np.int64), k)
    D = sp.csr_array(
        (weights.cpu().numpy().ravel(), (rows, cols.cpu().numpy().ravel())), shape=(n, n), dtype=np.float64
    )
    A = ((D + D.T) * 0.5).tocsr() if symmetrize else D
    A.eliminate_zeros()
    A.sort_indices()
    return A
