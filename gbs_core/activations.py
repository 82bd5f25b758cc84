"""Take any PyTorch model apart layer by layer: list its layers, and extract their outputs for a set of samples.

Layers are named modules (``model.named_modules()`` names). Outputs are flattened per sample to ``(N, features)``
(C*H*W for conv maps), as in the papers' code; global average pooling of conv maps is an option. Forward hooks live in
a context manager and are removed on exit, also when a forward pass raises.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from gbs_core.data import Dataset

__all__ = [
    "LayerInfo",
    "Activations",
    "MemoryBudgetWarning",
    "DEFAULT_MEMORY_BUDGET",
    "list_layers",
    "default_layers",
    "heuristic_default_layers",
    "estimate_feature_bytes",
    "extract_activations",
    "stream_activations",
    "ActivationBatch",
    "load_saved_activations",
    "save_activations",
    "MAX_ACTIVATIONS_FILE_BYTES",
]

DEFAULT_MEMORY_BUDGET = 2 * 1024**3  # bytes of float32 features one request may hold before a warning
MAX_ACTIVATIONS_UNPACKED_BYTES = 4 * 1024**3  # what an .npz may unpack to (arrays are read whole)
MAX_ACTIVATIONS_FILE_BYTES = 1024**3


class MemoryBudgetWarning(UserWarning):
    """A request would hold more feature memory than the budget. A UserWarning, so Python shows it by default (a
    ResourceWarning is ignored unless asked for)."""


@dataclass(frozen=True)
class LayerInfo:
    """One selectable layer: its module name, class name, per-sample output shape and times called per forward."""

    name: str
    type: str
    output_shape: tuple[int, ...]
    calls: int = 1

    @property
    def n_features(self) -> int:
        return int(np.prod(self.output_shape)) if self.output_shape else 1


@dataclass
class Activations:
    """Extracted features.

    Attributes
    ----------
    features : dict of str to numpy.ndarray, each (n_samples, n_features) float32, in depth (execution) order
    predictions : numpy.ndarray (n_samples,) int64, argmax of the model's output; None when the output is not 2-D
    """

    features: dict[str, np.ndarray]
    predictions: np.ndarray | None


def _first_tensor(out, key: str | None = None) -> torch.Tensor | None:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, Mapping):
        if key is not None and key in out:
            return _first_tensor(out[key])
        for v in out.values():
            t = _first_tensor(v)
            if t is not None:
                return t
        return None
    if hasattr(out, "_fields"):  # namedtuple: first field
        out = tuple(out)
    if isinstance(out, (tuple, list)):
        for v in out:
            t = _first_tensor(v)
            if t is not None:
                return t
    return None


@contextmanager
def _forward_hooks(model: nn.Module, names: Sequence[str], callback: Callable[[str, object], None]) -> Iterator[None]:
    modules = dict(model.named_modules())
    handles = []
    try:
        for name in names:
            handles.append(modules[name].register_forward_hook(lambda _m, _i, out, _n=name: callback(_n, out)))
        yield
    finally:
        for h in handles:
            h.remove()


def _all_module_names(model: nn.Module) -> list[str]:
    return [n for n, _ in model.named_modules() if n]


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch ops on one intra-op thread, then restore the previous count.

    For a dry run on a couple of samples the ops are tiny, and on a machine whose cores are busy with other work,
    handing each of a few hundred ops to a second thread costs far more than the op (ResNet-56 on 2 digits: 1.7 s on
    2 threads of a loaded 2-core box, 10 ms on one).
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def list_layers(model: nn.Module, example_input: torch.Tensor) -> list[LayerInfo]:
    """Every named module that outputs a tensor, in execution order, from one dry run on ``example_input``.

    Execution order is the order in which modules finish (a block comes after the layers inside it). A module called
    several times in one forward pass (e.g. a shared ReLU) is listed once, at its last call, with ``calls`` > 1; its
    extracted output is that of its last call. Output shapes exclude the batch dimension.
    """
    names = _all_module_names(model)
    seen: dict[str, tuple[tuple[int, ...], int]] = {}
    order: list[str] = []

    def record(name: str, out) -> None:
        t = _first_tensor(out)
        if t is None:
            return
        calls = seen.get(name, ((), 0))[1] + 1
        seen[name] = (tuple(t.shape[1:]), calls)
        if name in order:
            order.remove(name)
        order.append(name)

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), _one_thread(), _forward_hooks(model, names, record):
            model(example_input)
    finally:
        model.train(was_training)
    types = {n: type(m).__name__ for n, m in model.named_modules()}
    return [LayerInfo(n, types[n], seen[n][0], seen[n][1]) for n in order]


def heuristic_default_layers(model: nn.Module) -> list[str]:
    """Default layers of a model that does not define ``default_layers()`` (REFERENCE.md section 1).

    Residual networks (modules named like ``*Block``/``Bottleneck``/``InvertedResidual`` or having a ``downsample``/``shortcut``): the first
    conv and every residual block. Otherwise every ``Conv2d``; with no convs, every ``Linear`` but the last.
    """
    mods = [(n, m) for n, m in model.named_modules() if n]
    blocks = [n for n, m in mods if type(m).__name__.endswith(("Block", "Bottleneck", "InvertedResidual"))
              or (hasattr(m, "downsample") or hasattr(m, "shortcut")) and not isinstance(m, nn.Sequential)]
    blocks = [b for b in blocks if not any(b.startswith(o + ".") for o in blocks if o != b)]
    convs = [n for n, m in mods if isinstance(m, nn.Conv2d)]
    if blocks:
        first_conv = next((c for c in convs if not any(c.startswith(b + ".") for b in blocks)), None)
        return ([first_conv] if first_conv else []) + blocks
    if convs:
        return convs
    linears = [n for n, m in mods if isinstance(m, nn.Linear)]
    return linears[:-1] if len(linears) > 1 else linears


def default_layers(model: nn.Module) -> list[str]:
    """The layers analysed by default: the model's own ``default_layers()`` if it has one, else the heuristic."""
    own = getattr(model, "default_layers", None)
    if callable(own):
        return list(own())
    return heuristic_default_layers(model)


def estimate_feature_bytes(layers: Sequence[LayerInfo], n_samples: int, *, pool: bool = False) -> int:
    """Bytes of float32 features that extracting ``layers`` for ``n_samples`` would hold."""
    total = 0
    for info in layers:
        total += info.output_shape[0] if (pool and len(info.output_shape) == 3) else info.n_features
    return int(total) * n_samples * 4


def _as_batches(data: Dataset | torch.Tensor, batch_size: int) -> tuple[int, Callable[[int], torch.Tensor]]:
    images = data.images if isinstance(data, Dataset) else data
    if not isinstance(images, torch.Tensor):
        images = torch.as_tensor(np.asarray(images))
    return len(images), lambda i: images[i : i + batch_size]


def _check_request(model: nn.Module, layers: Sequence[str]) -> None:
    if not layers:
        raise ValueError("no layers requested; pick at least one (see list_layers)")
    known = dict(model.named_modules())
    unknown = [n for n in layers if n not in known or n == ""]
    if unknown:
        import difflib

        hints = {n: difflib.get_close_matches(n, list(known), n=3) for n in unknown}
        raise ValueError("unknown layer name(s): " + "; ".join(f"{n!r} (close: {h})" for n, h in hints.items()))


@dataclass(frozen=True)
class ActivationBatch:
    """One batch of :func:`stream_activations`: samples ``start:stop``, each layer's rows (float32, flattened, in
    depth order) and the argmax of the model's output (None when the output is not 2-D)."""

    start: int
    stop: int
    features: dict[str, np.ndarray]
    predictions: np.ndarray | None


def stream_activations(
    model: nn.Module,
    data: Dataset | torch.Tensor,
    layers: Sequence[str],
    *,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    pool: bool = False,
    output_key: str | None = None,
    on_probe: Callable[[dict[str, int]], None] | None = None,
) -> Iterator[ActivationBatch]:
    """The outputs of ``layers`` batch by batch, so a caller keeps only what it needs (see :func:`extract_activations`
    for the conventions). One sample runs first and ``on_probe`` receives each layer's features per sample, in depth
    order, before any batch: the size of the work is known before it starts. The model's mode is restored when the
    iteration ends or is abandoned.

    Raises
    ------
    ValueError
        An unknown layer name, no layers, empty data, or a layer that returns no tensor.
    """
    _check_request(model, layers)
    n_samples, batch_of = _as_batches(data, batch_size)
    if n_samples == 0:
        raise ValueError("no samples to extract activations for")
    was_training = model.training
    model.eval().to(device)
    order: list[str] = []
    current: dict[str, torch.Tensor] = {}

    def record(name: str, out) -> None:
        t = _first_tensor(out, output_key)
        if t is None:
            raise ValueError(f"layer {name!r} returned no tensor (got {type(out).__name__})")
        current[name] = t  # a module called twice keeps its last output
        if name in order:
            order.remove(name)
        order.append(name)

    try:
        with torch.no_grad(), _forward_hooks(model, layers, record):
            model(batch_of(0)[:1].to(device))
            sizes = {n: int(current[n].shape[1] if pool and current[n].ndim == 4 else current[n][0].numel())
                     for n in order}
            depth = list(order)
            current.clear()
            if on_probe is not None:
                on_probe(sizes)
            for start in range(0, n_samples, batch_size):
                x = batch_of(start).to(device)
                out = _first_tensor(model(x), output_key)
                rows = {}
                for name in depth:
                    t = current[name]
                    if pool and t.ndim == 4:
                        t = t.mean(dim=(2, 3))
                    rows[name] = t.reshape(len(t), -1).float().cpu().numpy()
                current.clear()
                preds = out.argmax(1).cpu().numpy().astype(np.int64) if out is not None and out.ndim == 2 else None
                yield ActivationBatch(start, start + len(x), rows, preds)
    finally:
        model.train(was_training)


def extract_activations(
    model: nn.Module,
    data: Dataset | torch.Tensor,
    layers: Sequence[str],
    *,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    pool: bool = False,
    output_key: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> Activations:
    """Outputs of ``layers`` for every sample in ``data``, flattened per sample, in depth order.

    The model runs in eval mode without gradients, in batches of ``batch_size`` on ``device``; its mode is restored
    afterwards. Tuple, list and namedtuple outputs contribute their first tensor; dict outputs the entry ``output_key``
    (else their first tensor). Each layer's array is allocated once, from a one-sample dry run, and filled batch by
    batch (no list of chunks and concatenation: the peak is the features plus one batch).

    Parameters
    ----------
    model : torch.nn.Module
    data : Dataset or torch.Tensor of shape (n_samples, ...)
    layers : sequence of str
        Module names (see :func:`list_layers`); returned in execution order whatever order they are given in.
    pool : bool
        Global average pooling of 4-D (conv) outputs to ``(n_samples, channels)``; off by default, as in the papers.
    progress : callable(done, total), optional
        Called after each batch with the number of samples processed.
    memory_budget : int
        Bytes of features above which a :class:`MemoryBudgetWarning` is issued before any work (see
        :mod:`gbs_core.bounded` for analysing such layers in bounded memory).

    Returns
    -------
    Activations
        ``features`` maps each layer to a float32 array (n_samples, n_features); ``predictions`` is the argmax of the
        model's output.

    Raises
    ------
    ValueError
        An unknown layer name (the message lists close names), no layers, or empty data.
    """
    n_samples = _as_batches(data, batch_size)[0]
    features: dict[str, np.ndarray] = {}

    def allocate(sizes: dict[str, int]) -> None:
        need = sum(sizes.values()) * n_samples * 4
        if need > memory_budget:
            warnings.warn(
                f"these {len(sizes)} layers hold {need / 2**30:.2f} GiB of features for {n_samples} "
                f"samples (budget {memory_budget / 2**30:.2f} GiB); use fewer samples, pool conv maps "
                "(pool=True), fewer layers, or the bounded-memory analysis (gbs_core.bounded, analyze "
                "--memory-budget)",
                MemoryBudgetWarning,
                stacklevel=4,
            )
        for name, d in sizes.items():
            features[name] = np.empty((n_samples, d), dtype=np.float32)

    preds: list[np.ndarray] = []
    for batch in stream_activations(model, data, layers, batch_size=batch_size, device=device, pool=pool,
                                    output_key=output_key, on_probe=allocate):
        for name, rows in batch.features.items():
            features[name][batch.start:batch.stop] = rows
        if batch.predictions is not None:
            preds.append(batch.predictions)
        if progress is not None:
            progress(batch.stop, n_samples)
    complete = bool(preds) and sum(len(p) for p in preds) == n_samples
    predictions = np.concatenate(preds) if complete else None
    return Activations(features=features, predictions=predictions)


def save_activations(path: str | Path, features: Mapping[str, np.ndarray], labels: np.ndarray,
                     predictions: np.ndarray | None = None, class_names: Sequence[str] | None = None) -> Path:
    """Write features in the ``.npz`` layout :func:`load_saved_activations` reads (layer order kept)."""
    path = Path(path)
    arrays = {f"layer:{n}": np.asarray(a, dtype=np.float32) for n, a in features.items()}
    arrays["labels"] = np.asarray(labels, dtype=np.int64)
    arrays["layer_order"] = np.array(list(features), dtype=str)
    if predictions is not None:
        arrays["predictions"] = np.asarray(predictions, dtype=np.int64)
    if class_names is not None:
        arrays["class_names"] = np.array(list(class_names), dtype=str)
    np.savez_compressed(path, **arrays)
    return path


def load_saved_activations(path: str | Path) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray | None, tuple[str, ...]]:
    """Read saved activations: an ``.npz`` with one array ``layer:<name>`` per layer (n_samples, ...), ``labels``
    (n_samples,), and optionally ``layer_order``, ``predictions`` and ``class_names``. Arrays of more than two
    dimensions are flattened per sample. Nothing is unpickled.

    Returns ``(features, labels, predictions, class_names)``.

    Raises
    ------
    ValueError
        Missing file or labels, no layers, a layer whose sample count differs from the labels, non-finite values.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"activations file {path} does not exist")
    if path.stat().st_size > MAX_ACTIVATIONS_FILE_BYTES:
        raise ValueError(f"{path.name} is larger than {MAX_ACTIVATIONS_FILE_BYTES >> 20} MiB; save fewer layers or samples")
    try:  # bound what the file unpacks to before reading it: a small compressed file can hold huge arrays
        import zipfile

        with zipfile.ZipFile(path) as zf:
            unpacked = sum(info.file_size for info in zf.infolist())
    except (OSError, zipfile.BadZipFile) as exc:
        raise ValueError(f"cannot read {path.name} as an .npz of arrays ({type(exc).__name__}: {exc})") from exc
    if unpacked > MAX_ACTIVATIONS_UNPACKED_BYTES:
        raise ValueError(f"{path.name} unpacks to {unpacked >> 20} MiB of arrays; the limit is "
                         f"{MAX_ACTIVATIONS_UNPACKED_BYTES >> 20} MiB: save fewer layers or samples")
    try:
        npz = np.load(path, allow_pickle=False)
        arrays = {k: npz[k] for k in npz.files}
    except Exception as exc:
        raise ValueError(f"cannot read {path.name} as an .npz of arrays ({type(exc).__name__}: {exc})") from exc
    if "labels" not in arrays:
        raise ValueError(f"{path.name} has no 'labels' array; found {sorted(arrays)}")
    raw_labels = np.asarray(arrays["labels"]).ravel()
    if not len(raw_labels):
        raise ValueError(f"{path.name} has no labels: it holds no samples")
    if raw_labels.dtype.kind not in "iub" and not (
            raw_labels.dtype.kind == "f" and np.isfinite(raw_labels).all() and (raw_labels == np.round(raw_labels)).all()):
        raise ValueError(f"the labels of {path.name} are {raw_labels.dtype} values, not integer class indices")
    raw_labels = raw_labels.astype(np.int64)
    order = [str(n) for n in arrays["layer_order"]] if "layer_order" in arrays else \
        [k.removeprefix("layer:") for k in arrays if k.startswith("layer:")]
    if not order:
        raise ValueError(f"{path.name} has no 'layer:<name>' arrays; found {sorted(arrays)}")
    features = {}
    for name in order:
        key = f"layer:{name}"
        if key not in arrays:
            raise ValueError(f"{path.name} lists layer {name!r} in layer_order but has no array {key!r}")
        a = arrays[key].astype(np.float32)
        a = a.reshape(len(a), -1)
        if len(a) != len(raw_labels):
            raise ValueError(f"layer {name!r} in {path.name} has {len(a)} samples but there are {len(raw_labels)} labels")
        if not np.isfinite(a).all():
            raise ValueError(f"layer {name!r} in {path.name} has NaN or infinite values")
        features[name] = a
    raw_preds = arrays["predictions"].astype(np.int64).ravel() if "predictions" in arrays else None
    if raw_preds is not None and len(raw_preds) != len(raw_labels):
        raise ValueError(f"{path.name} has {len(raw_preds)} predictions but {len(raw_labels)} labels")
    # the classes are the label values present (and predicted), renumbered 0..C-1 in sorted order: labels up to 10^9
    # make as many classes as there are values, and labels -1, 0, 1 keep their names
    values = np.unique(raw_labels if raw_preds is None else np.concatenate([raw_labels, raw_preds]))
    labels = np.searchsorted(values, raw_labels)
    preds = np.searchsorted(values, raw_preds) if raw_preds is not None else None
    if "class_names" in arrays:
        given = [str(n) for n in np.asarray(arrays["class_names"]).ravel()]
        if values.min() < 0 or values.max() >= len(given):
            raise ValueError(f"the labels of {path.name} run from {values.min()} to {values.max()} but it names "
                             f"{len(given)} classes (class_names): labels must index class_names")
        names = tuple(given[v] for v in values)
    else:
        names = tuple(str(v) for v in values)
    return features, labels, preds, names
