"""Streamlit-cached runs behind the experiment pages: Pruning, Sanity check, Training dynamics, Adversarial (the core
does the work; this adds caching and progress bars). Every result also lives in the core's disk cache, shared with
``python -m gbs_core prune``, ``sanity-check``, ``dynamics`` and ``adversarial``: a run finished by a batch job or an
earlier session is shown without recomputing."""

from __future__ import annotations

import streamlit as st

from dashboard import cached
from gbs_core import analysis
from gbs_core.data import Dataset, load_image_folder
from gbs_core.experiments.adversarial import AdversarialResult, AttackSpec, run_adversarial
from gbs_core.experiments.dynamics import DynamicsResult, files_dynamics_plan, run_dynamics, zoo_dynamics_plan
from gbs_core.experiments.pruning import PruningResult, pruning_curve, pruning_data, run_pruning
from gbs_core.experiments.sanity import SanityResult, run_zoo_sanity_check
from gbs_core.experiments.stitching import StitchResult, run_stitching
from gbs_core.data import stratified_split
from gbs_core.experiments.transfer import TransferResult, run_transfer
from gbs_core.pipeline import ModelSpec
from gbs_core.zoo.registry import training_data_of, training_source_of
from gbs_core.zoo.train import TrainConfig

__all__ = ["pruning", "sanity", "dynamics", "adversarial", "held_out", "clean_similarity", "as_pruning", "as_sanity",
           "as_dynamics", "as_adversarial", "stitching", "as_stitching", "transfer",
           "as_transfer"]


def pruning(spec: ModelSpec, *, run: bool, **params) -> dict | None:
    """A pruning run as ``PruningResult.to_dict()``. With ``run=False`` only a finished run is read from the disk
    cache (None when some variant was never computed); with ``run=True`` missing variants are fine-tuned, with a
    progress bar per epoch."""
    try:
        return _pruning(spec, run=run, **params)
    except LookupError:  # not cached by st.cache_data (it never stores exceptions), so a later run is seen
        return None


@st.cache_data(show_spinner=False, max_entries=16)
def _pruning(spec: ModelSpec, *, threshold: float | str, epochs: int, lr: float, control_seeds: tuple[int, ...],
             curve_samples: int, train_samples: int | None, k: int, run: bool, criterion: str = "modularity") -> dict:
    loaded = cached.load_model(spec)
    cache = cached.disk_cache()
    pdata = pruning_data(training_data_of(spec.name), curve_samples=curve_samples, train_samples=train_samples,
                         load=cached.bundled)
    curve_data, train, test = pdata.curve, pdata.train, pdata.test
    curve = pruning_curve(loaded, curve_data, k=k, cache=cache, criterion=criterion)
    kwargs = dict(threshold=threshold, criterion=criterion, finetune=pdata.finetune_config(epochs, lr), control_seeds=control_seeds,
                  model_id=loaded.model_id, model_label=loaded.label, cache=cache,
                  extra_settings={"curve_split": "train", "curve_samples": len(curve_data), "k": k,
                                  "curve_data": curve_data.dataset_id})
    if not run:
        return run_pruning(loaded.model, curve, train, test, require_cached=True, **kwargs).to_dict()
    bar = st.progress(0.0, text="Pruning: starting")
    try:
        result = run_pruning(loaded.model, curve, train, test,
                             progress=lambda p: bar.progress(p.fraction, text=p.message), **kwargs)
    finally:
        bar.empty()
    return result.to_dict()


@st.cache_data(show_spinner=False, max_entries=8)
def sanity(models: tuple[str, ...], *, n_samples: int, pool: bool, metrics: tuple[str, ...]) -> dict:
    """The sanity check as ``SanityResult.to_dict()``, with a progress bar per index."""
    bar, report = _bar("Sanity check")
    try:
        result = run_zoo_sanity_check(list(models), n_samples=n_samples, pool=pool, metrics=list(metrics),
                                      data=cached.bundled(training_source_of(models[0]), "test"),
                                      cache=cached.disk_cache(), progress=report)
    finally:
        bar.empty()
    return result.to_dict()


def as_pruning(d: dict) -> PruningResult:
    return PruningResult.from_dict(d)


def as_sanity(d: dict) -> SanityResult:
    return SanityResult.from_dict(d)


def as_dynamics(d: dict) -> DynamicsResult:
    return DynamicsResult.from_dict(d)


def as_adversarial(d: dict) -> AdversarialResult:
    return AdversarialResult.from_dict(d)


def held_out(model_name: str, n: int, seed: int = 0) -> Dataset:
    """``n`` images (stratified, seeded) of the held-out split of the data ``model_name`` was trained on (the default
    data for an architecture that is not a zoo model)."""
    data = cached.bundled(training_source_of(model_name), "test")
    return data.subsample(n, seed=seed) if n < len(data) else data


def _bar(title: str):
    bar = st.progress(0.0, text=f"{title}: starting")
    return bar, (lambda d, n, m: bar.progress(min(d / n, 1.0) if n else 1.0, text=f"{title}: {m}"))


@st.cache_data(show_spinner=False, max_entries=16)
def dynamics(model: str, files: tuple[str, ...] = (), *, n_samples: int, pool: bool, k: int, motif_k: int) -> dict:
    """Training dynamics as ``DynamicsResult.to_dict()``: zoo model ``model``'s saved epochs, or with ``files`` the
    user's state_dict files of architecture ``model`` in that order; a progress bar per checkpoint step."""
    plan = files_dynamics_plan(model, files) if files else zoo_dynamics_plan(model)
    bar, report = _bar("Training dynamics")
    try:
        result = run_dynamics(plan, held_out(model, n_samples), pool=pool, k=k, motif_k=motif_k,
                              cache=cached.disk_cache(), progress=report, load=cached.load_model)
    finally:
        bar.empty()
    return result.to_dict()


@st.cache_data(show_spinner=False, max_entries=32)
def clean_similarity(spec: ModelSpec, model_name: str, n_samples: int, pool: bool, layers: tuple[str, ...]):
    """Linear CKA layer x layer of ``spec`` on the held-out images of ``model_name``'s training data."""
    fs = analysis.feature_set(cached.load_model(spec), held_out(model_name, n_samples), list(layers), pool=pool,
                              cache=cached.disk_cache())
    return analysis.layer_similarity(fs, metric="linear_cka", cache=cached.disk_cache())


def adversarial(spec: ModelSpec, attacks: tuple[tuple[str, float], ...], *, n_samples: int, pool: bool, k: int,
                run: bool) -> dict | None:
    """Clean and attacked curves as ``AdversarialResult.to_dict()``. With ``run=False`` only attacks already in the
    disk cache are used (None when one is missing); with ``run=True`` missing chunks are attacked, with progress."""
    try:
        return _adversarial(spec, attacks, n_samples=n_samples, pool=pool, k=k, run=run)
    except LookupError:  # st.cache_data never stores exceptions: a later run=True computes it
        return None


@st.cache_data(show_spinner=False, max_entries=16)
def _adversarial(spec: ModelSpec, attacks: tuple[tuple[str, float], ...], *, n_samples: int, pool: bool, k: int,
                 run: bool) -> dict:
    specs = [AttackSpec(kind, strength) for kind, strength in attacks]
    data = held_out(spec.name, n_samples)
    if not run:
        return run_adversarial(cached.load_model(spec), data, specs, pool=pool, k=k, cache=cached.disk_cache(),
                               require_cached=True).to_dict()
    bar, report = _bar("Attacks")
    try:
        result = run_adversarial(cached.load_model(spec), data, specs, pool=pool, k=k, cache=cached.disk_cache(),
                                 progress=report)
    finally:
        bar.empty()
    return result.to_dict()


def as_stitching(d: dict) -> StitchResult:
    return StitchResult.from_dict(d)


def stitching(a: str, b: str, *, all_pairs: bool, epochs: int, lr: float, run: bool) -> dict | None:
    """Zoo model ``a`` stitched into zoo model ``b`` as ``StitchResult.to_dict()``; with ``run=False`` only pairs
    already in the disk cache (None when one is missing), with ``run=True`` missing stitches are trained."""
    try:
        return _stitching(a, b, all_pairs=all_pairs, epochs=epochs, lr=lr, run=run)
    except LookupError:
        return None


@st.cache_data(show_spinner=False, max_entries=16)
def _stitching(a: str, b: str, *, all_pairs: bool, epochs: int, lr: float, run: bool) -> dict:
    la, lb = cached.load_model(ModelSpec("zoo", a)), cached.load_model(ModelSpec("zoo", b))
    pdata = pruning_data(training_data_of(a), curve_samples=None, load=cached.bundled)
    layers_a, layers_b = la.default_layers(), lb.default_layers()
    pairs = ([(x, y) for x in layers_a for y in layers_b] if all_pairs
             else [(layers_a[i], layers_b[i]) for i in range(min(len(layers_a), len(layers_b)))])
    kwargs = dict(pairs=pairs, init=pdata.curve, config=pdata.finetune_config(epochs, lr, weight_decay=0.0),
                  cache=cached.disk_cache())
    if not run:
        return run_stitching(la, lb, pdata.train, pdata.test, require_cached=True, **kwargs).to_dict()
    bar, report = _bar("Stitching")
    try:
        result = run_stitching(la, lb, pdata.train, pdata.test, progress=report, **kwargs)
    finally:
        bar.empty()
    return result.to_dict()


def as_transfer(d: dict) -> TransferResult:
    return TransferResult.from_dict(d)


def transfer(sources: tuple[str, ...], target: str, folder: str, *, finetune_epochs: int, score_samples: int) -> dict:
    """Transferability of zoo ``sources`` to a bundled ``target`` or, for target "image_folder", the folder (16x16
    grey, split 70/30 by class), as ``TransferResult.to_dict()``, with a progress bar per source. The folder is read
    on every run and the memo is keyed by its content, so images added to it are seen."""
    if target == "image_folder":
        train, test = stratified_split(load_image_folder(folder, size=16, channels=1))
        name = folder
    else:
        train, test, name = cached.bundled(target, "train"), cached.bundled(target, "test"), target
    return _transfer(sources, train, test, name, train.dataset_id, test.dataset_id, finetune_epochs=finetune_epochs,
                     score_samples=score_samples)


@st.cache_data(show_spinner=False, max_entries=8)
def _transfer(sources: tuple[str, ...], _train: Dataset, _test: Dataset, name: str, train_id: str, test_id: str, *,
              finetune_epochs: int, score_samples: int) -> dict:
    bar, report = _bar("Transferability")
    try:
        result = run_transfer([cached.load_model(ModelSpec("zoo", s)) for s in sources], _train, _test,
                              target_name=name, score_samples=score_samples,
                              finetune=TrainConfig(epochs=finetune_epochs, lr=0.01), cache=cached.disk_cache(),
                              progress=report)
    finally:
        bar.empty()
    return result.to_dict()
