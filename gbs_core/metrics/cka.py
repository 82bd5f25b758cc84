"""Centered kernel alignment (CKA): linear and RBF kernels, biased (Gretton) and unbiased (Song) HSIC, minibatch CKA.

Notation: N samples, ``H = I - 11^T / N``, ``K`` and ``L`` the Gram matrices of ``X`` and ``Y``.

- Biased HSIC (Gretton et al. 2005): ``HSIC_0(K, L) = tr(K H L H) / (N - 1)^2``.
- Unbiased HSIC (Song et al. 2012), with ``K~, L~`` = K, L with zeroed diagonal (needs N >= 4)::

      HSIC_1(K, L) = [ tr(K~ L~) + (1^T K~ 1)(1^T L~ 1) / ((N-1)(N-2)) - (2 / (N-2)) 1^T K~ L~ 1 ] / (N (N-3))

- ``CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) * HSIC(L, L))``; "debiased" CKA uses HSIC_1 for all three terms.

All sums are accumulated in float64. Degenerate input: when X or Y is constant (every sample the same, up to 1e-12
relative to the data's size), its self-HSIC is zero and CKA is undefined; the functions return NaN and emit a
``RuntimeWarning``. The same happens when a debiased self-HSIC comes out non-positive (possible for tiny N).

References
----------
Kornblith, Norouzi, Lee, Hinton, "Similarity of Neural Network Representations Revisited", ICML 2019.
Nguyen, Raghu, Kornblith, "Do Wide and Deep Networks Learn the Same Things?", ICLR 2021 (minibatch CKA).
Song, Smola, Gretton, Bedo, Borgwardt, "Feature Selection via Dependence Maximization", JMLR 2012 (unbiased HSIC).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Literal

import numpy as np
import torch

from gbs_core._validation import (
    ArrayLike,
    as_matrix,
    check_choice,
    check_finite_number,
    check_layers,
    check_same_samples,
    resolve_device,
)

__all__ = [
    "MinibatchCKA",
    "cka_from_gram",
    "gram_linear",
    "gram_rbf",
    "hsic_gretton",
    "hsic_song",
    "linear_cka",
    "rbf_cka",
]

_CONSTANT_RTOL = 1e-12
_DEBIASED_MIN = "debiased HSIC needs at least 4"


# --- private torch helpers (inputs already validated) -------------------------------------------------------------


def _center_columns(X: torch.Tensor) -> torch.Tensor:
    return X - X.mean(dim=0, keepdim=True)


def _is_constant(X: torch.Tensor, Xc: torch.Tensor) -> bool:
    scale = float(torch.linalg.matrix_norm(X))
    return float(torch.linalg.matrix_norm(Xc)) <= _CONSTANT_RTOL * scale or scale == 0.0


def _center_gram(K: torch.Tensor) -> torch.Tensor:
    """H K H, computed by subtracting row and column means (no N x N matrix product)."""
    row = K.mean(dim=0, keepdim=True)
    col = K.mean(dim=1, keepdim=True)
    return K - row - col + K.mean()


def _hsic_gretton_t(K: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    n = K.shape[0]
    return (_center_gram(K) * L).sum() / (n - 1) ** 2


def _hsic_song_parts(K: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(K~, 1^T K~ 1, K~ 1) for the unbiased estimator."""
    Kt = K.clone()
    Kt.fill_diagonal_(0.0)
    u = Kt.sum(dim=1)
    return Kt, u.sum(), u


def _hsic_song_from_parts(tr: torch.Tensor, sK, sL, uu, n: int) -> torch.Tensor:
    return (tr + sK * sL / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * uu) / (n * (n - 3))


def _hsic_song_t(K: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    n = K.shape[0]
    Kt, sK, uK = _hsic_song_parts(K)
    Lt, sL, uL = _hsic_song_parts(L)
    return _hsic_song_from_parts((Kt * Lt).sum(), sK, sL, uK @ uL, n)


def _normalise(cross: float, self_x: float, self_y: float) -> float:
    if not (self_x > 0 and self_y > 0):
        warnings.warn(
            f"CKA is undefined: a self-HSIC is not positive (HSIC(X,X)={self_x:.3g}, HSIC(Y,Y)={self_y:.3g}); "
            "returning NaN",
            RuntimeWarning,
            stacklevel=3,
        )
        return float("nan")
    return float(cross / np.sqrt(self_x * self_y))


def _warn_constant(which: str) -> float:
    warnings.warn(
        f"{which} is constant (all samples equal): CKA is undefined; returning NaN", RuntimeWarning, stacklevel=3
    )
    return float("nan")


def _linear_feature_terms(Xc: torch.Tensor, Yc: torch.Tensor, debiased: bool) -> tuple[float, float, float]:
    """(HSIC(K,L), HSIC(K,K), HSIC(L,L)) for linear kernels of centred features, without forming N x N matrices."""
    n = Xc.shape[0]
    xy = torch.linalg.matrix_norm(Yc.T @ Xc) ** 2
    xx = torch.linalg.matrix_norm(Xc.T @ Xc) ** 2
    yy = torch.linalg.matrix_norm(Yc.T @ Yc) ** 2
    if not debiased:
        c = (n - 1) ** 2
        return float(xy / c), float(xx / c), float(yy / c)
    # K = Xc Xc^T: tr(K~ L~) = tr(KL) - sum_i K_ii L_ii, K~ 1 = Xc (Xc^T 1) - diag(K), 1^T K~ 1 = sum(K~ 1).
    dx, dy = (Xc * Xc).sum(dim=1), (Yc * Yc).sum(dim=1)
    ux, uy = Xc @ Xc.sum(dim=0) - dx, Yc @ Yc.sum(dim=0) - dy
    sx, sy = ux.sum(), uy.sum()
    h = _hsic_song_from_parts
    return (
        float(h(xy - dx @ dy, sx, sy, ux @ uy, n)),
        float(h(xx - dx @ dx, sx, sx, ux @ ux, n)),
        float(h(yy - dy @ dy, sy, sy, uy @ uy, n)),
    )


def _gram_terms(K: torch.Tensor, L: torch.Tensor, debiased: bool) -> tuple[float, float, float]:
    h = _hsic_song_t if debiased else _hsic_gretton_t
    return float(h(K, L)), float(h(K, K)), float(h(L, L))


def _median_sq_dist(D2: torch.Tensor) -> torch.Tensor:
    """numpy-style median of all entries (mean of the two middle values for an even count)."""
    flat = D2.reshape(-1)
    m = flat.numel()
    if m % 2:
        return flat.kthvalue((m + 1) // 2).values
    return 0.5 * (flat.kthvalue(m // 2).values + flat.kthvalue(m // 2 + 1).values)


def _sq_dists(X: torch.Tensor) -> torch.Tensor:
    sq = (X * X).sum(dim=1)
    D2 = (sq[:, None] + sq[None, :] - 2.0 * (X @ X.T)).clamp_min_(0.0)
    D2.fill_diagonal_(0.0)
    return D2


def _rbf_gram_t(Xc: torch.Tensor, sigma_fraction: float) -> torch.Tensor | None:
    """RBF Gram matrix, or None when the median squared distance is 0 (bandwidth undefined)."""
    D2 = _sq_dists(Xc)
    med = _median_sq_dist(D2)
    if not float(med) > 0:
        return None
    return torch.exp(-D2 / (2.0 * sigma_fraction**2 * med))


# --- public API ---------------------------------------------------------------------------------------------------


def _pair(X, Y, debiased: bool, device) -> tuple[torch.Tensor, torch.Tensor]:
    dev = resolve_device(device, X, Y)
    need = 4 if debiased else 2
    why = _DEBIASED_MIN if debiased else "CKA needs at least 2"
    Xt = as_matrix(X, "X", device=dev, min_samples=need, why=why)
    Yt = as_matrix(Y, "Y", device=dev, min_samples=need, why=why)
    check_same_samples(X=Xt, Y=Yt)
    return Xt, Yt


def gram_linear(X: ArrayLike, *, device: str | torch.device | None = None) -> np.ndarray:
    """Linear-kernel Gram matrix ``K = X X^T`` (no centering), float64, shape (n_samples, n_samples)."""
    Xt = as_matrix(X, "X", device=resolve_device(device, X))
    return (Xt @ Xt.T).cpu().numpy()


def gram_rbf(X: ArrayLike, *, sigma_fraction: float = 0.4, device: str | torch.device | None = None) -> np.ndarray:
    """RBF Gram matrix ``K_ij = exp(-||x_i - x_j||^2 / (2 sigma^2))``, ``sigma^2 = fraction^2 * median(D2)``.

    ``D2`` is the full N x N matrix of squared distances, diagonal zeros included (as the CKA authors' code does).

    Raises
    ------
    ValueError
        If ``sigma_fraction`` is not positive, or the median squared distance is 0 (most samples identical).
    """
    frac = _check_fraction(sigma_fraction)
    Xt = as_matrix(X, "X", device=resolve_device(device, X))
    K = _rbf_gram_t(Xt, frac)
    if K is None:
        raise ValueError(
            "the median squared distance between samples is 0 (most samples identical); RBF bandwidth undefined"
        )
    return K.cpu().numpy()


def _check_fraction(sigma_fraction: float) -> float:
    frac = check_finite_number(sigma_fraction, "sigma_fraction")
    if frac <= 0:
        raise ValueError(f"sigma_fraction must be positive; got {sigma_fraction}")
    return frac


def _check_gram_pair(K, L, min_samples: int, why: str) -> tuple[torch.Tensor, torch.Tensor]:
    dev = resolve_device(None, K, L)
    Kt = as_matrix(K, "K", device=dev, min_samples=min_samples, why=why)
    Lt = as_matrix(L, "L", device=dev, min_samples=min_samples, why=why)
    for name, M in (("K", Kt), ("L", Lt)):
        if M.shape[0] != M.shape[1]:
            raise ValueError(f"{name} must be a square Gram matrix (n, n); got shape {tuple(M.shape)}")
    check_same_samples(K=Kt, L=Lt)
    return Kt, Lt


def hsic_gretton(K: ArrayLike, L: ArrayLike) -> float:
    """Biased HSIC estimator of Gretton et al.: ``tr(K H L H) / (N - 1)^2``.

    Parameters
    ----------
    K, L : arrays, shape (n_samples, n_samples)
        Gram matrices on the same samples.

    Returns
    -------
    float, >= 0 for positive semi-definite K and L.
    """
    Kt, Lt = _check_gram_pair(K, L, 2, "HSIC needs at least 2")
    return float(_hsic_gretton_t(Kt, Lt))


def hsic_song(K: ArrayLike, L: ArrayLike) -> float:
    """Unbiased HSIC estimator of Song et al. (``HSIC_1`` in the module docstring); can be negative. Needs N >= 4.

    Parameters
    ----------
    K, L : arrays, shape (n_samples, n_samples)

    Returns
    -------
    float (unbounded sign; an unbiased estimate of the population HSIC).
    """
    Kt, Lt = _check_gram_pair(K, L, 4, _DEBIASED_MIN)
    return float(_hsic_song_t(Kt, Lt))


def cka_from_gram(K: ArrayLike, L: ArrayLike, *, debiased: bool = False) -> float:
    """CKA of two Gram matrices: ``HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))``, biased or unbiased HSIC.

    Returns NaN with a ``RuntimeWarning`` when a self-HSIC is not positive (e.g. a constant Gram matrix).
    """
    Kt, Lt = _check_gram_pair(K, L, 4 if debiased else 2, _DEBIASED_MIN if debiased else "HSIC needs at least 2")
    return _normalise(*_gram_terms(Kt, Lt, debiased))


def linear_cka(
    X: ArrayLike,
    Y: ArrayLike,
    *,
    debiased: bool = False,
    method: Literal["auto", "gram", "feature"] = "auto",
    device: str | torch.device | None = None,
) -> float:
    """Linear CKA between two layers' features on the same samples.

    On column-centred ``X``, ``Y``: ``CKA = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)`` (feature form), which equals
    the Gram form ``HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))`` with ``K = X X^T``. With ``debiased=True`` all three
    HSICs are the unbiased estimator of Song et al.; the feature form then uses the identities
    ``tr(K~L~) = ||Y^T X||_F^2 - sum_i K_ii L_ii`` and ``K~1 = X X^T 1 - diag(K)``.

    Parameters
    ----------
    X : array or tensor, shape (n_samples, n_features_x)
    Y : array or tensor, shape (n_samples, n_features_y)
    debiased : bool, default False
        Use the unbiased HSIC estimator (needs N >= 4). The value can then be negative; it is never clamped.
    method : {"auto", "gram", "feature"}, default "auto"
        "feature" costs about N*(Dx*Dy + Dx^2 + Dy^2), "gram" about N^2*(Dx + Dy); "auto" picks the cheaper.
        Both give the same value up to rounding.
    device : torch device, optional. Defaults to the inputs' device when they are CUDA tensors.

    Returns
    -------
    float in [0, 1] (biased), higher is more similar; 1 for ``linear_cka(X, X)``. Debiased values lie in about
    [-1, 1]. NaN with a ``RuntimeWarning`` if X or Y is constant.

    Raises
    ------
    ValueError
        Inputs not finite 2-D arrays, different sample counts, N < 2 (N < 4 when debiased), unknown ``method``.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(50, 5))
    >>> round(linear_cka(X, 2 * X + 1), 12)
    1.0
    """
    check_choice(method, "method", ("auto", "gram", "feature"))
    Xt, Yt = _pair(X, Y, debiased, device)
    Xc, Yc = _center_columns(Xt), _center_columns(Yt)
    if _is_constant(Xt, Xc):
        return _warn_constant("X")
    if _is_constant(Yt, Yc):
        return _warn_constant("Y")
    n, dx, dy = Xt.shape[0], Xt.shape[1], Yt.shape[1]
    if method == "auto":
        method = "feature" if n * (dx * dy + dx * dx + dy * dy) <= n * n * (dx + dy) else "gram"
    if method == "feature":
        terms = _linear_feature_terms(Xc, Yc, debiased)
    else:
        terms = _gram_terms(Xc @ Xc.T, Yc @ Yc.T, debiased)
    return _normalise(*terms)


def rbf_cka(
    X: ArrayLike,
    Y: ArrayLike,
    *,
    sigma_fraction: float = 0.4,
    debiased: bool = False,
    device: str | torch.device | None = None,
) -> float:
    """CKA with RBF kernels ``k(x_i, x_j) = exp(-||x_i - x_j||^2 / (2 sigma^2))``.

    The bandwidth of each side is ``sigma^2 = sigma_fraction^2 * median(D2)``, the median of the full N x N matrix of
    squared distances with its zero diagonal (as in the CKA authors' code); the paper uses fractions 0.2, 0.4, 0.8.

    Parameters
    ----------
    X : array or tensor, shape (n_samples, n_features_x)
    Y : array or tensor, shape (n_samples, n_features_y)
    sigma_fraction : float, default 0.4
    debiased : bool, default False
        Unbiased HSIC (needs N >= 4); the value can be negative and is never clamped.
    device : torch device, optional

    Returns
    -------
    float in [0, 1] (biased), higher is more similar; 1 for ``rbf_cka(X, X)``. NaN with a ``RuntimeWarning`` when
    X or Y is constant or has a zero median squared distance (bandwidth undefined).

    Raises
    ------
    ValueError
        Inputs not finite 2-D arrays, different sample counts, too few samples, ``sigma_fraction <= 0``.
    """
    frac = _check_fraction(sigma_fraction)
    Xt, Yt = _pair(X, Y, debiased, device)
    Xc, Yc = _center_columns(Xt), _center_columns(Yt)
    for which, A, Ac in (("X", Xt, Xc), ("Y", Yt, Yc)):
        if _is_constant(A, Ac):
            return _warn_constant(which)
    K, L = _rbf_gram_t(Xc, frac), _rbf_gram_t(Yc, frac)
    if K is None or L is None:
        return _warn_constant("X" if K is None else "Y")
    return _normalise(*_gram_terms(K, L, debiased))


class MinibatchCKA:
    """Streaming linear CKA over minibatches for every pair of layers of one or two models (Nguyen et al. 2021).

    Each ``update`` takes one batch of n >= 4 samples for all layers, computes each layer's centred linear Gram matrix
    once, and adds the unbiased ``HSIC_1`` of every layer pair (cross terms) and of every layer with itself. ``compute``
    returns ``mean_b HSIC_1(K_b, L_b) / sqrt(mean_b HSIC_1(K_b, K_b) * mean_b HSIC_1(L_b, L_b))`` for each pair.
    Memory is O(L * n^2) for one batch plus the L_a x L_b accumulator: independent of the total number of samples.

    With one batch holding all samples, the result equals ``linear_cka(X, Y, debiased=True)``.

    Parameters
    ----------
    device : torch device, optional
        Where to compute; defaults to the device of the first CUDA tensor seen.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> acc = MinibatchCKA()
    >>> for _ in range(3):
    ...     x = rng.normal(size=(32, 8))
    ...     acc.update({"a": x, "b": x @ rng.normal(size=(8, 4))})
    >>> acc.compute().shape
    (2, 2)
    """

    def __init__(self, *, device: str | torch.device | None = None) -> None:
        self._device = device
        self.reset()

    def reset(self) -> None:
        """Forget all batches."""
        self.layers_a: list[str] | None = None
        self.layers_b: list[str] | None = None
        self._two_models: bool | None = None
        self._cross: torch.Tensor | None = None
        self._self_a: torch.Tensor | None = None
        self._self_b: torch.Tensor | None = None
        self.n_batches = 0

    def _grams(self, features: Mapping[str, ArrayLike], names: list[str], which: str, dev, n: int | None):
        grams = []
        for name in names:
            X = as_matrix(
                features[name],
                f"{which}[{name!r}]",
                device=dev,
                min_samples=4,
                why="each batch needs at least 4 (debiased HSIC)",
            )
            if n is not None and X.shape[0] != n:
                raise ValueError(f"{which}[{name!r}] has {X.shape[0]} samples in this batch; other layers have {n}")
            n = X.shape[0]
            Xc = _center_columns(X)
            K = Xc @ Xc.T
            K.fill_diagonal_(0.0)
            grams.append(K)
        G = torch.stack(grams)  # (L, n, n), zero diagonals
        u = G.sum(dim=2)  # (L, n): K~ 1
        return G.reshape(len(names), -1), u, u.sum(dim=1), n

    def update(self, features_a: Mapping[str, ArrayLike], features_b: Mapping[str, ArrayLike] | None = None) -> None:
        """Add one batch: ``features_a`` maps layer name -> (n, D_l) array; ``features_b`` likewise for a second model.

        All layers (of both models) must hold the same n >= 4 samples in this batch. Every update must use the same
        layer names and the same mode (one model, or two).
        """
        names_a = check_layers(features_a, "features_a")
        names_b = check_layers(features_b, "features_b") if features_b is not None else None
        two = features_b is not None
        if self._two_models is None:
            self._two_models, self.layers_a = two, names_a
            self.layers_b = names_b if two else names_a
        elif two != self._two_models:
            mode = "two models (features_b given)" if self._two_models else "one model (no features_b)"
            raise ValueError(f"this accumulator was started with {mode}; keep the same mode or call reset()")
        elif names_a != self.layers_a or (two and names_b != self.layers_b):
            raise ValueError(
                "layer names differ from the first batch's; every update needs the same layers in the same order"
            )
        dev = resolve_device(self._device, *features_a.values(), *(features_b.values() if two else ()))
        Ga, ua, sa, n = self._grams(features_a, names_a, "features_a", dev, None)
        if two:
            Gb, ub, sb, _ = self._grams(features_b, names_b, "features_b", dev, n)
        else:
            Gb, ub, sb = Ga, ua, sa
        cross = _hsic_song_from_parts(Ga @ Gb.T, sa[:, None], sb[None, :], ua @ ub.T, n)
        self_a = _hsic_song_from_parts((Ga * Ga).sum(dim=1), sa, sa, (ua * ua).sum(dim=1), n)
        self_b = self_a if not two else _hsic_song_from_parts((Gb * Gb).sum(dim=1), sb, sb, (ub * ub).sum(dim=1), n)
        if self._cross is None:
            self._cross, self._self_a, self._self_b = cross, self_a, self_b
        else:
            self._cross = self._cross + cross.to(self._cross.device)
            self._self_a = self._self_a + self_a.to(self._self_a.device)
            self._self_b = self._self_b + self_b.to(self._self_b.device)
        self.n_batches += 1

    def compute(self) -> np.ndarray:
        """The layer x layer minibatch CKA matrix, shape (len(layers_a), len(layers_b)), rows = ``layers_a``.

        Entries for a layer whose mean self-HSIC is not positive (e.g. constant features) are NaN, with a
        ``RuntimeWarning``.

        Raises
        ------
        ValueError
            If no batch was added.
        """
        if self._cross is None:
            raise ValueError("no batches were added; call update() first")
        cross = (self._cross / self.n_batches).cpu().numpy()
        sa = (self._self_a / self.n_batches).cpu().numpy()
        sb = (self._self_b / self.n_batches).cpu().numpy()
        bad_a, bad_b = ~(sa > 0), ~(sb > 0)
        if bad_a.any() or bad_b.any():
            names = [self.layers_a[i] for i in np.flatnonzero(bad_a)] + [
                self.layers_b[i] for i in np.flatnonzero(bad_b)
            ]
            warnings.warn(
                f"CKA undefined (self-HSIC not positive, e.g. constant features) for layers {sorted(set(names))}; NaN there",
                RuntimeWarning,
                stacklevel=2,
            )
        with np.errstate(invalid="ignore", divide="ignore"):
            out = cross / np.sqrt(np.where(bad_a, np.nan, sa)[:, None] * np.where(bad_b, np.nan, sb)[None, :])
        return out
