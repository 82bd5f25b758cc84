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
from gbs_core.zoo.registry import (
    ARCHITECTURES,
    TORCHVISION_ARCHITECTURES,
    build_model,
    build_torchvision_model,
    load_state_dict_file,
    load_zoo_model,
)

__all__ = ["ModelSpec", "LoadedModel", "load_model", "model_fingerprint", "cached_activations", "ModelSource"]

ModelSource = Literal["zoo", "torchvision", "checkpoint"]


@dataclass(frozen=True)
class ModelSpec:
    """What model to analyse.

    ``source="zoo"``: ``name`` is a bundled model (``list_zoo()``). ``source="torchvision"``: ``name`` is one of
    ``TORCHVISION_ARCHITECTURES``, randomly initialised with ``seed``. ``source="checkpoint"``: ``name`` is any zoo or
    torchvision architecture and ``checkpoint`` the path of a state_dict file for it.
    """

    source: ModelSource
    name: str
    checkpoint: str | None = None
    seed: int = 0

    @property
    def label(self) -> str:
        if self.source == "zoo":
            return self.name
        if self.source == "torchvision":
            return f"{self.name} (random init, seed {self.seed})"
        return f"{self.name} ({Path(self.checkpoint or '').name})"


@dataclass
class LoadedModel:
    spec: ModelSpec
    model: nn.Module
    model_id: str
    test_accuracy: float | None
    n_params: int

    @property
    def label(self) -> str:
        return self.spec.label

    def default_layers(self) -> list[str]:
        return default_layers(self.model)


def model_fingerprint(model: nn.Module) -> str:
    """sha256 over the architecture's class name and every parameter and buffer (names, shapes, bytes)."""
    h = hashlib.sha256(type(model).__name__.encode())
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:24]


def load_model(spec: ModelSpec, *, num_classes: int = 10, in_channels: int = 1, input_size: int = 16) -> LoadedModel:
    """Build the model a spec describes, in eval mode.

    Raises
    ------
    KeyError
        Unknown zoo name.
    ValueError
        Unknown architecture or source; ``CheckpointError`` (a ValueError) for a checkpoint that does not fit.
    """
    accuracy = None
    if spec.source == "zoo":
        model, entry = load_zoo_model(spec.name)
        accuracy = entry.test_accuracy
    elif spec.source == "torchvision":
        torch.manual_seed(spec.seed)
        model = build_torchvision_model(spec.name, num_classes=num_classes, in_channels=in_channels)
    elif spec.source == "checkpoint":
        if spec.checkpoint is None:
            raise ValueError("a checkpoint model needs the path of its state_dict file")
        if spec.name not in ARCHITECTURES and spec.name not in TORCHVISION_ARCHITECTURES:
            known = ", ".join([*ARCHITECTURES, *TORCHVISION_ARCHITECTURES])
            raise ValueError(f"unknown architecture {spec.name!r} for the checkpoint; choose one of {known}")
        model = build_model(spec.name, in_channels=in_channels, num_classes=num_classes, input_size=input_size)
        load_state_dict_file(spec.checkpoint, model)
    else:
        raise ValueError(f"unknown model source {spec.source!r}; choose 'zoo', 'torchvision' or 'checkpoint'")
    model.eval()
    return LoadedModel(spec, model, model_fingerprint(model), accuracy, sum(p.numel() for p in model.parameters()))


def _key(model_id: str, data: Dataset, layer: str, pool: bool) -> dict:
    return {"kind": "activations", "model": model_id, "data": data.dataset_id, "layer": layer, "pool": bool(pool)}


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
) -> Activations:
    """Features of ``layers`` (default: the model's default layers) for ``data``, in depth order, through the cache.

    Layers already cached are read back; the others are extracted in one batched pass and stored, one entry per layer
    (plus one for the predictions). Without a cache everything is extracted.
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
    if missing or predictions is None:
        to_extract = missing or layers[:1]
        acts = extract_activations(loaded.model, data, to_extract, pool=pool, device=device, batch_size=batch_size,
                                   progress=progress)
        for name in missing:
            features[name] = acts.features[name]
            if cache is not None:
                cache.put(_key(loaded.model_id, data, name, pool), {"features": acts.features[name]},
                          {"shape": list(acts.features[name].shape)})
        predictions = acts.predictions
        if cache is not None and predictions is not None:
            cache.put(_key(loaded.model_id, data, "__predictions__", False), {"predictions": predictions})
    elif progress is not None:
        progress(len(data), len(data))
    return Activations(features={n: features[n] for n in layers}, predictions=predictions)
