"""From a model description to cached per-layer features: what the dashboard and the command line share.

A :class:`ModelSpec` names a model (zoo entry, torchvision architecture, or architecture plus a user's state_dict file);
:func:`load_model` builds it and fingerprints its weights; :func:`cached_activations` returns its layers' features for a
:class:`~gbs_core.data.Dataset`, computing only the layers not yet in the disk cache. Cache keys hold the weights
fingerprint, the dataset id, the layer name and the pooling flag.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from gbs_core.activations import Activations, default_layers, extract_activations, list_layers
from gbs_core.cache import DiskCache
from gbs_core.data import Dataset
from gbs_core.zoo.families import (
    AdaptedModel,
    AdapterChoice,
    Family,
    build_family_model,
    choose_adapter,
    classifier_head,
    fit_to_weights,
    read_weights,
    resolve_arch,
)
from gbs_core.zoo.registry import (
    MAX_CHECKPOINT_BYTES,
    CheckpointError,
    WeightsError,
    load_state_dict,
    load_zoo_model,
)

__all__ = ["ModelSpec", "LoadedModel", "load_model", "model_fingerprint", "cached_activations", "store_activations",
           "ModelSource", "AdapterChoice"]

ModelSource = Literal["zoo", "torchvision", "timm", "checkpoint"]
DIGIT_NAMES = tuple(str(i) for i in range(10))


@dataclass(frozen=True)
class ModelSpec:
    """What model to analyse.

    ``source="zoo"``: ``name`` is a bundled model (``list_zoo()``). ``source="torchvision"`` / ``"timm"``: ``name`` is
    one of that library's architectures, randomly initialised with ``seed``. ``source="checkpoint"``: ``name`` is an
    architecture (``resnet56``, ``resnet18``, ``torchvision:NAME``, ``timm:NAME``; see
    :func:`~gbs_core.zoo.families.resolve_arch`) and ``checkpoint`` the path of a state_dict or ``.safetensors`` file.
    """

    source: ModelSource
    name: str
    checkpoint: str | None = None
    seed: int = 0

    @property
    def label(self) -> str:
        if self.source == "zoo":
            return self.name
        if self.source in ("torchvision", "timm"):
            return f"{self.name} ({self.source}, random init, seed {self.seed})"
        return f"{self.name} ({Path(self.checkpoint or '').name})"


@dataclass
class LoadedModel:
    """A model ready to analyse: the network behind its input adapter (if any), its weights fingerprint, and what the
    pages say about it.

    ``head``: the classifier's module name in ``model`` (None without one); ``head_classes``: its number of classes;
    ``class_names``: the classes it predicts when known (the zoo's digits), else None; ``adapter``: the input adapter
    in words ("" when the data fits as it is); ``notes``: what a user should know (an unused head, ...).
    """

    spec: ModelSpec
    model: nn.Module
    model_id: str
    test_accuracy: float | None
    n_params: int
    head: str | None = None
    head_classes: int | None = None
    class_names: tuple[str, ...] | None = None
    adapter: str = ""
    notes: tuple[str, ...] = ()
    family: Family = "zoo"

    @property
    def label(self) -> str:
        return self.spec.label

    def default_layers(self) -> list[str]:
        return [n for n in default_layers(self.model) if n != self.head]

    def trainable_for(self, data: Dataset, *, seed: int = 0) -> tuple[nn.Module, str]:
        """The network to fine-tune on ``data`` and a note: the model itself when its classifier predicts ``data``'s
        classes, else a copy whose head is replaced by a fresh (seeded) linear layer of ``data``'s classes."""
        if self.head_fits(data) or self.head is None:
            return self.model, ""
        import copy

        model = copy.deepcopy(self.model)
        parent, _, attr = self.head.rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        old = getattr(owner, attr)
        torch.manual_seed(seed)
        setattr(owner, attr, nn.Linear(old.in_features, data.n_classes))
        return model, (f"a new {data.n_classes}-class head {self.head!r} (seed {seed}) replaces the "
                       f"{self.head_classes}-class one before fine-tuning")

    def head_fits(self, data: Dataset) -> bool:
        """Whether the classifier's outputs are ``data``'s classes: same number, and the same names where known."""
        if self.head_classes is None or self.head_classes != data.n_classes:
            return False
        return self.class_names is None or tuple(self.class_names) == tuple(data.class_names)


def model_fingerprint(model: nn.Module) -> str:
    """sha256 over the architecture's class name, its input adapter (if any) and every parameter and buffer (names,
    shapes, bytes)."""
    h = hashlib.sha256(type(model).__name__.encode())
    if isinstance(model, AdaptedModel):
        h.update(repr(model.adapter).encode())
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:24]


def _wrap(family: Family, net: nn.Module, data_shape: tuple[int, int, int], *, net_channels: int,
          net_size: int | None, adapter: AdapterChoice, always: bool) -> tuple[nn.Module, str]:
    chosen = choose_adapter(family, net, data_shape, net_channels=net_channels, net_size=net_size, choice=adapter)
    if chosen is None and not always:
        return net, ""
    from gbs_core.zoo.families import InputAdapter

    chosen = chosen or InputAdapter(net_channels, data_shape[-1])
    return AdaptedModel(chosen, net), chosen.describe(data_shape)


def load_model(spec: ModelSpec, *, data_shape: tuple[int, int, int] = (1, 16, 16), num_classes: int = 10,
               adapter: AdapterChoice | None = None) -> LoadedModel:
    """Build the model a spec describes for data of ``data_shape`` (C, H, W) with ``num_classes`` classes, in eval mode.

    A zoo model on other data, and every torchvision or timm network, sits behind an input adapter chosen from the
    data and the family (``adapter`` overrides it; layer names are then ``net.<name>``). A checkpoint is built with
    its own head (the file's number of classes): when that differs from ``num_classes`` the head is reported unused
    and left out of the default layers.

    Raises
    ------
    KeyError
        Unknown zoo name.
    ValueError
        Unknown architecture or source; ``CheckpointError`` (a ValueError) for a checkpoint that cannot be read or does
        not fit beyond its head.
    """
    accuracy, class_names, notes = None, None, []
    adapter = adapter or AdapterChoice()
    data_shape = tuple(int(v) for v in data_shape)  # type: ignore[assignment]
    if spec.source == "zoo":
        net, entry = load_zoo_model(spec.name)
        accuracy, family, head_classes = entry.test_accuracy, "zoo", entry.num_classes
        class_names = DIGIT_NAMES if entry.num_classes == 10 else None
        c, size = entry.input_shape[0], entry.input_shape[-1]
        model, described = _wrap("zoo", net, data_shape, net_channels=c, net_size=size, adapter=adapter, always=False)
        if described and accuracy is not None:
            notes.append(f"its recorded accuracy ({accuracy:.1%}) is on its own training data's held-out split")
    elif spec.source in ("torchvision", "timm"):
        family = spec.source
        resolve_arch(f"{family}:{spec.name}")
        torch.manual_seed(spec.seed)
        net = build_family_model(family, spec.name, num_classes=num_classes, in_channels=3)
        head_classes = num_classes
        model, described = _wrap(family, net, data_shape, net_channels=3, net_size=None, adapter=adapter, always=True)
    elif spec.source == "checkpoint":
        if spec.checkpoint is None:
            raise ValueError("a checkpoint model needs the path of its state_dict file")
        family, name = resolve_arch(spec.name)
        try:
            state = read_weights(spec.checkpoint, max_bytes=MAX_CHECKPOINT_BYTES)
        except WeightsError as exc:
            raise CheckpointError(str(exc)) from exc
        net, _, head_classes = fit_to_weights(family, name, state, num_classes=num_classes, in_channels=data_shape[0],
                                              input_size=data_shape[-1])
        load_state_dict(state, net, name=Path(spec.checkpoint).name)
        first = next((m for m in net.modules() if isinstance(m, nn.Conv2d | nn.Linear)), None)
        c = first.in_channels if isinstance(first, nn.Conv2d) else (3 if family != "zoo" else data_shape[0])
        fixed = None
        if family == "zoo" and isinstance(first, nn.Linear):  # an MLP takes one size only
            fixed = int(round((first.in_features / c) ** 0.5))
        model, described = _wrap(family, net, data_shape, net_channels=c, net_size=fixed, adapter=adapter,
                                 always=family != "zoo")
    else:
        raise ValueError(f"unknown model source {spec.source!r}; choose 'zoo', 'torchvision', 'timm' or 'checkpoint'")
    head = classifier_head(model)
    if head is not None and head_classes != num_classes:
        notes.append(f"its classifier {head!r} has {head_classes} classes and the data {num_classes}: the head is not "
                     "used (its logits are not analysed) and accuracy is not applicable")
    model.eval()
    return LoadedModel(spec, model, model_fingerprint(model), accuracy, sum(p.numel() for p in model.parameters()),
                       head=head, head_classes=head_classes, class_names=class_names, adapter=described,
                       notes=tuple(notes), family=family)


def _key(model_id: str, data: Dataset | str, layer: str, pool: bool) -> dict:
    dataset_id = data if isinstance(data, str) else data.dataset_id
    return {"kind": "activations", "model": model_id, "data": dataset_id, "layer": layer, "pool": bool(pool)}


def _largest_key(model_id: str, data: Dataset, pool: bool) -> dict:
    """Cache key of the pointer to the largest subsample of ``data``'s parent and seed extracted for this model."""
    return {"kind": "activations-largest-subsample", "model": model_id, "parent": data.origin.parent_id,
            "seed": data.origin.seed, "pool": bool(pool)}


def _from_larger_subsample(cache: DiskCache, model_id: str, data: Dataset, names: Sequence[str], pool: bool
                           ) -> dict[str, np.ndarray]:
    """Rows of ``data`` cut from the cached features of a larger nested subsample (same parent and seed), for the
    ``names`` (layers and ``__predictions__``) that subsample has; empty when there is none or it does not hold all of
    ``data``'s samples (see :func:`~gbs_core.data.stratified_subsample`)."""
    if data.origin is None:
        return {}
    hit = cache.get(_largest_key(model_id, data, pool))
    if hit is None:
        return {}
    donor_idx, donor_id = hit[0]["indices"], str(hit[1].get("data", ""))
    ours = data.origin.indices
    rows = np.searchsorted(donor_idx, ours)
    if len(donor_idx) < len(ours) or rows.max(initial=0) >= len(donor_idx) or not np.array_equal(donor_idx[rows], ours):
        return {}
    out = {}
    for name in names:
        got = cache.get(_key(model_id, donor_id, name, pool if name != "__predictions__" else False))
        if got is not None:
            arr = got[0]["predictions" if name == "__predictions__" else "features"]
            out[name] = arr[rows]
    return out


def _note_largest(cache: DiskCache, model_id: str, data: Dataset, pool: bool) -> None:
    if data.origin is None:
        return
    hit = cache.get(_largest_key(model_id, data, pool))
    if hit is None or len(hit[0]["indices"]) < len(data.origin.indices):
        cache.put(_largest_key(model_id, data, pool), {"indices": data.origin.indices}, {"data": data.dataset_id})


def cached_activations(
    loaded: LoadedModel,
    data: Dataset,
    layers: Sequence[str] | None = None,
    *,
    pool: bool = False,
    cache: DiskCache | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 256,
    progress: Callable[[int, int], None] | None = None,
    require_cached: bool = False,
) -> Activations:
    """Features of ``layers`` (default: the model's default layers) for ``data``, in depth order, through the cache.

    Layers already cached are read back; the others are extracted in one batched pass and stored, one entry per layer
    (plus one for the predictions). A stratified subsample whose samples lie inside a larger one of the same data and
    seed that was extracted before (the subsamples are nested in N) has its rows cut from that one's features instead
    of running the model. Without a cache everything is extracted. With ``require_cached`` nothing is extracted:
    ``LookupError`` when the cache (or a larger subsample in it) does not hold every layer and the predictions (a
    cluster run asks this before it sends a model to a worker).
    """
    if layers is None:
        layers = loaded.default_layers()
    layers = list(layers)
    if not layers:
        raise ValueError("no layers selected; pick at least one")
    depth_order = [info.name for info in list_layers(loaded.model, data.images[:2])]
    unknown = [n for n in layers if n not in depth_order]
    if unknown:
        raise ValueError(f"layer(s) {unknown} produce no tensor output in this model; see list_layers for valid names")
    layers = [n for n in depth_order if n in set(layers)]

    features: dict[str, np.ndarray] = {}
    predictions = None
    missing = list(layers)
    if cache is not None:
        missing = []
        for name in layers:
            hit = cache.get(_key(loaded.model_id, data, name, pool))
            if hit is None:
                missing.append(name)
            else:
                features[name] = hit[0]["features"]
        hit = cache.get(_key(loaded.model_id, data, "__predictions__", False))
        predictions = hit[0]["predictions"] if hit is not None else None
    if cache is not None and (missing or predictions is None):  # a smaller N of the same seed: cut, not extract
        cut = _from_larger_subsample(cache, loaded.model_id, data, [*missing, "__predictions__"], pool)
        for name in [n for n in missing if n in cut]:
            features[name] = cut[name]
            cache.put(_key(loaded.model_id, data, name, pool), {"features": cut[name]}, {"shape": list(cut[name].shape)})
        missing = [n for n in missing if n not in cut]
        if predictions is None and "__predictions__" in cut:
            predictions = cut["__predictions__"]
            cache.put(_key(loaded.model_id, data, "__predictions__", False), {"predictions": predictions})
    if missing or predictions is None:
        if require_cached:
            raise LookupError(f"{loaded.label}: layer(s) {missing or []} or the predictions are not in the cache")
        to_extract = missing or layers[:1]
        acts = extract_activations(loaded.model, data, to_extract, pool=pool, device=device, batch_size=batch_size,
                                   progress=progress)
        for name in missing:
            features[name] = acts.features[name]
        predictions = acts.predictions
        if cache is not None:
            _put_extracted(cache, loaded.model_id, data, {n: features[n] for n in missing}, predictions, pool)
    elif progress is not None:
        progress(len(data), len(data))
    if cache is not None:
        _note_largest(cache, loaded.model_id, data, pool)
    return Activations(features={n: features[n] for n in layers}, predictions=predictions)


FEATURE_CACHE_SHARE = 0.5  # the most of the disk cache one request's features may fill


def _put_extracted(cache: DiskCache, model_id: str, data: Dataset, features: dict[str, np.ndarray],
                   predictions: np.ndarray | None, pool: bool) -> None:
    """Store extracted features, unless together they would fill more than :data:`FEATURE_CACHE_SHARE` of the cache:
    then they would evict the results computed from them (and each other), so only the predictions are stored and
    the results, cached per layer, are what a rerun reads."""
    if sum(a.nbytes for a in features.values()) <= FEATURE_CACHE_SHARE * cache.max_bytes:
        for name, arr in features.items():
            cache.put(_key(model_id, data, name, pool), {"features": arr}, {"shape": list(arr.shape)})
    if predictions is not None:
        cache.put(_key(model_id, data, "__predictions__", False), {"predictions": predictions})


def store_activations(cache: DiskCache, model_id: str, data: Dataset, activations: Activations, *,
                      pool: bool = False) -> None:
    """Write features extracted elsewhere (a Dask worker) into ``cache`` under the keys :func:`cached_activations`
    reads: one entry per layer, one for the predictions, and the pointer to the largest subsample of ``data``'s
    parent. ``model_id`` is the weights fingerprint of the model that produced them (``LoadedModel.model_id``)."""
    _put_extracted(cache, model_id, data, dict(activations.features), activations.predictions, pool)
    _note_largest(cache, model_id, data, pool)
