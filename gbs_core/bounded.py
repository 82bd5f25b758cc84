"""A model's analysis in bounded memory: layers in groups that fit a memory budget, each layer reduced to what the
analyses need before the next group is extracted.

The analysis of :func:`analyze_model` (the modularity curve, the motif counts, layer x layer similarity matrices)
needs each layer's raw features only to build its per-layer results: its kNN graphs, its modularity, its motif counts
and, for the similarity matrices, its Gram matrix ``G = X X^T`` (n_samples x n_samples). The features of big models do
not fit in memory together (a torchvision ResNet-18 at 224 px: about 6 GB for 1,000 samples, the stem alone 3.2 GB),
so:

1. a one-sample probe gives every layer's size before any work; when all requested layers fit the budget, the
   analysis runs in memory as it always has (:mod:`gbs_core.analysis`), any metric;
2. otherwise one forward pass runs over the samples (:func:`plan_layer_groups`): the smallest layers that fit the
   budget together fill arrays in memory, every other layer's rows are appended to a scratch file as the batches come;
3. each layer is then reduced to its Gram matrix, from memory or from blocks of rows read back from its file
   (float32 products summed in float64, the blocks sized from the budget), and its kNN graphs, modularity and motif
   counts are computed from the Gram matrix (cosines ``G_ij / (|x_i| |x_j|)``), cached, and the features dropped;
4. the similarity matrices come from the Gram matrices (written to the scratch folder, read back a pair at a time):
   linear CKA (biased or debiased) from the centred Grams ``H G H``, dense GBS from the cosine graphs, kNN GBS from the
   kNN graphs. The CCA family and RBF CKA need raw features and are refused, with the reason.

Every result goes to the disk cache under the key the in-memory path uses, so the dashboard and a later run read the
same entries; when everything asked for is already cached nothing is extracted. Features of a request larger than the
budget are not cached (they would evict the results of the analysis that made them).

Memory: the budget bounds the features held at once (a group, or two blocks of a streamed layer) and the Gram
matrices (two at a time); the model, one batch of its activations, and the interpreter come on top.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from gbs_core import analysis
from gbs_core._validation import check_labels
from gbs_core.activations import list_layers, stream_activations
from gbs_core.cache import DiskCache, MemoryCache
from gbs_core.data import Dataset
from gbs_core.graphs import APPROX_NEIGHBORS, NORM_FLOOR, _topk_stable, knn_method_used
from gbs_core.metrics import cka as _cka
from gbs_core.metrics import disjoint_batches, triangle_motifs
from gbs_core.metrics import gbs as _gbs
from gbs_core.metrics.modularity import _modularity_parts
from gbs_core.metrics.similarity import _normalise_matrix
from gbs_core.pipeline import LoadedModel, _key

__all__ = [
    "BOUNDED_METRICS",
    "LayerGroup",
    "ModelAnalysis",
    "analyze_model",
    "analyze_model_task",
    "default_memory_budget",
    "format_bytes",
    "gram_matrix",
    "knn_graph_from_gram",
    "layer_sizes",
    "parse_bytes",
    "plan_layer_groups",
]

BOUNDED_METRICS = ("linear_cka", "debiased_linear_cka", "gbs_dense", "gbs_knn")
"""Similarity metrics computed from what each layer leaves behind (Gram matrices, kNN graphs)."""

_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
_GRAMS_HELD = 8  # N x N float64 matrices alive at once in the similarity step (two layers' G, Kc, K~, S)
_CHUNK_COLUMNS = 2048  # float32 products over this many features, summed in float64
Progress = Callable[[int, int, str], None]


def parse_bytes(text: str | int) -> int:
    """A size such as ``"4G"``, ``"4GB"``, ``"4GiB"``, ``"512M"`` or ``"3e9"`` in bytes (K, M, G, T are powers of 1024).

    Raises
    ------
    ValueError
        Not a positive size.

    Examples
    --------
    >>> parse_bytes("1.5G"), parse_bytes("512MiB"), parse_bytes("3e9")
    (1610612736, 536870912, 3000000000)
    """
    import re

    if isinstance(text, (int, np.integer)) and not isinstance(text, bool):
        value = int(text)
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kmgt]?)(?:i?b)?\s*", str(text).lower())
        if match is None:
            raise ValueError(f"memory size {text!r} is not a size; write e.g. 4G, 512M or 3e9 (bytes)")
        number = float(match.group(1)) * _UNITS[match.group(2)]
        if not number < 2**62:
            raise ValueError(f"memory size {text!r} is too large; write e.g. 4G, 512M or 3e9 (bytes)")
        value = int(number)
    if value <= 0:
        raise ValueError(f"memory size {text!r} must be positive")
    return value


def format_bytes(n: float) -> str:
    """``n`` bytes in words: "3.2 GiB", "812 MiB"."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}" if n < 100 * size else f"{n / size:.0f} {unit}"
    return f"{int(n)} B"


def default_memory_budget() -> int:
    """``$GBS_MEMORY_BUDGET`` if set, else half the memory the machine has available now (at least 256 MiB)."""
    if os.environ.get("GBS_MEMORY_BUDGET"):
        return parse_bytes(os.environ["GBS_MEMORY_BUDGET"])
    import psutil

    return max(2**28, int(psutil.virtual_memory().available // 2))


@dataclass(frozen=True)
class LayerGroup:
    """Layers extracted in one forward pass: their names (depth order), their features' bytes, and whether the group
    is one layer larger than the budget, streamed through a scratch file."""

    layers: tuple[str, ...]
    bytes: int
    streamed: bool = False


def layer_sizes(loaded: LoadedModel, data: Dataset, layers: Sequence[str], *, pool: bool = False) -> dict[str, int]:
    """Features per sample of each of ``layers``, in depth order, from a dry run on two samples (nothing extracted)."""
    infos = {i.name: i for i in list_layers(loaded.model, data.images[:2])}
    unknown = [n for n in layers if n not in infos]
    if unknown:
        raise ValueError(f"layer(s) {unknown} produce no tensor output in this model; see list_layers for valid names")
    wanted = set(layers)
    return {n: (i.output_shape[0] if pool and len(i.output_shape) == 3 else i.n_features)
            for n, i in infos.items() if n in wanted}


def plan_layer_groups(sizes: Mapping[str, int], n_samples: int, budget: int) -> list[LayerGroup]:
    """Which layers (of ``sizes``, features per sample, in depth order) are held in memory and which streamed to disk
    during the one forward pass: the smallest layers are held while their float32 features for ``n_samples`` fit
    ``budget`` bytes together; every other layer is a streamed group of its own. The held group comes first (its
    layers in depth order; absent when none fits), then the streamed layers in depth order.

    Examples
    --------
    >>> plan_layer_groups({"a": 10, "b": 10, "c": 100}, 10, 1000)  # 400 + 400 bytes fit; c holds 4,000
    [LayerGroup(layers=('a', 'b'), bytes=800, streamed=False), LayerGroup(layers=('c',), bytes=4000, streamed=True)]
    """
    need = {name: int(d) * int(n_samples) * 4 for name, d in sizes.items()}
    held: set[str] = set()
    room = int(budget)
    for name in sorted(need, key=lambda n: need[n]):  # smallest first: as many layers as possible stay in memory
        if need[name] > room:
            break
        held.add(name)
        room -= need[name]
    groups = [LayerGroup(tuple(n for n in need if n in held), sum(need[n] for n in held))] if held else []
    return groups + [LayerGroup((n,), need[n], streamed=True) for n in need if n not in held]


def _accumulate(G: torch.Tensor, A: torch.Tensor, B: torch.Tensor) -> None:
    for c in range(0, A.shape[1], _CHUNK_COLUMNS):
        G += (A[:, c:c + _CHUNK_COLUMNS] @ B[:, c:c + _CHUNK_COLUMNS].T).to(torch.float64)


def gram_matrix(X: np.ndarray | torch.Tensor, *, device: str | torch.device = "cpu") -> np.ndarray:
    """``G = X X^T`` (n_samples, n_samples), float64, from float32 products over chunks of features summed in float64
    (no float64 copy of ``X``)."""
    Xt = torch.as_tensor(np.asarray(X, dtype=np.float32) if not isinstance(X, torch.Tensor) else X,
                         dtype=torch.float32).to(device)
    G = torch.zeros((len(Xt), len(Xt)), dtype=torch.float64, device=device)
    _accumulate(G, Xt, Xt)
    return G.cpu().numpy()


def _streamed_gram(path: Path, n: int, d: int, block_rows: int, device, progress: Callable[[str], None]) -> np.ndarray:
    """The Gram matrix of an (n, d) float32 file of rows, from blocks of ``block_rows`` rows read back (two blocks
    held at once)."""
    G = torch.zeros((n, n), dtype=torch.float64, device=device)
    starts = list(range(0, n, block_rows))

    def read(start: int) -> torch.Tensor:
        rows = min(block_rows, n - start)
        with open(path, "rb") as f:
            f.seek(start * d * 4)
            block = np.fromfile(f, dtype=np.float32, count=rows * d).reshape(rows, d)
        return torch.from_numpy(block).to(device)

    pairs, done = len(starts) * (len(starts) + 1) // 2, 0
    for i, a in enumerate(starts):
        Xa = read(a)
        for b in starts[i:]:
            Xb = Xa if b == a else read(b)
            block = torch.zeros((len(Xa), len(Xb)), dtype=torch.float64, device=device)
            _accumulate(block, Xa, Xb)
            G[a:a + len(Xa), b:b + len(Xb)] = block
            G[b:b + len(Xb), a:a + len(Xa)] = block.T
            del Xb
            done += 1
            if done == 1 or done == pairs or (10 * done) // pairs != (10 * (done - 1)) // pairs:
                progress(f"Gram matrix from blocks of rows: {done}/{pairs}")
        del Xa
    return G.cpu().numpy()


def _cosines(G: np.ndarray) -> torch.Tensor:
    norms = torch.from_numpy(np.sqrt(np.clip(np.diag(G), 0.0, None))).clamp_min(NORM_FLOOR)
    return torch.from_numpy(G) / norms[:, None] / norms[None, :]


def knn_graph_from_gram(G: np.ndarray, k: int) -> sp.csr_array:
    """The cosine kNN graph of :func:`~gbs_core.graphs.knn_graph` (symmetrised ``(D + D^T) / 2``, float64 cosine
    weights, ties to the lower column index, no zero edges) from the samples' Gram matrix ``G = X X^T`` instead of
    their features. The neighbours are searched in float32 as there; a choice between two neighbours within ~1e-6 of
    each other can differ from the features' search."""
    n = G.shape[0]
    S = _cosines(G)
    search = S.to(torch.float32)
    search.fill_diagonal_(-torch.inf)
    cols = _topk_stable(search, k)
    weights = torch.gather(S, 1, cols)
    rows = np.repeat(np.arange(n, dtype=np.int64), k)
    D = sp.csr_array((weights.numpy().ravel(), (rows, cols.numpy().ravel())), shape=(n, n), dtype=np.float64)
    A = ((D + D.T) * 0.5).tocsr()
    A.eliminate_zeros()
    A.sort_indices()
    return A


@dataclass
class ModelAnalysis:
    """What :func:`analyze_model` computed for one model on one sample set.

    ``curve``: layer -> Q per batch (as :func:`~gbs_core.analysis.modularity_by_layer`); ``motifs``: the table of
    :func:`~gbs_core.analysis.motifs_by_layer`; ``matrices``: metric -> (L, L) similarity matrix; ``groups``: the layer
    groups extracted (empty when everything came from the cache); ``feature_bytes``: the requested features' size;
    ``budget``: the memory budget; ``notes``: what a user should know about how it was computed.
    """

    layers: list[str]
    labels: np.ndarray
    predictions: np.ndarray | None
    curve: dict[str, np.ndarray]
    motifs: pd.DataFrame
    matrices: dict[str, np.ndarray]
    groups: list[LayerGroup] = field(default_factory=list)
    feature_bytes: int = 0
    budget: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def bounded(self) -> bool:
        return len(self.groups) > 1 or any(g.streamed for g in self.groups)


class _Keys:
    """The cache keys of the in-memory path (``FeatureSet.key``), without features."""

    def __init__(self, model_id: str, dataset_id: str, pool: bool, layers: Sequence[str], knn: str = "exact"):
        self.model_id, self.dataset_id, self.pool, self.layers = model_id, dataset_id, pool, list(layers)
        # the entry FeatureSet.key adds for an approximate neighbour search (none for the exact one)
        self.knn = {"knn": "approx"} if knn == "approx" else {}

    def key(self, kind: str, **params) -> dict:
        return {"kind": kind, "model": self.model_id, "data": self.dataset_id, "pool": self.pool, **params}

    def modularity(self, layer, k, n_batches, seed, resolution) -> dict:
        return self.key("modularity", layer=layer, k=int(k), n_batches=int(n_batches), seed=int(seed),
                        resolution=float(resolution), **self.knn)

    def motifs(self, layer, k) -> dict:
        return self.key("motifs", layer=layer, k=int(k), **self.knn)

    def similarity(self, metric: str) -> dict:
        features = self.key("features", layers=self.layers)
        key = {"kind": "similarity", "metric": metric, "params": {}, "a": features, "b": features}
        if metric == "minibatch_cka":
            key["batching"] = "equal"
        return key


def _all_cached(cache: DiskCache | None, keys: _Keys, *, k, n_batches, seed, resolution, motif_k, metrics,
                predictions_key) -> tuple[dict, dict, dict, np.ndarray | None] | None:
    if cache is None:
        return None
    curve, counts, matrices = {}, {}, {}
    for layer in keys.layers:
        q = cache.get(keys.modularity(layer, k, n_batches, seed, resolution))
        c = cache.get(keys.motifs(layer, motif_k))
        if q is None or c is None:
            return None
        curve[layer], counts[layer] = q[0]["q"], c[0]["counts"]
    for m in metrics:
        hit = cache.get(keys.similarity(m))
        if hit is None:
            return None
        matrices[m] = hit[0]["matrix"]
    hit = cache.get(predictions_key)
    return curve, counts, matrices, (hit[0]["predictions"] if hit is not None else None)


def analyze_model(
    loaded: LoadedModel,
    data: Dataset,
    layers: Sequence[str] | None = None,
    *,
    pool: bool = False,
    k: int = 3,
    n_batches: int = 1,
    seed: int = 0,
    resolution: float = 1.0,
    motif_k: int = 5,
    metrics: Sequence[str] = ("linear_cka", "gbs_dense"),
    knn_method: str = "exact",
    memory_budget: int | None = None,
    cache: DiskCache | None = None,
    device: str | torch.device = "cpu",
    scratch_dir: str | Path | None = None,
    progress: Progress | None = None,
    require_cached: bool = False,
) -> ModelAnalysis:
    """The command line's analysis of one model (modularity curve, motif counts, similarity matrices) within a memory
    budget; see the module docstring for how.

    Parameters
    ----------
    loaded, data, layers, pool :
        As :func:`~gbs_core.analysis.feature_set`.
    k, n_batches, seed, resolution :
        As :func:`~gbs_core.analysis.modularity_by_layer`.
    motif_k : int
        Neighbours of the motif kNN graph.
    metrics : sequence of str
        Similarity metrics; over the budget only :data:`BOUNDED_METRICS`.
    knn_method : {"exact", "approx", "auto"}
        Neighbour search of the modularity and motif graphs (:func:`~gbs_core.graphs.knn_graph`); the approximate one
        needs the features in memory (within the budget). The GBS kNN metric always searches exactly.
    memory_budget : int, optional
        Bytes of features (and Gram matrices) held at once; default :func:`default_memory_budget`.
    scratch_dir : path, optional
        Where streamed layers and Gram matrices are written while the analysis runs (a temporary folder inside it,
        removed at the end, also on error); default the system's temporary folder.
    progress : callable(done, total, message), optional
    require_cached : bool
        Compute nothing: ``LookupError`` unless every result is in ``cache`` (a cluster run asks this before it sends
        a model to a worker).

    Returns
    -------
    ModelAnalysis

    Raises
    ------
    ValueError
        No or unknown layers; over the budget, a metric outside :data:`BOUNDED_METRICS`, or Gram matrices of
        ``n_samples`` that do not fit the budget.
    """
    budget = default_memory_budget() if memory_budget is None else int(memory_budget)
    layers = list(layers) if layers is not None else loaded.default_layers()
    if not layers:
        raise ValueError("no layers selected; pick at least one")
    say = progress or (lambda *_: None)
    sizes = layer_sizes(loaded, data, layers, pool=pool)
    layers = list(sizes)
    n = len(data)
    total = sum(sizes.values()) * n * 4
    knn = knn_method_used(n, knn_method)
    knn_note = [f"kNN graphs from approximate neighbours (NN-descent, {APPROX_NEIGHBORS} candidates per sample; "
                "exact edge weights)"] if knn == "approx" else []
    keys = _Keys(loaded.model_id, data.dataset_id, pool, layers, knn)
    pred_key = _key(loaded.model_id, data, "__predictions__", False)
    settings = dict(k=k, n_batches=n_batches, seed=seed, resolution=resolution)
    found = _all_cached(cache, keys, motif_k=motif_k, metrics=metrics, predictions_key=pred_key, **settings)
    if found is not None:
        curve, counts, matrices, predictions = found
        say(1, 1, "all results read from the cache")
        return ModelAnalysis(layers, data.labels, _fitting(loaded, data, predictions), curve,
                             analysis.motif_table(counts), matrices, [], total, budget,
                             ["every result was in the cache: nothing was extracted", *knn_note])
    if require_cached:
        raise LookupError(f"{loaded.label}: not every result is in the cache")
    if total <= budget:
        result = _in_memory(loaded, data, layers, pool, motif_k, metrics, cache, device, say, total, budget,
                            knn_method=knn_method, **settings)
        result.notes.extend(knn_note)
        return result
    if knn == "approx":
        raise ValueError(
            f"the features of these {len(layers)} layers take {format_bytes(total)} for {n} samples, over the memory "
            f"budget of {format_bytes(budget)}, and the approximate kNN search needs a layer's features in memory: "
            "use the exact search, fewer layers, --pool, or a larger --memory-budget")
    unsupported = [m for m in metrics if m not in BOUNDED_METRICS]
    if unsupported:
        raise ValueError(
            f"the features of these {len(layers)} layers take {format_bytes(total)} for {n} samples, over the memory "
            f"budget of {format_bytes(budget)}; {', '.join(unsupported)} need(s) the raw features of two layers at "
            f"once. Use {', '.join(BOUNDED_METRICS)}, fewer samples or layers, --pool, or a larger --memory-budget")
    gram_bytes = n * n * 8
    if _GRAMS_HELD * gram_bytes > budget // 2:
        raise ValueError(
            f"{n} samples make {format_bytes(gram_bytes)} Gram matrices; the similarity matrices hold up to "
            f"{_GRAMS_HELD} of them at once, over half the memory budget of {format_bytes(budget)}: use fewer samples "
            "or a larger --memory-budget")
    groups = plan_layer_groups(sizes, n, budget - _GRAMS_HELD * gram_bytes)
    scratch = Path(tempfile.mkdtemp(prefix="gbs-bounded-", dir=scratch_dir))
    try:
        return _in_groups(loaded, data, layers, groups, sizes, pool, motif_k, metrics, cache, device, scratch, say,
                          total, budget, **settings)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def analyze_model_task(loaded: LoadedModel, data: Dataset, layers: Sequence[str] | None = None, *,
                       max_cache_bytes: int = 2 * 1024**3, **options) -> tuple[ModelAnalysis, MemoryCache]:
    """One Dask task of a cluster run: :func:`analyze_model` through a :class:`~gbs_core.cache.MemoryCache` (no disk
    on the worker), returned with what it cached, for the client to write into its disk cache
    (``MemoryCache.write_into``). ``options`` are :func:`analyze_model`'s keywords but ``cache``."""
    memory = MemoryCache(max_bytes=max_cache_bytes)
    return analyze_model(loaded, data, layers, cache=memory, **options), memory


def _fitting(loaded: LoadedModel, data: Dataset, predictions: np.ndarray | None) -> np.ndarray | None:
    return predictions if loaded.head_fits(data) else None


def _in_memory(loaded, data, layers, pool, motif_k, metrics, cache, device, say, total, budget, *, k, n_batches, seed,
               resolution, knn_method) -> ModelAnalysis:
    said = []

    def extracting(done: int, of: int) -> None:
        say(done, of, "" if said else "extracting features")
        said.append(done)

    fs = analysis.feature_set(loaded, data, layers, pool=pool, cache=cache, device=device, progress=extracting)
    curve = analysis.modularity_by_layer(fs, k=k, n_batches=n_batches, seed=seed, resolution=resolution,
                                         knn_method=knn_method, cache=cache, progress=say)
    motifs = analysis.motifs_by_layer(fs, k=motif_k, knn_method=knn_method, cache=cache, progress=say)
    matrices = {m: analysis.layer_similarity(fs, metric=m, cache=cache, progress=say) for m in metrics}
    return ModelAnalysis(fs.layers, fs.labels, fs.predictions, curve, motifs, matrices,
                         [LayerGroup(tuple(fs.layers), total)], total, budget)


def _put(cache: DiskCache | None, key: dict, arrays: dict) -> None:
    if cache is not None:
        cache.put(key, arrays)


def _in_groups(loaded, data, layers, groups, sizes, pool, motif_k, metrics, cache, device, scratch, say, total,
               budget, *, k, n_batches, seed, resolution) -> ModelAnalysis:
    """One forward pass: the held group's layers fill arrays, the streamed layers are appended to scratch files; then
    each layer is reduced to its Gram matrix and everything else is computed from that."""
    n = len(data)
    keys = _Keys(loaded.model_id, data.dataset_id, pool, layers)
    gram_paths: dict[str, Path] = {}
    graphs: dict[str, sp.csr_array] = {}  # the kNN-GBS graphs (N * k each)
    curve: dict[str, np.ndarray] = {}
    counts: dict[str, np.ndarray] = {}
    gbs_k = _gbs.DEFAULT_KNN_K
    codes = check_labels(data.labels, n)
    batches = disjoint_batches(codes, n_batches, seed=seed) if n_batches != 1 else [np.arange(n)]
    streamed = [g.layers[0] for g in groups if g.streamed]
    held = {name: np.empty((n, sizes[name]), dtype=np.float32) for g in groups if not g.streamed for name in g.layers}
    free = shutil.disk_usage(scratch).free
    spill = sum(sizes[name] for name in streamed) * n * 4 + len(layers) * n * n * 8
    if spill > free:
        raise ValueError(f"the layers over the memory budget need {format_bytes(spill)} of scratch space in "
                         f"{scratch.parent} and {format_bytes(free)} are free: free some, choose another folder "
                         "(--scratch-dir), or use fewer samples or layers")
    # a batch's activations: a few times its hooked outputs, kept to about a sixteenth of the budget
    batch_size = int(max(1, min(256, budget // (16 * 4 * sum(sizes.values())))))
    steps = n + len(layers) + 1  # units of work: a sample extracted, a layer reduced, the similarity step
    files = {name: open(scratch / f"{i}.f32", "wb") for i, name in enumerate(streamed)}
    preds = []
    try:
        for batch in stream_activations(loaded.model, data, layers, batch_size=batch_size, device=device, pool=pool):
            for name, rows in batch.features.items():
                if name in files:
                    files[name].write(np.ascontiguousarray(rows).tobytes())
                else:
                    held[name][batch.start:batch.stop] = rows
            if batch.predictions is not None:
                preds.append(batch.predictions)
            say(batch.stop, steps, f"extracting {len(layers)} layers ({len(held)} in memory, {len(streamed)} "
                "streamed to disk)" if batch.start == 0 else "")
    finally:
        for f in files.values():
            f.close()
    predictions = np.concatenate(preds) if preds and sum(map(len, preds)) == n else None
    if predictions is not None:
        _put(cache, _key(loaded.model_id, data, "__predictions__", False), {"predictions": predictions})
    done = n
    for name in [n_ for n_ in layers if n_ in held] + streamed:  # the held layers first: their memory is freed
        if name in held:
            G = gram_matrix(held.pop(name), device=device)
        else:
            path = scratch / f"{streamed.index(name)}.f32"
            room = budget - sum(a.nbytes for a in held.values()) - _GRAMS_HELD * n * n * 8
            block_rows = max(1, min(n, room // (3 * sizes[name] * 4)))
            G = _streamed_gram(path, n, sizes[name], block_rows, device,
                               lambda msg, name=name, at=done: say(at, steps, f"{name}: {msg}"))
            path.unlink()
        q, c, gbs_graph = _from_gram(G, codes, batches, k=k, motif_k=motif_k, gbs_k=gbs_k, seed=seed,
                                     resolution=resolution, name=name, keys=keys, cache=cache)
        curve[name], counts[name] = q, c
        if "gbs_knn" in metrics:
            graphs[name] = gbs_graph
        if metrics:
            gram_paths[name] = scratch / f"gram-{len(gram_paths)}.npy"
            np.save(gram_paths[name], G)
        del G
        done += 1
        say(done, steps, f"{name}: kNN graphs, modularity, motifs done")
    matrices = {}
    if metrics:
        say(done, steps, f"similarity over {len(layers)} x {len(layers)} layers")
        matrices = _matrices_from_grams(layers, gram_paths, graphs, metrics)
        for m, M in matrices.items():
            _put(cache, keys.similarity(m), {"matrix": M})
    say(steps, steps, "done")
    notes = [f"the features of these {len(layers)} layers take {format_bytes(total)} for {n} samples, over the memory "
             f"budget of {format_bytes(budget)}: one forward pass, {len(layers) - len(streamed)} layer(s) held in "
             f"memory and {len(streamed)} streamed through disk; every layer reduced to its Gram matrix"]
    curve = {name: curve[name] for name in layers}
    counts = {name: counts[name] for name in layers}
    return ModelAnalysis(layers, data.labels, _fitting(loaded, data, predictions), curve,
                         analysis.motif_table(counts), matrices, list(groups), total, budget, notes)


def _from_gram(G, codes, batches, *, k, motif_k, gbs_k, seed, resolution, name, keys: _Keys, cache):
    """Modularity per batch, motif counts and the kNN-GBS graph of a layer, from its Gram matrix, cached under the
    in-memory path's keys."""
    import warnings

    q = np.empty(len(batches))
    for b, idx in enumerate(batches):
        A = knn_graph_from_gram(G if len(batches) == 1 else G[np.ix_(idx, idx)], k).tocoo()
        try:
            q[b] = _modularity_parts(A.row.astype(np.int64), A.col.astype(np.int64), A.data, codes[idx], resolution)
        except ValueError:
            warnings.warn(f"layer {name!r}: the kNN graph has no edges; its modularity is NaN", RuntimeWarning,
                          stacklevel=2)
            q[b] = np.nan
    graphs = {kk: knn_graph_from_gram(G, kk) for kk in {k, motif_k, gbs_k}}
    for kk, A in graphs.items():
        _put(cache, keys.key("knn_graph", layer=name, k=int(kk)),
             {"data": A.data, "indices": A.indices, "indptr": A.indptr, "shape": np.array(A.shape)})
    counts = np.asarray(list(triangle_motifs(graphs[motif_k], codes)), dtype=np.int64)
    _put(cache, keys.modularity(name, k, len(batches), seed, resolution), {"q": q})
    _put(cache, keys.motifs(name, motif_k), {"counts": counts})
    return q, counts, graphs[gbs_k]


def _matrices_from_grams(layers: list[str], paths: Mapping[str, Path], graphs: Mapping[str, sp.csr_array],
                         metrics: Sequence[str]) -> dict[str, np.ndarray]:
    """Similarity matrices from each layer's Gram matrix (read back a pair at a time) and kNN graph."""
    L = len(layers)
    wanted = set(metrics)
    cross = {m: np.zeros((L, L)) for m in wanted & {"linear_cka", "debiased_linear_cka", "gbs_dense"}}
    constant = np.zeros(L, dtype=bool)

    def prepare(i: int) -> dict:
        G = torch.from_numpy(np.load(paths[layers[i]]))
        Kc = _cka._center_gram(G)
        scale = float(torch.trace(G))
        constant[i] = scale == 0.0 or float(torch.trace(Kc)) ** 0.5 <= _cka._CONSTANT_RTOL * scale ** 0.5
        out = {"Kc": Kc, "n": G.shape[0]}
        if "debiased_linear_cka" in wanted:
            out["song"] = _cka._hsic_song_parts(Kc)
        if "gbs_dense" in wanted:
            S = _cosines(G.numpy())
            S.fill_diagonal_(0.0)
            out["S"] = S
        return out

    for i in range(L if cross else 0):
        a = prepare(i)  # two layers' matrices at most are alive
        for j in range(i, L):
            b = a if j == i else prepare(j)
            if "linear_cka" in cross:
                cross["linear_cka"][i, j] = cross["linear_cka"][j, i] = float((a["Kc"] * b["Kc"]).sum())
            if "debiased_linear_cka" in cross:
                (Ka, sa, ua), (Kb, sb, ub) = a["song"], b["song"]
                cross["debiased_linear_cka"][i, j] = cross["debiased_linear_cka"][j, i] = float(
                    _cka._hsic_song_from_parts((Ka * Kb).sum(), sa, sb, ua @ ub, a["n"]))
            if "gbs_dense" in cross:
                Sa, Sb = a["S"], b["S"]
                cos = _gbs._row_cosines((Sa * Sb).sum(dim=1), (Sa * Sa).sum(dim=1), (Sb * Sb).sum(dim=1))
                cross["gbs_dense"][i, j] = cross["gbs_dense"][j, i] = float(cos.mean())
            del b
    out = {}
    for m in cross:
        if m == "gbs_dense":
            out[m] = cross[m]
            continue
        diag = np.diag(cross[m]).copy()
        out[m] = _normalise_matrix(torch.from_numpy(cross[m]), torch.from_numpy(diag), torch.from_numpy(diag),
                                   constant, constant)
    if "gbs_knn" in wanted:
        out["gbs_knn"] = np.array([[_gbs._sparse_row_gbs(graphs[a], graphs[b]) for b in layers] for a in layers])
    return {m: out[m] for m in metrics}
