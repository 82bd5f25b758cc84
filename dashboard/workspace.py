"""The workspace sidebar shared by every page: data, models, layers and graph parameters.

``show()`` draws the sidebar and returns the current :class:`Workspace`. Each page draws its own copy of the sidebar
widgets, so their values live in one session-state store (``ws_store``) that every copy reads on creation and writes
back on change: the selection survives page switches. The store is seeded from the URL's query parameters on a
session's first run and written back to them on every run (values equal to their defaults are left out), so a
selection can be shared as a link. Uploaded checkpoints stay in the session only.

A checkpoint upload is validated before it joins the selection: when it does not load, the previous selection stays and
the sidebar shows why (missing / unexpected keys).
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

from dashboard import cached, errors, navigation, widgets
from gbs_core.data import BUNDLED_SOURCES, DEFAULT_SOURCE, MAX_SAMPLES
from gbs_core.pipeline import AdapterChoice, ModelSpec
from gbs_core.zoo import TORCHVISION_ARCHITECTURES
from gbs_core.zoo.families import WEIGHT_SUFFIXES
from gbs_core.zoo.registry import ARCHITECTURES

__all__ = ["DataChoice", "ModelChoice", "Workspace", "show", "DEFAULT_ZOO_MODEL", "MAX_UPLOAD_MB", "FAVICON", "save_upload"]

DATA_SOURCES = {
    "digits-noise": "Digits in noise (bundled default, held-out split)",
    "digits": "Plain digits (bundled, held-out split)",
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
FAVICON = navigation.FAVICON
MAX_UPLOAD_MB = 100
_CHECKPOINTS = "ws_checkpoints"  # session-only list of uploaded checkpoint specs (never in the URL)
_STORE = "ws_store"  # widget key -> value, shared by the sidebars of all pages
_SHARED = "ws_shared"  # widget key -> default, for the keys that go into the URL


@dataclass(frozen=True)
class DataChoice:
    """Where the samples come from and how many: ``source`` in DATA_SOURCES, ``path`` for non-bundled sources."""

    source: str = DEFAULT_SOURCE
    path: str = ""
    n: int = 500
    seed: int = 0

    @property
    def where(self) -> str:
        """The source in words, without N and seed."""
        bundled = {"digits-noise": "digits in noise", "digits": "plain digits"}
        return (f"{bundled[self.source]}, held-out split" if self.source in BUNDLED_SOURCES
                else f"{self.source}: {self.path}")

    @property
    def label(self) -> str:
        return f"{self.where}; N = {self.n}, seed {self.seed}"


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
    adapter: AdapterChoice = field(default_factory=AdapterChoice)

    @property
    def labels(self) -> list[str]:
        return [m.label for m in self.models]


def _save(key: str) -> None:
    st.session_state[_STORE][key] = st.session_state[key]


N_RANGE, SEED_RANGE, K_RANGE, SIZE_RANGE = (1, MAX_SAMPLES), (0, 2**31 - 1), (1, 1000), (0, 1024)
_NOTICES = "ws_url_notices"  # what was dropped from the URL, said once in the sidebar


def _from_url(key: str, default, bounds: tuple[int, int] | None = None):
    """The query parameter ``key`` parsed like ``default`` (int, bool, list or str) and checked against the widget's
    ``bounds``; a value that does not parse or lies outside them is dropped (``default``) with a notice, and the URL
    is rewritten without it."""
    if key not in st.query_params:
        return default
    if isinstance(default, list):
        return [v for v in st.query_params.get_all(key) if v != ""]
    raw = st.query_params[key]
    if isinstance(default, bool):
        return raw.lower() in ("1", "true", "yes")
    if isinstance(default, int):
        try:
            value = int(raw)
        except ValueError:
            value = None
        if value is None or (bounds is not None and not bounds[0] <= value <= bounds[1]):
            allowed = f" (allowed: {bounds[0]} to {bounds[1]:,})" if bounds else ""
            st.session_state.setdefault(_NOTICES, []).append(
                f"The link's {key}={raw[:40]!r} is not valid{allowed}; using {default} instead.")
            return default
        return value
    return raw


def _state(key: str, default, *, share: bool = True, options: list | None = None,
           bounds: tuple[int, int] | None = None) -> dict:
    """Widget keyword arguments that tie widget ``key`` to the store; its first value comes from the URL (checked
    against ``options`` or ``bounds``, the widget's own limits) or ``default``."""
    store = st.session_state.setdefault(_STORE, {})
    if key not in store:
        store[key] = _from_url(key, default, bounds) if share else default
    value = store[key]
    if options is not None:  # a stale or hand-edited value must not break the widget
        if isinstance(default, list):
            value = [v for v in value if v in options]
        elif value not in options:
            if share and key in st.query_params and st.query_params.get(key) == value:
                st.session_state.setdefault(_NOTICES, []).append(
                    f"The link's {key}={str(value)[:40]!r} is not one of the choices; using {default} instead.")
            value = default
    st.session_state[key] = store[key] = value
    if share:
        st.session_state.setdefault(_SHARED, {})[key] = default
    return {"key": key, "on_change": _save, "args": (key,)}


def _write_url() -> None:
    """Mirror the shared, non-default sidebar values of this run into the query parameters, one key at a time: the
    page's own widgets bind their keys to the URL themselves (``bind="query-params"``), and those are left alone."""
    store, shared = st.session_state[_STORE], st.session_state.pop(_SHARED, {})
    for key, default in shared.items():
        value = store.get(key, default)
        if value == default:
            if key in st.query_params:
                del st.query_params[key]
            continue
        items = value if isinstance(value, list) else [value]
        wanted = [str(v).lower() if isinstance(v, bool) else str(v) for v in items]
        if st.query_params.get_all(key) != wanted:
            st.query_params[key] = wanted if len(wanted) != 1 else wanted[0]


def _layers_key(spec: ModelSpec) -> str:
    if spec.source == "checkpoint":
        return f"layers_ckpt_{hashlib.sha256((spec.checkpoint or '').encode()).hexdigest()[:8]}"
    return f"layers_{spec.source}_{spec.name}"


def _data_widgets() -> DataChoice:
    st.subheader("Data")
    sources = list(DATA_SOURCES)
    source = st.selectbox("Source", sources, format_func=DATA_SOURCES.get,
                          **_state("data", DEFAULT_SOURCE, options=sources))
    path = ""
    if source not in BUNDLED_SOURCES:
        path = st.text_input("Path on this machine", help=PATH_HINTS[source], **_state("path", "")).strip()
    c1, c2 = st.columns(2)
    n = c1.number_input(
        "Samples N",
        *N_RANGE,
        step=50,
        **_state("n", 500, bounds=N_RANGE),
        help="Stratified by class; the graphs and metrics use all N samples.",
    )
    seed = c2.number_input("Seed", *SEED_RANGE, **_state("seed", 0, bounds=SEED_RANGE), help="Seeds the subsample and the layouts.")
    used, note = cached.sample_count(source, path, int(n))
    if note:
        st.caption(note)
    return DataChoice(source, path, int(used), int(seed))


def save_upload(upload) -> Path:
    """Write an uploaded file (at most ``MAX_UPLOAD_MB``) under its own base name into a folder of the uploads folder
    named by its content hash, and return the path; a larger file raises DashboardError before anything is written."""
    if upload.size > MAX_UPLOAD_MB * 2**20:
        raise errors.DashboardError(f"{upload.name} is larger than {MAX_UPLOAD_MB} MiB.")
    content = upload.getvalue()
    name = Path(upload.name).name
    folder = Path(tempfile.gettempdir()) / "gbs-explorer-uploads" / hashlib.sha256(content).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (name if name not in ("", ".", "..") else "upload.pt")
    path.write_bytes(content)
    return path


def _add_checkpoint(upload, arch: str, data: DataChoice, adapter: AdapterChoice) -> None:
    """Validate an uploaded state_dict and add it to the selection; on failure keep the selection and say why."""
    try:
        path = save_upload(upload)
    except errors.DashboardError as exc:
        st.session_state["ws_upload_error"] = str(exc)
        return
    spec = ModelSpec("checkpoint", arch, checkpoint=str(path))
    try:
        cached.model_for_data(spec, data.source, data.path, adapter)
    except Exception as exc:  # noqa: BLE001 - every failure is reported, none may replace the selection
        st.session_state["ws_upload_error"] = errors.describe(exc)
        return
    current = st.session_state.setdefault(_CHECKPOINTS, [])
    if spec not in current:
        current.append(spec)
    st.session_state.pop("ws_upload_error", None)


OTHER_ARCH = "other (torchvision or timm name)"


def _checkpoint_widgets(data: DataChoice, adapter: AdapterChoice) -> list[ModelSpec]:
    with st.expander("Your checkpoint (state_dict or .safetensors)"):
        archs = [*ARCHITECTURES, *TORCHVISION_ARCHITECTURES, OTHER_ARCH]
        arch = st.selectbox(
            "Architecture it was saved from", archs, **_state("ckpt_arch", archs[0], share=False, options=archs),
            help="Zoo architectures, a few torchvision ones, or any other: a head with another number of classes "
            "than the data is fine (it is kept but not analysed).",
        )
        if arch == OTHER_ARCH:
            arch = st.text_input("Architecture", placeholder="timm:resnet10t or torchvision:resnet50",
                                 **_state("ckpt_arch_name", "", share=False)).strip()
        upload = st.file_uploader(
            f"Weights file ({', '.join(WEIGHT_SUFFIXES)}; at most {MAX_UPLOAD_MB} MiB)",
            type=[s.lstrip(".") for s in WEIGHT_SUFFIXES],
            key="ckpt_file",
            max_upload_size=MAX_UPLOAD_MB,
            help=f"A file over {MAX_UPLOAD_MB} MiB is refused by the browser before it is sent (a red mark on the "
            "file): save the state_dict in half precision (model.half().state_dict()) or drop unused tensors.",
        )
        if st.button("Add checkpoint", key="ckpt_add", disabled=upload is None or not arch) and upload is not None:
            _add_checkpoint(upload, arch, data, adapter)
        if "ws_upload_error" in st.session_state:
            st.error(f"Checkpoint not added: {st.session_state['ws_upload_error']}")
        specs = st.session_state.setdefault(_CHECKPOINTS, [])
        for i, spec in enumerate(list(specs)):
            if st.button(f"Remove {spec.label}", key=f"ckpt_rm_{i}"):
                specs.remove(spec)
                st.rerun()
    return list(st.session_state.get(_CHECKPOINTS, []))


def _other_architectures(text: str, seed: int) -> list[ModelSpec]:
    """Specs of the comma-separated ``torchvision:NAME`` / ``timm:NAME`` / ``NAME`` of the sidebar's text box; an
    unknown name is shown in the sidebar and left out."""
    from gbs_core.zoo.families import resolve_arch

    specs = []
    for item in (v.strip() for v in text.split(",")):
        if not item:
            continue
        try:
            family, name = resolve_arch(item)
        except ValueError as exc:
            st.error(str(exc))
            continue
        if family == "zoo":
            st.error(f"{item!r} is a zoo architecture: pick its trained models under **From the zoo**.")
            continue
        specs.append(ModelSpec(family, name, seed=seed))
    return specs


def _model_widgets(data: DataChoice, adapter: AdapterChoice) -> list[ModelSpec]:
    st.subheader("Models")
    zoo = {e.name: e for e in cached.zoo_entries()}
    picked = st.multiselect(
        "From the zoo",
        list(zoo),
        format_func=lambda n: f"{n} ({zoo[n].data_label}, {zoo[n].test_accuracy:.1%})",
        help="Bundled models with their training data and held-out accuracy. The '-digits' models were trained on the "
        "plain digits: compare them with the same architecture on the digits in noise.",
        **_state("zoo", [DEFAULT_ZOO_MODEL], options=list(zoo)),
    )
    archs = list(TORCHVISION_ARCHITECTURES)
    tv = st.multiselect("Torchvision architectures (random init, seeded)", archs, **_state("tv", [], options=archs))
    other = st.text_input("Other architectures (random init)", placeholder="timm:resnet10t, torchvision:resnet50",
                          help="Comma-separated torchvision or timm names (torchvision.models.list_models(), "
                          "timm.list_models()); randomly initialised with the data seed. Nothing is downloaded.",
                          **_state("arch", "")).strip()
    specs = [ModelSpec("zoo", n) for n in picked] + [ModelSpec("torchvision", n, seed=data.seed) for n in tv]
    return specs + _other_architectures(other, data.seed) + _checkpoint_widgets(data, adapter)


def _model_notes(specs: list[ModelSpec], data: DataChoice, adapter: AdapterChoice) -> None:
    """One caption per model: its input adapter and anything to know (an unused head); errors are left to the pages."""
    for spec in specs:
        try:
            info = cached.model_info(spec, data.source, data.path, adapter)
        except Exception:  # noqa: BLE001 - the page names the problem where the analysis is
            continue
        if info:
            st.caption(f"**{spec.label}**: {info}")


def _adapter_widgets() -> AdapterChoice:
    with st.expander("Input adapter", expanded=False):
        st.caption("How images reach each model: channels are matched (grey repeated to RGB, RGB averaged to grey), "
                   "images resized and normalised as the model's family expects. Shown under **Models**.")
        size = st.number_input("Image size (0: automatic)", *SIZE_RANGE, step=8, **_state("in_size", 0, bounds=SIZE_RANGE),
                               help="Automatic: a zoo model's own size; the data's size (at least 32) for "
                               "torchvision and timm models.")
        norm = st.radio("Normalisation", ["auto", "none", "imagenet"], horizontal=True,
                        format_func={"auto": "family's", "none": "none", "imagenet": "ImageNet"}.get,
                        **_state("norm", "auto", options=["auto", "none", "imagenet"]))
    return AdapterChoice(size=int(size) if size and size >= 4 else None, normalise=norm)


def _layer_widgets(specs: list[ModelSpec], data: DataChoice, adapter: AdapterChoice) -> list[ModelChoice]:
    choices = []
    with st.expander("Layers", expanded=False):
        for spec in specs:
            try:
                options, defaults = cached.layer_options(spec, data.source, data.path, adapter)
            except Exception as exc:  # noqa: BLE001 - shown here; the pages report it again where the analysis is
                st.error(f"{spec.label}: {errors.describe(exc)}")
                choices.append(ModelChoice(spec, spec.label))  # kept: the page says what to change
                continue
            layers = st.multiselect(
                spec.label,
                options,
                **_state(_layers_key(spec), list(defaults), options=options, share=spec.source != "checkpoint"),
            )
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
        layers = st.multiselect(Path(data.path).name, options, **_state("layers_npz", options, options=options))
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
            adapter = _adapter_widgets()
            specs = _model_widgets(data, adapter)
            _model_notes(specs, data, adapter)
            models = _layer_widgets(specs, data, adapter)
        st.subheader("Graph parameters")
        c1, c2 = st.columns(2)
        kq = c1.number_input(
            "k (modularity)",
            *K_RANGE,
            **_state("k", 3, bounds=K_RANGE),
            help="Neighbours per sample in the kNN graph used for modularity and the sample graph.",
        )
        km = c2.number_input(
            "k (motifs)",
            *K_RANGE,
            **_state("km", 5, bounds=K_RANGE),
            help="Neighbours per sample in the kNN graph whose triangles are counted.",
        )
        pool = st.checkbox(
            "Average-pool conv maps",
            **_state("pool", False),
            help="Global average pooling of each conv map before the analyses (the papers flatten).",
        )
        fmt = st.radio(
            "Chart image format (toolbar camera)",
            ["png", "svg"],
            horizontal=True,
            **_state("img", "png", share=False, options=["png", "svg"]),
        )
    with st.sidebar:
        cached.preparation_status()
    if cached.disk_cache().disabled:  # said on every page: results are recomputed after each restart
        st.sidebar.warning(cached.disk_cache().problem, icon=":material/database_off:")
    for notice in st.session_state.pop(_NOTICES, []):
        st.sidebar.warning(notice, icon=":material/link_off:")
    _write_url()
    if data.source == "npz":
        adapter = AdapterChoice()
    where = data.source if data.source in BUNDLED_SOURCES else f"{data.source}-{Path(data.path).name}"
    st.session_state[widgets.FIGURE_SETTINGS] = {"data": where, "n": data.n, "seed": data.seed, "k": int(kq),
                                                 "motif_k": int(km)}
    return Workspace(data, tuple(models), int(kq), int(km), bool(pool), str(fmt), adapter)
