"""Streamlit-cached runs behind the Pruning and Sanity check pages (the core does the work; this adds caching and
progress bars). Both results also live in the core's disk cache, shared with ``python -m gbs_core prune`` and
``sanity-check``: a run finished by a batch job or an earlier session is shown without recomputing."""

from __future__ import annotations

import streamlit as st

from dashboard import cached
from gbs_core.experiments.pruning import PruningResult, pruning_curve, pruning_data, run_pruning
from gbs_core.experiments.sanity import SanityResult, run_zoo_sanity_check
from gbs_core.pipeline import ModelSpec
from gbs_core.zoo.registry import training_data, training_data_of

__all__ = ["pruning", "sanity"]


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
             curve_samples: int, train_samples: int | None, k: int, run: bool) -> dict:
    loaded = cached.load_model(spec)
    cache = cached.disk_cache()
    pdata = pruning_data(training_data_of(spec.name), curve_samples=curve_samples, train_samples=train_samples,
                         load=cached.bundled)
    curve_data, train, test = pdata.curve, pdata.train, pdata.test
    curve = pruning_curve(loaded, curve_data, k=k, cache=cache)
    kwargs = dict(threshold=threshold, finetune=pdata.finetune_config(epochs, lr), control_seeds=control_seeds,
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
    bar = st.progress(0.0, text="Sanity check: extracting features")
    try:
        result = run_zoo_sanity_check(list(models), n_samples=n_samples, pool=pool, metrics=list(metrics),
                                      data=cached.bundled(training_data(training_data_of(models[0])).source, "test"),
                                      cache=cached.disk_cache(),
                                      progress=lambda d, n, m: bar.progress(min(d / n, 1.0) if n else 1.0, text=m))
    finally:
        bar.empty()
    return result.to_dict()


def as_pruning(d: dict) -> PruningResult:
    return PruningResult.from_dict(d)


def as_sanity(d: dict) -> SanityResult:
    return SanityResult.from_dict(d)
