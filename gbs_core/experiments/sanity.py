"""The layer-identification sanity check (REFERENCE.md section 8) over the zoo's Tiny-10 seeds, for every index.

For M networks of one architecture trained from different seeds, each ordered pair (a, b) and each layer l of a, an
index passes when ``argmax_m sim(layer l of a, layer m of b) == l``. :func:`run_sanity_check` computes, per metric, one
``similarity_matrix`` over the layers of all models stacked (each layer prepared once, each pair of layers computed
once for a symmetric metric), caches it on disk, and scores every index the same way as ``layer_identification_accuracy`` (ties to the shallowest
layer, NaN never wins). :func:`run_zoo_sanity_check` does it for the bundled ``tiny10-s0`` .. ``tiny10-s9`` on the
held-out digits. :data:`SANITY_METRICS` lists the indices with the CKA paper's Table 2 numbers where REFERENCE.md
gives them.

References
----------
Kornblith et al., "Similarity of Neural Network Representations Revisited", ICML 2019, section 6.1, Table 2.
Chen et al., "Graph-Based Similarity of Deep Neural Networks", Neurocomputing 614 (2024) 128722.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from gbs_core.cache import DiskCache
from gbs_core.data import Dataset
from gbs_core.metrics.similarity import similarity_matrix

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["SanityMetric", "SANITY_METRICS", "SanityResult", "identification_scores", "run_sanity_check",
           "run_zoo_sanity_check", "zoo_seed_models", "SANITY_VERSION"]

SANITY_VERSION = "1"
Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class SanityMetric:
    """One index of the check: ``metric`` and ``kwargs`` for ``similarity_matrix``; ``paper`` is the CKA paper's
    Table 2 accuracy in percent as REFERENCE.md section 8 states it (a range where the paper has two variants), or
    None where it gives no number."""

    key: str
    label: str
    metric: str
    kwargs: dict = field(default_factory=dict)
    paper: str | None = None


SANITY_METRICS: tuple[SanityMetric, ...] = (
    SanityMetric("linear_cka", "CKA (linear)", "linear_cka", {}, "99.3"),
    SanityMetric("debiased_linear_cka", "CKA (linear, debiased)", "debiased_linear_cka", {}, None),
    SanityMetric("rbf_cka_0.2", "CKA (RBF 0.2)", "rbf_cka", {"sigma_fraction": 0.2}, None),
    SanityMetric("rbf_cka_0.4", "CKA (RBF 0.4)", "rbf_cka", {"sigma_fraction": 0.4}, "99.1"),
    SanityMetric("rbf_cka_0.8", "CKA (RBF 0.8)", "rbf_cka", {"sigma_fraction": 0.8}, None),
    SanityMetric("gbs_dense", "GBS (dense graphs)", "gbs_dense", {}, None),
    SanityMetric("gbs_knn", "GBS (kNN graphs, k=5)", "gbs_knn", {"k": 5}, None),
    SanityMetric("mean_cca", "CCA (mean rho)", "mean_cca", {}, "1.4-10.6"),
    SanityMetric("mean_squared_cca", "CCA (mean rho^2)", "mean_squared_cca", {}, "1.4-10.6"),
    SanityMetric("svcca", "SVCCA (99% variance)", "svcca", {}, "9.9-15.1"),
    SanityMetric("pwcca", "PWCCA", "pwcca", {}, "11.1"),
    SanityMetric("linear_regression", "Linear regression", "linear_regression", {}, "45.4"),
)
_BY_KEY = {m.key: m for m in SANITY_METRICS}


def _metric(key: str) -> SanityMetric:
    if key not in _BY_KEY:
        raise ValueError(f"unknown sanity-check index {key!r}; choose from {', '.join(_BY_KEY)}")
    return _BY_KEY[key]


def identification_scores(matrices: Mapping[tuple[int, int], np.ndarray], n_layers: int) -> tuple[float, np.ndarray]:
    """(accuracy over all ordered pairs and layers, accuracy per layer) from per-pair layer x layer matrices.

    Row l of ``matrices[(a, b)]`` is matched to its argmax column (NaN never wins, ties to the first column, an all-NaN
    row is wrong); it is correct when that column is l.
    """
    hits = []
    for S in matrices.values():
        filled = np.where(np.isnan(S), -np.inf, S)
        pred = np.argmax(filled, axis=1)
        ok = pred == np.arange(n_layers)
        ok &= ~np.all(np.isnan(S), axis=1)
        hits.append(ok)
    hits_arr = np.stack(hits)
    return float(hits_arr.mean()), hits_arr.mean(axis=0)


@dataclass
class SanityResult:
    """Accuracy of every index, per layer, and each ordered pair's layer x layer matrix.

    ``matrices[key][(a, b)][l, m]`` = sim(layer l of model a, layer m of model b), for a != b.
    """

    models: list[str]
    layers: list[str]
    settings: dict
    accuracy: dict[str, float]
    per_layer: dict[str, list[float]]
    matrices: dict[str, dict[tuple[int, int], np.ndarray]] = field(repr=False)

    def table(self):
        """A DataFrame shaped like the CKA paper's Table 2: index, our accuracy (%), the paper's (%), pairs."""
        import pandas as pd

        n_pairs = len(self.models) * (len(self.models) - 1)
        return pd.DataFrame([{
            "index": _metric(k).label, "key": k, "ours_pct": 100.0 * acc, "paper_pct": _metric(k).paper or "",
            "ordered_pairs": n_pairs, "layers": len(self.layers),
        } for k, acc in self.accuracy.items()])

    def per_layer_table(self):
        """A DataFrame: one row per index, one column per layer, accuracy in percent."""
        import pandas as pd

        return pd.DataFrame({_metric(k).label: 100.0 * np.asarray(v) for k, v in self.per_layer.items()},
                            index=self.layers).T

    def pair_heatmap(self, key: str, a: int, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(matrix, argmax column per row, correct per row) for models a and b under index ``key``."""
        if key not in self.matrices:
            raise ValueError(f"index {key!r} was not computed; computed: {', '.join(self.matrices)}")
        if (a, b) not in self.matrices[key]:
            raise ValueError(f"no pair ({a}, {b}); models are numbered 0..{len(self.models) - 1} and a != b")
        S = self.matrices[key][(a, b)]
        pred = np.argmax(np.where(np.isnan(S), -np.inf, S), axis=1)
        return S, pred, pred == np.arange(len(self.layers))

    def pairs_table(self):
        """A DataFrame: index, model a, model b, accuracy of that ordered pair."""
        import pandas as pd

        rows = []
        for k, mats in self.matrices.items():
            for (a, b) in sorted(mats):
                _, _, ok = self.pair_heatmap(k, a, b)
                rows.append({"key": k, "a": self.models[a], "b": self.models[b], "accuracy": float(ok.mean())})
        return pd.DataFrame(rows)

    def to_dict(self, *, with_matrices: bool = True) -> dict:
        d = {"models": self.models, "layers": self.layers, "settings": self.settings, "accuracy": self.accuracy,
             "per_layer": self.per_layer,
             "paper": {k: _metric(k).paper for k in self.accuracy}}
        if with_matrices:
            d["matrices"] = {k: [{"a": a, "b": b, "matrix": S.tolist()} for (a, b), S in sorted(m.items())]
                             for k, m in self.matrices.items()}
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> SanityResult:
        mats = {k: {(e["a"], e["b"]): np.asarray(e["matrix"], dtype=np.float64) for e in v}
                for k, v in d.get("matrices", {}).items()}
        return cls(list(d["models"]), list(d["layers"]), dict(d["settings"]), dict(d["accuracy"]),
                   {k: list(v) for k, v in d["per_layer"].items()}, mats)


def run_sanity_check(
    models_features: Sequence[Mapping[str, np.ndarray]],
    model_names: Sequence[str],
    *,
    metrics: Sequence[str] | None = None,
    cache: DiskCache | None = None,
    cache_ids: Sequence[str] | None = None,
    settings: Mapping | None = None,
    progress: Progress | None = None,
    require_cached: bool = False,
) -> SanityResult:
    """Layer identification accuracy of each index over every ordered pair of the given models.

    Parameters
    ----------
    models_features : sequence of mappings layer name -> array (n_samples, n_features)
        At least 2 models, same samples, same layer names (the first model's order is used). Leave the logits out.
    model_names : names for the table and heatmaps, one per model.
    metrics : keys of :data:`SANITY_METRICS` (default: all 12).
    cache, cache_ids : with a cache, each index's matrix over all models is stored under the ids of the feature sets
        (e.g. weights fingerprint + dataset id + pooling); both are needed to use the cache.
    progress : called ``(done, total, message)`` before and after each index.
    require_cached : only read results: raise ``LookupError`` when an index's matrix is not in the cache (a report
        uses this to include a finished check without running one).

    Raises
    ------
    ValueError
        Fewer than 2 models, names or ids of the wrong length, different layers, an unknown index.
    LookupError
        With ``require_cached``, an index not in the cache (or no cache).
    """
    if len(models_features) < 2:
        raise ValueError(f"the sanity check needs at least 2 models; got {len(models_features)}")
    if len(model_names) != len(models_features):
        raise ValueError(f"{len(model_names)} names for {len(models_features)} models")
    if cache_ids is not None and len(cache_ids) != len(models_features):
        raise ValueError(f"{len(cache_ids)} cache ids for {len(models_features)} models")
    layers = list(models_features[0])
    for i, f in enumerate(models_features[1:], start=1):
        if set(f) != set(layers):
            raise ValueError(f"model {model_names[i]!r} has layers {sorted(f)}, model {model_names[0]!r} has {sorted(layers)}")
    feats = [{n: f[n] for n in layers} for f in models_features]
    keys = list(metrics) if metrics is not None else [m.key for m in SANITY_METRICS]
    specs = [_metric(k) for k in keys]
    M, L = len(feats), len(layers)
    # One similarity_matrix call over the layers of all models stacked: each layer is prepared (centred, Gram matrix,
    # basis ...) once instead of once per pair, and a symmetric metric computes each pair of layers once. The
    # within-model blocks (1/M of the work) are computed and dropped.
    stacked = {f"{i}:{n}": feats[i][n] for i in range(M) for n in layers}
    matrices: dict[str, dict[tuple[int, int], np.ndarray]] = {}
    for done, spec in enumerate(specs, start=1):
        if progress is not None:
            progress(done - 1, len(specs), f"{spec.label}: {M} models x {L} layers")

        def compute(spec=spec):
            return {"matrix": similarity_matrix(stacked, None, metric=spec.metric, **spec.kwargs)}

        if cache is not None and cache_ids is not None:
            key = {"kind": "sanity-stack", "version": SANITY_VERSION, "metric": spec.metric, "params": spec.kwargs,
                   "models": list(cache_ids), "layers": layers}
            hit = cache.get(key) if require_cached else cache.get_or_compute(key, compute)
            if hit is None:
                raise LookupError(f"the sanity check's {spec.label} is not in the cache")
            S = hit[0]["matrix"]
        elif require_cached:
            raise LookupError("the sanity check reads finished results from a cache; none was given")
        else:
            S = compute()["matrix"]
        matrices[spec.key] = {(a, b): S[a * L:(a + 1) * L, b * L:(b + 1) * L].copy()
                              for a in range(M) for b in range(M) if a != b}
        if progress is not None:
            progress(done, len(specs), f"{spec.label} done")
    accuracy, per_layer = {}, {}
    for k in keys:
        acc, per = identification_scores(matrices[k], len(layers))
        accuracy[k], per_layer[k] = acc, per.tolist()
    return SanityResult(list(model_names), layers, dict(settings or {}), accuracy, per_layer, matrices)


def zoo_seed_models(arch: str = "tiny10", data: str | None = None) -> list[str]:
    """Names of the bundled models of one architecture trained from different seeds (``<arch>-s<seed>...``) on one
    training data set (default: the zoo's default, the digits in noise)."""
    from gbs_core.zoo.registry import DEFAULT_TRAINING_DATA, list_zoo

    data = data or DEFAULT_TRAINING_DATA
    return [e.name for e in list_zoo() if e.arch == arch and e.data == data and e.name.startswith(f"{arch}-s")]


def run_zoo_sanity_check(
    models: Sequence[str] | None = None,
    *,
    n_samples: int = 500,
    pool: bool = False,
    layers: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
    data_seed: int = 0,
    data: Dataset | None = None,
    cache: DiskCache | None = None,
    progress: Progress | None = None,
    load: Callable | None = None,
    require_cached: bool = False,
    client: Client | None = None,
) -> SanityResult:
    """The sanity check on bundled zoo models (default: every ``tiny10-s*`` of the digits in noise) with
    ``n_samples`` held-out images (a seeded subsample of the 540-image test split of the data the first model was
    trained on), optionally with conv maps average pooled, on ``layers`` (default: the architecture's default layers,
    which exclude the logits). ``data`` replaces the held-out images (e.g. a copy the caller already holds;
    ``n_samples`` and ``data_seed`` then subsample it). ``models`` may also hold
    :class:`~gbs_core.pipeline.ModelSpec` (torchvision, timm, checkpoints: give ``data`` then) and ``load(spec)``
    builds each one (default :func:`~gbs_core.pipeline.load_model` shaped for ``data``). ``require_cached``: see
    :func:`run_sanity_check` (the features are still read or extracted: cheap for the zoo's small models).

    ``client`` (a ``distributed.Client``, see :func:`gbs_core.cluster.dask_client`): each model's features are
    extracted as a Dask task and written into ``cache`` here, then the indices are computed here as without one
    (:func:`gbs_core.analysis.feature_sets`); the result is the same."""
    from gbs_core.analysis import feature_sets
    from gbs_core.pipeline import ModelSpec, load_model
    from gbs_core.zoo.registry import evaluation_data, list_zoo, training_data_of

    models = list(models) if models is not None else zoo_seed_models("tiny10")
    if len(models) < 2:
        raise ValueError(f"the sanity check needs at least 2 zoo models; got {models}")
    specs = [m if isinstance(m, ModelSpec) else ModelSpec("zoo", m) for m in models]
    models = [m if isinstance(m, str) else m.label for m in models]
    if data is None:
        names = {e.name for e in list_zoo(include_checkpoints=True)}
        if specs[0].source != "zoo":
            raise ValueError("give the data to compare models that are not in the zoo on")
        if models[0] not in names:
            raise KeyError(f"no zoo model named {models[0]!r}; the zoo has {', '.join(sorted(names))}")
        data = evaluation_data(training_data_of(models[0]))
    if n_samples < len(data):
        data = data.subsample(n_samples, seed=data_seed)
    if load is None:
        def load(spec, _shape=tuple(data.input_shape), _classes=data.n_classes):
            return load_model(spec, data_shape=_shape, num_classes=_classes)
    sets = feature_sets(specs, data, layers, load=load, pool=pool, cache=cache, client=client, progress=progress)
    feats = [fs.features for fs in sets]
    ids = [f"{fs.model_id}|{data.dataset_id}|pool={bool(pool)}" for fs in sets]
    settings = {"models": list(models), "n_samples": len(data), "pool": bool(pool), "data": data.dataset_id,
                "data_seed": int(data_seed), "layers": list(feats[0])}
    return run_sanity_check(feats, models, metrics=metrics, cache=cache, cache_ids=ids, settings=settings,
                            progress=progress, require_cached=require_cached)
