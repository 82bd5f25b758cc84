"""Build models by name, load the bundled zoo with its manifest, and load user checkpoints safely.

The zoo lives in ``assets/zoo/`` (override with the ``GBS_ZOO_DIR`` environment variable): one ``<name>.pt`` state
dict per model and ``manifest.json`` with, per model, the architecture, training settings, test accuracy, parameter
count and the sha256 of the weights file. Loading verifies the hash and uses ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from gbs_core.zoo.architectures import MLP, VGG, CifarResNet, PlainNet, Tiny10
from gbs_core.zoo.families import AdaptedModel, InputAdapter, WeightsError, read_weights

__all__ = [
    "ARCHITECTURES",
    "TORCHVISION_ARCHITECTURES",
    "CheckpointError",
    "ZooEntry",
    "zoo_dir",
    "build_model",
    "list_zoo",
    "load_zoo_model",
    "load_state_dict_file",
    "file_sha256",
    "write_manifest_entry",
    "list_checkpoints",
    "evaluation_data",
    "TrainingData",
    "training_data",
    "training_data_for_source",
    "training_data_of",
    "TRAINING_DATA",
    "DEFAULT_TRAINING_DATA",
    "InputAdapter",
    "AdaptedModel",
    "build_torchvision_model",
    "MAX_CHECKPOINT_BYTES",
]

MAX_CHECKPOINT_BYTES = 500 * 1024 * 1024

class TrainingData(NamedTuple):
    """What a zoo model was trained on (the manifest's ``data`` names one)."""

    label: str  # in words, as the pages and ``zoo list`` show it
    folder: str  # sub-folder of the zoo holding its models
    suffix: str  # appended to the names of its models
    source: str  # the bundled source of gbs_core.data.load_bundled
    augment: str  # the TrainConfig augmentation of training and fine-tuning


# The digits in noise are the default; the plain-digits models keep their old names with "-digits" appended.
TRAINING_DATA = {
    "digits-noise-v1-16px": TrainingData("digits in noise", "digits-noise", "", "digits-noise", "digits-noise"),
    "digits-16px": TrainingData("plain digits", "digits", "-digits", "digits", "shift"),
}
DEFAULT_TRAINING_DATA = "digits-noise-v1-16px"

ARCHITECTURES = {
    "tiny10": lambda in_ch, n_cls, size: Tiny10(in_channels=in_ch, num_classes=n_cls),
    "tiny10x2": lambda in_ch, n_cls, size: Tiny10(in_channels=in_ch, num_classes=n_cls, width=2),
    "tiny10x4": lambda in_ch, n_cls, size: Tiny10(in_channels=in_ch, num_classes=n_cls, width=4),
    "resnet20": lambda in_ch, n_cls, size: CifarResNet(20, in_channels=in_ch, num_classes=n_cls),
    "resnet56": lambda in_ch, n_cls, size: CifarResNet(56, in_channels=in_ch, num_classes=n_cls),
    "resnet110": lambda in_ch, n_cls, size: CifarResNet(110, in_channels=in_ch, num_classes=n_cls),
    "vgg11": lambda in_ch, n_cls, size: VGG("vgg11", in_channels=in_ch, num_classes=n_cls),
    "vgg16": lambda in_ch, n_cls, size: VGG("vgg16", in_channels=in_ch, num_classes=n_cls),
    "vgg19": lambda in_ch, n_cls, size: VGG("vgg19", in_channels=in_ch, num_classes=n_cls),
    "mlp8": lambda in_ch, n_cls, size: MLP(in_features=in_ch * size * size, depth=8, num_classes=n_cls),
    "plain10": lambda in_ch, n_cls, size: PlainNet(10, in_channels=in_ch, num_classes=n_cls),
    "plain18": lambda in_ch, n_cls, size: PlainNet(18, in_channels=in_ch, num_classes=n_cls),
    "plain34": lambda in_ch, n_cls, size: PlainNet(34, in_channels=in_ch, num_classes=n_cls),
}
TORCHVISION_ARCHITECTURES = ("resnet18", "vgg11_bn", "mobilenet_v3_small")


class CheckpointError(WeightsError):
    """A weights file is missing, corrupt, fails its hash check, or does not fit the architecture."""


@dataclass
class ZooEntry:
    """One bundled model, as recorded in ``manifest.json``."""

    name: str
    arch: str
    seed: int
    epochs: int
    optimizer: str
    lr: float
    batch_size: int
    weight_decay: float
    test_accuracy: float
    n_params: int
    sha256: str
    file: str
    data: str = "digits-16px"
    input_shape: tuple[int, int, int] = (1, 16, 16)
    num_classes: int = 10
    extra: dict = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return zoo_dir() / self.file

    @property
    def checkpoint_of(self) -> str | None:
        """The model this is a training checkpoint of (None for a finished model)."""
        return self.extra.get("checkpoint_of")

    @property
    def epoch(self) -> int:
        """The training epoch of these weights (``epochs`` for a finished model, 0 before the first step)."""
        return int(self.extra.get("epoch", self.epochs))

    @property
    def data_label(self) -> str:
        """The training data in words ("digits in noise", "plain digits")."""
        return TRAINING_DATA[self.data].label if self.data in TRAINING_DATA else self.data


def zoo_dir() -> Path:
    """Folder of the bundled zoo: ``$GBS_ZOO_DIR`` or ``assets/zoo`` of the project."""
    env = os.environ.get("GBS_ZOO_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "assets" / "zoo"


def build_model(arch: str, *, in_channels: int = 1, num_classes: int = 10, input_size: int = 16) -> nn.Module:
    """A freshly initialised architecture: a zoo one (``ARCHITECTURES``) as it is, a torchvision or timm one
    (``NAME``, ``torchvision:NAME``, ``timm:NAME``; see :func:`~gbs_core.zoo.families.resolve_arch`) behind an
    :class:`InputAdapter` that makes ``in_channels`` x ``input_size`` inputs fit it."""
    from gbs_core.zoo.families import build_family_model, resolve_arch

    family, name = resolve_arch(arch)
    if family == "zoo":
        return build_family_model(family, name, num_classes=num_classes, in_channels=in_channels,
                                  input_size=input_size)
    net = build_family_model(family, name, num_classes=num_classes, in_channels=3)
    return AdaptedModel(InputAdapter(3, max(input_size, 32)), net)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_manifest(folder: Path) -> dict:
    path = folder / "manifest.json"
    if not path.is_file():
        return {"models": {}}
    with open(path) as fh:
        return json.load(fh)


_REQUIRED = [f.name for f in fields(ZooEntry) if f.default is MISSING and f.default_factory is MISSING and f.name != "name"]


def _all_entries() -> list[ZooEntry]:
    """Every record of the zoo's manifest; a record that lacks a field or holds an unknown one raises CheckpointError
    naming it (the manifest was edited by hand or is damaged)."""
    entries = []
    try:
        models = _read_manifest(zoo_dir()).get("models", {})
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{zoo_dir() / 'manifest.json'} cannot be read ({exc}); restore it from the repository") \
            from exc
    known = {f.name for f in fields(ZooEntry)}
    for name, rec in models.items():
        rec = dict(rec) if isinstance(rec, dict) else {}
        missing = [k for k in _REQUIRED if k not in rec]
        unknown = sorted(set(rec) - known)
        if missing or unknown or not isinstance(rec.get("sha256", ""), str):
            raise CheckpointError(
                f"{zoo_dir() / 'manifest.json'}: the entry {name!r} lacks {', '.join(missing) or 'nothing'}"
                f"{' and has unknown ' + ', '.join(unknown) if unknown else ''}; every model needs its sha256 and "
                "training record: restore manifest.json from the repository (or re-run zoo train)")
        rec["input_shape"] = tuple(rec.get("input_shape", (1, 16, 16)))
        entries.append(ZooEntry(name=name, **{k: v for k, v in rec.items() if k != "name"}))
    return entries


def list_zoo(*, include_checkpoints: bool = False) -> list[ZooEntry]:
    """The bundled models, in manifest order: the default data's models first, then the plain-digits ones.

    Training checkpoints (see :func:`list_checkpoints`) are left out unless ``include_checkpoints``.
    """
    return [e for e in _all_entries() if include_checkpoints or e.checkpoint_of is None]


def list_checkpoints(name: str) -> list[ZooEntry]:
    """The training checkpoints kept for zoo model ``name``, by epoch (epoch 0 is the initialisation), ending with the
    finished model itself; empty when none were kept."""
    entries = _all_entries()
    chain = sorted((e for e in entries if e.checkpoint_of == name), key=lambda e: e.epoch)
    final = [e for e in entries if e.name == name]
    return chain + final if chain else []


def training_data(data: str) -> TrainingData:
    """The :class:`TrainingData` record of a manifest ``data`` name; raises ValueError for an unknown one."""
    if data not in TRAINING_DATA:
        raise ValueError(f"unknown training data {data!r}; known: {', '.join(TRAINING_DATA)}")
    return TRAINING_DATA[data]


def training_data_for_source(source: str) -> str:
    """The manifest ``data`` name of models trained on bundled ``source`` ("digits-noise" or "digits")."""
    for name, rec in TRAINING_DATA.items():
        if rec.source == source:
            return name
    raise ValueError(f"no zoo training data for source {source!r}; known: "
                     f"{', '.join(r.source for r in TRAINING_DATA.values())}")


def training_data_of(model: str) -> str:
    """The manifest ``data`` of zoo model ``model`` (checkpoints included), or the default for any other name (a
    torchvision architecture or a user's checkpoint, which have no training data of their own here)."""
    entries = {e.name: e for e in list_zoo(include_checkpoints=True)}
    return entries[model].data if model in entries else DEFAULT_TRAINING_DATA


def training_source_of(model: str) -> str:
    """The bundled data source ("digits-noise" or "digits") a model is measured on: that of its training data
    (:func:`training_data_of`)."""
    return training_data(training_data_of(model)).source


def evaluation_data(data: str, split: str = "test"):
    """The held-out split (or, with ``split="train"``, the fixed transform of the training split) of a zoo model's
    training data, from its manifest ``data`` name: what its accuracy and its modularity curve are measured on."""
    from gbs_core.data import load_bundled

    return load_bundled(training_data(data).source, split)


def write_manifest_entry(folder: Path, entry: ZooEntry) -> None:
    """Add or replace one model's record in ``folder/manifest.json`` (written atomically, under a lock so parallel
    training runs into one folder do not lose each other's records)."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "manifest.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        manifest = _read_manifest(folder)
        rec = asdict(entry)
        rec.pop("name")
        rec["input_shape"] = list(rec["input_shape"])
        manifest.setdefault("models", {})[entry.name] = rec
        manifest["models"] = dict(sorted(manifest["models"].items(), key=lambda kv: _zoo_order(kv[0], kv[1])))
        tmp = folder / f"manifest.json.tmp{os.getpid()}"
        tmp.write_text(json.dumps(manifest, indent=2) + "\n")
        os.replace(tmp, folder / "manifest.json")


_ZOO_ORDER = ["resnet56", "resnet20", "resnet110", "vgg16", "vgg11", "vgg19", "mlp8", "tiny10", "tiny10x2", "tiny10x4",
              "plain10", "plain18", "plain34"]


def _zoo_order(name: str, rec: dict) -> tuple:
    data_rank = list(TRAINING_DATA).index(rec["data"]) if rec.get("data") in TRAINING_DATA else len(TRAINING_DATA)
    arch = rec.get("arch", name)
    extra = rec.get("extra") or {}
    return (data_rank, _ZOO_ORDER.index(arch) if arch in _ZOO_ORDER else len(_ZOO_ORDER), arch, rec.get("seed", 0),
            extra.get("checkpoint_of") is None, int(extra.get("epoch", 0)), name)


def load_zoo_model(name: str) -> tuple[nn.Module, ZooEntry]:
    """A bundled model in eval mode, after checking its weights file against the manifest's sha256.

    Raises
    ------
    KeyError
        No model of that name in the manifest (the message lists the names).
    CheckpointError
        The weights file is missing or its hash differs from the manifest.
    """
    entries = {e.name: e for e in list_zoo(include_checkpoints=True)}
    if name not in entries:
        raise KeyError(f"no zoo model named {name!r}; the zoo has {', '.join(entries) or 'no models'}")
    entry = entries[name]
    if not entry.path.is_file():
        raise CheckpointError(f"weights file {entry.path} of zoo model {name!r} is missing")
    digest = file_sha256(entry.path)
    if digest != entry.sha256:
        raise CheckpointError(
            f"weights file {entry.path} has sha256 {digest[:12]}..., the manifest says {entry.sha256[:12]}...; "
            "the file is corrupt or was replaced: restore it from the repository"
        )
    model = build_model(entry.arch, in_channels=entry.input_shape[0], num_classes=entry.num_classes,
                        input_size=entry.input_shape[-1])
    load_state_dict_file(entry.path, model)
    return model.eval(), entry


def load_state_dict_file(path: str | Path, model: nn.Module) -> nn.Module:
    """Load a state_dict file into ``model`` with ``torch.load(weights_only=True)``.

    Keys may carry a ``module.`` prefix (DataParallel) and may be wrapped in ``{"state_dict": ...}``. For an
    :class:`AdaptedModel` the keys may be those of the bare network.

    Raises
    ------
    CheckpointError
        The file is missing, too large, not a weights-only state_dict, or its keys or shapes do not fit: the message
        lists the missing, unexpected and mismatched keys.
    """
    path = Path(path)
    try:
        state = read_weights(path, max_bytes=MAX_CHECKPOINT_BYTES)
    except WeightsError as exc:
        raise CheckpointError(str(exc)) from exc
    return load_state_dict(state, model, name=path.name)


def load_state_dict(state: dict[str, torch.Tensor], model: nn.Module, *, name: str = "the checkpoint") -> nn.Module:
    """Load a state_dict (as :func:`~gbs_core.zoo.families.read_weights` returns it) into ``model``, strictly; see
    :func:`load_state_dict_file`."""
    target = model
    if isinstance(model, AdaptedModel) and not any(k.startswith("net.") for k in state):
        target = model.net
    expected = target.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(
        f"{k} (file {tuple(state[k].shape)}, model {tuple(expected[k].shape)})"
        for k in set(state) & set(expected)
        if state[k].shape != expected[k].shape
    )
    if missing or unexpected or mismatched:

        def _fmt(keys: list[str]) -> str:
            return ", ".join(keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "") if keys else "none"

        raise CheckpointError(
            f"{name} does not fit this architecture. Missing keys: {_fmt(missing)}. "
            f"Unexpected keys: {_fmt(unexpected)}. Shape mismatches: {_fmt(mismatched)}. "
            "Choose the architecture the checkpoint was saved from (its classifier head may have any number of classes)."
        )
    target.load_state_dict(state)
    return model


def build_torchvision_model(
    name: str, *, num_classes: int = 10, in_channels: int = 1, size: int = 32, state_dict_path: str | Path | None = None
) -> AdaptedModel:
    """A torchvision architecture (any of ``torchvision.models.list_models``), randomly initialised (seeded by the
    caller) or from a user's state_dict file, behind an :class:`InputAdapter` (grey to RGB, resized to ``size``; 32
    keeps every listed network's deepest map at least 1 x 1). Nothing is downloaded: ``weights=None`` always."""
    from gbs_core.zoo.families import build_family_model, torchvision_names

    if name not in torchvision_names():
        raise ValueError(f"unknown torchvision architecture {name!r}; see torchvision.models.list_models()")
    net = build_family_model("torchvision", name, num_classes=num_classes)
    model = AdaptedModel(InputAdapter(3, size), net)
    if state_dict_path is not None:
        load_state_dict_file(state_dict_path, model)
    return model.eval()
