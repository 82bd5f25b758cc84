"""2-D coordinates of a layer's samples for the scatter views: UMAP (seeded) or PCA.

umap-learn is imported lazily inside ``embed_2d``: ``import umap`` takes seconds (numba), and ``import gbs_core``
must stay cheap. Most of umap-learn's numba functions are not marked ``cache=True``, so every fresh process compiled
them again (about 11 s before the first scatter of a server's life, measured on the 2-core dev box);
:func:`umap_module` turns numba's own on-disk cache on for them (``Dispatcher.enable_caching``, what ``cache=True``
does), so the compilation is paid once per machine, not once per process (a fresh process then fits in about 0.5 s).
"""

from __future__ import annotations

import warnings
from functools import cache
from typing import Literal

import numpy as np
import torch

from gbs_core._validation import ArrayLike, as_matrix, check_choice, check_positive_int, resolve_device

__all__ = ["embed_2d"]


@cache
def umap_module():
    """``import umap``, with numba's disk cache enabled for every compiled function of umap-learn and pynndescent that
    does not ask for it itself (idempotent; the cache lives where numba puts it: ``NUMBA_CACHE_DIR``, else
    ``__pycache__`` beside the library, else the user's cache folder)."""
    import sys

    import umap
    from numba.core.registry import CPUDispatcher

    for name, module in list(sys.modules.items()):
        if name.split(".")[0] not in ("umap", "pynndescent") or module is None:
            continue
        for obj in list(vars(module).values()):
            if isinstance(obj, CPUDispatcher) and type(obj._cache).__name__ != "FunctionCache":
                try:
                    obj.enable_caching()
                except Exception:  # noqa: BLE001 - a function numba cannot cache is compiled as before
                    continue
    return umap


def _pca_2d(X: torch.Tensor) -> np.ndarray:
    Xc = X - X.mean(dim=0, keepdim=True)
    U, s, Vt = torch.linalg.svd(Xc, full_matrices=False)
    coords = torch.zeros((X.shape[0], 2), dtype=torch.float64, device=X.device)
    r = min(2, s.numel())
    # Sign convention (the SVD's sign is arbitrary): the largest-magnitude loading of each component is positive.
    V = Vt[:r]
    signs = torch.sign(V.gather(1, V.abs().argmax(dim=1, keepdim=True))).squeeze(1)
    signs[signs == 0] = 1.0
    coords[:, :r] = U[:, :r] * s[:r] * signs
    return coords.cpu().numpy() + 0.0  # + 0.0 turns -0.0 into 0.0


def embed_2d(
    X: ArrayLike,
    *,
    method: Literal["umap", "pca"] = "umap",
    seed: int = 0,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    metric: str = "euclidean",
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Embed the samples of one layer in 2-D.

    - ``"pca"``: projections of the column-centred X on its first two principal axes, ``U[:, :2] * s[:2]`` of the
      thin SVD ``Xc = U S V^T``; each axis's sign is fixed so that its largest-magnitude loading is positive.
      Deterministic. With one feature (or rank 1) the second coordinate is 0.
    - ``"umap"``: ``umap.UMAP(n_components=2, n_neighbors, min_dist, metric, random_state=seed)``; a fixed seed makes
      umap-learn run single-threaded and reproducible. ``n_neighbors`` is capped at ``n_samples - 1``.
      The first fit in a process compiles numba code (several seconds).

    Parameters
    ----------
    X : array or tensor, shape (n_samples, n_features)
    method : {"umap", "pca"}, default "umap"
    seed : int, default 0
        UMAP's random state (ignored by PCA).
    n_neighbors, min_dist, metric : UMAP options.
    device : torch device for PCA, optional.

    Returns
    -------
    np.ndarray, float64, shape (n_samples, 2).

    Raises
    ------
    ValueError
        ``X`` not a finite 2-D array, fewer than 4 samples for UMAP (checked before any work; 2 for PCA), unknown ``method``, bad ``seed`` or
        ``n_neighbors``.

    Examples
    --------
    >>> import numpy as np
    >>> embed_2d(np.array([[0.0, 0.0], [2.0, 0.0], [4.0, 0.0]]), method="pca").round(6).tolist()
    [[-2.0, 0.0], [0.0, 0.0], [2.0, 0.0]]
    """
    check_choice(method, "method", ("umap", "pca"))
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer; got {seed!r}")
    if method == "pca":
        Xt = as_matrix(X, "X", device=resolve_device(device, X), min_samples=2, why="PCA needs at least 2")
        return _pca_2d(Xt)
    n_neighbors = check_positive_int(n_neighbors, "n_neighbors", minimum=2)
    Xt = as_matrix(X, "X", device=torch.device("cpu"), min_samples=4,
                   why="UMAP needs at least 4 (its spectral start); use PCA for fewer")
    umap = umap_module()  # lazy: seconds to import

    reducer = umap.UMAP(
        n_components=2,
        n_neighbors=min(n_neighbors, Xt.shape[0] - 1),
        min_dist=float(min_dist),
        metric=metric,
        random_state=int(seed),
    )
    with warnings.catch_warnings():
        # umap-learn warns on every seeded fit that the seed forces one thread: that is what we want.
        warnings.filterwarnings("ignore", message="n_jobs value .* overridden", category=UserWarning)
        return np.asarray(reducer.fit_transform(Xt.numpy()), dtype=np.float64)
