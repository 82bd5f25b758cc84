"""Model stitching (GBS paper's check of its motif claim): can network B classify what network A computed at a layer?

A stitched network runs the frozen bottom of A up to the output of layer i, a small trained stitching layer, then the
frozen top of B from the output of layer j on (Bansal et al. 2021, "Revisiting model stitching"; the GBS authors' code
uses a 1x1 convolution with ReLU). The stitch is

- conv map -> conv map: resize to B's spatial size when they differ (bilinear), then a 1x1 convolution, then ReLU;
- anything -> vector: flatten, then a linear map, then ReLU;
- vector -> conv map: not stitchable (reported as such).

The ReLU is kept because the default layers of the zoo's networks are outputs of a ReLU. Only the stitch is trained
(the zoo's fine-tuning recipe: SGD, cosine schedule, the training data's augmentation), on the training split of the
data A was trained on; the stitched accuracy is measured on its held-out split. :func:`run_stitching` fills a matrix
over (layer of A x layer of B) for the pairs asked for (by default the matched layers i = j), caching each pair, and
sets beside it the indices measured on held-out images without training (same-class motif fraction of A's layer,
linear CKA and dense GBS between the two layers) with the Spearman rank correlation of each with stitched accuracy.

References
----------
Chen et al., "Graph-Based Similarity of Deep Neural Networks", Neurocomputing 614 (2024) 128722.
Bansal, Nakkiran, Barak, "Revisiting Model Stitching to Compare Neural Representations", NeurIPS 2021.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gbs_core.cache import DiskCache
from gbs_core.data import Dataset
from gbs_core.zoo.train import TrainConfig, evaluate, fit

__all__ = ["Stitch", "StitchedNetwork", "layer_shapes", "StitchResult", "run_stitching",
           "rank_correlation", "STITCH_INDICES", "STITCH_VERSION", "DEFAULT_STITCH_TRAINING"]

STITCH_VERSION = "1"
Progress = Callable[[int, int, str], None]
DEFAULT_STITCH_TRAINING = TrainConfig(epochs=4, lr=0.02, weight_decay=0.0)
STITCH_INDICES = {
    "same_class_fraction_a": "same-class triangle fraction of A's layer (k = 5)",
    "linear_cka": "linear CKA(A layer i, B layer j)",
    "gbs_dense": "dense GBS(A layer i, B layer j)",
}


class _Stop(Exception):
    """Raised by a hook to end a forward pass once the wanted layer's output is in hand."""


def _module(model: nn.Module, name: str) -> nn.Module:
    modules = dict(model.named_modules())
    if name not in modules:
        raise ValueError(f"{name!r} is not a module of {type(model).__name__}; see list_layers for valid names")
    return modules[name]


@torch.no_grad()
def layer_shapes(model: nn.Module, layers: Sequence[str], input_shape: Sequence[int]) -> dict[str, tuple[int, ...]]:
    """Per-sample output shape of each of ``layers`` in one eval-mode forward pass of a zero input."""
    shapes: dict[str, tuple[int, ...]] = {}

    def record(name):
        def hook(_m, _a, out):  # returns None: the output is left as it is
            shapes.setdefault(name, tuple(out.shape[1:]))
        return hook

    handles = [_module(model, n).register_forward_hook(record(n)) for n in layers]
    was_training = model.training
    try:
        model.eval()
        model(torch.zeros(2, *input_shape))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return shapes


class Stitch(nn.Module):
    """The trained layer between A's layer (shape ``in_shape``) and B's layer (shape ``out_shape``); see the module
    docstring. ``identity()`` sets a 1x1 conv or linear map of equal widths to the identity (for the A = B check)."""

    def __init__(self, in_shape: Sequence[int], out_shape: Sequence[int], *, relu: bool = True):
        super().__init__()
        self.in_shape, self.out_shape, self.relu = tuple(in_shape), tuple(out_shape), relu
        if len(self.out_shape) == 3:
            if len(self.in_shape) != 3:
                raise ValueError(f"cannot stitch a vector {self.in_shape} into a conv map {self.out_shape}")
            self.map = nn.Conv2d(self.in_shape[0], self.out_shape[0], kernel_size=1)
        else:
            self.map = nn.Linear(int(np.prod(self.in_shape)), int(np.prod(self.out_shape)))

    def identity(self) -> Stitch:
        w = self.map.weight
        if w.shape[0] != w.shape[1]:
            raise ValueError(f"an identity stitch needs equal widths; got {tuple(w.shape[:2])}")
        with torch.no_grad():
            eye = torch.eye(w.shape[0])
            w.copy_(eye.view(*w.shape) if w.ndim == 4 else eye)
            self.map.bias.zero_()
        return self

    def _inputs(self, x: torch.Tensor) -> torch.Tensor:
        """What the map sees, one row per position (conv: every pixel of the resized map; linear: every sample)."""
        if isinstance(self.map, nn.Conv2d):
            if tuple(x.shape[2:]) != self.out_shape[1:]:
                x = F.interpolate(x, size=self.out_shape[1:], mode="bilinear", align_corners=False)
            return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])
        return x.flatten(1)

    @torch.no_grad()
    def fit_least_squares(self, x: torch.Tensor, y: torch.Tensor, *, ridge: float = 1e-3) -> Stitch:
        """Set the map to the ridge regression of B's layer output ``y`` on A's ``x`` (the closed-form start of
        Bansal et al.; ``ridge`` is relative to the mean variance of the inputs)."""
        X = self._inputs(x).double()
        Y = (y.permute(0, 2, 3, 1).reshape(-1, y.shape[1]) if y.ndim == 4 else y.flatten(1)).double()
        mx, my = X.mean(0), Y.mean(0)
        Xc, Yc = X - mx, Y - my
        gram = Xc.T @ Xc
        lam = ridge * float(torch.trace(gram)) / max(gram.shape[0], 1) + 1e-12
        W = torch.linalg.solve(gram + lam * torch.eye(gram.shape[0], dtype=gram.dtype), Xc.T @ Yc)  # (in, out)
        self.map.weight.copy_(W.T.reshape(self.map.weight.shape).to(self.map.weight.dtype))
        self.map.bias.copy_((my - mx @ W).to(self.map.bias.dtype))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.map, nn.Conv2d):
            if tuple(x.shape[2:]) != self.out_shape[1:]:
                x = F.interpolate(x, size=self.out_shape[1:], mode="bilinear", align_corners=False)
            y = self.map(x)
        else:
            y = self.map(x.flatten(1)).view(len(x), *self.out_shape)
        return F.relu(y) if self.relu else y


class StitchedNetwork(nn.Module):
    """Frozen bottom of ``a`` to the output of ``layer_a``, ``stitch``, frozen top of ``b`` after ``layer_b``.

    A and B are frozen copies (the models passed in are left as they are). B runs on the same input with the output
    of ``layer_b`` replaced by the stitch's (a forward hook); no parameter of A or B requires a gradient, so B's bottom builds no graph. ``train()`` puts only the stitch in training mode:
    A's and B's batch norms keep their statistics.
    """

    def __init__(self, a: nn.Module, layer_a: str, b: nn.Module, layer_b: str, stitch: Stitch):
        super().__init__()
        # frozen copies: the callers' models (often shared, e.g. memoised by the dashboard) are never changed
        a, b = copy.deepcopy(a), copy.deepcopy(b)
        self.a, self.b, self.stitch, self.layer_a, self.layer_b = a, b, stitch, layer_a, layer_b
        for p in [*a.parameters(), *b.parameters()]:
            p.requires_grad_(False)
        self._mod_a, self._mod_b = _module(a, layer_a), _module(b, layer_b)
        self.train(False)

    def train(self, mode: bool = True) -> StitchedNetwork:
        self.training = mode
        self.a.eval()
        self.b.eval()
        self.stitch.train(mode)
        return self

    def bottom(self, x: torch.Tensor) -> torch.Tensor:
        box: list[torch.Tensor] = []

        def grab(_m, _a, out):
            box.append(out)
            raise _Stop

        handle = self._mod_a.register_forward_hook(grab)
        try:
            self.a(x)
        except _Stop:
            pass
        finally:
            handle.remove()
        return box[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stitch(self.bottom(x))
        handle = self._mod_b.register_forward_hook(lambda _m, _a, _out: h)
        try:
            return self.b(x)
        finally:
            handle.remove()


@torch.no_grad()
def _layer_output(model: nn.Module, layer: str, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Output of ``layer`` for ``images`` in eval mode, unflattened (N, *shape); the forward pass stops there."""
    out = []

    def grab(_m, _a, o):
        out.append(o.detach())
        raise _Stop

    handle = _module(model, layer).register_forward_hook(grab)
    was_training = model.training
    try:
        model.eval()
        for i in range(0, len(images), batch_size):
            try:
                model(images[i:i + batch_size])
            except _Stop:
                pass
    finally:
        handle.remove()
        model.train(was_training)
    return torch.cat(out)


def rank_correlation(x: Sequence[float], y: Sequence[float]) -> dict:
    """Spearman's rho of ``x`` and ``y`` over the pairs where both are finite, its two-sided p-value and N
    (rho and p are NaN for fewer than 3 pairs or a constant side)."""
    from scipy.stats import spearmanr

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    n = int(ok.sum())
    if n < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return {"rho": float("nan"), "p": float("nan"), "n": n}
    res = spearmanr(x[ok], y[ok])
    return {"rho": float(res.statistic), "p": float(res.pvalue), "n": n}


@dataclass
class StitchResult:
    """Stitched accuracy over (layer of A x layer of B), NaN where not run or not stitchable; the indices over the
    same pairs; each index's rank correlation with stitched accuracy."""

    model_a: str
    model_b: str
    layers_a: list[str]
    layers_b: list[str]
    accuracy: np.ndarray = field(repr=False)
    indices: dict[str, np.ndarray] = field(repr=False)
    accuracy_a: float = float("nan")
    accuracy_b: float = float("nan")
    settings: dict = field(default_factory=dict)

    def pairs_table(self):
        """One row per stitched pair: layers, depths, stitched accuracy and every index."""
        import pandas as pd

        rows = []
        for i, la in enumerate(self.layers_a):
            for j, lb in enumerate(self.layers_b):
                if np.isfinite(self.accuracy[i, j]):
                    rows.append({"layer_a": la, "depth_a": i, "layer_b": lb, "depth_b": j,
                                 "stitched_accuracy": float(self.accuracy[i, j]),
                                 **{k: float(v[i, j]) for k, v in self.indices.items()}})
        return pd.DataFrame(rows)

    def correlations(self):
        """One row per index: Spearman rho with stitched accuracy, p-value and N pairs; best first."""
        import pandas as pd

        rows = [{"index": k, "label": STITCH_INDICES[k],
                 **rank_correlation(v[np.isfinite(self.accuracy)], self.accuracy[np.isfinite(self.accuracy)])}
                for k, v in self.indices.items()]
        return pd.DataFrame(rows).sort_values("rho", ascending=False, na_position="last", ignore_index=True)

    def to_dict(self) -> dict:
        return {"model_a": self.model_a, "model_b": self.model_b, "layers_a": self.layers_a,
                "layers_b": self.layers_b, "accuracy": np.where(np.isfinite(self.accuracy), self.accuracy,
                                                                  -1.0).tolist(),
                "indices": {k: v.tolist() for k, v in self.indices.items()}, "accuracy_a": self.accuracy_a,
                "accuracy_b": self.accuracy_b, "settings": self.settings}

    @classmethod
    def from_dict(cls, d: Mapping) -> StitchResult:
        acc = np.asarray(d["accuracy"], dtype=np.float64)
        return cls(d["model_a"], d["model_b"], list(d["layers_a"]), list(d["layers_b"]),
                   np.where(acc < 0, np.nan, acc), {k: np.asarray(v, dtype=np.float64) for k, v in d["indices"].items()},
                   float(d["accuracy_a"]), float(d["accuracy_b"]), dict(d["settings"]))


def run_stitching(
    a,
    b,
    train: Dataset,
    test: Dataset,
    *,
    pairs: Sequence[tuple[str, str]] | None = None,
    layers_a: Sequence[str] | None = None,
    layers_b: Sequence[str] | None = None,
    init: Dataset | None = None,
    config: TrainConfig = DEFAULT_STITCH_TRAINING,
    index_samples: int = 500,
    seed: int = 0,
    cache: DiskCache | None = None,
    progress: Progress | None = None,
    require_cached: bool = False,
    device: str = "cpu",
) -> StitchResult:
    """Stitch ``a`` into ``b`` (two :class:`~gbs_core.pipeline.LoadedModel`) at each pair of layers and measure it.

    ``layers_a``/``layers_b`` default to each model's default layers; ``pairs`` (layer of A, layer of B) defaults to
    the matched layers (i, i) for i up to the shorter list. ``train`` trains each stitch with ``config`` (its
    ``augment`` should be the training data's); ``test`` measures stitched accuracy, and its first ``index_samples``
    (stratified) give the indices. ``progress(done, total, message)`` moves after every epoch of every pair. With
    ``require_cached`` a pair missing from the cache raises LookupError instead of being trained. ``device`` trains,
    evaluates and extracts there (the models move to it).
    """
    from gbs_core.analysis import feature_set, motifs_by_layer
    from gbs_core.metrics.cka import linear_cka
    from gbs_core.metrics.gbs import gbs_similarity

    layers_a = list(layers_a or a.default_layers())
    layers_b = list(layers_b or b.default_layers())
    if pairs is None:
        pairs = [(layers_a[i], layers_b[i]) for i in range(min(len(layers_a), len(layers_b)))]
    bad = [p for p in pairs if p[0] not in layers_a or p[1] not in layers_b]
    if bad:
        raise ValueError(f"pairs {bad} are not (layer of A, layer of B) among {layers_a} x {layers_b}")
    shape = test.input_shape
    shapes_a, shapes_b = layer_shapes(a.model, layers_a, shape), layer_shapes(b.model, layers_b, shape)
    fit_images = (init or train).images
    memo: dict[tuple[str, str], torch.Tensor] = {}  # a layer's output on the fit images feeds every pair it is in

    def outputs(model: nn.Module, side: str, layer: str) -> torch.Tensor:
        if (side, layer) not in memo:
            memo[side, layer] = _layer_output(model, layer, fit_images)
        return memo[side, layer]

    acc = np.full((len(layers_a), len(layers_b)), np.nan)
    total, done = max(config.epochs, 1) * len(pairs) + 1, 0
    for la, lb in pairs:
        i, j = layers_a.index(la), layers_b.index(lb)
        label = f"{la} -> {lb}"
        if len(shapes_b[lb]) == 3 and len(shapes_a[la]) != 3:
            done += max(config.epochs, 1)
            continue
        key = {"kind": "stitch", "version": STITCH_VERSION, "a": a.model_id, "b": b.model_id, "layer_a": la,
               "layer_b": lb, "train": train.dataset_id, "test": test.dataset_id, "config": asdict(config),
               "init": (init or train).dataset_id, "seed": int(seed)}

        def compute(la=la, lb=lb, label=label, start=done):
            def moved(log):
                if progress is not None:
                    progress(start + log.epoch, total, f"{label}: epoch {log.epoch}/{config.epochs}, train accuracy "
                             f"{log.train_accuracy:.3f}")

            stitch = _seeded_stitch(shapes_a[la], shapes_b[lb], seed)
            stitch.fit_least_squares(outputs(a.model, "a", la), outputs(b.model, "b", lb))
            net = StitchedNetwork(a.model, la, b.model, lb, stitch)
            if config.epochs > 0:
                fit(net, train, config, progress=moved, device=device)
            return {"accuracy": np.array(evaluate(net, test, device=device))}

        if require_cached and (cache is None or cache.get(key) is None):
            raise LookupError(f"the stitch {label} is not in the cache")
        if progress is not None:
            progress(done, total, f"{label}: training the stitch")
        acc[i, j] = float(compute()["accuracy"] if cache is None else cache.get_or_compute(key, compute)[0]["accuracy"])
        done += max(config.epochs, 1)
    if progress is not None:
        progress(done, total, "indices on held-out images")
    idx_data = test.subsample(index_samples, seed=seed) if index_samples < len(test) else test
    fa = feature_set(a, idx_data, layers_a, cache=cache, device=device)
    fb = feature_set(b, idx_data, layers_b, cache=cache, device=device)
    motif = motifs_by_layer(fa, k=5, cache=cache)["same_class_fraction"].to_numpy(dtype=np.float64)
    indices = {k: np.full_like(acc, np.nan) for k in STITCH_INDICES}
    for i, la in enumerate(layers_a):
        for j, lb in enumerate(layers_b):
            if np.isfinite(acc[i, j]):
                indices["same_class_fraction_a"][i, j] = motif[i]
                indices["linear_cka"][i, j] = linear_cka(fa.features[la], fb.features[lb])
                indices["gbs_dense"][i, j] = gbs_similarity(fa.features[la], fb.features[lb])
    if progress is not None:
        progress(total, total, "stitching done")
    settings = {"init": (init or train).dataset_id, "train": train.dataset_id, "test": test.dataset_id, "n_train": len(train), "n_test": len(test),
                "index_samples": len(idx_data), "config": asdict(config), "seed": int(seed),
                "pairs": [list(p) for p in pairs]}
    return StitchResult(a.label, b.label, layers_a, layers_b, acc, indices, evaluate(a.model, test, device=device),
                        evaluate(b.model, test, device=device), settings)


def _seeded_stitch(in_shape, out_shape, seed: int) -> Stitch:
    torch.manual_seed(seed)
    return Stitch(in_shape, out_shape)
