"""Triangle motifs of a sample graph, classified by the class labels of their three nodes.

On the binarised graph (edge iff ``a_ij != 0``, diagonal ignored) every closed triangle is counted once and typed:
type 1 = all three nodes share a class, type 2 = exactly two share a class, type 3 = all different.

References
----------
Chen, Lu, Hu, Xuan, Wang, Yang, "Graph-Based Similarity of Deep Neural Networks", Neurocomputing 614 (2024) 128722.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
import torch

from gbs_core._validation import ArrayLike, as_matrix, check_k, check_labels, check_layers, resolve_device
from gbs_core.graphs import knn_graph

__all__ = ["MotifCounts", "MotifFractions", "motif_profile", "triangle_motifs"]


class MotifFractions(NamedTuple):
    """Shares of the three triangle types; NaN when the graph has no triangle."""

    same_class: float
    two_classes: float
    all_different: float


class MotifCounts(NamedTuple):
    """Triangle counts by type: all one class, exactly two of one class, all different."""

    same_class: int
    two_classes: int
    all_different: int

    @property
    def total(self) -> int:
        return self.same_class + self.two_classes + self.all_different

    @property
    def fractions(self) -> MotifFractions:
        """Each count over the total; all NaN when there is no triangle (the shares are undefined)."""
        t = self.total
        if t == 0:
            return MotifFractions(float("nan"), float("nan"), float("nan"))
        return MotifFractions(self.same_class / t, self.two_classes / t, self.all_different / t)

    @property
    def same_class_fraction(self) -> float:
        """The headline number: type 1 / (type 1 + type 2 + type 3); NaN without triangles."""
        return self.fractions.same_class


def _triangles(B: sp.csr_array) -> int:
    """Triangles of a 0/1 symmetric graph without diagonal: sum((B @ B) * B) / 6."""
    if B.nnz == 0:
        return 0
    return int(round(float((B @ B).multiply(B).sum()) / 6))


def _binarise(adjacency) -> sp.csr_array:
    """0/1 int64 CSR graph without diagonal, after the shape, finite and symmetry checks."""
    if sp.issparse(adjacency):
        A = sp.coo_array(adjacency)
        if A.ndim != 2 or A.shape[0] != A.shape[1]:
            raise ValueError(f"adjacency must be square (n, n); got shape {A.shape}")
        A.sum_duplicates()
        row, col, w = A.row, A.col, A.data
        if w.size and not np.all(np.isfinite(w)):
            raise ValueError("adjacency has non-finite (NaN or inf) weights")
    else:
        M = as_matrix(adjacency, "adjacency", device=torch.device("cpu")).numpy()
        if M.shape[0] != M.shape[1]:
            raise ValueError(f"adjacency must be square (n, n); got shape {M.shape}")
        row, col = np.nonzero(M)
        w = M[row, col]
    keep = (w != 0) & (row != col)
    n = adjacency.shape[0]
    B = sp.csr_array((np.ones(int(keep.sum()), dtype=np.int64), (row[keep], col[keep])), shape=(n, n))
    if (B != B.T).nnz:
        raise ValueError("adjacency must be symmetric (an undirected graph); symmetrise with (A + A.T) / 2")
    return B


def triangle_motifs(adjacency, labels: ArrayLike) -> MotifCounts:
    """Count the closed triangles of a graph by how many classes their three nodes span.

    With ``B`` the binarised graph, the number of triangles of a graph is ``sum(B^2 * B) / 6``. Type 1 are the
    triangles of ``B_same`` (edges inside a class), type 3 those of ``B_diff`` (edges across classes), and
    type 2 = all - type 1 - type 3. Sparse matrix algebra only: no loop over nodes, triangles or classes.

    Parameters
    ----------
    adjacency : scipy sparse matrix/array or dense array/tensor, shape (n_nodes, n_nodes)
        Symmetric; any nonzero entry is an edge, the diagonal is ignored, weights do not matter.
    labels : array, shape (n_nodes,)
        Class of each node.

    Returns
    -------
    MotifCounts(same_class, two_classes, all_different)
        Non-negative integer counts; ``.fractions`` gives the shares (NaN for a graph without triangles, e.g. an
        edgeless one) and ``.same_class_fraction`` the headline type-1 share, in [0, 1], higher = more class-pure.

    Raises
    ------
    ValueError
        If the adjacency is not square and symmetric, has non-finite weights, or the labels do not match.

    Examples
    --------
    >>> import numpy as np
    >>> K4 = np.ones((4, 4)) - np.eye(4)  # 4 triangles
    >>> triangle_motifs(K4, [0, 0, 0, 1])
    MotifCounts(same_class=1, two_classes=3, all_different=0)
    """
    B = _binarise(adjacency)
    codes = check_labels(labels, B.shape[0])
    coo = B.tocoo()
    same = codes[coo.row] == codes[coo.col]
    n = B.shape
    B_same = sp.csr_array((coo.data[same], (coo.row[same], coo.col[same])), shape=n)
    B_diff = sp.csr_array((coo.data[~same], (coo.row[~same], coo.col[~same])), shape=n)
    total, t1, t3 = _triangles(B), _triangles(B_same), _triangles(B_diff)
    return MotifCounts(t1, total - t1 - t3, t3)


def motif_profile(
    features: Mapping[str, ArrayLike],
    labels: ArrayLike,
    *,
    k: int = 5,
    block_size: int | None = None,
    device: str | torch.device | None = None,
) -> dict[str, MotifCounts]:
    """Triangle motif counts of every layer's cosine kNN graph (k = 5 in the GBS paper).

    Parameters
    ----------
    features : mapping layer name -> array, shape (n_samples, n_features_l)
    labels : array, shape (n_samples,)
    k : int, default 5
        Neighbours per node of ``knn_graph`` (symmetrised, then binarised).

    Returns
    -------
    dict layer name -> MotifCounts, in the given order (use ``.fractions`` / ``.same_class_fraction``).

    Raises
    ------
    ValueError
        On an empty mapping, layers of different sample counts, bad labels, or ``k >= n_samples``.
    """
    names = check_layers(features)
    dev = resolve_device(device, *features.values())
    n = int(np.shape(features[names[0]])[0])
    codes = check_labels(labels, n)
    k = check_k(k, n)
    out: dict[str, MotifCounts] = {}
    for name in names:
        X = as_matrix(features[name], f"features[{name!r}]", device=dev)
        if X.shape[0] != n:
            raise ValueError(f"features[{name!r}] has {X.shape[0]} samples but the first layer has {n}")
        out[name] = triangle_motifs(knn_graph(X, k, block_size=block_size, device=dev), codes)
    return out
