"""Graph-based similarity (GBS) of two layers: row-wise cosine between their sample graphs.

For two layers on the same N inputs with graphs A and B (dense cosine graphs by default, kNN graphs as an option)::

    NSim_i = cos(A_i, B_i)        (0 when row i of A or of B is all zero)
    GBS(A, B) = (1 / N) * sum_i NSim_i

No centering: GBS is invariant to orthogonal transforms and isotropic scaling of the features, not to translation.

References
----------
Chen, Lu, Hu, Xuan, Wang, Yang, "Graph-Based Similarity of Deep Neural Networks", Neurocomputing 614 (2024) 128722.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, NamedTuple

import numpy as np
import scipy.sparse as sp
import torch

from gbs_core._validation import (
    ArrayLike,
    as_matrix,
    check_choice,
    check_k,
    check_positive_int,
    check_same_samples,
    resolve_device,
)
from gbs_core.graphs import _BLOCK_ELEMENTS, _normalize, knn_graph

__all__ = ["gbs_similarity", "RedundantLayer", "gbs_redundant_layers"]

DEFAULT_KNN_K = 5
# A squared row norm below this (relative to the row's scale) is treated as an all-zero row in the feature form.
_ZERO_ROW_RTOL = 1e-10


def _row_cosines(dots: torch.Tensor, na2: torch.Tensor, nb2: torch.Tensor) -> torch.Tensor:
    ok = (na2 > 0) & (nb2 > 0)
    return torch.where(ok, dots / torch.sqrt(torch.where(ok, na2 * nb2, 1.0)), torch.zeros_like(dots))


def _graph_rows(Xn: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Rows start:stop of the dense cosine graph (zero diagonal)."""
    S = Xn[start:stop] @ Xn.T
    r = torch.arange(stop - start, device=S.device)
    S[r, r + start] = 0.0
    return S


def _dense_blocks_matrix(
    Xns_a: Sequence[torch.Tensor], Xns_b: Sequence[torch.Tensor] | None, block_size: int | None
) -> torch.Tensor:
    """GBS for every pair (a, b) of layers given row-normalised features, via blocks of rows of the dense graphs.

    Each layer's block of rows of S = Xn Xn^T (zero diagonal) is computed once per block and shared by all pairs.
    Memory: (L_a + L_b) * block * N. ``Xns_b=None`` means the same list as ``Xns_a`` (one model).
    """
    same = Xns_b is None
    layers_b = Xns_a if same else Xns_b
    n = Xns_a[0].shape[0]
    n_layers = len(Xns_a) + (0 if same else len(layers_b))
    bs = block_size or max(1, min(n, _BLOCK_ELEMENTS // (2 * n * n_layers)))
    dev = Xns_a[0].device
    total = torch.zeros((len(Xns_a), len(layers_b)), dtype=torch.float64, device=dev)
    for start in range(0, n, bs):
        stop = min(n, start + bs)
        Sa = torch.stack([_graph_rows(X, start, stop) for X in Xns_a])  # (L_a, b, n)
        Sb = Sa if same else torch.stack([_graph_rows(X, start, stop) for X in layers_b])
        na2, nb2 = (Sa * Sa).sum(dim=2), (Sb * Sb).sum(dim=2)  # (L, b)
        dots = torch.einsum("ibn,jbn->ijb", Sa, Sb)  # (L_a, L_b, b)
        total += _row_cosines(dots, na2[:, None, :], nb2[None, :, :]).sum(dim=2)
    return total / n


def _dense_feature_form(Xa: torch.Tensor, Xb: torch.Tensor) -> torch.Tensor:
    """GBS from row-normalised features without N x N blocks: row i of S_a . row i of S_b = x_i^T (Xa^T Xb) y_i - |x_i|^2 |y_i|^2."""
    qa, qb = (Xa * Xa).sum(dim=1), (Xb * Xb).sum(dim=1)
    dots = ((Xa @ (Xa.T @ Xb)) * Xb).sum(dim=1) - qa * qb
    na2 = ((Xa @ (Xa.T @ Xa)) * Xa).sum(dim=1) - qa * qa
    nb2 = ((Xb @ (Xb.T @ Xb)) * Xb).sum(dim=1) - qb * qb
    # Cancellation leaves ~1e-16 instead of an exact 0 for a row orthogonal to all others: treat those as zero rows.
    na2 = torch.where(na2 > _ZERO_ROW_RTOL * (1 + qa), na2, torch.zeros_like(na2))
    nb2 = torch.where(nb2 > _ZERO_ROW_RTOL * (1 + qb), nb2, torch.zeros_like(nb2))
    return _row_cosines(dots, na2, nb2).mean()


def _sparse_row_gbs(A: sp.csr_array, B: sp.csr_array) -> float:
    dots = np.asarray(A.multiply(B).sum(axis=1)).ravel()
    na2 = np.asarray(A.multiply(A).sum(axis=1)).ravel()
    nb2 = np.asarray(B.multiply(B).sum(axis=1)).ravel()
    t = _row_cosines(torch.from_numpy(dots), torch.from_numpy(na2), torch.from_numpy(nb2))
    return float(t.mean())


def gbs_similarity(
    X: ArrayLike,
    Y: ArrayLike,
    *,
    graph: Literal["dense", "knn"] = "dense",
    k: int | None = None,
    method: Literal["auto", "blocks", "feature"] = "auto",
    block_size: int | None = None,
    device: str | torch.device | None = None,
) -> float:
    """GBS similarity of two layers: the mean over samples of the cosine between their rows of the two sample graphs.

    ``GBS = (1/N) sum_i cos(A_i, B_i)``, where ``A`` and ``B`` are the sample graphs of ``X`` and ``Y``: by default the
    dense cosine graphs (``A = Xn Xn^T`` with zero diagonal, rows L2-normalised with norm floored at 1e-8), or with
    ``graph="knn"`` the symmetrised cosine kNN graphs of ``gbs_core.graphs.knn_graph``. A row that is all zero in A or
    B (e.g. an all-zero sample, or a kNN row without edges) contributes 0.

    The dense graphs are never held whole: ``method="blocks"`` computes one block of rows of each at a time
    (cost ~ N^2 (Dx + Dy)); ``method="feature"`` uses ``A_i . B_i = x_i^T (Xn^T Yn) y_i - |x_i|^2 |y_i|^2`` (cost
    ~ N (Dx Dy + Dx^2 + Dy^2), no N x N at all); "auto" picks the cheaper. Both agree up to rounding.

    Parameters
    ----------
    X : array or tensor, shape (n_samples, n_features_x)
    Y : array or tensor, shape (n_samples, n_features_y)
    graph : {"dense", "knn"}, default "dense"
    k : int, optional
        Neighbours for ``graph="knn"`` (default 5, as for the paper's motifs); must be None for "dense".
    method : {"auto", "blocks", "feature"}, default "auto"
        Dense graphs only.
    block_size : int, optional
        Rows per block.
    device : torch device, optional

    Returns
    -------
    float in [-1, 1] (in [0, 1] for non-negative features such as ReLU outputs), higher is more similar;
    ``gbs_similarity(X, X) == 1`` unless X has all-zero graph rows. Symmetric in X and Y.

    Raises
    ------
    ValueError
        Inputs not finite 2-D arrays, different sample counts, fewer than 2 samples, ``k`` given with ``"dense"``,
        ``k >= n_samples``, an unknown ``graph`` or ``method``.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(20, 4))
    >>> round(gbs_similarity(X, 3 * X), 12)
    1.0
    """
    check_choice(graph, "graph", ("dense", "knn"))
    check_choice(method, "method", ("auto", "blocks", "feature"))
    dev = resolve_device(device, X, Y)
    Xt = as_matrix(X, "X", device=dev, min_samples=2, why="GBS needs at least 2")
    Yt = as_matrix(Y, "Y", device=dev, min_samples=2, why="GBS needs at least 2")
    n = check_same_samples(X=Xt, Y=Yt)
    if block_size is not None:
        check_positive_int(block_size, "block_size")
    if graph == "knn":
        k = check_k(DEFAULT_KNN_K if k is None else k, n)
        A = knn_graph(Xt, k, block_size=block_size, device=dev)
        B = knn_graph(Yt, k, block_size=block_size, device=dev)
        return _sparse_row_gbs(A, B)
    if k is not None:
        raise ValueError(f"k={k} applies to graph='knn' only; the dense graph connects all pairs")
    Xn, Yn = _normalize(Xt), _normalize(Yt)
    dx, dy = Xt.shape[1], Yt.shape[1]
    if method == "auto":
        method = "feature" if dx * dy + dx * dx + dy * dy <= n * (dx + dy) else "blocks"
    if method == "feature":
        return float(_dense_feature_form(Xn, Yn))
    return float(_dense_blocks_matrix([Xn], [Yn], block_size)[0, 0])


class RedundantLayer(NamedTuple):
    """A layer flagged by ``gbs_redundant_layers``: its GBS similarity to the layer before it."""

    position: int
    name: str | None
    similarity: float


def gbs_redundant_layers(
    similarity_to_previous: Sequence[float] | Mapping[str, float] | np.ndarray, *, threshold: float
) -> list[RedundantLayer]:
    """Layers whose GBS similarity to the previous layer is above ``threshold`` (the GBS paper's pruning guide: a
    layer that barely changes the sample graph adds little).

    ``similarity_to_previous[l]`` is GBS(layer l-1, layer l) in depth order; entry 0 (the first layer, which has no
    previous layer) is ignored and never flagged, whatever it holds.

    Raises
    ------
    ValueError
        A similarity (after the first) that is NaN or infinite, or a threshold that is not a finite number.

    Examples
    --------
    >>> [(r.position, r.similarity) for r in gbs_redundant_layers([float("nan"), 0.95, 0.99, 0.97], threshold=0.96)]
    [(2, 0.99), (3, 0.97)]
    """
    thr = float(threshold)
    if not np.isfinite(thr):
        raise ValueError(f"threshold must be a finite number; got {threshold!r}")
    if isinstance(similarity_to_previous, Mapping):
        names: list[str | None] = list(similarity_to_previous)
        sims = np.array([float(similarity_to_previous[n]) for n in names])
    else:
        sims = np.asarray(similarity_to_previous, dtype=np.float64).reshape(-1)
        names = [None] * sims.size
    bad = [i for i in range(1, sims.size) if not np.isfinite(sims[i])]
    if bad:
        label = repr(names[bad[0]]) if names[bad[0]] is not None else f"at position {bad[0]}"
        raise ValueError(f"GBS to the previous layer of layer {label} is {sims[bad[0]]}; it must be finite")
    return [RedundantLayer(i, names[i], float(sims[i])) for i in range(1, sims.size) if sims[i] > thr]
