"""Modularity- and GBS-guided pruning and their control, on any model whose analysed units sit in ``nn.Sequential``.

The rule of REFERENCE.md section 3 flags layers whose modularity gain ``dQ`` is below a threshold (the modularity
paper); the second criterion (``criterion="gbs"``, the GBS paper's claim that GBS guides pruning) flags layers whose
dense GBS similarity to the previous layer is above a threshold: they barely change the sample graph. A flagged unit can
only be cut out when the network still fits together without it: the unit must be an element of an ``nn.Sequential``
(so it can be dropped by name) and its output must have the shape of its input (a residual block with an identity
shortcut; a conv or linear block of equal width, stride 1, same padding). :func:`removable_units` measures each unit's
input and output shapes with one forward pass and gives the reason for every unit that cannot be removed.

:func:`run_pruning` then builds the pruned network (:func:`remove_units`), measures parameters and FLOPs
(``torch.utils.flop_counter.FlopCounterMode``), evaluates it, fine-tunes it with :func:`gbs_core.zoo.train.fit`, and
evaluates again. The paper's control prunes as many removable units that were NOT flagged, chosen at random for each
control seed, and fine-tunes them identically. Each pruned variant is cached on disk (:class:`~gbs_core.cache.DiskCache`)
under its weights fingerprint, removed units, data and training settings, so a page reload or a second command does not
retrain.

References
----------
Lu et al., "Understanding the Dynamics of DNNs Using Graph Modularity", ECCV 2022, arXiv 2111.12485.
Chen et al., "Graph-Based Similarity of Deep Neural Networks", Neurocomputing 614 (2024) 128722.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from gbs_core.activations import _one_thread
from gbs_core.cache import DiskCache
from gbs_core.data import Dataset
from gbs_core.metrics.gbs import gbs_redundant_layers, gbs_similarity
from gbs_core.metrics.modularity import prunable_layers
from gbs_core.zoo.train import EpochLog, TrainConfig, count_parameters, evaluate, fit

__all__ = [
    "UnitInfo",
    "PruningPlan",
    "PrunedVariant",
    "PruningResult",
    "PruneProgress",
    "removable_units",
    "plan_pruning",
    "choose_control_units",
    "remove_units",
    "count_flops",
    "run_pruning",
    "resolve_threshold",
    "pruning_curve",
    "PRUNING_VERSION",
    "DEFAULT_FINETUNE",
    "PruningData",
    "pruning_data",
    "CRITERIA",
    "DEFAULT_THRESHOLDS",
    "gbs_to_previous",
]

PRUNING_VERSION = "2"  # bump when the meaning of a cached pruning result changes
Criterion = Literal["modularity", "gbs"]
CRITERIA = {
    "modularity": "modularity gain dQ below the threshold (modularity paper)",
    "gbs": "dense GBS similarity to the previous layer above the threshold (GBS paper)",
}
DEFAULT_THRESHOLDS: dict[str, float | str] = {"modularity": 0.03, "gbs": "median"}


def _check_criterion(criterion: str) -> None:
    if criterion not in CRITERIA:
        raise ValueError(f"unknown pruning criterion {criterion!r}; choose from {', '.join(CRITERIA)}")
# Fine-tuning defaults: a fifth of the zoo's learning rate, cosine schedule, the zoo's augmentation.
DEFAULT_FINETUNE = TrainConfig(epochs=10, lr=0.01)


@dataclass(frozen=True)
class UnitInfo:
    """One analysed unit (a layer of the modularity curve) and whether it can be cut out.

    ``in_shape`` / ``out_shape`` are the per-sample shapes measured in a forward pass; ``reason`` is empty for a
    removable unit and says why otherwise.
    """

    name: str
    position: int
    removable: bool
    reason: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]


@dataclass(frozen=True)
class PruningPlan:
    """What the criterion flags, and what of it can be removed.

    Attributes
    ----------
    units : every analysed unit in depth order, with removability.
    q : the criterion's score per unit (same order): mean modularity Q, or for ``criterion="gbs"`` the dense GBS
        similarity to the previous unit (NaN for the first).
    flagged : names flagged by ``prunable_layers`` (dQ < threshold) or by ``gbs_redundant_layers`` (GBS to the previous
        layer > threshold), removable or not.
    dq, kinds : dQ and "plateau"/"degradation" of each flagged name (for "gbs": its GBS to the previous layer and
        "redundant").
    to_remove : the flagged names that are removable (the pruned model drops these).
    control_pool : removable names that were not flagged (the control draws from these).
    """

    units: tuple[UnitInfo, ...]
    q: tuple[float, ...]
    threshold: float
    flagged: tuple[str, ...]
    dq: dict[str, float]
    kinds: dict[str, str]
    to_remove: tuple[str, ...]
    control_pool: tuple[str, ...]
    criterion: str = "modularity"

    @property
    def not_removable_flagged(self) -> list[UnitInfo]:
        """Flagged units that cannot be removed, each with its reason."""
        by_name = {u.name: u for u in self.units}
        return [by_name[n] for n in self.flagged if not by_name[n].removable]


@dataclass
class PrunedVariant:
    """One pruned network: which units went, its size, and its accuracy before and after fine-tuning."""

    kind: Literal["flagged", "control"]
    seed: int | None
    removed: list[str]
    n_params: int
    flops: int
    accuracy_before: float
    accuracy_after: float
    history: list[dict] = field(default_factory=list)  # one {"epoch", "loss", "train_accuracy", "seconds"} per epoch

    @property
    def label(self) -> str:
        return "flagged" if self.kind == "flagged" else f"control (seed {self.seed})"


@dataclass
class PruningResult:
    """Everything a pruning run reports; ``table()`` gives one row per model (original, flagged, controls)."""

    model_label: str
    model_id: str
    settings: dict
    plan: PruningPlan
    original_params: int
    original_flops: int
    original_accuracy: float
    flagged: PrunedVariant | None
    controls: list[PrunedVariant]

    def variants(self) -> list[PrunedVariant]:
        return ([self.flagged] if self.flagged is not None else []) + list(self.controls)

    def table(self):
        """A pandas DataFrame: variant, seed, units removed, parameters, FLOPs, their reductions in percent, and the
        test accuracy before and after fine-tuning (the original's accuracy in both columns)."""
        import pandas as pd

        rows = [{
            "variant": "original", "seed": None, "n_removed": 0, "removed": "", "n_params": self.original_params,
            "params_reduction_pct": 0.0, "flops": self.original_flops, "flops_reduction_pct": 0.0,
            "accuracy_before_finetune": self.original_accuracy, "accuracy_after_finetune": self.original_accuracy,
        }]
        for v in self.variants():
            rows.append({
                "variant": v.kind, "seed": v.seed, "n_removed": len(v.removed), "removed": " ".join(v.removed),
                "n_params": v.n_params, "params_reduction_pct": _pct_drop(self.original_params, v.n_params),
                "flops": v.flops, "flops_reduction_pct": _pct_drop(self.original_flops, v.flops),
                "accuracy_before_finetune": v.accuracy_before, "accuracy_after_finetune": v.accuracy_after,
            })
        return pd.DataFrame(rows)

    def units_table(self):
        """A pandas DataFrame with one row per analysed unit: Q, dQ, flagged, kind, removable, reason, shapes."""
        import pandas as pd

        rows = []
        for u, q in zip(self.plan.units, self.plan.q, strict=True):
            score = ({"gbs_to_previous": q} if self.plan.criterion == "gbs"
                     else {"q": q, "dq": self.plan.dq.get(u.name)})
            rows.append({
                "position": u.position, "layer": u.name, **score,
                "flagged": u.name in self.plan.flagged, "kind": self.plan.kinds.get(u.name, ""),
                "removable": u.removable, "removed_in_pruned_model": u.name in self.plan.to_remove,
                "reason_not_removable": u.reason, "in_shape": "x".join(map(str, u.in_shape)),
                "out_shape": "x".join(map(str, u.out_shape)),
            })
        return pd.DataFrame(rows)

    def control_summary(self) -> dict:
        """Mean, standard deviation (ddof=1, 0 for one seed), min and max of the controls' accuracy after
        fine-tuning, and the flagged model's, for the flagged-vs-control comparison. Empty dict without controls."""
        if not self.controls:
            return {}
        acc = np.array([c.accuracy_after for c in self.controls])
        out = {"n_controls": int(acc.size), "control_mean": float(acc.mean()),
               "control_std": float(acc.std(ddof=1)) if acc.size > 1 else 0.0,
               "control_min": float(acc.min()), "control_max": float(acc.max())}
        if self.flagged is not None:
            out["flagged"] = self.flagged.accuracy_after
            out["flagged_minus_control_mean"] = self.flagged.accuracy_after - out["control_mean"]
        return out

    def to_dict(self) -> dict:
        d = {
            "model_label": self.model_label, "model_id": self.model_id, "settings": self.settings,
            "plan": {**asdict(self.plan), "units": [asdict(u) for u in self.plan.units]},
            "original_params": self.original_params, "original_flops": self.original_flops,
            "original_accuracy": self.original_accuracy,
            "flagged": asdict(self.flagged) if self.flagged is not None else None,
            "controls": [asdict(c) for c in self.controls],
            "control_summary": self.control_summary(),
        }
        return json.loads(json.dumps(d))  # tuples -> lists, plain JSON types

    @classmethod
    def from_dict(cls, d: Mapping) -> PruningResult:
        p = dict(d["plan"])
        units = tuple(UnitInfo(**{**u, "in_shape": tuple(u["in_shape"]), "out_shape": tuple(u["out_shape"])})
                      for u in p.pop("units"))
        plan = PruningPlan(units=units, q=tuple(p["q"]), threshold=p["threshold"], flagged=tuple(p["flagged"]),
                           dq=dict(p["dq"]), kinds=dict(p["kinds"]), to_remove=tuple(p["to_remove"]),
                           control_pool=tuple(p["control_pool"]), criterion=p.get("criterion", "modularity"))
        flagged = PrunedVariant(**d["flagged"]) if d.get("flagged") else None
        return cls(d["model_label"], d["model_id"], dict(d["settings"]), plan, d["original_params"],
                   d["original_flops"], d["original_accuracy"], flagged, [PrunedVariant(**c) for c in d["controls"]])


@dataclass(frozen=True)
class PruneProgress:
    """A progress report: ``done`` of ``total`` fine-tuning epochs over all variants, and what just happened."""

    variant: str
    done: int
    total: int
    message: str
    log: EpochLog | None = None

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


def _pct_drop(before: int, after: int) -> float:
    return 100.0 * (before - after) / before if before else 0.0


def _fmt_shape(shape: Sequence[int]) -> str:
    return "x".join(map(str, shape))


def _sequential_parent(model: nn.Module, name: str) -> tuple[str, str] | None:
    """(parent path, child key) when ``name`` is a direct child of an ``nn.Sequential`` inside ``model``."""
    parent, _, child = name.rpartition(".")
    try:
        owner = model.get_submodule(parent) if parent else model
    except AttributeError:
        return None
    if isinstance(owner, nn.Sequential) and child in owner._modules:
        return parent, child
    return None


def _why_not_removable(in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> str:
    if len(in_shape) != len(out_shape):
        return f"changes the shape from {_fmt_shape(in_shape)} to {_fmt_shape(out_shape)}"
    parts = []
    if in_shape[:1] != out_shape[:1]:
        what = "channels" if len(in_shape) > 1 else "width"
        parts.append(f"changes the {what} from {in_shape[0]} to {out_shape[0]}")
    if in_shape[1:] != out_shape[1:]:
        parts.append(f"changes the spatial size from {_fmt_shape(in_shape[1:])} to {_fmt_shape(out_shape[1:])}"
                     " (stride or valid padding)")
    return "; ".join(parts) + "; the next layer would not fit"


@torch.no_grad()
def removable_units(model: nn.Module, layers: Sequence[str], input_shape: Sequence[int] = (1, 16, 16)) -> list[UnitInfo]:
    """Which of ``layers`` (module names, in depth order) can be cut out of ``model``, with a reason for each that cannot.

    A unit is removable when it is an element of an ``nn.Sequential`` and its output has the same per-sample shape as
    its input, measured in one forward pass of a zero input of ``input_shape`` (eval mode; the model's mode is restored).

    Raises
    ------
    ValueError
        A name that is not a module of the model, or a unit that the forward pass never reaches.
    """
    modules = dict(model.named_modules())
    unknown = [n for n in layers if n not in modules]
    if unknown:
        raise ValueError(f"layer(s) {unknown} are not modules of this model; see list_layers for valid names")
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}

    def hook(name):
        def _record(_module, args, output):
            if name not in shapes and args and isinstance(args[0], torch.Tensor) and isinstance(output, torch.Tensor):
                shapes[name] = (tuple(args[0].shape[1:]), tuple(output.shape[1:]))
        return _record

    handles = [modules[n].register_forward_hook(hook(n)) for n in layers]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad(), _one_thread():  # one tiny input: a second thread only adds overhead
            model(torch.zeros(1, *input_shape))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    infos = []
    for pos, name in enumerate(layers):
        if name not in shapes:
            raise ValueError(f"layer {name!r} is not reached by a forward pass (or its input/output is not a tensor)")
        in_shape, out_shape = shapes[name]
        if in_shape != out_shape:
            reason = _why_not_removable(in_shape, out_shape)
        elif _sequential_parent(model, name) is None:
            reason = "not an element of an nn.Sequential, so it cannot be cut out by name"
        else:
            reason = ""
        infos.append(UnitInfo(name, pos, reason == "", reason, in_shape, out_shape))
    return infos


def resolve_threshold(q_values: Mapping[str, object], threshold: float | Literal["median"],
                      criterion: Criterion = "modularity") -> float:
    """The numeric threshold: ``threshold`` itself, or for ``"median"`` the median of dQ over layers 1..L-1
    (modularity) or of the GBS similarity to the previous layer over layers 1..L-1 (gbs).

    ``"median"`` is our addition to the papers' rules: it flags about half of the layers whatever the range of the
    curve, so that a control of equally many unflagged layers exists. (On the plain digits every layer's dQ is below
    0.03, since Q is already high at the first layer, and the fixed threshold flags every layer.)
    """
    _check_criterion(criterion)
    if isinstance(threshold, str):
        if threshold != "median":
            raise ValueError(f"threshold must be a number or 'median'; got {threshold!r}")
        q = np.array([float(np.mean(np.asarray(v, dtype=np.float64))) for v in q_values.values()])
        if q.size < 2:
            raise ValueError("a 'median' threshold needs a curve of at least 2 layers")
        return float(np.median(np.diff(q) if criterion == "modularity" else q[1:]))
    return float(threshold)


def plan_pruning(
    units: Sequence[UnitInfo], q_values: Mapping[str, object], *, threshold: float | Literal["median"] = 0.03,
    criterion: Criterion = "modularity",
) -> PruningPlan:
    """Apply the criterion to its per-unit scores and split the flagged units into removable and not.

    ``criterion="modularity"``: ``q_values`` maps each unit to its Q (or per-batch Q array, averaged) and
    ``prunable_layers`` flags dQ < threshold. ``criterion="gbs"``: ``q_values`` maps each unit to its dense GBS
    similarity to the previous unit (the first unit's value is ignored) and ``gbs_redundant_layers`` flags those above
    the threshold. Both in the same order as ``units``; ``threshold`` may be ``"median"`` (see
    :func:`resolve_threshold`); the plan records the number.

    Raises
    ------
    ValueError
        When the scores' layers are not the units' names in the same order, a score is not finite, an unknown
        criterion.
    """
    names = [u.name for u in units]
    if list(q_values) != names:
        raise ValueError(f"the curve's layers {list(q_values)} differ from the units {names}")
    threshold = resolve_threshold(q_values, threshold, criterion)
    score = {n: float(np.mean(np.asarray(q_values[n], dtype=np.float64))) for n in names}
    if criterion == "modularity":
        flagged = prunable_layers(q_values, threshold=threshold)
        dq, kinds = {f.name: f.dq for f in flagged}, {f.name: f.kind for f in flagged}
    else:
        flagged = gbs_redundant_layers({n: (score[n] if i else 0.0) for i, n in enumerate(names)},
                                       threshold=threshold)
        dq, kinds = {f.name: f.similarity for f in flagged}, {f.name: "redundant" for f in flagged}
    removable = {u.name for u in units if u.removable}
    flagged_names = [f.name for f in flagged]
    return PruningPlan(
        units=tuple(units),
        q=tuple(score[n] for n in names),
        threshold=float(threshold),
        flagged=tuple(flagged_names),
        dq=dq,
        kinds=kinds,
        to_remove=tuple(n for n in flagged_names if n in removable),
        control_pool=tuple(n for n in names if n in removable and n not in set(flagged_names)),
        criterion=criterion,
    )


def choose_control_units(plan: PruningPlan, seed: int, n: int | None = None) -> list[str]:
    """``n`` (default: as many as the pruned model removes) removable units that were NOT flagged, drawn without
    replacement with ``numpy.random.default_rng(seed)``, in depth order. When the pool is smaller than ``n``, the
    whole pool (the control then removes fewer units; the result records how many)."""
    n = len(plan.to_remove) if n is None else int(n)
    pool = list(plan.control_pool)
    if n >= len(pool):
        return pool
    picked = set(np.random.default_rng(seed).choice(len(pool), size=n, replace=False).tolist())
    return [name for i, name in enumerate(pool) if i in picked]


def remove_units(model: nn.Module, names: Sequence[str]) -> nn.Module:
    """A deep copy of ``model`` with the named ``nn.Sequential`` elements cut out (the rest re-indexed from 0).

    The original is not modified. Shapes are not checked here: use :func:`removable_units` to choose the names.

    Raises
    ------
    ValueError
        A name that is not an element of an ``nn.Sequential`` of the model.
    """
    pruned = copy.deepcopy(model)
    drop: dict[str, set[str]] = {}
    for name in names:
        where = _sequential_parent(pruned, name)
        if where is None:
            raise ValueError(f"{name!r} is not an element of an nn.Sequential of this model; it cannot be removed")
        drop.setdefault(where[0], set()).add(where[1])
    for parent, children in drop.items():
        seq = pruned.get_submodule(parent) if parent else pruned
        kept = nn.Sequential(*(m for key, m in seq._modules.items() if key not in children))
        if not parent:
            return kept
        grand, _, attr = parent.rpartition(".")
        setattr(pruned.get_submodule(grand) if grand else pruned, attr, kept)
    return pruned


@torch.no_grad()
def count_flops(model: nn.Module, input_shape: Sequence[int] = (1, 16, 16)) -> int:
    """FLOPs of one forward pass of one sample, as ``torch.utils.flop_counter.FlopCounterMode`` counts them
    (convolutions and matrix multiplies, 2 FLOPs per multiply-add; batch norm, ReLU and pooling are not counted)."""
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, *input_shape))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def _variant_key(model_id: str, removed: Sequence[str], train: Dataset, test: Dataset, cfg: TrainConfig) -> dict:
    return {"kind": "pruned-variant", "version": PRUNING_VERSION, "model": model_id, "removed": sorted(removed),
            "train": train.dataset_id, "test": test.dataset_id, "config": asdict(cfg)}


def _run_variant(model: nn.Module, model_id: str, kind: str, seed: int | None, removed: list[str], train: Dataset,
                 test: Dataset, cfg: TrainConfig, cache: DiskCache | None, report: Callable[[EpochLog | None], None],
                 device, require_cached: bool = False) -> PrunedVariant:
    key = _variant_key(model_id, removed, train, test, cfg)
    if cache is not None:
        hit = cache.get(key)
        if hit is not None:
            report(None)
            # the stored record may come from another control seed that drew the same units
            return PrunedVariant(**{**hit[1]["variant"], "kind": kind, "seed": seed})
    if require_cached:
        raise LookupError(f"the {kind} variant (removing {len(removed)} units) is not in the cache")
    pruned = remove_units(model, removed)
    input_shape = train.input_shape
    n_params, flops = count_parameters(pruned), count_flops(pruned, input_shape)
    before = evaluate(pruned, test, device=device)
    logs = fit(pruned, train, cfg, device=device, progress=report) if cfg.epochs > 0 else []
    after = evaluate(pruned, test, device=device)
    variant = PrunedVariant(kind, seed, list(removed), n_params, flops, before, after, [asdict(log) for log in logs])
    if cache is not None:
        cache.put(key, {}, {"variant": asdict(variant)})
    return variant


def run_pruning(
    model: nn.Module,
    q_values: Mapping[str, object],
    train: Dataset,
    test: Dataset,
    *,
    threshold: float | Literal["median"] = 0.03,
    finetune: TrainConfig = DEFAULT_FINETUNE,
    control_seeds: Sequence[int] = (0, 1, 2),
    model_id: str | None = None,
    model_label: str = "model",
    cache: DiskCache | None = None,
    device: str | torch.device = "cpu",
    progress: Callable[[PruneProgress], None] | None = None,
    extra_settings: Mapping | None = None,
    require_cached: bool = False,
    criterion: Criterion = "modularity",
) -> PruningResult:
    """Prune the flagged removable units of ``model``, fine-tune, evaluate, and run the control.

    Parameters
    ----------
    model : nn.Module
        The trained network (not modified).
    q_values : mapping layer name -> score
        The criterion's curve over the units to consider, in depth order: for ``criterion="modularity"`` Q (or
        per-batch Q arrays; ``modularity_curve`` of the model's default layers), for ``"gbs"`` the GBS similarity to
        the previous unit (:func:`gbs_to_previous`). See :func:`pruning_curve`.
    train, test : Dataset
        Fine-tuning and evaluation splits.
    threshold : float or "median", default 0.03
        ``prunable_layers`` threshold (see :func:`resolve_threshold` for "median").
    finetune : TrainConfig
        Fine-tuning settings, the same for the flagged and the control models. ``epochs=0`` skips fine-tuning.
    control_seeds : sequence of int
        One control model per seed, each removing as many randomly drawn unflagged removable units. Empty: no control.
        When the pool of unflagged removable units is no larger than the count, every seed draws the whole pool and
        a single control model is trained (``controls`` then has one entry).
    model_id : str, optional
        Weights fingerprint for the cache key (``gbs_core.pipeline.model_fingerprint``); computed when omitted.
    cache : DiskCache, optional
        Stores each pruned variant; a repeated run reads them back instead of retraining.
    progress : callable, optional
        Called with a :class:`PruneProgress` after each fine-tuning epoch and each finished variant.
    require_cached : bool, default False
        Only read results: raise ``LookupError`` when a variant is not in the cache (a page uses this to show a
        finished run without starting a new one).

    Returns
    -------
    PruningResult
        ``flagged`` is None when no flagged unit is removable; then the controls are skipped too.
    """
    from gbs_core.pipeline import model_fingerprint

    model_id = model_id or model_fingerprint(model)
    input_shape = train.input_shape
    units = removable_units(model, list(q_values), input_shape)
    plan = plan_pruning(units, q_values, threshold=threshold, criterion=criterion)
    jobs: list[tuple[str, int | None, list[str]]] = []
    if plan.to_remove:
        jobs.append(("flagged", None, list(plan.to_remove)))
        jobs += [("control", int(s), choose_control_units(plan, int(s))) for s in control_seeds]
        # a control with an empty pool has nothing to remove; seeds that draw the same units (a pool no larger than
        # the count) would repeat one model, so each distinct set of units is trained once
        seen: set[tuple[str, ...]] = set()
        unique = []
        for job in jobs:
            units_key = tuple(sorted(job[2]))
            if job[2] and (job[0] == "flagged" or units_key not in seen):
                unique.append(job)
                if job[0] == "control":
                    seen.add(units_key)
        jobs = unique
    total = max(finetune.epochs, 1) * len(jobs)
    done = 0
    variants: list[PrunedVariant] = []
    for kind, seed, removed in jobs:
        label = "flagged" if kind == "flagged" else f"control (seed {seed})"
        start = done

        def report(log: EpochLog | None, _label=label, _start=start) -> None:
            nonlocal done
            if log is None:  # read from the cache
                done = _start + max(finetune.epochs, 1)
                msg = f"{_label}: loaded from cache"
            else:
                done = _start + log.epoch
                msg = (f"{_label}: epoch {log.epoch}/{finetune.epochs} loss {log.loss:.4f} "
                       f"train acc {log.train_accuracy:.4f}")
            if progress is not None:
                progress(PruneProgress(_label, done, total, msg, log))

        v = _run_variant(model, model_id, kind, seed, removed, train, test, finetune, cache, report, device,
                         require_cached)
        done = start + max(finetune.epochs, 1)
        if progress is not None:
            progress(PruneProgress(label, done, total, f"{label}: removed {len(removed)} units, test accuracy "
                                   f"{v.accuracy_before:.4f} before and {v.accuracy_after:.4f} after fine-tuning"))
        variants.append(v)
    settings = {"criterion": criterion, "threshold": plan.threshold, "threshold_rule": str(threshold), "finetune": asdict(finetune), "control_seeds": [int(s) for s in control_seeds],
                "train": train.dataset_id, "test": test.dataset_id, "n_train": len(train), "n_test": len(test),
                **dict(extra_settings or {})}
    flagged = variants[0] if variants and variants[0].kind == "flagged" else None
    return PruningResult(model_label, model_id, settings, plan, count_parameters(model), count_flops(model, input_shape),
                         evaluate(model, test, device=device), flagged, [v for v in variants if v.kind == "control"])


def gbs_to_previous(fs, *, cache: DiskCache | None = None) -> dict[str, float]:
    """Dense GBS similarity of each layer of a FeatureSet to the layer before it (NaN for the first), cached per pair:
    the GBS pruning criterion's curve."""
    out: dict[str, float] = {}
    for i, layer in enumerate(fs.layers):
        if i == 0:
            out[layer] = float("nan")
            continue
        prev = fs.layers[i - 1]

        def compute(prev=prev, layer=layer):
            return {"gbs": np.array(gbs_similarity(fs.features[prev], fs.features[layer]))}

        key = fs.key("gbs_to_previous", layer=layer, previous=prev)
        out[layer] = float((compute() if cache is None else cache.get_or_compute(key, compute)[0])["gbs"])
    return out


def pruning_curve(
    loaded,
    data: Dataset,
    *,
    layers: Sequence[str] | None = None,
    k: int = 3,
    n_batches: int = 1,
    seed: int = 0,
    cache: DiskCache | None = None,
    criterion: Criterion = "modularity",
) -> dict[str, object]:
    """The curve that drives the pruning, on ``data``, through the same cache as the dashboard: for "modularity"
    ``modularity_by_layer`` of the model's layers (default: its default layers), layer -> Q per batch; for "gbs"
    :func:`gbs_to_previous`, layer -> GBS to the previous layer."""
    from gbs_core.analysis import feature_set, modularity_by_layer

    _check_criterion(criterion)
    fs = feature_set(loaded, data, layers, cache=cache)
    if criterion == "gbs":
        return gbs_to_previous(fs, cache=cache)
    return modularity_by_layer(fs, k=k, n_batches=n_batches, seed=seed, cache=cache)


@dataclass(frozen=True, eq=False)
class PruningData:
    """The samples a pruning run of a bundled model uses, matched to the data it was trained on.

    ``curve``: the fixed images of the training split the modularity curve is computed on; ``train``: the plain
    training split fine-tuning draws from, with ``augment`` (for the digits in noise, a fresh noisy transform every
    epoch, as in training); ``test``: the held-out split accuracy is measured on.
    """

    curve: Dataset
    train: Dataset
    test: Dataset
    augment: Literal["shift", "digits-noise"]

    def finetune_config(self, epochs: int = 10, lr: float = 0.01, **kwargs) -> TrainConfig:
        """Fine-tuning settings with this data's augmentation (no pixel shifts on top of the noisy transform)."""
        shift = 0 if self.augment == "digits-noise" else 2
        return TrainConfig(epochs=epochs, lr=lr, augment=self.augment, max_shift=shift, **kwargs)


def pruning_data(training_data: str, *, curve_samples: int | None = 500, train_samples: int | None = None,
                 load: Callable[[str, str], Dataset] | None = None) -> PruningData:
    """:class:`PruningData` for a model trained on ``training_data`` (a zoo manifest ``data`` name).

    ``curve_samples`` and ``train_samples`` take stratified subsamples (seed 0; None for all). ``load(source, split)``
    reads a bundled source (default :func:`gbs_core.data.load_bundled`; the dashboard passes its cached copy).
    """
    from gbs_core.data import load_bundled
    from gbs_core.zoo.registry import training_data as _record

    load = load or load_bundled
    record = _record(training_data)
    source, augment = record.source, record.augment

    def _take(data: Dataset, n: int | None) -> Dataset:
        return data.subsample(n, seed=0) if n is not None and n < len(data) else data

    return PruningData(curve=_take(load(source, "train"), curve_samples), train=_take(load("digits", "train"),
                       train_samples), test=load(source, "test"), augment=augment)  # type: ignore[arg-type]


def experiment_data(spec, *, curve_samples: int | None = 500, train_samples: int | None = None, seed: int = 0,
                    load: Callable[[str, str], Dataset] | None = None) -> PruningData:
    """:class:`PruningData` of any data source with a training split (a :class:`~gbs_core.sources.DataSpec`): the
    bundled sources as :func:`pruning_data` gives them; CIFAR's own train and test splits; an image folder's seeded
    stratified split. Fine-tuning on a user's data uses random shifts of up to two pixels.

    Raises
    ------
    DataError
        Saved activations (no images to train on), or a folder too small to split.
    """
    from gbs_core.sources import train_test
    from gbs_core.zoo.registry import training_data_for_source

    if spec.bundled:
        return pruning_data(training_data_for_source(spec.kind), curve_samples=curve_samples,
                            train_samples=train_samples, load=load)
    train, test = train_test(spec, seed=seed)

    def _take(data: Dataset, n: int | None) -> Dataset:
        return data.subsample(n, seed=0) if n is not None and n < len(data) else data

    return PruningData(curve=_take(train, curve_samples), train=_take(train, train_samples), test=test,
                       augment="shift")
