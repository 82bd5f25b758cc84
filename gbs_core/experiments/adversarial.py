"""Modularity under adversarial attack (modularity paper): do the class communities of attacked inputs collapse?

The attacks come from the Adversarial Robustness Toolbox (ART, pinned in requirements.txt; torchattacks pins
``requests~=2.25.1`` and would downgrade what streamlit needs): FGSM and PGD (L-inf, budget ``eps`` on images in
[0, 1]), Carlini-Wagner L2 (``confidence`` kappa) and the one-pixel attack (``pixels`` changed, differential
evolution). An :class:`AttackSpec` names one; :func:`adversarial_dataset` attacks a data set chunk by chunk (each chunk
seeded by the seed and its position, cached on its own, so an interrupted slow attack resumes where it stopped) and
returns the attacked images as a :class:`~gbs_core.data.Dataset` with the true labels and an id of its own, so the
layer features and curves of attacked inputs are cached like any others. :func:`run_adversarial` puts the clean curve
and every attacked curve side by side with their accuracies.

References
----------
Lu et al., "Understanding the Dynamics of DNNs Using Graph Modularity", ECCV 2022, arXiv 2111.12485, section 4.3.
Goodfellow et al. 2015 (FGSM); Madry et al. 2018 (PGD); Carlini and Wagner 2017 (CW); Su et al. 2019 (one pixel).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from gbs_core.analysis import feature_set, modularity_by_layer
from gbs_core.cache import DiskCache, cache_key
from gbs_core.data import Dataset
from gbs_core.metrics.modularity import modularity_difference
from gbs_core.pipeline import LoadedModel

__all__ = ["AttackKind", "ATTACKS", "AttackSpec", "parse_attack", "attack_images", "adversarial_dataset",
           "AdversarialResult", "run_adversarial", "DEFAULT_ATTACKS", "ADVERSARIAL_VERSION"]

ADVERSARIAL_VERSION = "2"  # bump when the meaning of cached attacked images changes
Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class AttackKind:
    """One attack of :data:`ATTACKS`: what its ``strength`` means, its bounds, and how many samples one chunk holds
    (a chunk is one cached, progress-reporting unit of work)."""

    key: str
    label: str
    strength_name: str
    default_strength: float
    max_strength: float
    chunk: int
    integer: bool = False


ATTACKS: dict[str, AttackKind] = {a.key: a for a in (
    AttackKind("fgsm", "FGSM", "eps", 0.03, 1.0, 500),
    AttackKind("pgd", "PGD (L-inf, 10 steps)", "eps", 0.03, 1.0, 250),
    AttackKind("cw", "Carlini-Wagner L2", "confidence", 0.0, 100.0, 50),
    AttackKind("one-pixel", "One-pixel", "pixels", 1, 256, 10, integer=True),
)}


@dataclass(frozen=True)
class AttackSpec:
    """An attack and its strength (``eps`` for FGSM/PGD, ``confidence`` for CW, ``pixels`` for one-pixel)."""

    kind: str
    strength: float

    def __post_init__(self) -> None:
        if self.kind not in ATTACKS:
            raise ValueError(f"unknown attack {self.kind!r}; choose from {', '.join(ATTACKS)}")
        a = ATTACKS[self.kind]
        s = float(self.strength)
        if not (np.isfinite(s) and 0 <= s <= a.max_strength):
            raise ValueError(f"{a.label}: {a.strength_name} must lie in [0, {a.max_strength}]; got {self.strength}")
        if a.integer and (s != int(s) or s < 1):
            raise ValueError(f"{a.label}: {a.strength_name} must be a whole number >= 1; got {self.strength}")

    @property
    def label(self) -> str:
        a = ATTACKS[self.kind]
        value = f"{int(self.strength)}" if a.integer else f"{self.strength:g}"
        return f"{a.label} {a.strength_name}={value}"


DEFAULT_ATTACKS = (AttackSpec("fgsm", 0.03), AttackSpec("fgsm", 0.1), AttackSpec("pgd", 0.03), AttackSpec("pgd", 0.1))


def parse_attack(text: str) -> AttackSpec:
    """``KIND[:STRENGTH]``, e.g. ``fgsm:0.03``, ``pgd:0.1``, ``cw``, ``one-pixel:3``; without a strength, the default."""
    kind, _, value = text.strip().partition(":")
    if kind not in ATTACKS:
        raise ValueError(f"unknown attack {kind!r} in {text!r}; choose from {', '.join(ATTACKS)}")
    try:
        strength = float(value) if value else ATTACKS[kind].default_strength
    except ValueError as exc:
        raise ValueError(f"{text!r}: the strength after ':' must be a number") from exc
    return AttackSpec(kind, strength)


def _estimator(model: nn.Module, input_shape: Sequence[int], n_classes: int, device: str):
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(model=model, loss=nn.CrossEntropyLoss(), input_shape=tuple(input_shape),
                             nb_classes=n_classes, clip_values=(0.0, 1.0),
                             device_type="gpu" if str(device).startswith("cuda") else "cpu")


def _attack(spec: AttackSpec, estimator, batch_size: int):
    from art.attacks.evasion import CarliniL2Method, FastGradientMethod, PixelAttack, ProjectedGradientDescent

    s = float(spec.strength)
    if spec.kind == "fgsm":
        return FastGradientMethod(estimator, norm=np.inf, eps=s, batch_size=batch_size)
    if spec.kind == "pgd":
        return ProjectedGradientDescent(estimator, norm=np.inf, eps=s, eps_step=s / 4, max_iter=10, num_random_init=1,
                                        batch_size=batch_size, verbose=False)
    if spec.kind == "cw":
        return CarliniL2Method(estimator, confidence=s, max_iter=10, binary_search_steps=3, batch_size=batch_size,
                               verbose=False)
    return PixelAttack(estimator, th=int(s), es=1, max_iter=10, verbose=False)


def attack_images(model: nn.Module, images: torch.Tensor, labels: np.ndarray, spec: AttackSpec, *, n_classes: int,
                  seed: int = 0, device: str = "cpu") -> torch.Tensor:
    """Attacked copies of ``images`` (float32 in [0, 1], shape (N, C, H, W)) against their true ``labels``.

    Seeded: ART draws from numpy's global generator, so its state is set from ``seed`` here and restored after. A
    zero budget (``eps=0`` for PGD) returns the images unchanged; FGSM at ``eps=0`` runs and changes nothing. A pixel
    that moved by less than 1e-6 (float rounding in ART's rescaling) keeps its original value.
    """
    if spec.kind == "pgd" and spec.strength == 0:
        return images.clone()
    x = images.detach().cpu().numpy().astype(np.float32)
    if x.min() < 0 or x.max() > 1:
        raise ValueError(f"attacks expect images in [0, 1]; these span [{x.min():.3g}, {x.max():.3g}]")
    was_training = model.training
    model.eval()
    state = np.random.get_state()
    torch_state = torch.random.get_rng_state()
    try:
        np.random.seed(seed)
        torch.manual_seed(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ART warns about its own defaults on every call
            est = _estimator(model, x.shape[1:], n_classes, device)
            adv = _attack(spec, est, batch_size=min(len(x), 256)).generate(x, y=np.asarray(labels, dtype=np.int64))
    finally:
        np.random.set_state(state)
        torch.random.set_rng_state(torch_state)
        model.train(was_training)
    adv = np.clip(np.asarray(adv, dtype=np.float32), 0.0, 1.0)
    # ART rescales images inside some attacks (one-pixel): untouched pixels come back off by float rounding
    return torch.from_numpy(np.where(np.abs(adv - x) < 1e-6, x, adv))


def _chunk_seed(seed: int, start: int) -> int:
    """A seed in numpy's range for the chunk starting at sample ``start`` (any integer seed)."""
    return int(np.random.SeedSequence([abs(int(seed)), int(seed) < 0, int(start)]).generate_state(1)[0])


def adversarial_dataset(
    loaded: LoadedModel,
    data: Dataset,
    spec: AttackSpec,
    *,
    seed: int = 0,
    cache: DiskCache | None = None,
    device: str = "cpu",
    progress: Callable[[int, int], None] | None = None,
    require_cached: bool = False,
) -> Dataset:
    """``data`` attacked against ``loaded``'s model, as a Dataset (true labels, id naming model, data, attack, seed).

    The work is split in chunks of ``ATTACKS[kind].chunk`` samples, each cached on its own and seeded by ``seed`` and
    its position; ``progress(samples_done, n)`` moves after each chunk. With ``require_cached`` a chunk missing from
    the cache raises LookupError instead of being computed (a page asks before it starts a slow attack).
    """
    base = {"kind": "adversarial", "version": ADVERSARIAL_VERSION, "model": loaded.model_id, "data": data.dataset_id,
            "attack": spec.kind, "strength": float(spec.strength), "seed": int(seed)}
    chunk = ATTACKS[spec.kind].chunk
    parts = []
    n = len(data)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)

        def compute(start=start, stop=stop):
            adv = attack_images(loaded.model, data.images[start:stop], data.labels[start:stop], spec,
                                n_classes=data.n_classes, seed=_chunk_seed(seed, start), device=device)
            return {"images": adv.numpy()}

        key = {**base, "start": start, "stop": stop}
        if require_cached and (cache is None or cache.get(key) is None):
            raise LookupError(f"{spec.label} on {data.dataset_id} is not in the cache")
        parts.append(compute()["images"] if cache is None else cache.get_or_compute(key, compute)[0]["images"])
        if progress is not None:
            progress(stop, n)
    images = torch.from_numpy(np.concatenate(parts).astype(np.float32, copy=False))
    return Dataset(images, data.labels.copy(), data.class_names, f"{data.dataset_id}/adv-{cache_key(base)[:16]}")


@dataclass
class AdversarialResult:
    """The clean curve (row 0) and one curve per attack, with accuracy and perturbation size per row."""

    model: str
    layers: list[str]
    attacks: list[str]
    kinds: list[str]
    strengths: list[float]
    accuracy: list[float]
    linf: list[float]
    q: np.ndarray = field(repr=False)  # (rows, layers)
    settings: dict = field(default_factory=dict)

    def table(self):
        """One row per input set: attack, strength, accuracy, mean L-inf and the Q of every layer."""
        import pandas as pd

        rows = [{"attack": a, "kind": k, "strength": s, "accuracy": acc, "mean_linf": li,
                 **{layer: float(v) for layer, v in zip(self.layers, q, strict=True)}}
                for a, k, s, acc, li, q in zip(self.attacks, self.kinds, self.strengths, self.accuracy, self.linf,
                                               self.q, strict=True)]
        return pd.DataFrame(rows)

    def curves_table(self):
        """Long table for plotting: attack, accuracy, depth, layer, q."""
        import pandas as pd

        return pd.DataFrame([{"attack": a, "accuracy": acc, "depth": d, "layer": layer, "q": float(self.q[i, d])}
                             for i, (a, acc) in enumerate(zip(self.attacks, self.accuracy, strict=True))
                             for d, layer in enumerate(self.layers)])

    def difference(self, row: int = 0) -> np.ndarray:
        """|Q_i - Q_j| over the layers of one row's curve (row 0: the clean inputs)."""
        return modularity_difference(self.q[row])

    def to_dict(self) -> dict:
        return {"model": self.model, "layers": self.layers, "attacks": self.attacks, "kinds": self.kinds,
                "strengths": self.strengths, "accuracy": self.accuracy, "mean_linf": self.linf,
                "q": self.q.tolist(), "settings": self.settings}

    @classmethod
    def from_dict(cls, d: Mapping) -> AdversarialResult:
        return cls(d["model"], list(d["layers"]), list(d["attacks"]), list(d["kinds"]),
                   [float(s) for s in d["strengths"]], [float(a) for a in d["accuracy"]],
                   [float(v) for v in d["mean_linf"]], np.asarray(d["q"], dtype=np.float64), dict(d["settings"]))


def run_adversarial(
    loaded: LoadedModel,
    data: Dataset,
    attacks: Sequence[AttackSpec] = DEFAULT_ATTACKS,
    *,
    layers: Sequence[str] | None = None,
    pool: bool = False,
    k: int = 3,
    n_batches: int = 1,
    seed: int = 0,
    cache: DiskCache | None = None,
    device: str = "cpu",
    progress: Progress | None = None,
    require_cached: bool = False,
) -> AdversarialResult:
    """Modularity curves (k = 3, ground-truth classes as communities) of clean and attacked inputs, with accuracies.

    ``progress(done, total, message)`` counts samples attacked plus one step per curve, so it moves with the work of
    a slow attack (one chunk at a time). ``require_cached``: see :func:`adversarial_dataset`.
    """
    attacks = list(attacks)
    total = len(attacks) * len(data) + len(attacks) + 1
    done = 0

    def report(message: str) -> None:
        if progress is not None:
            progress(min(done, total), total, message)

    fs_clean = feature_set(loaded, data, layers, pool=pool, cache=cache, device=device)
    layers = fs_clean.layers
    sets = [("clean", "clean", 0.0, data, fs_clean)]
    for spec in attacks:
        start = done
        report(f"{spec.label}: attacking {len(data)} samples")

        def moved(s: int, n: int, spec=spec, start=start) -> None:
            nonlocal done
            done = start + s
            report(f"{spec.label}: {s} of {n} samples attacked")

        adv = adversarial_dataset(loaded, data, spec, seed=seed, cache=cache, device=device, progress=moved,
                                  require_cached=require_cached)
        done = start + len(data)
        sets.append((spec.label, spec.kind, float(spec.strength), adv,
                     feature_set(loaded, adv, layers, pool=pool, cache=cache, device=device)))
    rows_q, acc, linf = [], [], []
    for label, _, _, ds, fs in sets:
        report(f"{label}: modularity curve")
        curve = modularity_by_layer(fs, k=k, n_batches=n_batches, seed=seed, cache=cache)
        rows_q.append([float(np.mean(curve[layer])) for layer in layers])
        acc.append(float(np.mean(fs.predictions == fs.labels)) if fs.predictions is not None else float("nan"))
        linf.append(float((ds.images - data.images).abs().flatten(1).amax(1).mean()))
        done += 1
    report("adversarial curves done")
    settings = {"model_id": loaded.model_id, "data": data.dataset_id, "n_samples": len(data), "pool": bool(pool),
                "k": int(k), "n_batches": int(n_batches), "seed": int(seed)}
    return AdversarialResult(loaded.label, list(layers), [s[0] for s in sets], [s[1] for s in sets],
                             [s[2] for s in sets], acc, linf, np.asarray(rows_q, dtype=np.float64), settings)
