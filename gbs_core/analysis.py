"""Per-model analyses through the disk cache: what the dashboard pages and ``python -m gbs_core analyze`` compute.

A :class:`FeatureSet` is one model's layer features on one sample set, with the identity needed for cache keys (the
weights fingerprint, the dataset id and the pooling flag). Each function here computes one result for it, reading it
from the :class:`~gbs_core.cache.DiskCache` when it was computed before, so an app restart or a batch job never
repeats work. Per-layer results are cached per layer, so adding a layer computes only that layer.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from gbs_core.cache import DiskCache
from gbs_core.data import Dataset
from gbs_core.embedding import embed_2d
from gbs_core.graph_layout import MAX_NODES, force_layout, stratified_nodes
from gbs_core.graphs import knn_graph, knn_method_used
from gbs_core.metrics import MinibatchCKA, modularity_curve, prunable_layers, similarity_matrix, triangle_motifs
from gbs_core.metrics.modularity import PAPER_PRUNE_THRESHOLD
from gbs_core.pipeline import LoadedModel, cached_activations, store_activations

if TYPE_CHECKING:
    from distributed import Client

__all__ = [
    "FeatureSet",
    "feature_set",
    "feature_sets",
    "feature_set_from_arrays",
    "layer_graph_layout",
    "layer_knn_graph",
    "modularity_by_layer",
    "modularity_table",
    "motifs_by_layer",
    "motif_table",
    "layer_similarity",
    "layer_embedding",
]

Progress = Callable[[int, int, str], None]


@dataclass(eq=False)
class FeatureSet:
    """One model's features on one sample set.

    Attributes
    ----------
    name : str
        Display label of the model.
    model_id : str
        Fingerprint of the weights (or of saved activations); part of every cache key.
    dataset_id : str
        Identity of the samples (``Dataset.dataset_id``).
    pool : bool
        Whether conv maps were globally average pooled.
    features : dict of str to numpy.ndarray (n_samples, n_features), float32, in depth order
    labels : numpy.ndarray (n_samples,), int64
    predictions : numpy.ndarray (n_samples,) or None
    class_names : tuple of str
    """

    name: str
    model_id: str
    dataset_id: str
    pool: bool
    features: dict[str, np.ndarray]
    labels: np.ndarray
    predictions: np.ndarray | None
    class_names: tuple[str, ...]

    @property
    def layers(self) -> list[str]:
        return list(self.features)

    @property
    def n_samples(self) -> int:
        return len(self.labels)

    def key(self, kind: str, **params: Any) -> dict:
        return {"kind": kind, "model": self.model_id, "data": self.dataset_id, "pool": self.pool, **params}


def feature_set(
    loaded: LoadedModel,
    data: Dataset,
    layers: Sequence[str] | None = None,
    *,
    pool: bool = False,
    cache: DiskCache | None = None,
    device: str = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> FeatureSet:
    """Extract (or read from the cache) ``layers`` of ``loaded`` on ``data``; see :func:`cached_activations`.

    The predictions are kept only when the model's classifier predicts ``data``'s classes
    (:meth:`~gbs_core.pipeline.LoadedModel.head_fits`); otherwise they are None (accuracy not applicable)."""
    acts = cached_activations(loaded, data, layers, pool=pool, cache=cache, device=device, progress=progress)
    return _as_feature_set(loaded.label, loaded.model_id, loaded.head_fits(data), data, acts, pool)


def _as_feature_set(label: str, model_id: str, head_fits: bool, data: Dataset, acts, pool: bool) -> FeatureSet:
    predictions = acts.predictions if head_fits else None
    return FeatureSet(label, model_id, data.dataset_id, pool, acts.features, data.labels, predictions,
                      data.class_names)


def _extract_on_worker(loaded: LoadedModel, *, data: Dataset, layers: Sequence[str] | None, pool: bool):
    """One Dask task: the model's layers on ``data``, extracted without a cache (the client keeps the cache)."""
    return cached_activations(loaded, data, layers, pool=pool, cache=None)


def feature_sets(
    models: Sequence[Any],
    data: Dataset,
    layers: Sequence[str] | None = None,
    *,
    load: Callable[[Any], LoadedModel],
    pool: bool = False,
    cache: DiskCache | None = None,
    client: Client | None = None,
    progress: Progress | None = None,
) -> list[FeatureSet]:
    """:func:`feature_set` of each of ``models`` (what ``load`` takes, e.g. ModelSpecs), in their order; with a Dask
    ``client`` the extractions run as one task per model.

    Serially each model is loaded and its features read or extracted through the cache, one model at a time. With a
    client each model is still loaded here (its weights fingerprint names its cache entries, and ``load`` may say
    things or hold a memo): when the cache holds every layer it is read here; otherwise the loaded model goes to a
    worker, which extracts its layers without a cache and returns the arrays, and this process writes them into the
    cache under :func:`~gbs_core.pipeline.cached_activations`' keys (:func:`~gbs_core.pipeline.store_activations`).
    The workers need the project installed, not the model files nor the cache. The features, and so every result
    computed from them, are the same either way, and a later serial run reads the cluster's features.

    Parameters
    ----------
    models : sequence
        What ``load`` builds a :class:`~gbs_core.pipeline.LoadedModel` from.
    data : Dataset
    layers : sequence of str, optional
        Layers of every model (default: each model's default layers).
    load : callable model -> LoadedModel
    pool, cache : see :func:`feature_set`.
    client : distributed.Client, optional
        See :func:`gbs_core.cluster.dask_client`; None runs serially.
    progress : callable (done, total, message), optional
        Called after each model, as they finish.

    Raises
    ------
    ValueError
        A layer that a model does not have (before any work is sent).
    gbs_core.cluster.TaskError
        An extraction failed on a worker (the message names the model).
    """
    from gbs_core.cluster import map_tasks

    models = list(models)
    total = len(models)

    def label(model) -> str:
        return f"features of {getattr(model, 'label', model)}"

    if client is None:
        return map_tasks(lambda m: feature_set(load(m), data, layers, pool=pool, cache=cache), models,
                         progress=progress, name=label)
    ready: dict[int, FeatureSet] = {}
    sent: list[tuple[int, str, str, bool]] = []  # position, label, weights fingerprint, head fits: not the model

    def to_send():
        for i, model in enumerate(models):
            loaded = load(model)
            try:
                acts = cached_activations(loaded, data, layers, pool=pool, cache=cache, require_cached=True)
            except LookupError:
                sent.append((i, loaded.label, loaded.model_id, loaded.head_fits(data)))
                yield loaded
                continue
            ready[i] = _as_feature_set(loaded.label, loaded.model_id, loaded.head_fits(data), data, acts, pool)
            if progress is not None:
                progress(len(ready), total, f"{label(loaded)} read from the cache ({len(ready)}/{total})")

    def sent_progress(done: int, _n: int, message: str) -> None:
        if progress is not None:
            progress(len(ready) + done, total, message)

    task = functools.partial(_extract_on_worker, data=data, layers=layers, pool=pool)
    extracted = map_tasks(task, to_send(), client=client, progress=sent_progress, name=label)
    for (i, name, model_id, head_fits), acts in zip(sent, extracted, strict=True):
        if cache is not None:
            store_activations(cache, model_id, data, acts, pool=pool)
        ready[i] = _as_feature_set(name, model_id, head_fits, data, acts, pool)
    return [ready[i] for i in range(total)]


def data_warnings(fs: FeatureSet) -> list[str]:
    """What makes a feature set's class-based numbers meaningless or fragile, in words (empty when nothing does):
    one class only (Q = 0 at every layer, so every layer looks prunable), or a class with a single sample."""
    counts = np.bincount(fs.labels, minlength=len(fs.class_names))
    present = counts[counts > 0]
    out = []
    if len(present) < 2:
        name = fs.class_names[int(np.argmax(counts))] if len(counts) else "?"
        out.append(f"all {fs.n_samples} samples of {fs.name} are of one class ({name!r}): modularity is 0 at every "
                   "layer, every layer looks prunable and the motif fractions are trivial. Use data with at least "
                   "two classes.")
    elif present.min() < 2:
        lonely = [fs.class_names[i] for i in np.flatnonzero(counts == 1)][:5]
        out.append(f"class(es) {', '.join(map(repr, lonely))} of {fs.name} have a single sample: their communities "
                   "cannot form. Raise N or merge the classes.")
    return out


def feature_set_from_arrays(
    name: str,
    features: Mapping[str, np.ndarray],
    labels: np.ndarray,
    *,
    predictions: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
) -> FeatureSet:
    """Wrap saved activations; the cache identity is a hash of the arrays themselves."""
    import hashlib

    h = hashlib.sha256()
    for layer, a in features.items():
        h.update(layer.encode())
        h.update(np.ascontiguousarray(a, dtype=np.float32).tobytes())
    labels = np.asarray(labels, dtype=np.int64)
    h.update(labels.tobytes())
    digest = h.hexdigest()[:24]
    if class_names is None:  # the label values present, renumbered 0..C-1 (never one name per integer up to the max)
        values, labels = np.unique(labels, return_inverse=True)
        names = tuple(str(v) for v in values)
    else:
        names = tuple(class_names)
        if len(labels) and (labels.min() < 0 or labels.max() >= len(names)):
            raise ValueError(f"labels run from {labels.min()} to {labels.max()} but there are {len(names)} class names")
    return FeatureSet(name, f"arrays-{digest}", f"arrays-{digest}", False,
                      {k: np.asarray(v, dtype=np.float32).reshape(len(v), -1) for k, v in features.items()},
                      labels, predictions, names)


def _cached(cache: DiskCache | None, key: dict, compute: Callable[[], Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if cache is None:
        return {k: np.asarray(v) for k, v in compute().items()}
    return cache.get_or_compute(key, compute)[0]


def _check_layer(fs: FeatureSet, layer: str) -> np.ndarray:
    if layer not in fs.features:
        raise ValueError(f"layer {layer!r} is not among the extracted layers of {fs.name}: {fs.layers}")
    return fs.features[layer]


def _knn_params(fs: FeatureSet, method: str) -> dict:
    """The cache-key entry of a kNN search method: none for the exact search (the keys every earlier version wrote),
    ``knn="approx"`` when ``method`` resolves to NN-descent for this sample count."""
    return {"knn": "approx"} if knn_method_used(fs.n_samples, method) == "approx" else {}


def layer_knn_graph(fs: FeatureSet, layer: str, *, k: int, method: str = "exact",
                    cache: DiskCache | None = None) -> sp.csr_array:
    """The symmetrised cosine kNN graph of one layer (``knn_graph(X, k, method=method)``), cached as CSR arrays.

    ``method`` is ``"exact"`` (default), ``"approx"`` (NN-descent neighbours) or ``"auto"`` (approximate from
    ``gbs_core.graphs.APPROX_MIN_SAMPLES`` samples); ``knn_method_used(fs.n_samples, method)`` says which ran."""
    X = _check_layer(fs, layer)

    def compute():
        A = knn_graph(X, k, method=method)
        return {"data": A.data, "indices": A.indices, "indptr": A.indptr, "shape": np.array(A.shape)}

    arrays = _cached(cache, fs.key("knn_graph", layer=layer, k=int(k), **_knn_params(fs, method)), compute)
    return sp.csr_array((arrays["data"], arrays["indices"], arrays["indptr"]), shape=tuple(arrays["shape"]))


def layer_graph_layout(fs: FeatureSet, layer: str, *, k: int, max_nodes: int = MAX_NODES, seed: int = 0,
                       cache: DiskCache | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The samples drawn in one layer's kNN graph (at most ``max_nodes``, stratified by class) and their ForceAtlas2
    positions ``(len(nodes), 2)``, cached: the dashboard's graph and the report's read the same entry."""
    nodes = stratified_nodes(fs.labels, max_nodes, seed=seed)
    key = fs.key("graph_layout", layer=layer, k=int(k), nodes=nodes.tolist(), seed=int(seed), method="forceatlas2-numpy")
    arrays = _cached(cache, key, lambda: {"xy": force_layout(layer_knn_graph(fs, layer, k=k, cache=cache), nodes,
                                                               seed=seed)})
    return nodes, arrays["xy"]


def modularity_by_layer(
    fs: FeatureSet,
    *,
    k: int = 3,
    n_batches: int = 1,
    seed: int = 0,
    resolution: float = 1.0,
    knn_method: str = "exact",
    cache: DiskCache | None = None,
    progress: Progress | None = None,
) -> dict[str, np.ndarray]:
    """Modularity of every layer's kNN graph (``modularity_curve``), cached per layer: layer -> Q per batch.
    ``knn_method`` is the neighbour search of ``layer_knn_graph``."""
    out: dict[str, np.ndarray] = {}
    for i, layer in enumerate(fs.layers):
        if progress is not None:
            progress(i, len(fs.layers), f"modularity of {layer}")
        key = fs.key("modularity", layer=layer, k=int(k), n_batches=int(n_batches), seed=int(seed),
                     resolution=float(resolution), **_knn_params(fs, knn_method))
        arrays = _cached(cache, key, lambda layer=layer: {"q": modularity_curve(
            {layer: fs.features[layer]}, fs.labels, k=k, n_batches=n_batches, seed=seed, resolution=resolution,
            knn_method=knn_method)[layer]})
        out[layer] = arrays["q"]
    if progress is not None:
        progress(len(fs.layers), len(fs.layers), "modularity done")
    return out


def modularity_table(curve: Mapping[str, np.ndarray], *, threshold: float = PAPER_PRUNE_THRESHOLD) -> pd.DataFrame:
    """One row per layer: depth, layer, Q mean and std over batches, dQ, and whether/how it is flagged prunable.

    Columns: ``depth`` (0-based), ``normalized_depth`` (in [0, 1]), ``layer``, ``q``, ``q_std``, ``dq`` (NaN for the
    first layer), ``prunable`` (bool), ``kind`` ("plateau", "degradation" or "").
    """
    layers = list(curve)
    q = np.array([float(np.nanmean(curve[n])) for n in layers])
    std = np.array([float(np.std(curve[n], ddof=1)) if np.size(curve[n]) > 1 else 0.0 for n in layers])
    dq = np.concatenate([[np.nan], np.diff(q)]) if len(q) else np.array([])
    flagged = {p.position: p.kind for p in prunable_layers(q, threshold=threshold)} if len(q) else {}
    depth = np.arange(len(layers))
    return pd.DataFrame({
        "depth": depth,
        "normalized_depth": depth / max(len(layers) - 1, 1),
        "layer": layers,
        "q": q,
        "q_std": std,
        "dq": dq,
        "prunable": [i in flagged for i in depth],
        "kind": [flagged.get(i, "") for i in depth],
    })


_MOTIF_COLUMNS = ("same_class", "two_classes", "all_different")


def motifs_by_layer(
    fs: FeatureSet, *, k: int = 5, knn_method: str = "exact", cache: DiskCache | None = None,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Triangle motif counts and fractions of every layer's binarised kNN graph (k = 5 by default), cached per layer;
    ``knn_method`` is the neighbour search of ``layer_knn_graph``.

    Columns: ``depth``, ``normalized_depth``, ``layer``, ``same_class``, ``two_classes``, ``all_different`` (counts),
    ``total``, and ``same_class_fraction``, ``two_classes_fraction``, ``all_different_fraction`` (NaN when a layer's
    graph has no triangle).
    """
    counts: dict[str, np.ndarray] = {}
    for i, layer in enumerate(fs.layers):
        if progress is not None:
            progress(i, len(fs.layers), f"motifs of {layer}")

        def compute(layer=layer):
            found = triangle_motifs(layer_knn_graph(fs, layer, k=k, method=knn_method, cache=cache), fs.labels)
            return {"counts": np.asarray(list(found), dtype=np.int64)}

        key = fs.key("motifs", layer=layer, k=int(k), **_knn_params(fs, knn_method))
        counts[layer] = _cached(cache, key, compute)["counts"]
    if progress is not None:
        progress(len(fs.layers), len(fs.layers), "motifs done")
    return motif_table(counts)


def motif_table(counts: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """The table of :func:`motifs_by_layer` from each layer's (same_class, two_classes, all_different) counts, in
    depth order."""
    rows = []
    layers = list(counts)
    for i, layer in enumerate(layers):
        c = np.asarray(counts[layer], dtype=np.int64)
        total = int(c.sum())
        row = {"depth": i, "normalized_depth": i / max(len(layers) - 1, 1), "layer": layer,
               **{name: int(v) for name, v in zip(_MOTIF_COLUMNS, c, strict=True)}, "total": total}
        row.update({f"{name}_fraction": (int(v) / total if total else np.nan)
                    for name, v in zip(_MOTIF_COLUMNS, c, strict=True)})
        rows.append(row)
    return pd.DataFrame(rows)


def layer_similarity(
    fs_a: FeatureSet,
    fs_b: FeatureSet | None = None,
    *,
    metric: str = "linear_cka",
    cache: DiskCache | None = None,
    progress: Progress | None = None,
    **metric_kwargs: Any,
) -> np.ndarray:
    """Layer x layer similarity (``similarity_matrix``) within one model or between two on the same samples.

    ``metric="minibatch_cka"`` streams linear CKA with the unbiased HSIC over minibatches (:class:`MinibatchCKA`):
    keywords ``batch_size`` (default 128: the most samples per batch; the batches are equal, see
    :func:`minibatch_batches`) and ``seed``
    (default 0; the samples are shuffled once before batching). Any other metric goes to ``similarity_matrix``.

    Returns an array of shape (len(fs_a.layers), len(fs_b.layers)), cached as a whole.

    Raises
    ------
    ValueError
        When the two feature sets were computed on different samples.
    """
    if fs_b is not None and fs_b.dataset_id != fs_a.dataset_id:
        raise ValueError(f"{fs_a.name} and {fs_b.name} were computed on different samples; use the same data and N")
    other = fs_b or fs_a
    key = {"kind": "similarity", "metric": metric, "params": dict(sorted(metric_kwargs.items())),
           "a": fs_a.key("features", layers=fs_a.layers), "b": other.key("features", layers=other.layers)}
    if metric == "minibatch_cka":
        key["batching"] = "equal"  # earlier entries averaged a smaller last batch with the same weight

    def compute():
        if progress is not None:
            progress(0, 1, f"{metric} over {len(fs_a.layers)} x {len(other.layers)} layers")
        if metric == "minibatch_cka":
            m = _minibatch_cka(fs_a, fs_b, **metric_kwargs)
        else:
            m = similarity_matrix(fs_a.features, None if fs_b is None else fs_b.features, metric=metric, **metric_kwargs)
        return {"matrix": np.asarray(m, dtype=np.float64)}

    matrix = _cached(cache, key, compute)["matrix"]
    if progress is not None:
        progress(1, 1, f"{metric} done")
    return matrix


def minibatch_batches(n: int, batch_size: int) -> tuple[int, int]:
    """(number of batches, samples per batch) of minibatch CKA on ``n`` samples with batches of at most
    ``batch_size``: ``ceil(n / batch_size)`` equal batches of ``floor(n / that)`` samples, so every batch weighs the
    same in the mean HSIC, as in Nguyen et al.'s accumulator (the ``n mod batches`` left over, at most one per batch,
    are left out; at N = 500 and 128: 4 batches of 125, none left out).

    Raises
    ------
    ValueError
        Fewer than 4 samples, or a batch size below 4 (debiased HSIC needs 4 per batch).
    """
    if batch_size < 4:
        raise ValueError(f"batch_size is {batch_size}; minibatch CKA needs at least 4 samples per batch")
    if n < 4:
        raise ValueError(f"{n} samples; minibatch CKA needs at least 4")
    count = -(-n // batch_size)
    size = n // count
    while size < 4:  # e.g. n = 9 with batch_size 4: 3 batches of 3 would be too small
        count -= 1
        size = n // count
    return count, size


def _minibatch_cka(fs_a: FeatureSet, fs_b: FeatureSet | None, *, batch_size: int = 128, seed: int = 0) -> np.ndarray:
    count, size = minibatch_batches(fs_a.n_samples, batch_size)
    order = np.random.default_rng(seed).permutation(fs_a.n_samples)
    acc = MinibatchCKA()
    for b in range(count):
        idx = order[b * size:(b + 1) * size]
        acc.update({k: v[idx] for k, v in fs_a.features.items()},
                   None if fs_b is None else {k: v[idx] for k, v in fs_b.features.items()})
    return acc.compute()


def layer_embedding(
    fs: FeatureSet, layer: str, *, method: str = "umap", seed: int = 0, cache: DiskCache | None = None
) -> np.ndarray:
    """2-D coordinates of one layer's samples (``embed_2d``), cached; shape (n_samples, 2)."""
    X = _check_layer(fs, layer)
    key = fs.key("embedding", layer=layer, method=method, seed=int(seed))
    return _cached(cache, key, lambda: {"xy": embed_2d(X, method=method, seed=seed)})["xy"]
