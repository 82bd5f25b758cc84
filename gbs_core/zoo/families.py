"""Architectures by family (the zoo's own, torchvision's, timm's), weights files of any of them, their classifier
heads, and the input adapter that makes any image data fit any of them.

A researcher's checkpoint rarely matches the data it is analysed on: a torchvision resnet18 saved with its 1000-class
ImageNet head, a timm model trained on another data set, grey digits for an RGB network. The analyses need features,
not a matching classifier, so:

- :func:`read_weights` reads ``.pt``/``.pth``/``.bin``/``.ckpt`` state_dicts (``torch.load(weights_only=True)``) and
  ``.safetensors`` files; whole pickled models are refused with how to save a state_dict instead;
- :func:`fit_to_weights` builds the architecture with the file's own number of classes (and input channels), so every
  weight loads; a head that does not match the data's classes is reported as unused and its logits are not analysed;
- :func:`choose_adapter` picks channels, size and normalisation from the data and the model's family
  (:class:`AdapterChoice` overrides them); :class:`InputAdapter` applies them inside the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "FAMILIES",
    "Family",
    "resolve_arch",
    "torchvision_names",
    "timm_names",
    "build_family_model",
    "read_weights",
    "classifier_head",
    "fit_to_weights",
    "family_normalisation",
    "AdapterChoice",
    "InputAdapter",
    "AdaptedModel",
    "choose_adapter",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "WEIGHT_SUFFIXES",
    "MIN_FAMILY_SIZE",
]

Family = Literal["zoo", "torchvision", "timm"]
FAMILIES: tuple[Family, ...] = ("zoo", "torchvision", "timm")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")
MIN_FAMILY_SIZE = 32  # torchvision/timm networks downsample 32x: smaller inputs are upsampled to keep a 1x1 map


class WeightsError(ValueError):
    """A weights file cannot be read or does not fit (the registry's CheckpointError subclasses this)."""


# --- architectures by family ------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def torchvision_names() -> tuple[str, ...]:
    """torchvision's image-classification architectures (``torchvision.models.list_models``), sorted."""
    from gbs_core._torchvision_fix import import_torchvision

    tv = import_torchvision()
    return tuple(sorted(tv.models.list_models(module=tv.models)))


@lru_cache(maxsize=1)
def timm_names() -> tuple[str, ...]:
    """timm's architectures (``timm.list_models()``), sorted; no pretrained weights are ever fetched."""
    from gbs_core._torchvision_fix import import_torchvision

    import_torchvision()  # timm imports torchvision
    import timm

    return tuple(timm.list_models())


def resolve_arch(arch: str) -> tuple[Family, str]:
    """The family and name of an architecture written ``NAME``, ``torchvision:NAME`` or ``timm:NAME``.

    A bare name is looked up in the zoo's architectures, then torchvision's, then timm's (``resnet18`` is torchvision's;
    write ``timm:resnet18`` for timm's).

    Raises
    ------
    ValueError
        An unknown family or name; the message says where to look.
    """
    from gbs_core.zoo.registry import ARCHITECTURES

    family, sep, name = arch.partition(":")
    if not sep:
        family, name = "", arch
    if family not in ("", *FAMILIES):
        raise ValueError(f"unknown model family {family!r} in {arch!r}; write NAME, torchvision:NAME or timm:NAME")
    if family in ("", "zoo") and name in ARCHITECTURES:
        return "zoo", name
    if family in ("", "torchvision") and name in torchvision_names():
        return "torchvision", name
    if family in ("", "timm") and name in timm_names():
        return "timm", name
    where = {"zoo": "the zoo's architectures (" + ", ".join(ARCHITECTURES) + ")",
             "torchvision": "torchvision.models.list_models()", "timm": "timm.list_models()"}
    looked = [where[f] for f in (FAMILIES if family == "" else (family,))]
    raise ValueError(f"unknown architecture {arch!r}: not among {' or '.join(looked)}")


def build_family_model(family: Family, name: str, *, num_classes: int, in_channels: int = 3,
                       input_size: int = 16) -> nn.Module:
    """A randomly initialised network of ``family`` (seed torch beforehand); nothing is downloaded."""
    if family == "zoo":
        from gbs_core.zoo.registry import ARCHITECTURES

        return ARCHITECTURES[name](in_channels, num_classes, input_size)
    if family == "torchvision":
        from gbs_core._torchvision_fix import import_torchvision

        tv = import_torchvision()
        return tv.models.get_model(name, weights=None, num_classes=num_classes)
    if family == "timm":
        import timm

        return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_channels)
    raise ValueError(f"unknown model family {family!r}; choose one of {', '.join(FAMILIES)}")


def family_normalisation(family: Family, model: nn.Module | None = None) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """The (mean, std) per channel the family's networks are trained with: ImageNet's for torchvision, the model's
    ``pretrained_cfg`` for timm, none for the zoo (trained on [0, 1] pixels)."""
    if family == "zoo":
        return None
    if family == "timm" and model is not None:
        cfg = getattr(model, "pretrained_cfg", None) or {}
        if "mean" in cfg and "std" in cfg:
            return tuple(cfg["mean"]), tuple(cfg["std"])
    return IMAGENET_MEAN, IMAGENET_STD


# --- weights files -----------------------------------------------------------------------------------------------------


def _unwrap(obj) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model", "module"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(
            "the file does not hold a state_dict (a mapping of parameter names to tensors); "
            "save one with torch.save(model.state_dict(), path) or safetensors.torch.save_file(model.state_dict(), path)"
        )
    return {k.removeprefix("module."): v for k, v in obj.items()}


def read_weights(path: str | Path, *, max_bytes: int) -> dict[str, torch.Tensor]:
    """The state_dict in a weights file: ``.safetensors`` through safetensors, anything else through
    ``torch.load(weights_only=True)`` (keys may carry ``module.``, and may be wrapped in ``{"state_dict": ...}``).

    Raises
    ------
    WeightsError
        The path is missing or a folder, the file is over ``max_bytes``, is not readable as weights only (e.g. a
        whole pickled model), or holds no tensors.
    """
    path = Path(path)
    if path.is_dir():
        raise WeightsError(f"{path} is a folder; give the weights file inside it ({', '.join(WEIGHT_SUFFIXES)})")
    if not path.is_file():
        raise WeightsError(f"checkpoint {path} does not exist")
    size = path.stat().st_size
    if size > max_bytes:
        raise WeightsError(f"checkpoint {path} is {size >> 20} MiB; the limit is {max_bytes >> 20} MiB")
    if path.suffix.lower() == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return _unwrap(load_file(str(path), device="cpu"))
        except (SafetensorError, OSError, ValueError) as exc:
            raise WeightsError(f"cannot read {path.name} as a safetensors file ({exc})") from exc
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError ... for bad files
        raise WeightsError(
            f"cannot read {path.name} as a weights-only checkpoint ({type(exc).__name__}: {str(exc)[:200]}). "
            "Only state_dicts are accepted, since loading a whole pickled model runs code from the file: in the "
            "script that made it, save torch.save(model.state_dict(), path) instead."
        ) from exc
    return _unwrap(raw)


def classifier_head(model: nn.Module) -> str | None:
    """The module name of the network's classifier: timm's ``get_classifier()``, else the last ``nn.Linear``."""
    named = {id(m): n for n, m in model.named_modules()}
    getter = getattr(model, "get_classifier", None)
    if callable(getter):
        head = getter()
        if isinstance(head, nn.Linear) and id(head) in named:
            return named[id(head)]
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


def _first_conv_channels(state: dict[str, torch.Tensor]) -> int | None:
    first = next((t for t in state.values() if t.ndim == 4), None)
    return int(first.shape[1]) if first is not None else None


def fit_to_weights(family: Family, name: str, state: dict[str, torch.Tensor], *, num_classes: int,
                   in_channels: int, input_size: int) -> tuple[nn.Module, str | None, int]:
    """Build ``family``/``name`` shaped like the weights: the file's number of classes (read from its classifier
    head) and, for zoo and timm architectures, its input channels (and an MLP's input size).

    Returns
    -------
    model, head, file_classes
        The network (weights not loaded yet), the name of its classifier head (None if it has no Linear head) and the
        number of classes the file's head has (``num_classes`` when the file has none).
    """
    if family in ("zoo", "timm"):
        in_channels = _first_conv_channels(state) or in_channels
    if family == "zoo" and name.startswith("mlp"):
        first = next((t for t in state.values() if t.ndim == 2), None)
        if first is not None:
            for c in (in_channels, 1, 3):
                side = math.isqrt(int(first.shape[1]) // c)
                if c * side * side == int(first.shape[1]):
                    in_channels, input_size = c, side
                    break
    model = build_family_model(family, name, num_classes=num_classes, in_channels=in_channels, input_size=input_size)
    head = classifier_head(model)
    file_classes = num_classes
    if head is not None and f"{head}.weight" in state and state[f"{head}.weight"].ndim == 2:
        file_classes = int(state[f"{head}.weight"].shape[0])
        if file_classes != num_classes:
            model = build_family_model(family, name, num_classes=file_classes, in_channels=in_channels,
                                       input_size=input_size)
    return model, head, file_classes


# --- the input adapter --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AdapterChoice:
    """User overrides of the input adapter: ``size`` (None: chosen from the data and the model) and ``normalise``
    ("auto": the family's, "none", "imagenet")."""

    size: int | None = None
    normalise: Literal["auto", "none", "imagenet"] = "auto"

    def __post_init__(self) -> None:
        if self.size is not None and not 4 <= int(self.size) <= 1024:
            raise ValueError(f"adapter size must be between 4 and 1024 pixels; got {self.size}")
        if self.normalise not in ("auto", "none", "imagenet"):
            raise ValueError(f"normalise must be 'auto', 'none' or 'imagenet'; got {self.normalise!r}")


class InputAdapter(nn.Module):
    """Make any image batch fit a network: grey to ``channels`` by repetition (RGB to grey by the mean), bilinear resize
    to ``size`` x ``size``, then ``(x - mean) / std`` per channel when a normalisation is given."""

    def __init__(self, channels: int = 3, size: int = 32, mean: tuple[float, ...] | None = None,
                 std: tuple[float, ...] | None = None):
        super().__init__()
        self.channels = int(channels)
        self.size = int(size)
        self.normalised = mean is not None
        if mean is not None:
            self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
            self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.channels:
            if x.shape[1] == 1:
                x = x.expand(-1, self.channels, -1, -1)
            elif self.channels == 1:
                x = x.mean(dim=1, keepdim=True)
            else:
                raise ValueError(f"cannot adapt {x.shape[1]} input channels to {self.channels}")
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        if self.normalised:
            x = (x - self.mean) / self.std
        return x

    def describe(self, data_shape: tuple[int, ...]) -> str:
        """In words, e.g. "1x16x16 data -> grey repeated to RGB, resized to 32x32, ImageNet normalisation"."""
        c, h, w = data_shape
        steps = []
        if c != self.channels:
            steps.append("grey repeated to RGB" if c == 1 else f"{c} channels averaged to grey")
        if (h, w) != (self.size, self.size):
            steps.append(f"resized to {self.size}x{self.size}")
        if self.normalised:
            imagenet = torch.allclose(self.mean.flatten(), torch.tensor(IMAGENET_MEAN)) if self.channels == 3 else False
            steps.append("ImageNet normalisation" if imagenet else "the model's normalisation")
        return f"{c}x{h}x{w} data -> " + (", ".join(steps) if steps else "as is")

    def extra_repr(self) -> str:
        return f"channels={self.channels}, size={self.size}, normalised={self.normalised}"


class AdaptedModel(nn.Module):
    """``net(adapter(x))``: a network behind an :class:`InputAdapter`. Layer names are ``net.<name>``."""

    def __init__(self, adapter: InputAdapter, net: nn.Module):
        super().__init__()
        self.adapter = adapter
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.adapter(x))

    def default_layers(self) -> list[str]:
        from gbs_core.activations import default_layers

        return [f"net.{n}" for n in default_layers(self.net)]


def choose_adapter(family: Family, net: nn.Module, data_shape: tuple[int, ...], *, net_channels: int,
                   net_size: int | None, choice: AdapterChoice | None = None) -> InputAdapter | None:
    """The adapter between data of ``data_shape`` (C, H, W) and ``net``, or None when the data fits as it is.

    ``net_channels``: the channels the network takes; ``net_size``: the only size it takes (an MLP, a zoo model's
    training size) or None when any size works. Size: the override, else ``net_size``, else the data's (at least
    ``MIN_FAMILY_SIZE`` for torchvision and timm networks). Normalisation: the override, else the family's.
    """
    choice = choice or AdapterChoice()
    c, h, w = data_shape
    size = choice.size or net_size or (max(h, w, MIN_FAMILY_SIZE) if family != "zoo" else max(h, w))
    norm = {"none": None, "imagenet": (IMAGENET_MEAN, IMAGENET_STD)}.get(choice.normalise,
                                                                          family_normalisation(family, net))
    if norm is not None and net_channels != len(norm[0]):
        norm = (norm[0][:1] * net_channels, norm[1][:1] * net_channels) if net_channels == 1 else None
    if c == net_channels and (h, w) == (size, size) and norm is None:
        return None
    return InputAdapter(net_channels, size, *(norm if norm is not None else (None, None)))
