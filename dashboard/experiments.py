"""Streamlit-cached runs behind the experiment pages: Pruning, Sanity check, Training dynamics, Adversarial,
Stitching, Transfer (the core does the work; this adds caching and progress bars). Every result also lives in the
core's disk cache, shared with the command line's ``prune``, ``sanity-check``, ``dynamics``, ``adversarial``,
``stitch`` and ``transfer``: a run finished by a batch job or an earlier session is shown without recomputing.

Which data an experiment uses (:func:`data_for`): the sidebar's when it is the user's own (an image folder, CIFAR);
with a bundled source, a zoo model's own training data (its accuracy and curves were measured there) and the
sidebar's bundled source for any other model. Every model is shaped for that data by the sidebar's input adapter.
"""

from __future__ import annotations

import streamlit as st

from dashboard import cached
from dashboard.errors import DashboardError
from gbs_core import analysis
from gbs_core.data import BUNDLED_SOURCES, Dataset
from gbs_core.experiments.adversarial import AdversarialResult, AttackSpec, run_adversarial
from gbs_core.experiments.dynamics import DynamicsResult, files_dynamics_plan, run_dynamics, zoo_dynamics_plan
from gbs_core.experiments.pruning import PruningResult, experiment_data, pruning_curve, run_pruning
from gbs_core.experiments.sanity import SanityResult, run_zoo_sanity_check
from gbs_core.experiments.stitching import StitchResult, run_stitching
from gbs_core.experiments.transfer import TransferResult, run_transfer
from gbs_core.pipeline import AdapterChoice, LoadedModel, ModelSpec
from gbs_core.sources import DataSpec, analysis_data, clamp_samples, train_test
from gbs_core.zoo.registry import training_source_of
from gbs_core.zoo.train import TrainConfig

__all__ = ["pruning", "sanity", "dynamics", "adversarial", "held_out", "clean_similarity", "as_pruning", "as_sanity",
           "as_dynamics", "as_adversarial", "stitching", "as_stitching", "transfer", "as_transfer", "data_for",
           "data_caption", "loaded", "experiment_models"]


# --- which data, which models ---------------------------------------------------------------------------------------


def data_for(ws, spec: ModelSpec | None = None) -> DataSpec:
    """The data an experiment on ``spec`` uses with the sidebar's selection (see the module docstring).

    Raises
    ------
    DashboardError
        Saved activations are selected (experiments run models on images), or the sidebar's folder has no path.
    """
    d = ws.data
    if d.source in BUNDLED_SOURCES:
        if spec is not None and spec.source == "zoo":
            return DataSpec(training_source_of(spec.name))
        return DataSpec(d.source)
    if d.source == "npz":
        raise DashboardError("Experiments run models on images, and saved activations have none: pick another "
                             "**Source** in the sidebar.")
    if not d.path:
        raise DashboardError("Enter the **Path** of the data folder in the sidebar.")
    kind = {"image_folder": "folder"}.get(d.source, d.source)
    return DataSpec(kind, d.path, cached.content_signature(kind, d.path))  # memos see a changed folder


def data_caption(spec: DataSpec) -> str:
    """The data in words, for a page's caption."""
    bundled = {"digits-noise": "the digits in noise", "digits": "the plain digits"}
    return bundled.get(spec.kind, f"{spec.kind} {spec.path}")


def experiment_models(ws) -> dict[str, ModelSpec]:
    """The zoo's models and the sidebar's models with weights, by label (the sidebar's first)."""
    own = {m.label: m.spec for m in ws.models if m.spec is not None}
    return {**own, **{e.name: ModelSpec("zoo", e.name) for e in cached.zoo_entries() if e.name not in own}}


def loaded(spec: ModelSpec, data: Dataset, adapter: AdapterChoice | None) -> LoadedModel:
    """``spec`` shaped for ``data`` (memoised)."""
    return cached.load_model(spec, tuple(data.input_shape), data.n_classes, adapter)


@st.cache_resource(show_spinner="Loading data...", max_entries=4)
def _split(spec: DataSpec, seed: int = 0) -> tuple[Dataset, Dataset]:
    """The (train, test) parts of ``spec``, memoised on the spec (whose signature names the content)."""
    if spec.bundled:
        return cached.bundled(spec.kind, "train"), cached.bundled(spec.kind, "test")
    return train_test(spec, seed=seed)


def held_out(spec: DataSpec, n: int, seed: int = 0) -> Dataset:
    """``n`` samples (stratified, seeded; all when there are fewer) of the data the analyses look at: the held-out
    split of the bundled sources and CIFAR, every image of a folder."""
    data = cached.bundled(spec.kind, "test") if spec.bundled else _analysis(spec)
    return clamp_samples(data, n, seed=seed)[0]


@st.cache_resource(show_spinner="Loading data...", max_entries=4)
def _analysis(spec: DataSpec) -> Dataset:
    """What the analyses look at of ``spec``, memoised on the spec (whose signature names the content)."""
    return analysis_data(spec)


def _bar(title: str):
    bar = st.progress(0.0, text=f"{title}: starting")
    return bar, (lambda d, n, m: bar.progress(min(d / n, 1.0) if n else 1.0, text=f"{title}: {m}"))


def as_pruning(d: dict) -> PruningResult:
    return PruningResult.from_dict(d)


def as_sanity(d: dict) -> SanityResult:
    return SanityResult.from_dict(d)


def as_dynamics(d: dict) -> DynamicsResult:
    return DynamicsResult.from_dict(d)


def as_adversarial(d: dict) -> AdversarialResult:
    return AdversarialResult.from_dict(d)


def as_stitching(d: dict) -> StitchResult:
    return StitchResult.from_dict(d)


def as_transfer(d: dict) -> TransferResult:
    return TransferResult.from_dict(d)


# --- pruning ----------------------------------------------------------------------------------------------------------


PRUNING_DEFAULTS = dict(criterion="modularity", threshold=0.03, epochs=10, lr=0.01, control_seeds=(0, 1, 2),
                        curve_samples=500, train_samples=None)  # the Pruning page's defaults


def pruning(spec: ModelSpec, data: DataSpec, adapter: AdapterChoice | None = None, *, run: bool,
            **params) -> dict | None:
    """A pruning run as ``PruningResult.to_dict()``. With ``run=False`` only a finished run is read from the disk
    cache (None when some variant was never computed); with ``run=True`` missing variants are fine-tuned, with a
    progress bar per epoch."""
    try:
        return _pruning(spec, data, adapter, run=run, **params)
    except LookupError:  # not cached by st.cache_data (it never stores exceptions), so a later run is seen
        return None


@st.cache_data(show_spinner=False, max_entries=16)
def _pruning(spec: ModelSpec, data: DataSpec, adapter: AdapterChoice | None, *, threshold: float | str, epochs: int,
             lr: float, control_seeds: tuple[int, ...], curve_samples: int, train_samples: int | None, k: int,
             run: bool, criterion: str = "modularity") -> dict:
    cache = cached.disk_cache()
    pdata = experiment_data(data, curve_samples=curve_samples, train_samples=train_samples,
                            load=cached.bundled if data.bundled else None)
    curve_data, train, test = pdata.curve, pdata.train, pdata.test
    model = loaded(spec, test, adapter)
    net, head_note = model.trainable_for(test)
    curve = pruning_curve(model, curve_data, k=k, cache=cache, criterion=criterion)
    kwargs = dict(threshold=threshold, criterion=criterion, finetune=pdata.finetune_config(epochs, lr),
                  control_seeds=control_seeds, model_id=model.model_id + ("|new-head" if head_note else ""),
                  model_label=model.label, cache=cache,
                  extra_settings={"curve_split": "train", "curve_samples": len(curve_data), "k": k,
                                  "curve_data": curve_data.dataset_id, "head": head_note})
    if not run:
        return run_pruning(net, curve, train, test, require_cached=True, **kwargs).to_dict()
    bar = st.progress(0.0, text="Pruning: starting")
    try:
        result = run_pruning(net, curve, train, test, progress=lambda p: bar.progress(p.fraction, text=p.message),
                             **kwargs)
    finally:
        bar.empty()
    return result.to_dict()


# --- sanity check -----------------------------------------------------------------------------------------------------


SANITY_DEFAULTS = dict(n_samples=200, metrics=("linear_cka", "rbf_cka_0.4", "gbs_dense", "gbs_knn"))
SANITY_DEFAULT_MODELS = 4  # the first seeds of the family


@st.cache_data(show_spinner=False, max_entries=8)
def sanity(models: tuple[ModelSpec, ...], data: DataSpec, adapter: AdapterChoice | None = None, *, n_samples: int,
           pool: bool, metrics: tuple[str, ...], run: bool = True) -> dict:
    """The sanity check as ``SanityResult.to_dict()``, with a progress bar per index. With ``run=False`` only a
    finished check is read from the disk cache (``LookupError`` otherwise, which st.cache_data does not keep)."""
    images = held_out(data, n_samples)
    bar, report = _bar("Sanity check")
    try:
        result = run_zoo_sanity_check(list(models), n_samples=n_samples, pool=pool, metrics=list(metrics),
                                      data=images, cache=cached.disk_cache(), progress=report,
                                      load=lambda spec: loaded(spec, images, adapter), require_cached=not run)
    finally:
        bar.empty()
    return result.to_dict()


# --- training dynamics ------------------------------------------------------------------------------------------------


@st.cache_data(show_spinner=False, max_entries=16)
def dynamics(model: str, files: tuple[str, ...], data: DataSpec, adapter: AdapterChoice | None = None, *,
             n_samples: int, pool: bool, k: int, motif_k: int) -> dict:
    """Training dynamics as ``DynamicsResult.to_dict()``: zoo model ``model``'s saved epochs, or with ``files`` the
    user's state_dict files of architecture ``model`` in that order; a progress bar per checkpoint step."""
    plan = files_dynamics_plan(model, files) if files else zoo_dynamics_plan(model)
    images = held_out(data, n_samples)
    bar, report = _bar("Training dynamics")
    try:
        result = run_dynamics(plan, images, pool=pool, k=k, motif_k=motif_k, cache=cached.disk_cache(),
                              progress=report, load=lambda spec: loaded(spec, images, adapter))
    finally:
        bar.empty()
    return result.to_dict()


@st.cache_data(show_spinner=False, max_entries=32)
def clean_similarity(spec: ModelSpec, data: DataSpec, adapter: AdapterChoice | None, n_samples: int, pool: bool,
                     layers: tuple[str, ...]):
    """Linear CKA layer x layer of ``spec`` on ``n_samples`` held-out images of ``data``."""
    images = held_out(data, n_samples)
    fs = analysis.feature_set(loaded(spec, images, adapter), images, list(layers), pool=pool,
                              cache=cached.disk_cache())
    return analysis.layer_similarity(fs, metric="linear_cka", cache=cached.disk_cache())


# --- adversarial ------------------------------------------------------------------------------------------------------


def adversarial(spec: ModelSpec, data: DataSpec, adapter: AdapterChoice | None, attacks: tuple[tuple[str, float], ...],
                *, n_samples: int, pool: bool, k: int, run: bool) -> dict | None:
    """Clean and attacked curves as ``AdversarialResult.to_dict()``. With ``run=False`` only attacks already in the
    disk cache are used (None when one is missing); with ``run=True`` missing chunks are attacked, with progress.

    Raises
    ------
    DashboardError
        The model's classifier does not predict the data's classes (an attack needs its loss on the true labels).
    """
    images = held_out(data, n_samples)
    model = loaded(spec, images, adapter)
    if not model.head_fits(images):
        raise DashboardError(
            f"{model.label} does not classify this data's {images.n_classes} classes (its head has "
            f"{model.head_classes}), and an attack needs the model's loss on the true labels: pick a model trained on "
            "this data, or other data in the sidebar.")
    try:
        return _adversarial(spec, data, adapter, attacks, n_samples=n_samples, pool=pool, k=k, run=run)
    except LookupError:  # st.cache_data never stores exceptions: a later run=True computes it
        return None


@st.cache_data(show_spinner=False, max_entries=16)
def _adversarial(spec: ModelSpec, data: DataSpec, adapter: AdapterChoice | None,
                 attacks: tuple[tuple[str, float], ...], *, n_samples: int, pool: bool, k: int, run: bool) -> dict:
    specs = [AttackSpec(kind, strength) for kind, strength in attacks]
    images = held_out(data, n_samples)
    model = loaded(spec, images, adapter)
    if not run:
        return run_adversarial(model, images, specs, pool=pool, k=k, cache=cached.disk_cache(),
                               require_cached=True).to_dict()
    bar, report = _bar("Attacks")
    try:
        result = run_adversarial(model, images, specs, pool=pool, k=k, cache=cached.disk_cache(), progress=report)
    finally:
        bar.empty()
    return result.to_dict()


# --- stitching --------------------------------------------------------------------------------------------------------


def stitching(a: ModelSpec, b: ModelSpec, data: DataSpec, adapter: AdapterChoice | None = None, *, all_pairs: bool,
              epochs: int, lr: float, run: bool) -> dict | None:
    """``a`` stitched into ``b`` as ``StitchResult.to_dict()``; with ``run=False`` only pairs already in the disk
    cache (None when one is missing), with ``run=True`` missing stitches are trained.

    Raises
    ------
    DashboardError
        B's classifier does not predict the data's classes (the stitched network classifies through B's head).
    """
    test = _split(data)[1]
    model_b = loaded(b, test, adapter)
    if not model_b.head_fits(test):
        raise DashboardError(f"{model_b.label}'s head does not classify this data's {test.n_classes} classes, and the "
                             "stitched network classifies through network B's head: pick a network B trained on this "
                             "data.")
    try:
        return _stitching(a, b, data, adapter, all_pairs=all_pairs, epochs=epochs, lr=lr, run=run)
    except LookupError:
        return None


@st.cache_data(show_spinner=False, max_entries=16)
def _stitching(a: ModelSpec, b: ModelSpec, data: DataSpec, adapter: AdapterChoice | None, *, all_pairs: bool,
               epochs: int, lr: float, run: bool) -> dict:
    pdata = experiment_data(data, curve_samples=None, load=cached.bundled if data.bundled else None)
    la, lb = loaded(a, pdata.test, adapter), loaded(b, pdata.test, adapter)
    layers_a, layers_b = la.default_layers(), lb.default_layers()
    pairs = ([(x, y) for x in layers_a for y in layers_b] if all_pairs
             else [(layers_a[i], layers_b[i]) for i in range(min(len(layers_a), len(layers_b)))])
    init = pdata.curve.subsample(500, seed=0) if len(pdata.curve) > 500 and not data.bundled else pdata.curve
    kwargs = dict(pairs=pairs, init=init, config=pdata.finetune_config(epochs, lr, weight_decay=0.0),
                  cache=cached.disk_cache())
    if not run:
        return run_stitching(la, lb, pdata.train, pdata.test, require_cached=True, **kwargs).to_dict()
    bar, report = _bar("Stitching")
    try:
        result = run_stitching(la, lb, pdata.train, pdata.test, progress=report, **kwargs)
    finally:
        bar.empty()
    return result.to_dict()


# --- transfer ---------------------------------------------------------------------------------------------------------


def transfer(sources: tuple[ModelSpec, ...], target: DataSpec, adapter: AdapterChoice | None = None, *,
             finetune_epochs: int, score_samples: int) -> dict:
    """Transferability of ``sources`` to the ``target`` task (its training and held-out parts: a folder split 70/30
    by class, seeded) as ``TransferResult.to_dict()``, with a progress bar per source. A folder is read on every run
    and the memo is keyed by its content, so images added to it are seen."""
    train, test = train_test(target) if target.kind == "folder" else _split(target)
    name = target.path or target.kind
    return _transfer(sources, train, test, name, train.dataset_id, test.dataset_id, adapter,
                     finetune_epochs=finetune_epochs, score_samples=score_samples)


@st.cache_data(show_spinner=False, max_entries=8)
def _transfer(sources: tuple[ModelSpec, ...], _train: Dataset, _test: Dataset, name: str, train_id: str, test_id: str,
              adapter: AdapterChoice | None, *, finetune_epochs: int, score_samples: int) -> dict:
    bar, report = _bar("Transferability")
    try:
        result = run_transfer([loaded(s, _test, adapter) for s in sources], _train, _test,
                              target_name=name, score_samples=score_samples,
                              finetune=TrainConfig(epochs=finetune_epochs, lr=0.01), cache=cached.disk_cache(),
                              progress=report)
    finally:
        bar.empty()
    return result.to_dict()
