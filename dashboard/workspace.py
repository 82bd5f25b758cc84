"""The workspace sidebar shared by every page: data, models, layers and graph parameters.

``show()`` draws the sidebar and returns the current :class:`Workspace`. Every widget has a fixed key, keeps its value
across page switches (``persist_state="session"``) and, except for uploaded checkpoints, is bound to a URL query
parameter (``bind="query-params"``) so a selection can be shared as a link. Parameters equal to their defaults are left
out of the URL.

A checkpoint upload is validated before it joins the selection: when it does not load, the previous selection stays and
the sidebar shows why (missing / unexpected keys).
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

from dashboard import cached, errors
from gbs_core.data import MAX_SAMPLES
from gbs_core.pipeline import ModelSpec
from gbs_core.zoo import TORCHVISION_ARCHITECTURES
from gbs_core.zoo.registry import ARCHITECTURES

__all__ = ["DataChoice", "ModelChoice", "Workspace", "show", "DEFAULT_ZOO_MODEL", "MAX_UPLOAD_MB"]

DATA_SOURCES = {
    "digits": "Digits (bundled, held-out split)",
    "image_folder": "Image folder (one sub-folder per class)",
    "cifar10": "CIFAR-10 folder (python pickles)",
    "cifar100": "CIFAR-100 folder (python pickles)",
    "npz": "Saved activations (.npz)",
}
PATH_HINTS = {
    "image_folder": "Folder with one sub-folder of images per class",
    "cifar10": "Folder holding CIFAR-10's data_batch_* / test_batch files",
    "cifar100": "Folder holding CIFAR-100's train / test files",
    "npz": "Path of an .npz written by gbs_core.activations.save_activations",
}
DEFAULT_ZOO_MODEL = "resnet56"
MAX_UPLOAD_MB = 100
_CHECKPOINTS = "ws_checkpoints"  # session-only list of uploaded checkpoint specs (never in the URL)
_KEEP = {"persist_state": "session"}
_SHARE = {"persist_state": "session", "bind": "query-params"}


@dataclass(frozen=True)
class DataChoice:
    """Where the samples come from and how many: ``source`` in DATA_SOURCES, ``path`` for non-bundled sources."""

    source: str = "digits"
    path: str = ""
    n: int = 500
    seed: int = 0

    @property
    def label(self) -> str:
        where = "digits, held-out split" if self.source == "digits" else f"{self.source}: {self.path}"
        return f"{where}; N = {self.n}, seed {self.seed}"


@dataclass(frozen=True)
class ModelChoice:
    """One model and the layers picked for it (``layers=None``: the model's defaults)."""

    spec: ModelSpec | None  # None for saved activations, whose "model" is the file
    label: str
    layers: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Workspace:
    """The current selection, as every page reads it."""

    data: DataChoice = field(default_factory=DataChoice)
    models: tuple[ModelChoice, ...] = ()
    k_modularity: int = 3
    k_motifs: int = 5
    pool: bool = False
    image_format: str = "png"

    @property
    def labels(self) -> list[str]:
        return [m.label for m in self.models]


def _layers_key(spec: ModelSpec) -> str:
    return (
        f"layers_{spec.source}_{spec.name}"
        if spec.source != "checkpoint"
        else f"layers_ckpt_{hashlib.sha256((spec.checkpoint or '').encode()).hexdigest()[:8]}"
    )


def _data_widgets() -> DataChoice:
    st.subheader("Data")
    source = st.selectbox("Source", list(DATA_SOURCES), format_func=DATA_SOURCES.get, key="data", **_SHARE)
    path = ""
    if source != "digits":
        path = st.text_input("Path on this machine", key="path", help=PATH_HINTS[source], **_SHARE).strip()
    c1, c2 = st.columns(2)
    n = c1.number_input(
        "Samples N",
        1,
        MAX_SAMPLES,
        500,
        step=50,
        key="n",
        **_SHARE,
        help="Stratified by class; the graphs and metrics use all N samples.",
    )
    seed = c2.number_input("Seed", 0, 2**31 - 1, 0, key="seed", **_SHARE, help="Seeds the subsample and the layouts.")
    return DataChoice(source, path, int(n), int(seed))


def _add_checkpoint(upload, arch: str, seed: int) -> None:
    """Validate an uploaded state_dict and add it to the selection; on failure keep the selection and say why."""
    data = upload.getvalue()
    if len(data) > MAX_UPLOAD_MB * 2**20:
        st.session_state["ws_upload_error"] = f"{upload.name} is larger than {MAX_UPLOAD_MB} MiB."
        return
    folder = Path(tempfile.gettempdir()) / "gbs-explorer-uploads"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha256(data).hexdigest()[:16]}-{Path(upload.name).name}"
    path.write_bytes(data)
    spec = ModelSpec("checkpoint", arch, checkpoint=str(path), seed=seed)
    try:
        cached.load_model(spec)
    except Exception as exc:  # noqa: BLE001 - every failure is reported, none may replace the selection
        st.session_state["ws_upload_error"] = errors.describe(exc)
        return
    current = st.session_state.setdefault(_CHECKPOINTS, [])
    if spec not in current:
        current.append(spec)
    st.session_state.pop("ws_upload_error", None)


def _checkpoint_widgets(seed: int) -> list[ModelSpec]:
    with st.expander("Your checkpoint (state_dict)"):
        arch = st.selectbox(
            "Architecture it was saved from", [*ARCHITECTURES, *TORCHVISION_ARCHITECTURES], key="ckpt_arch", **_KEEP
        )
        upload = st.file_uploader(
            f"state_dict file (.pt/.pth, at most {MAX_UPLOAD_MB} MiB)",
            type=["pt", "pth", "bin", "ckpt"],
            key="ckpt_file",
        )
        if st.button("Add checkpoint", key="ckpt_add", disabled=upload is None) and upload is not None:
            _add_checkpoint(upload, arch, seed)
        if "ws_upload_error" in st.session_state:
            st.error(f"Checkpoint not added: {st.session_state['ws_upload_error']}")
        specs = st.session_state.setdefault(_CHECKPOINTS, [])
        for i, spec in enumerate(list(specs)):
            if st.button(f"Remove {spec.label}", key=f"ckpt_rm_{i}"):
                specs.remove(spec)
                st.rerun()
    return list(st.session_state.get(_CHECKPOINTS, []))


def _model_widgets(seed: int) -> list[ModelSpec]:
    st.subheader("Models")
    zoo = {e.name: e for e in cached.zoo_entries()}
    picked = st.multiselect(
        "From the zoo (trained on digits)",
        list(zoo),
        default=[DEFAULT_ZOO_MODEL],
        format_func=lambda n: f"{n} ({zoo[n].test_accuracy:.1%})",
        key="zoo",
        **_SHARE,
    )
    tv = st.multiselect(
        "Torchvision architectures (random init, seeded)", list(TORCHVISION_ARCHITECTURES), key="tv", **_SHARE
    )
    specs = [ModelSpec("zoo", n) for n in picked] + [ModelSpec("torchvision", n, seed=seed) for n in tv]
    return specs + _checkpoint_widgets(seed)


def _layer_widgets(specs: list[ModelSpec], data: DataChoice) -> list[ModelChoice]:
    choices = []
    with st.expander("Layers", expanded=False):
        for spec in specs:
            try:
                options, defaults = cached.layer_options(spec, data.source, data.path)
            except Exception as exc:  # noqa: BLE001 - shown here; the pages report it again with the data
                st.error(f"{spec.label}: {errors.describe(exc)}")
                continue
            extra = _KEEP if spec.source == "checkpoint" else _SHARE
            layers = st.multiselect(f"{spec.label}", options, default=defaults, key=_layers_key(spec), **extra)
            chosen = tuple(layers) if list(layers) != list(defaults) else None
            choices.append(ModelChoice(spec, spec.label, chosen))
    return choices


def _saved_layer_widgets(data: DataChoice) -> list[ModelChoice]:
    if not data.path:
        return []
    try:
        options = cached.saved_layers(data.path)
    except Exception:  # noqa: BLE001 - the pages show the error with the data
        return [ModelChoice(None, Path(data.path).name)]
    with st.expander("Layers", expanded=False):
        layers = st.multiselect(Path(data.path).name, options, default=options, key="layers_npz", **_SHARE)
    chosen = tuple(layers) if list(layers) != list(options) else None
    return [ModelChoice(None, Path(data.path).name, chosen)]


def show() -> Workspace:
    """Draw the workspace sidebar and return the current selection."""
    with st.sidebar:
        data = _data_widgets()
        if data.source == "npz":
            st.caption("Saved activations carry their own layers; no model is run.")
            models = _saved_layer_widgets(data)
        else:
            specs = _model_widgets(data.seed)
            models = _layer_widgets(specs, data)
        st.subheader("Graph parameters")
        c1, c2 = st.columns(2)
        kq = c1.number_input(
            "k (modularity)",
            1,
            1000,
            3,
            key="k",
            **_SHARE,
            help="Neighbours per sample in the kNN graph used for modularity and the sample graph.",
        )
        km = c2.number_input(
            "k (motifs)",
            1,
            1000,
            5,
            key="km",
            **_SHARE,
            help="Neighbours per sample in the kNN graph whose triangles are counted.",
        )
        pool = st.checkbox(
            "Average-pool conv maps",
            False,
            key="pool",
            **_SHARE,
            help="Global average pooling of each conv map before the analyses (the papers flatten).",
        )
        fmt = st.radio("Chart image format (toolbar camera)", ["png", "svg"], horizontal=True, key="img", **_KEEP)
    return Workspace(data, tuple(models), int(kq), int(km), bool(pool), str(fmt))
