"""Streamlit-cached wrappers around the core: one function per result the pages show.

Two cache levels: the core's :class:`~gbs_core.cache.DiskCache` (survives restarts, shared with the command line) and
Streamlit's in-memory caches on top, so a rerun, a page switch or a slider moved back to a layer already seen costs
nothing. Models, data sets and feature sets are shared objects (``st.cache_resource``: never mutate them); results are
small arrays and tables (``st.cache_data``), keyed on the feature set's identity (``fs_key``), never on its arrays.

Long steps draw a progress bar with what is being done; it is created inside the cached function and emptied at its
end, so a cache hit (which replays the function's elements) shows nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import streamlit as st
import torch

from dashboard import background, graph_view
from dashboard.errors import DashboardError
from gbs_core import analysis
from gbs_core.activations import list_layers, load_saved_activations
from gbs_core.cache import DiskCache
from gbs_core.data import (
    BUNDLED_SOURCES,
    DEFAULT_SOURCE,
    DIGITS_SIZE,
    Dataset,
    bundled_dataset_id,
    load_bundled,
    load_cifar,
    load_image_folder,
)
from gbs_core.pipeline import AdapterChoice, LoadedModel, ModelSpec
from gbs_core.pipeline import load_model as _core_load_model
from gbs_core.sources import check_data_root, clamp_samples
from gbs_core.sources import content_signature as _content_signature
from gbs_core.zoo import list_zoo
from gbs_core.zoo.registry import TRAINING_DATA

__all__ = [
    "disk_cache",
    "zoo_entries",
    "sample_count",
    "model_info",
    "bundled",
    "full_dataset",
    "dataset",
    "load_model",
    "layer_options",
    "saved_layers",
    "feature_set",
    "feature_sets",
    "fs_key",
    "modularity",
    "modularity_table",
    "motifs",
    "similarity",
    "embedding",
    "knn_graph",
    "KNN_SEARCH_NOTE",
    "graph_html",
    "constant_layers",
    "check_layers",
    "accuracy",
    "embedding_table",
    "CKA_VARIANTS",
    "GBS_VARIANTS",
    "cka_metric",
    "gbs_metric",
    "matrix_table",
]

FsKey = tuple[str, str, bool, tuple[str, ...]]


@contextmanager
def _progress(title: str) -> Iterator[Callable[..., None]]:
    """A progress bar for a long step; the callback takes ``(done, total[, what])``. Removed when the step ends."""
    slot = st.empty()
    shown = [-1.0]

    def update(done: int, total: int, what: str = "") -> None:
        frac = min(done / total, 1.0) if total else 1.0
        if frac - shown[0] >= 0.05 or frac >= 1.0:  # at most ~20 updates: they are replayed on cache hits
            shown[0] = frac
            slot.progress(frac, text=f"{title}: {what}" if what else title)

    update(0, 1)
    try:
        yield update
    finally:
        slot.empty()


@st.cache_resource(show_spinner=False)
def disk_cache() -> DiskCache:
    """The core's disk cache in ``$GBS_CACHE_DIR`` (or its default folder)."""
    return DiskCache()


@st.cache_data(show_spinner=False)
def zoo_entries() -> list:
    return list_zoo()


# --- data ---------------------------------------------------------------------------------------------------------


@st.cache_resource(show_spinner=False, max_entries=4)
def bundled(source: str = DEFAULT_SOURCE, split: str = "test") -> Dataset:
    """``load_bundled(source, split)`` (the digits in noise or the plain digits) through the disk cache: after a
    restart this skips importing scikit-learn (about 1 s of the first page), which the fixed train/test split needs,
    and the noisy transform."""
    key = {
        "kind": "dataset",
        "source": source,
        "split": split,
        "size": DIGITS_SIZE,
        "scikit-learn": version("scikit-learn"),
        "dataset_id": bundled_dataset_id(source, split),  # names the noisy construction's version
    }

    def compute():
        data = load_bundled(source, split)
        meta = {"class_names": list(data.class_names), "dataset_id": data.dataset_id}
        return {"images": data.images.numpy(), "labels": data.labels}, meta

    arrays, meta = disk_cache().get_or_compute(key, compute)
    return Dataset(
        images=torch.from_numpy(arrays["images"]),
        labels=arrays["labels"],
        class_names=tuple(meta["class_names"]),
        dataset_id=meta["dataset_id"],
    )


@st.cache_data(ttl=2, show_spinner=False, max_entries=16)
def content_signature(source: str, path: str) -> str:
    """:func:`gbs_core.sources.content_signature`, memoised for 2 s: one script run asks for it from the sidebar,
    the layer lists and every feature set, and it walks the whole folder; a change is still seen at the next run."""
    return _content_signature(source, path)


def full_dataset(source: str, path: str) -> Dataset:
    """Every sample of a source, before subsampling; re-read when the folder or file changes (keyed on its
    :func:`~gbs_core.sources.content_signature`, not only its path)."""
    return _full_dataset(source, path, content_signature(source, path))


@st.cache_resource(show_spinner="Loading data...", max_entries=4)
def _full_dataset(source: str, path: str, signature: str) -> Dataset:
    if source in BUNDLED_SOURCES:
        return bundled(source, "test")
    if not path:
        raise DashboardError("Enter the **Path** of the data folder in the sidebar.")
    check_data_root(path)
    if source == "image_folder":
        return load_image_folder(path)
    if source in ("cifar10", "cifar100"):
        return load_cifar(path, variant=10 if source == "cifar10" else 100)
    raise DashboardError(f"unknown data source {source!r}")


def dataset(source: str, path: str, n: int, seed: int) -> Dataset:
    """The stratified, seeded subsample of N samples the analyses use (all samples when the data has fewer)."""
    return _dataset(source, path, n, seed, content_signature(source, path))


@st.cache_resource(show_spinner=False, max_entries=8)
def _dataset(source: str, path: str, n: int, seed: int, signature: str) -> Dataset:
    return clamp_samples(full_dataset(source, path), n, seed=seed)[0]


def sample_count(source: str, path: str, n: int) -> tuple[int, str]:
    """The N the analyses really use and a note when it is less than asked (("", n) when the data cannot load: the
    pages report that)."""
    try:
        total = len(full_dataset(source, path))
    except Exception:  # noqa: BLE001 - the pages show the data error
        return n, ""
    if n <= total:
        return n, ""
    return total, f"N = {n} asked, but the data has {total} samples: all {total} are used."


def _saved(path: str):
    return _saved_at(path, content_signature("npz", path))


@st.cache_resource(show_spinner="Reading saved activations...", max_entries=2)
def _saved_at(path: str, signature: str):
    check_data_root(path)
    return load_saved_activations(path)


def saved_layers(path: str) -> list[str]:
    return list(_saved(path)[0])


# --- models and features --------------------------------------------------------------------------------------------


@st.cache_resource(show_spinner="Loading model...", max_entries=8)
def load_model(spec: ModelSpec, data_shape: tuple[int, int, int] = (1, 16, 16), num_classes: int = 10,
               adapter: AdapterChoice | None = None) -> LoadedModel:
    """The core's ``load_model`` for data of ``data_shape`` with ``num_classes`` classes, memoised."""
    return _core_load_model(spec, data_shape=tuple(data_shape), num_classes=num_classes, adapter=adapter)


def _model_for(spec: ModelSpec, data: Dataset, adapter: AdapterChoice | None = None) -> LoadedModel:
    return load_model(spec, tuple(data.input_shape), data.n_classes, adapter)


def _geometry_source(source: str, path: str) -> Dataset:
    """The data whose image shape and class count a model must fit: the workspace's, or the digits if it fails to load
    (the pages then report the data error)."""
    try:
        return full_dataset(source, path)
    except Exception:  # noqa: BLE001
        return bundled(DEFAULT_SOURCE, "test")


def model_for_data(spec: ModelSpec, source: str, path: str, adapter: AdapterChoice | None = None) -> LoadedModel:
    """Load ``spec`` shaped for the workspace's data (channels, image size, classes); raises when it does not load."""
    return _model_for(spec, _geometry_source(source, path), adapter)


def model_info(spec: ModelSpec, source: str, path: str, adapter: AdapterChoice | None = None) -> str:
    """What the sidebar says about a model on the workspace's data: its input adapter and its notes (e.g. an unused
    head), in one line ("" when there is nothing to say)."""
    loaded = model_for_data(spec, source, path, adapter)
    parts = ([f"input: {loaded.adapter}"] if loaded.adapter else []) + list(loaded.notes)
    return "; ".join(parts)


@st.cache_data(show_spinner=False, max_entries=32)
def layer_options(spec: ModelSpec, source: str, path: str, adapter: AdapterChoice | None = None
                  ) -> tuple[list[str], list[str]]:
    """All selectable layers of a model (depth order; not a classifier head that does not predict the data's
    classes) and its default ones."""
    data = _geometry_source(source, path)
    loaded = _model_for(spec, data, adapter)
    unused = None if loaded.head_fits(data) else loaded.head
    names = [info.name for info in list_layers(loaded.model, data.images[:2]) if info.name != unused]
    return names, loaded.default_layers()


@st.cache_resource(show_spinner=False, max_entries=8)
def feature_set(
    source: str, path: str, n: int, seed: int, spec: ModelSpec | None, layers: tuple[str, ...] | None, pool: bool,
    adapter: AdapterChoice | None = None, signature: str = "",
) -> analysis.FeatureSet:
    """One model's features on the workspace's samples (``spec=None``: the saved activations at ``path``);
    ``signature`` (:func:`~gbs_core.sources.content_signature`) keys it on what is at ``path`` now."""
    if spec is None:
        features, labels, predictions, class_names = _saved(path)
        if layers is not None:
            features = {name: features[name] for name in layers}
        return analysis.feature_set_from_arrays(
            Path(path).name, features, labels, predictions=predictions, class_names=class_names
        )
    data = dataset(source, path, n, seed)
    loaded = _model_for(spec, data, adapter)
    _check_memory(loaded, data, layers, pool)
    with _progress(f"Extracting activations of {spec.label} ({len(data)} samples)") as bar:
        return analysis.feature_set(loaded, data, layers, pool=pool, cache=disk_cache(), progress=bar)


def _check_memory(loaded, data, layers: tuple[str, ...] | None, pool: bool) -> None:
    """Say before any extraction when the features will not fit the memory budget (a warning) or the memory there is
    (a DashboardError, nothing is extracted), with what to change."""
    import psutil

    from gbs_core.bounded import default_memory_budget, format_bytes, layer_sizes

    chosen = list(layers) if layers is not None else loaded.default_layers()
    need = sum(layer_sizes(loaded, data, chosen, pool=pool).values()) * len(data) * 4
    budget = default_memory_budget()
    if need <= budget:
        return
    what = (f"The features of these {len(chosen)} layers of {loaded.label} take {format_bytes(need)} for "
            f"{len(data)} samples")
    fix = ("Lower **N**, pick fewer or later layers, or tick **Pool conv maps** in the sidebar; the command line's "
           "`python -m gbs_core analyze --memory-budget 2G` analyses them in bounded memory (layers in groups, the "
           "widest streamed through disk).")
    available = psutil.virtual_memory().available
    if need > 0.9 * available:
        raise DashboardError(f"{what}, more than the {format_bytes(available)} of memory available: nothing was "
                             f"extracted. {fix}")
    st.warning(f"{what}, over the memory budget of {format_bytes(budget)} (GBS_MEMORY_BUDGET, default half the "
               f"memory available); the analyses below hold copies of a layer at a time on top. {fix}",
               icon=":material/memory:")


def feature_sets(ws) -> list[analysis.FeatureSet]:
    """The feature sets of every model of a :class:`~dashboard.workspace.Workspace`, in its order."""
    if not ws.models:
        raise DashboardError(
            "No model selected: pick one under **Models** in the sidebar."
            if ws.data.source != "npz"
            else "Enter the **Path** of an .npz file in the sidebar."
        )
    d = ws.data
    sig = content_signature(d.source, d.path)
    return [feature_set(d.source, d.path, d.n, d.seed, m.spec, m.layers, ws.pool, ws.adapter, sig) for m in ws.models]


def fs_key(fs: analysis.FeatureSet) -> FsKey:
    """What identifies a feature set's content for Streamlit's caches."""
    return fs.model_id, fs.dataset_id, fs.pool, tuple(fs.layers)


@st.cache_data(show_spinner=False, max_entries=64)
def _constant_layers(_fs: analysis.FeatureSet, key: FsKey) -> list[str]:
    return [name for name, X in _fs.features.items() if not np.any(X != X[:1])]


def constant_layers(fs: analysis.FeatureSet) -> list[str]:
    """Layers whose output is the same for every sample: their graphs and similarities carry no information."""
    return _constant_layers(fs, fs_key(fs))


def check_layers(fs_list: list[analysis.FeatureSet]) -> None:
    """Warn about degenerate data (one class; :func:`~gbs_core.analysis.data_warnings`) and raise a DashboardError
    naming every constant layer, with what to change."""
    for fs in fs_list:
        for text in analysis.data_warnings(fs):
            st.warning(text[0].upper() + text[1:], icon=":material/warning:")
    bad = [(fs.name, layer) for fs in fs_list for layer in constant_layers(fs)]
    if bad:
        names = ", ".join(f"{layer!r} of {model}" for model, layer in bad)
        raise DashboardError(
            f"layer {names} gives the same output for every sample (constant features), so its sample graph and "
            "similarities are undefined. Deselect it under **Layers** in the sidebar."
        )


# --- analyses -------------------------------------------------------------------------------------------------------


@st.cache_data(show_spinner=False, max_entries=64)
def _modularity(_fs, key: FsKey, k: int, n_batches: int, seed: int) -> dict[str, np.ndarray]:
    with _progress(f"Modularity of {_fs.name} (k = {k})") as bar:
        return analysis.modularity_by_layer(_fs, k=k, n_batches=n_batches, seed=seed, cache=disk_cache(), progress=bar)


def modularity(fs, *, k: int, n_batches: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    """Q per layer (one value per batch), in depth order."""
    return _modularity(fs, fs_key(fs), int(k), int(n_batches), int(seed))


def modularity_table(fs, *, k: int, threshold: float, n_batches: int = 1, seed: int = 0) -> pd.DataFrame:
    """``analysis.modularity_table`` of one model, with a ``model`` column first."""
    table = analysis.modularity_table(modularity(fs, k=k, n_batches=n_batches, seed=seed), threshold=threshold)
    table.insert(0, "model", fs.name)
    return table


@st.cache_data(show_spinner=False, max_entries=64)
def _motifs(_fs, key: FsKey, k: int) -> pd.DataFrame:
    with _progress(f"Triangle motifs of {_fs.name} (k = {k})") as bar:
        table = analysis.motifs_by_layer(_fs, k=k, cache=disk_cache(), progress=bar)
    table.insert(0, "model", _fs.name)
    return table


def motifs(fs, *, k: int) -> pd.DataFrame:
    return _motifs(fs, fs_key(fs), int(k))


@st.cache_data(show_spinner=False, max_entries=64)
def _similarity(_a, _b, key_a: FsKey, key_b: FsKey | None, metric: str, params: tuple) -> np.ndarray:
    other = f" vs {_b.name}" if _b is not None else ""
    with _progress(f"{metric} of {_a.name}{other}") as bar:
        return analysis.layer_similarity(_a, _b, metric=metric, cache=disk_cache(), progress=bar, **dict(params))


def similarity(fs_a, fs_b=None, *, metric: str, **params) -> np.ndarray:
    """Layer x layer similarity (rows: layers of ``fs_a``; columns: of ``fs_b`` or ``fs_a``)."""
    return _similarity(
        fs_a, fs_b, fs_key(fs_a), None if fs_b is None else fs_key(fs_b), metric, tuple(sorted(params.items()))
    )


@st.cache_data(show_spinner=False, max_entries=256)
def _embedding(_fs, key: FsKey, layer: str, method: str, seed: int) -> np.ndarray:
    # one step with no inner progress to report: a spinner that names it, not a bar stuck at 0%
    with st.spinner(f"{method.upper()} of {layer}", show_time=True):
        return analysis.layer_embedding(_fs, layer, method=method, seed=seed, cache=disk_cache())


def embedding(fs, layer: str, *, method: str = "umap", seed: int = 0) -> np.ndarray:
    """2-D coordinates (n_samples, 2) of one layer."""
    return _embedding(fs, fs_key(fs), layer, method, int(seed))


# The dashboard's graphs come from the exact search: its sample counts (at most MAX_SAMPLES) lie below the crossover
# where the approximate one pays (gbs_core.graphs.APPROX_MIN_SAMPLES; tests/test_graphs_approx.py checks it).
KNN_SEARCH_NOTE = ("Neighbours come from an exact cosine search over all pairs of samples (the approximate search, "
                   "for 50,000 samples and more, is the command line's `analyze --knn approx`).")


@st.cache_data(show_spinner=False, max_entries=256)
def _knn_graph(_fs, key: FsKey, layer: str, k: int) -> sp.csr_array:
    return analysis.layer_knn_graph(_fs, layer, k=k, cache=disk_cache())


def knn_graph(fs, layer: str, *, k: int) -> sp.csr_array:
    return _knn_graph(fs, fs_key(fs), layer, int(k))


@st.cache_data(show_spinner=False, max_entries=128)
def _graph_html(_fs, key: FsKey, layer: str, k: int, max_nodes: int, seed: int) -> tuple[str, int]:
    with st.spinner(f"Laying out the kNN graph of {layer}", show_time=True):
        nodes, xy = analysis.layer_graph_layout(_fs, layer, k=k, max_nodes=max_nodes, seed=seed, cache=disk_cache())
        html = graph_view.graph_html(
            knn_graph(_fs, layer, k=k),
            _fs.labels,
            _fs.class_names,
            nodes=nodes,
            predictions=_fs.predictions,
            positions=xy,
            title=f"{_fs.name}: {layer} (k = {k})",
            seed=seed,
        )
    return html, len(nodes)


def graph_html(fs, layer: str, *, k: int, max_nodes: int = graph_view.MAX_NODES, seed: int = 0) -> tuple[str, int]:
    """Self-contained HTML of one layer's kNN graph, laid out (seeded), and the number of nodes drawn (at most
    ``max_nodes``)."""
    return _graph_html(fs, fs_key(fs), layer, int(k), int(max_nodes), int(seed))


def accuracy(fs) -> tuple[float | None, str]:
    """The model's accuracy and where it was measured: for a zoo model shown on its own training data, the recorded
    accuracy on the whole held-out split; otherwise on the N samples shown (e.g. a plain-digits model on the noisy
    digits) when its classifier predicts the data's classes, else (None, "not applicable: ...")."""
    zoo = {e.name: e for e in zoo_entries()}
    if fs.name in zoo and zoo[fs.name].data in TRAINING_DATA:
        own = bundled_dataset_id(TRAINING_DATA[zoo[fs.name].data].source, "test")
        if fs.dataset_id == own or fs.dataset_id.startswith(own + "/"):
            return zoo[fs.name].test_accuracy, "test split"
    if fs.predictions is None:
        return None, "not applicable: its head predicts other classes"
    return float(np.mean(fs.predictions == fs.labels)), f"{fs.n_samples} samples"


def embedding_table(fs, xy: np.ndarray) -> pd.DataFrame:
    """The scatter's numbers for CSV: sample index, x, y, true and predicted class."""
    names = np.asarray(fs.class_names, dtype=object)
    return pd.DataFrame(
        {
            "sample": np.arange(fs.n_samples),
            "x": xy[:, 0],
            "y": xy[:, 1],
            "true_class": names[fs.labels],
            "predicted_class": names[fs.predictions] if fs.predictions is not None else None,
        }
    )


CKA_VARIANTS = {
    "linear": "linear_cka",
    "RBF": "rbf_cka",
    "debiased linear": "debiased_linear_cka",
    "minibatch": "minibatch_cka",
}
GBS_VARIANTS = {"dense": "gbs_dense", "kNN": "gbs_knn"}


def cka_metric(variant: str, params: dict) -> tuple[str, dict]:
    """``layer_similarity`` metric name and keywords for a CKA variant of the page's selector."""
    metric = CKA_VARIANTS[variant]
    keep = {"rbf_cka": ("sigma_fraction",), "minibatch_cka": ("batch_size",)}.get(metric, ())
    return metric, {k: v for k, v in params.items() if k in keep}


def gbs_metric(variant: str, k: int) -> tuple[str, dict]:
    metric = GBS_VARIANTS[variant]
    return metric, ({"k": int(k)} if metric == "gbs_knn" else {})


def matrix_table(matrix: np.ndarray, rows: list[str], cols: list[str]) -> pd.DataFrame:
    """A similarity matrix as a CSV-ready table: one row per row layer, one column per column layer."""
    table = pd.DataFrame(matrix, columns=list(cols))
    table.insert(0, "layer", list(rows))
    return table


def _session_id() -> str | None:
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return None if ctx is None else ctx.session_id


def prepare_ahead(fs: analysis.FeatureSet, layer: str, *, k: int, method: str, seed: int, view: str) -> None:
    """Start (or join) the background preparation of every layer of ``fs`` (graph layout and scatter), nearest to
    ``layer`` first, for this browser session's ``view``; nothing when ``GBS_BACKGROUND=0``."""
    if not background.enabled():
        return
    session = _session_id()
    background.prepare(fs, disk_cache(), k=int(k), method=method, seed=int(seed), max_nodes=graph_view.MAX_NODES,
                       start=layer, session=session, group=f"{session}|{view}")


def preparation_status() -> None:
    """The sidebar's line on the background preparation of this session's layers, refreshed every 2 s."""
    if not background.enabled():
        return
    session = _session_id()

    def mine() -> list[background.Job]:
        return [job for job in background.jobs() if session in job.sessions]

    # it polls only while a job of this session runs; the next page run shows the final line
    @st.fragment(run_every=2.0 if any(job.running for job in mine()) else None)
    def status() -> None:
        for job in mine():
            if job.running or job.error or job.finished:
                st.caption(job.status())

    status()
