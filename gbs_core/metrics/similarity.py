"""Layer x layer similarity matrices for any metric, computing each layer's Gram/normalised features once.

``similarity_matrix(features_a, features_b)`` compares every layer of one model with every layer of another (or of
the same model when ``features_b`` is None). Each metric in the registry has a per-layer preparation step (centred
features, row-normalised features, kNN graph, RBF Gram matrix, orthonormal basis) run once per layer, and either a
pair function or a whole-matrix routine. Linear CKA and dense GBS stream blocks of rows of all layers' N x N matrices
at once, so no full N x N matrix is held and the costly N^2 * D products are done once per layer, not once per pair.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np
import torch

from gbs_core._validation import ArrayLike, as_matrix, check_k, check_layers, check_positive_int, resolve_device
from gbs_core.graphs import _BLOCK_ELEMENTS, _normalize, knn_graph
from gbs_core.metrics import cca as _cca
from gbs_core.metrics import cka as _cka
from gbs_core.metrics import gbs as _gbs

__all__ = ["SIMILARITY_METRICS", "metric_is_symmetric", "similarity_matrix"]


# --- linear CKA, all pairs ----------------------------------------------------------------------------------------


class _Centred(NamedTuple):
    Xc: torch.Tensor
    constant: bool


def _prep_centred(X: torch.Tensor, kw: dict) -> _Centred:
    Xc = _cka._center_columns(X)
    return _Centred(Xc, _cka._is_constant(X, Xc))


def _linear_cka_matrix(pa: list[_Centred], pb: list[_Centred] | None, kw: dict) -> np.ndarray:
    debiased = kw.get("debiased", False)
    same = pb is None
    pb = pa if same else pb
    n = pa[0].Xc.shape[0]
    da = [p.Xc.shape[1] for p in pa]
    db = [p.Xc.shape[1] for p in pb]
    gram_cost = n * n * (sum(da) + (0 if same else sum(db))) + len(pa) * len(pb) * n * n
    feature_cost = n * (sum(x * y for x in da for y in db) + sum(x * x for x in da) + sum(y * y for y in db))
    method = kw.get("method", "auto")
    if method == "auto":
        method = "feature" if feature_cost <= gram_cost else "gram"

    if method == "feature":
        # <K_a, K_b> = ||Xb^T Xa||_F^2 without any N x N matrix.
        cross = torch.stack([torch.stack([torch.linalg.matrix_norm(q.Xc.T @ p.Xc) ** 2 for q in pb]) for p in pa])
        self_a = torch.stack([torch.linalg.matrix_norm(p.Xc.T @ p.Xc) ** 2 for p in pa])
        self_b = self_a if same else torch.stack([torch.linalg.matrix_norm(q.Xc.T @ q.Xc) ** 2 for q in pb])
    else:
        bs = kw.get("block_size") or max(1, min(n, _BLOCK_ELEMENTS // (n * (len(pa) + (0 if same else len(pb))))))
        dev = pa[0].Xc.device
        cross = torch.zeros((len(pa), len(pb)), dtype=torch.float64, device=dev)
        self_a = torch.zeros(len(pa), dtype=torch.float64, device=dev)
        self_b = torch.zeros(len(pb), dtype=torch.float64, device=dev)
        for start in range(0, n, bs):
            stop = min(n, start + bs)
            Ga = torch.stack([(p.Xc[start:stop] @ p.Xc.T).reshape(-1) for p in pa])  # rows of each centred Gram
            Gb = Ga if same else torch.stack([(q.Xc[start:stop] @ q.Xc.T).reshape(-1) for q in pb])
            cross += Ga @ Gb.T
            if not same:
                self_a += (Ga * Ga).sum(dim=1)
                self_b += (Gb * Gb).sum(dim=1)
        if same:
            self_a = self_b = torch.diagonal(cross).clone()

    if debiased:
        # HSIC_1 pieces: diag(K) and K~1 per layer; tr(K~ L~) = <K, L> - diag(K).diag(L).
        def parts(ps):
            d = torch.stack([(p.Xc * p.Xc).sum(dim=1) for p in ps])
            u = torch.stack([p.Xc @ p.Xc.sum(dim=0) for p in ps]) - d
            return d, u, u.sum(dim=1)

        d_a, u_a, s_a = parts(pa)
        d_b, u_b, s_b = (d_a, u_a, s_a) if same else parts(pb)
        h = _cka._hsic_song_from_parts
        cross = h(cross - d_a @ d_b.T, s_a[:, None], s_b[None, :], u_a @ u_b.T, n)
        self_a = h(self_a - (d_a * d_a).sum(1), s_a, s_a, (u_a * u_a).sum(1), n)
        self_b = self_a if same else h(self_b - (d_b * d_b).sum(1), s_b, s_b, (u_b * u_b).sum(1), n)
    const_a = np.array([p.constant for p in pa])
    const_b = np.array([q.constant for q in pb])
    return _normalise_matrix(cross, self_a, self_b, const_a, const_b)


def _normalise_matrix(cross, self_a, self_b, const_a, const_b) -> np.ndarray:
    cross, sa, sb = cross.cpu().numpy(), self_a.cpu().numpy(), self_b.cpu().numpy()
    bad_a, bad_b = const_a | ~(sa > 0), const_b | ~(sb > 0)
    if bad_a.any() or bad_b.any():
        warnings.warn(
            "CKA undefined (constant features or non-positive self-HSIC) for some layers; their rows/columns are NaN",
            RuntimeWarning,
            stacklevel=4,
        )
    with np.errstate(invalid="ignore", divide="ignore"):
        return cross / np.sqrt(np.where(bad_a, np.nan, sa)[:, None] * np.where(bad_b, np.nan, sb)[None, :])


# --- RBF CKA ------------------------------------------------------------------------------------------------------


class _RbfPrep(NamedTuple):
    K: torch.Tensor | None  # centred Gram (biased) or K~ (debiased); None when degenerate
    s: Any
    u: Any
    self_term: float


def _prep_rbf(X: torch.Tensor, kw: dict) -> _RbfPrep:
    frac, debiased = kw.get("sigma_fraction", 0.4), kw.get("debiased", False)
    Xc = _cka._center_columns(X)
    K = None if _cka._is_constant(X, Xc) else _cka._rbf_gram_t(Xc, frac)
    if K is None:
        return _RbfPrep(None, None, None, float("nan"))
    n = K.shape[0]
    if debiased:
        Kt, s, u = _cka._hsic_song_parts(K)
        return _RbfPrep(Kt, s, u, float(_cka._hsic_song_from_parts((Kt * Kt).sum(), s, s, u @ u, n)))
    Kc = _cka._center_gram(K)
    return _RbfPrep(Kc, None, None, float((Kc * Kc).sum()))


def _pair_rbf(a: _RbfPrep, b: _RbfPrep, kw: dict) -> float:
    if a.K is None or b.K is None or not (a.self_term > 0 and b.self_term > 0):
        return float("nan")
    if kw.get("debiased", False):
        cross = float(_cka._hsic_song_from_parts((a.K * b.K).sum(), a.s, b.s, a.u @ b.u, a.K.shape[0]))
    else:
        cross = float((a.K * b.K).sum())
    return cross / float(np.sqrt(a.self_term * b.self_term))


# --- GBS ----------------------------------------------------------------------------------------------------------


def _prep_normalised(X: torch.Tensor, kw: dict) -> torch.Tensor:
    return _normalize(X)


def _gbs_dense_matrix(pa: list[torch.Tensor], pb: list[torch.Tensor] | None, kw: dict) -> np.ndarray:
    n = pa[0].shape[0]
    da = [x.shape[1] for x in pa]
    db = da if pb is None else [x.shape[1] for x in pb]
    method = kw.get("method", "auto")
    if method == "auto":
        blocks = n * n * (sum(da) + (0 if pb is None else sum(db))) + len(da) * len(db) * n * n
        feature = n * sum(x * y + x * x + y * y for x in da for y in db)
        method = "feature" if feature <= blocks else "blocks"
    if method == "feature":
        lb = pa if pb is None else pb
        return np.array([[float(_gbs._dense_feature_form(x, y)) for y in lb] for x in pa])
    return _gbs._dense_blocks_matrix(pa, pb, kw.get("block_size")).cpu().numpy()


def _prep_knn(X: torch.Tensor, kw: dict):
    k = check_k(kw.get("k", _gbs.DEFAULT_KNN_K), X.shape[0])
    return knn_graph(X, k, block_size=kw.get("block_size"), device=X.device)


def _pair_knn(A, B, kw: dict) -> float:
    return _gbs._sparse_row_gbs(A, B)


# --- CCA family ---------------------------------------------------------------------------------------------------


def _prep_basis(X: torch.Tensor, kw: dict):
    return _cca._basis(X)


def _prep_svcca_basis(X: torch.Tensor, kw: dict):
    return _cca._basis(X, _cca._check_variance(kw.get("variance", 0.99)))


def _quiet(fn: Callable) -> Callable:
    """Call a pair function with its per-pair warning silenced (similarity_matrix warns once per matrix)."""

    def wrapped(a, b, kw):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return fn(a, b, kw)

    return wrapped


# --- registry -----------------------------------------------------------------------------------------------------


class _Metric(NamedTuple):
    prepare: Callable[[torch.Tensor, dict], Any]
    pair: Callable[[Any, Any, dict], float] | None
    matrix: Callable[[list, list | None, dict], np.ndarray] | None
    symmetric: bool
    min_samples: int
    keywords: tuple[str, ...]


_REGISTRY: dict[str, _Metric] = {
    "linear_cka": _Metric(_prep_centred, None, _linear_cka_matrix, True, 2, ("method", "block_size")),
    "debiased_linear_cka": _Metric(
        _prep_centred,
        None,
        lambda a, b, kw: _linear_cka_matrix(a, b, {**kw, "debiased": True}),
        True,
        4,
        ("method", "block_size"),
    ),
    "rbf_cka": _Metric(_prep_rbf, _pair_rbf, None, True, 2, ("sigma_fraction", "debiased")),
    "gbs_dense": _Metric(_prep_normalised, None, _gbs_dense_matrix, True, 2, ("method", "block_size")),
    "gbs_knn": _Metric(_prep_knn, _pair_knn, None, True, 2, ("k", "block_size")),
    "mean_cca": _Metric(_prep_basis, _quiet(lambda a, b, kw: _cca._mean_cca(a, b)), None, True, 2, ()),
    "mean_squared_cca": _Metric(_prep_basis, _quiet(lambda a, b, kw: _cca._mean_squared_cca(a, b)), None, True, 2, ()),
    "svcca": _Metric(_prep_svcca_basis, _quiet(lambda a, b, kw: _cca._mean_cca(a, b)), None, True, 2, ("variance",)),
    "pwcca": _Metric(_prep_basis, _quiet(lambda a, b, kw: _cca._pwcca(a, b)), None, False, 2, ()),
    "linear_regression": _Metric(
        _prep_basis,
        _quiet(lambda a, b, kw: _cca._linear_regression(a, b, kw.get("symmetric", True))),
        None,
        True,
        2,
        ("symmetric",),
    ),
}

SIMILARITY_METRICS: tuple[str, ...] = tuple(_REGISTRY)
"""Names accepted by ``similarity_matrix(metric=...)`` and ``layer_identification_accuracy``."""


def metric_is_symmetric(metric: str | Callable, **metric_kwargs) -> bool:
    """Whether ``sim(X, Y) == sim(Y, X)`` for a registered metric (False for callables, which are not assumed so)."""
    if callable(metric):
        return False
    spec = _spec(metric)
    if metric == "linear_regression":
        return bool(metric_kwargs.get("symmetric", True))
    return spec.symmetric


def _spec(metric: str) -> _Metric:
    if metric not in _REGISTRY:
        raise ValueError(
            f"metric={metric!r} is not one of {', '.join(repr(m) for m in SIMILARITY_METRICS)}, or a callable"
        )
    return _REGISTRY[metric]


def _load(
    features: Mapping[str, ArrayLike],
    which: str,
    dev,
    n: int | None,
    min_samples: int,
    prepare: Callable[[torch.Tensor], Any] = lambda x: x,
) -> tuple[list[str], list[Any], int]:
    """Validate each layer and prepare it right away, so only one raw float64 layer is alive at a time."""
    names = check_layers(features, which)
    out = []
    for name in names:
        X = as_matrix(
            features[name],
            f"{which}[{name!r}]",
            device=dev,
            min_samples=min_samples,
            why=f"this metric needs at least {min_samples}",
        )
        if n is not None and X.shape[0] != n:
            raise ValueError(f"{which}[{name!r}] has {X.shape[0]} samples; the other layers have {n}")
        n = X.shape[0]
        out.append(prepare(X))
        del X
    return names, out, n


def similarity_matrix(
    features_a: Mapping[str, ArrayLike],
    features_b: Mapping[str, ArrayLike] | None = None,
    *,
    metric: str | Callable[[Any, Any], float] = "linear_cka",
    device: str | torch.device | None = None,
    **metric_kwargs: Any,
) -> np.ndarray:
    """Similarity of every layer of ``features_a`` with every layer of ``features_b`` (or of ``features_a`` itself).

    ``M[i, j] = sim(layer i of a, layer j of b)``. Each layer is prepared once (centred features, Gram matrix,
    normalised features, kNN graph or orthonormal basis, depending on the metric) and reused for all its pairs;
    linear CKA and dense GBS stream blocks of rows of every layer's N x N matrix together.

    Parameters
    ----------
    features_a : mapping layer name -> array, shape (n_samples, n_features_l)
        Rows of the result, in this order.
    features_b : mapping layer name -> array, optional
        Columns of the result (same samples, same order of samples). None compares ``features_a`` with itself.
    metric : str or callable, default "linear_cka"
        One of ``SIMILARITY_METRICS``: "linear_cka", "debiased_linear_cka", "rbf_cka", "gbs_dense", "gbs_knn",
        "mean_cca", "mean_squared_cca", "svcca", "pwcca", "linear_regression"; or any ``f(X, Y) -> float``,
        called once per pair.
    device : torch device, optional
    **metric_kwargs
        Options of the metric: ``method``/``block_size`` (linear CKA, dense GBS), ``sigma_fraction``/``debiased``
        (rbf_cka), ``k`` (gbs_knn, default 5), ``variance`` (svcca), ``symmetric`` (linear_regression).

    Returns
    -------
    np.ndarray, float64, shape (len(features_a), len(features_b)). Ranges as for the pair functions (higher is more
    similar). Layers for which a metric is undefined (constant features) give NaN entries with a ``RuntimeWarning``.

    Raises
    ------
    ValueError
        Unknown metric or keyword, empty mappings, layers with different sample counts, non-finite features,
        too few samples for the metric.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(30, 4))
    >>> similarity_matrix({"x": x, "2x": 2 * x}).round(6).tolist()
    [[1.0, 1.0], [1.0, 1.0]]
    """
    dev = (
        resolve_device(device, *features_a.values(), *((features_b or {}).values()))
        if isinstance(features_a, Mapping)
        else None
    )
    if callable(metric):
        _, xa, n_a = _load(features_a, "features_a", dev, None, 1)
        xb = xa if features_b is None else _load(features_b, "features_b", dev, n_a, 1)[1]
        return np.array([[float(metric(x, y, **metric_kwargs)) for y in xb] for x in xa], dtype=np.float64)

    spec = _spec(metric)
    unknown = sorted(set(metric_kwargs) - set(spec.keywords))
    if unknown:
        allowed = ", ".join(spec.keywords) or "none"
        raise ValueError(f"metric {metric!r} takes no keyword {', '.join(map(repr, unknown))}; its keywords: {allowed}")
    if metric_kwargs.get("block_size") is not None:
        check_positive_int(metric_kwargs["block_size"], "block_size")
    if "method" in metric_kwargs and metric_kwargs["method"] not in ("auto", "gram", "feature", "blocks"):
        raise ValueError(f"method={metric_kwargs['method']!r} is not one of 'auto', 'gram'/'blocks', 'feature'")
    if "sigma_fraction" in metric_kwargs:
        _cka._check_fraction(metric_kwargs["sigma_fraction"])
    if metric == "rbf_cka" and metric_kwargs.get("debiased"):
        spec = spec._replace(min_samples=4)
    kw = dict(metric_kwargs)
    if kw.get("method") == "blocks" and metric.endswith("linear_cka"):
        kw["method"] = "gram"
    if kw.get("method") == "gram" and metric == "gbs_dense":
        kw["method"] = "blocks"

    _, pa, n_a = _load(features_a, "features_a", dev, None, spec.min_samples, lambda x: spec.prepare(x, kw))
    pb = None
    if features_b is not None:
        _, pb, _ = _load(features_b, "features_b", dev, n_a, spec.min_samples, lambda x: spec.prepare(x, kw))
    if spec.matrix is not None:
        return np.asarray(spec.matrix(pa, pb, kw), dtype=np.float64)

    rows, cols = pa, (pa if pb is None else pb)
    out = np.empty((len(rows), len(cols)))
    for i, a in enumerate(rows):
        for j, b in enumerate(cols):
            if pb is None and spec.symmetric and j < i:
                out[i, j] = out[j, i]
            else:
                out[i, j] = spec.pair(a, b, kw)
    if np.isnan(out).any():
        warnings.warn(
            f"{metric} is undefined for some layer pairs (constant features); those entries are NaN",
            RuntimeWarning,
            stacklevel=2,
        )
    return out
