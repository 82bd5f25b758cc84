"""Training dynamics: per-layer metrics over an ordered list of checkpoints of one architecture (modularity paper).

The modularity paper follows the class communities as a network trains: Q of shallow layers stays nearly flat while Q
of deep layers grows with accuracy. :func:`run_dynamics` measures, for every checkpoint of a
:class:`DynamicsPlan` on the same samples, the accuracy, the modularity curve (k = 3), the same-class triangle
fraction (k = 5), and linear CKA of each layer to the same layer of the last checkpoint. Every step goes through the
disk cache (features per layer, modularity per layer, motifs per layer, CKA per layer), so a second run, a page
reload or the other front end reads back what was computed.

A plan comes from the zoo's saved epochs (:func:`zoo_dynamics_plan`: ``resnet20-ep0`` ... ``resnet20``) or from a
user's own state_dict files of one architecture (:func:`files_dynamics_plan`).

References
----------
Lu et al., "Understanding the Dynamics of DNNs Using Graph Modularity", ECCV 2022, arXiv 2111.12485, section 4.2.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gbs_core.analysis import FeatureSet, feature_set, feature_sets, modularity_by_layer, motifs_by_layer
from gbs_core.cache import DiskCache
from gbs_core.data import Dataset
from gbs_core.metrics.cka import linear_cka
from gbs_core.pipeline import LoadedModel, ModelSpec, load_model

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["Checkpoint", "DynamicsPlan", "DynamicsResult", "DYNAMICS_METRICS", "zoo_dynamics_plan",
           "files_dynamics_plan", "run_dynamics", "models_with_checkpoints"]

Progress = Callable[[int, int, str], None]

# column of the result -> label on the page and in the figures
DYNAMICS_METRICS = {
    "q": "modularity Q (k = 3)",
    "same_class_fraction": "same-class triangle fraction (k = 5)",
    "cka_to_last": "linear CKA to the last checkpoint's same layer",
}


@dataclass(frozen=True)
class Checkpoint:
    """One set of weights in the order of training: ``epoch`` (0 = initialisation) and what to load."""

    label: str
    epoch: int
    spec: ModelSpec


@dataclass(frozen=True)
class DynamicsPlan:
    """Checkpoints of one architecture in training order; the last one is the reference of ``cka_to_last``."""

    name: str
    checkpoints: tuple[Checkpoint, ...]

    def __post_init__(self) -> None:
        if len(self.checkpoints) < 2:
            raise ValueError(f"{self.name}: training dynamics need at least 2 checkpoints; got {len(self.checkpoints)}")
        epochs = [c.epoch for c in self.checkpoints]
        if epochs != sorted(epochs):
            raise ValueError(f"{self.name}: checkpoints must be in training order; epochs are {epochs}")


def models_with_checkpoints() -> list[str]:
    """Zoo models that kept training checkpoints (the ones :func:`zoo_dynamics_plan` accepts)."""
    from gbs_core.zoo.registry import list_checkpoints, list_zoo

    return [e.name for e in list_zoo() if list_checkpoints(e.name)]


def zoo_dynamics_plan(model: str) -> DynamicsPlan:
    """The saved epochs of zoo model ``model`` (``<model>-ep0`` ... and the finished model), from the manifest.

    Raises
    ------
    ValueError
        The model kept no checkpoints (the message names those that did).
    """
    from gbs_core.zoo.registry import list_checkpoints

    chain = list_checkpoints(model)
    if not chain:
        raise ValueError(f"zoo model {model!r} has no training checkpoints; models with checkpoints: "
                         f"{', '.join(models_with_checkpoints()) or 'none'}")
    return DynamicsPlan(model, tuple(Checkpoint(f"epoch {e.epoch}", e.epoch, ModelSpec("zoo", e.name)) for e in chain))


_EPOCH_IN_NAME = re.compile(r"(?:^|[^a-z])(?:epoch|ep)[_-]?(\d+)", re.IGNORECASE)


def files_dynamics_plan(arch: str, paths: Sequence[str | Path], epochs: Sequence[int] | None = None) -> DynamicsPlan:
    """A plan from a user's state_dict files of architecture ``arch``.

    ``epochs`` labels them, in the order given (which must be training order). Without it, when every file name has
    an ``ep<N>``/``epoch<N>`` (not inside another word; the last one counts), the files are ordered by N; otherwise
    they keep the order given and are numbered 0, 1, ...
    """
    paths = [Path(p) for p in paths]
    if epochs is None:
        found = [_EPOCH_IN_NAME.findall(p.stem) for p in paths]
        if all(found):  # epochs from the names: put the files in that order (uploads and globs come alphabetical)
            pairs = sorted(zip((int(f[-1]) for f in found), paths, strict=True), key=lambda ep: ep[0])
            epochs, paths = [e for e, _ in pairs], [p for _, p in pairs]
        else:
            epochs = list(range(len(paths)))
    if len(epochs) != len(paths):
        raise ValueError(f"{len(epochs)} epochs for {len(paths)} checkpoint files")
    return DynamicsPlan(arch, tuple(Checkpoint(f"epoch {e} ({p.name})", int(e), ModelSpec("checkpoint", arch, str(p)))
                                    for e, p in zip(epochs, paths, strict=True)))


@dataclass
class DynamicsResult:
    """Per checkpoint (rows) and layer (columns): each metric of :data:`DYNAMICS_METRICS`, plus accuracy per row."""

    name: str
    checkpoints: list[str]
    epochs: list[int]
    layers: list[str]
    accuracy: list[float]
    metrics: dict[str, np.ndarray] = field(repr=False)
    settings: dict = field(default_factory=dict)

    def matrix(self, metric: str) -> np.ndarray:
        if metric not in self.metrics:
            raise ValueError(f"unknown dynamics metric {metric!r}; choose from {', '.join(self.metrics)}")
        return self.metrics[metric]

    def table(self):
        """Long table: one row per (checkpoint, layer) with epoch, accuracy, depth and every metric."""
        import pandas as pd

        rows = []
        for i, (label, epoch, acc) in enumerate(zip(self.checkpoints, self.epochs, self.accuracy, strict=True)):
            for d, layer in enumerate(self.layers):
                rows.append({"checkpoint": label, "epoch": epoch, "accuracy": acc, "depth": d, "layer": layer,
                             **{m: float(v[i, d]) for m, v in self.metrics.items()}})
        return pd.DataFrame(rows)

    def change_table(self):
        """Per layer: each metric at the first and the last checkpoint and the change between them."""
        import pandas as pd

        out = {"depth": np.arange(len(self.layers)), "layer": self.layers}
        for m, v in self.metrics.items():
            out[f"{m}_first"], out[f"{m}_last"] = v[0], v[-1]
            out[f"{m}_change"] = v[-1] - v[0]
        return pd.DataFrame(out)

    def to_dict(self) -> dict:
        return {"name": self.name, "checkpoints": self.checkpoints, "epochs": self.epochs, "layers": self.layers,
                "accuracy": self.accuracy, "metrics": {k: v.tolist() for k, v in self.metrics.items()},
                "settings": self.settings}

    @classmethod
    def from_dict(cls, d: Mapping) -> DynamicsResult:
        return cls(d["name"], list(d["checkpoints"]), [int(e) for e in d["epochs"]], list(d["layers"]),
                   [float(a) for a in d["accuracy"]],
                   {k: np.asarray(v, dtype=np.float64) for k, v in d["metrics"].items()}, dict(d.get("settings", {})))


def _accuracy(predictions: np.ndarray | None, labels: np.ndarray) -> float:
    return float(np.mean(predictions == labels)) if predictions is not None else float("nan")


def run_dynamics(
    plan: DynamicsPlan,
    data: Dataset,
    *,
    layers: Sequence[str] | None = None,
    pool: bool = False,
    k: int = 3,
    n_batches: int = 1,
    motif_k: int = 5,
    seed: int = 0,
    cache: DiskCache | None = None,
    progress: Progress | None = None,
    load: Callable[[ModelSpec], LoadedModel] = load_model,
    client: Client | None = None,
) -> DynamicsResult:
    """Accuracy and the per-layer metrics of every checkpoint of ``plan`` on ``data``.

    ``layers`` defaults to the last checkpoint's default layers (the same names in every checkpoint of one
    architecture). ``progress(done, total, message)`` moves once per step: features, modularity, motifs and CKA of
    each checkpoint. ``load`` builds a model from a spec (the dashboard passes its memoised loader). With ``client``
    (a ``distributed.Client``, see :func:`gbs_core.cluster.dask_client`) the features of every checkpoint are
    extracted first, one Dask task per checkpoint, and written into ``cache`` here
    (:func:`gbs_core.analysis.feature_sets`); the metrics are then computed here as without one, to the same numbers.
    Without a client one checkpoint's features are held at a time.

    Raises
    ------
    ValueError
        A checkpoint that does not fit the architecture, or layers missing from a checkpoint.
    """
    n = len(plan.checkpoints)
    total, done = 4 * n, 0

    def step(message: str) -> None:
        nonlocal done
        if progress is not None:
            progress(done, total, message)
        done += 1

    # the last checkpoint first: its layers name the columns and its features are the CKA reference
    order = [n - 1, *range(n - 1)]
    extracted: dict[int, FeatureSet] = {}
    if client is not None:
        def features_done(finished: int, _total: int, message: str) -> None:
            nonlocal done
            done = finished
            if progress is not None:
                progress(done, total, message)

        sets = feature_sets([plan.checkpoints[i].spec for i in order], data, layers, load=load, pool=pool,
                            cache=cache, client=client, progress=features_done)
        extracted = dict(zip(order, sets, strict=True))
        done = n

    def features_of(i: int):
        if i in extracted:
            return extracted.pop(i)
        return feature_set(load(plan.checkpoints[i].spec), data, layers, pool=pool, cache=cache)

    ref = None
    rows: dict[int, dict] = {}
    for i in order:
        ckpt = plan.checkpoints[i]
        if client is None:
            step(f"{ckpt.label}: features ({len(rows) + 1}/{n})")
        fs = features_of(i)
        if ref is None:
            ref = fs
            layers = fs.layers
        elif fs.layers != layers:
            raise ValueError(f"{ckpt.label} has layers {fs.layers}; the last checkpoint has {layers}")
        step(f"{ckpt.label}: modularity")
        curve = modularity_by_layer(fs, k=k, n_batches=n_batches, seed=seed, cache=cache)
        step(f"{ckpt.label}: motifs")
        motifs = motifs_by_layer(fs, k=motif_k, cache=cache)
        step(f"{ckpt.label}: CKA to {plan.checkpoints[-1].label}")
        cka = [_cached_cka(fs, ref, layer, cache) for layer in fs.layers]
        rows[i] = {"accuracy": _accuracy(fs.predictions, fs.labels),
                   "q": [float(np.mean(curve[layer])) for layer in fs.layers],
                   "same_class_fraction": motifs["same_class_fraction"].to_numpy(dtype=np.float64),
                   "cka_to_last": cka, "model_id": fs.model_id}
    if progress is not None:
        progress(total, total, "training dynamics done")
    metrics = {m: np.array([rows[i][m] for i in range(n)], dtype=np.float64) for m in DYNAMICS_METRICS}
    settings = {"data": data.dataset_id, "n_samples": len(data), "pool": bool(pool), "k": int(k),
                "n_batches": int(n_batches), "motif_k": int(motif_k), "seed": int(seed),
                "model_ids": [rows[i]["model_id"] for i in range(n)]}
    return DynamicsResult(plan.name, [c.label for c in plan.checkpoints], [c.epoch for c in plan.checkpoints],
                          list(layers), [rows[i]["accuracy"] for i in range(n)], metrics, settings)


def _cached_cka(fs, ref, layer: str, cache: DiskCache | None) -> float:
    def compute():
        return {"cka": np.array(linear_cka(fs.features[layer], ref.features[layer]))}

    if cache is None:
        return float(compute()["cka"])
    key = {"kind": "cka-to-reference", "a": fs.key("features", layer=layer), "b": ref.key("features", layer=layer)}
    return float(cache.get_or_compute(key, compute)[0]["cka"])
