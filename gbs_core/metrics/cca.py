"""CCA-based baselines for the layer-identification sanity check: mean (squared) CCA, SVCCA, PWCCA, linear regression.

``Q_X``, ``Q_Y`` are orthonormal bases of the column spaces of the column-centred X and Y, and ``rho_i`` the singular
values of ``Q_X^T Q_Y`` (the canonical correlations). The bases come from a thin SVD with rank cut-off
``s_i > max(N, D) * eps * s_1``: for a full-rank X this spans the same space as the thin QR of the reference, and it
stays well defined for rank-deficient layers (dead units, duplicated units). ``p1``, ``p2`` are these ranks.

With ``N <= D`` the centred column space is the whole (N-1)-dimensional space of centred vectors and every canonical
correlation is 1: CCA needs more samples than (effective) features to say anything.

Degenerate input: a constant X or Y (rank 0) gives NaN with a ``RuntimeWarning``.

References
----------
Kornblith et al., "Similarity of Neural Network Representations Revisited", ICML 2019, Table 1.
Raghu et al., "SVCCA", NeurIPS 2017. Morcos, Raghu, Bengio, "Insights on representational similarity in neural
networks with canonical correlation" (PWCCA), NeurIPS 2018.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
import torch

from gbs_core._validation import ArrayLike, as_matrix, check_finite_number, check_same_samples, resolve_device

__all__ = ["canonical_correlations", "linear_regression_similarity", "mean_cca", "mean_squared_cca", "pwcca", "svcca"]


class _Basis(NamedTuple):
    Xc: torch.Tensor  # centred features
    Q: torch.Tensor  # (N, rank) orthonormal basis of the column space of Xc
    s: torch.Tensor  # singular values kept


def _basis(X: torch.Tensor, variance: float | None = None) -> _Basis:
    Xc = X - X.mean(dim=0, keepdim=True)
    U, s, _ = torch.linalg.svd(Xc, full_matrices=False)
    if s.numel() == 0 or float(s[0]) == 0.0:
        r = 0
    else:
        tol = max(Xc.shape) * torch.finfo(s.dtype).eps * float(s[0])
        r = int((s > tol).sum())
    if variance is not None and r > 0:
        energy = torch.cumsum(s[:r] ** 2, 0) / (s[:r] ** 2).sum()
        r = min(r, int((energy < variance - 1e-12).sum()) + 1)
    return _Basis(Xc, U[:, :r], s[:r])


def _rhos(a: _Basis, b: _Basis) -> tuple[torch.Tensor, torch.Tensor]:
    """(canonical correlations in decreasing order, X-side rotation U of Q_X^T Q_Y = U S V^T)."""
    U, rho, _ = torch.linalg.svd(a.Q.T @ b.Q, full_matrices=False)
    return rho, U


def _rank_zero(*bases: _Basis) -> bool:
    if any(b.Q.shape[1] == 0 for b in bases):
        warnings.warn(
            "a layer is constant (rank 0 after centering): CCA is undefined; returning NaN",
            RuntimeWarning,
            stacklevel=3,
        )
        return True
    return False


def _pair(X, Y, device) -> tuple[torch.Tensor, torch.Tensor]:
    dev = resolve_device(device, X, Y)
    Xt = as_matrix(X, "X", device=dev, min_samples=2, why="CCA needs at least 2")
    Yt = as_matrix(Y, "Y", device=dev, min_samples=2, why="CCA needs at least 2")
    check_same_samples(X=Xt, Y=Yt)
    return Xt, Yt


# --- pair functions on prepared bases (shared with similarity_matrix) ---------------------------------------------


def _mean_squared_cca(a: _Basis, b: _Basis) -> float:
    return float("nan") if _rank_zero(a, b) else float((_rhos(a, b)[0] ** 2).mean())


def _mean_cca(a: _Basis, b: _Basis) -> float:
    return float("nan") if _rank_zero(a, b) else float(_rhos(a, b)[0].mean())


def _pwcca(a: _Basis, b: _Basis) -> float:
    if _rank_zero(a, b):
        return float("nan")
    rho, U = _rhos(a, b)
    H = a.Q @ U[:, : rho.numel()]  # canonical variables of X: unit norm, centred
    norms = torch.linalg.vector_norm(a.Xc, dim=0)
    live = norms > 0
    corr = (H.T @ a.Xc[:, live]) / norms[live]  # (r, live neurons)
    alpha = corr.abs().sum(dim=1)
    return float((alpha * rho).sum() / alpha.sum())


def _regression_r2(target: _Basis, predictor: _Basis) -> float:
    """R^2 of the least-squares fit of the centred target by the predictor: ||Q_P^T T||_F^2 / ||T||_F^2."""
    return float(torch.linalg.matrix_norm(predictor.Q.T @ target.Xc) ** 2 / torch.linalg.matrix_norm(target.Xc) ** 2)


def _linear_regression(a: _Basis, b: _Basis, symmetric: bool) -> float:
    if _rank_zero(a, b):
        return float("nan")
    r_ab = _regression_r2(a, b)
    return 0.5 * (r_ab + _regression_r2(b, a)) if symmetric else r_ab


def _check_variance(variance: float) -> float:
    v = check_finite_number(variance, "variance")
    if not 0 < v <= 1:
        raise ValueError(f"variance must be in (0, 1]; got {variance}")
    return v


# --- public API ---------------------------------------------------------------------------------------------------


def canonical_correlations(X: ArrayLike, Y: ArrayLike, *, device: str | torch.device | None = None) -> np.ndarray:
    """Canonical correlations of X and Y: singular values of ``Q_X^T Q_Y``, decreasing, length ``min(p1, p2)``.

    Parameters
    ----------
    X : array, shape (n_samples, n_features_x); Y : array, shape (n_samples, n_features_y)

    Returns
    -------
    np.ndarray of values in [0, 1] (up to rounding); empty if X or Y is constant.
    """
    Xt, Yt = _pair(X, Y, device)
    return _rhos(_basis(Xt), _basis(Yt))[0].cpu().numpy()


def mean_squared_cca(X: ArrayLike, Y: ArrayLike, *, device: str | torch.device | None = None) -> float:
    """Mean squared canonical correlation ``sum_i rho_i^2 / min(p1, p2)`` (Yanai's R^2_CCA; the paper divides by p1).

    Parameters
    ----------
    X : array or tensor, shape (n_samples, n_features_x)
    Y : array or tensor, shape (n_samples, n_features_y)

    Returns
    -------
    float in [0, 1], higher is more similar; 1 when one column space contains the other. NaN (with a
    ``RuntimeWarning``) when X or Y is constant.

    Raises
    ------
    ValueError
        Inputs not finite 2-D arrays, different sample counts, fewer than 2 samples.
    """
    Xt, Yt = _pair(X, Y, device)
    return _mean_squared_cca(_basis(Xt), _basis(Yt))


def mean_cca(X: ArrayLike, Y: ArrayLike, *, device: str | torch.device | None = None) -> float:
    """Mean canonical correlation ``sum_i rho_i / min(p1, p2)``; in [0, 1], higher is more similar.

    Same inputs, degenerate cases and errors as ``mean_squared_cca``.
    """
    Xt, Yt = _pair(X, Y, device)
    return _mean_cca(_basis(Xt), _basis(Yt))


def svcca(X: ArrayLike, Y: ArrayLike, *, variance: float = 0.99, device: str | torch.device | None = None) -> float:
    """SVCCA: mean CCA after keeping, on each side, the top singular directions explaining ``variance`` of the variance.

    Each centred layer is reduced to its first r singular directions, r the smallest number whose squared singular
    values reach the fraction ``variance`` of the total; then ``mean_cca`` of the reduced layers.

    Parameters
    ----------
    X : array or tensor, shape (n_samples, n_features_x)
    Y : array or tensor, shape (n_samples, n_features_y)
    variance : float in (0, 1], default 0.99

    Returns
    -------
    float in [0, 1], higher is more similar; NaN with a ``RuntimeWarning`` for a constant layer.

    Raises
    ------
    ValueError
        As ``mean_cca``, and ``variance`` outside (0, 1].
    """
    v = _check_variance(variance)
    Xt, Yt = _pair(X, Y, device)
    return _mean_cca(_basis(Xt, v), _basis(Yt, v))


def pwcca(X: ArrayLike, Y: ArrayLike, *, device: str | torch.device | None = None) -> float:
    """Projection-weighted CCA (Morcos et al. 2018): canonical correlations weighted by their importance to X.

    ``PWCCA = sum_i alpha_i rho_i / sum_i alpha_i`` with ``alpha_i = sum_j |corr(h_i, x_j)|``, ``h_i`` the i-th
    canonical variable of X and ``x_j`` the j-th neuron (column) of X; zero-variance neurons are skipped.
    Asymmetric: the weights come from the first argument.

    Parameters
    ----------
    X : array or tensor, shape (n_samples, n_features_x)
    Y : array or tensor, shape (n_samples, n_features_y)

    Returns
    -------
    float in [0, 1], higher is more similar; NaN with a ``RuntimeWarning`` for a constant layer.

    Raises
    ------
    ValueError
        As ``mean_cca``.
    """
    Xt, Yt = _pair(X, Y, device)
    return _pwcca(_basis(Xt), _basis(Yt))


def linear_regression_similarity(
    X: ArrayLike, Y: ArrayLike, *, symmetric: bool = True, device: str | torch.device | None = None
) -> float:
    """Linear regression fit: ``R^2 = ||Q_Y^T X||_F^2 / ||X||_F^2`` on centred X (how well Y linearly predicts X).

    Parameters
    ----------
    X : array or tensor, shape (n_samples, n_features_x)
    Y : array or tensor, shape (n_samples, n_features_y)
    symmetric : bool, default True
        Average the two directions, ``(R^2(X | Y) + R^2(Y | X)) / 2``; with False return ``R^2(X | Y)`` only.

    Returns
    -------
    float in [0, 1], higher is more similar; NaN with a ``RuntimeWarning`` for a constant layer.

    Raises
    ------
    ValueError
        As ``mean_cca``.
    """
    Xt, Yt = _pair(X, Y, device)
    return _linear_regression(_basis(Xt), _basis(Yt), bool(symmetric))
