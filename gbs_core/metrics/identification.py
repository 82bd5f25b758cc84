"""The layer-identification sanity check: can a similarity index tell which layer of one network matches which of another?

Given M networks of one architecture (trained from different seeds) evaluated on the same samples: for each ordered
pair (a, b), a != b, and each layer l of a, find ``argmax_m sim(layer l of a, layer m of b)``; the match is correct when
m = l. Accuracy = mean over layers and ordered pairs. Exclude the logits (``exclude=``), as the papers do.

References
----------
Kornblith et al., "Similarity of Neural Network Representations Revisited", ICML 2019, section 6.1 and Table 1.
Chen et al., "Graph-Based Similarity of Deep Neural Networks", Neurocomputing 614 (2024) 128722.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from gbs_core._validation import ArrayLike, check_layers
from gbs_core.metrics.similarity import metric_is_symmetric, similarity_matrix

__all__ = ["IdentificationResult", "PairIdentification", "layer_identification_accuracy"]


@dataclass(frozen=True)
class PairIdentification:
    """Details for one ordered pair of models (a, b).

    ``similarity[l, m]`` = sim(layer l of a, layer m of b); ``predicted[l]`` = the argmax over m (-1 when the row is
    all NaN); ``correct[l]`` = ``predicted[l] == l``.
    """

    a: int
    b: int
    similarity: np.ndarray
    predicted: np.ndarray
    correct: np.ndarray


@dataclass(frozen=True)
class IdentificationResult:
    """Outcome of ``layer_identification_accuracy``.

    Attributes
    ----------
    accuracy : float in [0, 1], the mean of ``correct`` over all layers and ordered pairs.
    layers : the layer names compared, in order.
    per_layer : dict layer -> accuracy over the ordered pairs (where an index fails).
    pairs : one ``PairIdentification`` per ordered pair (a, b), a != b.
    """

    accuracy: float
    layers: list[str]
    per_layer: dict[str, float]
    pairs: list[PairIdentification] = field(repr=False)

    def failures(self) -> list[tuple[int, int, str, str]]:
        """(a, b, layer, predicted layer or "none") for every wrong match."""
        out = []
        for p in self.pairs:
            for l_idx in np.flatnonzero(~p.correct):
                m = int(p.predicted[l_idx])
                out.append((p.a, p.b, self.layers[l_idx], self.layers[m] if m >= 0 else "none"))
        return out


def _argmax_rows(S: np.ndarray) -> np.ndarray:
    filled = np.where(np.isnan(S), -np.inf, S)
    pred = np.argmax(filled, axis=1)
    pred[np.all(np.isnan(S), axis=1)] = -1
    return pred


def layer_identification_accuracy(
    models_features: Sequence[Mapping[str, ArrayLike]],
    similarity: str | Callable[[Any, Any], float] = "linear_cka",
    *,
    exclude: Sequence[str] = (),
    device: str | torch.device | None = None,
    **metric_kwargs: Any,
) -> IdentificationResult:
    """Accuracy of a similarity index at matching each layer of one network to the same layer of another.

    ``accuracy = mean over ordered pairs (a, b), a != b, and layers l of [argmax_m sim(a_l, b_m) == l]``.
    Ties go to the first (shallowest) maximising layer; NaN similarities never win, and a row of NaN counts as wrong.
    For a symmetric metric each unordered pair's matrix is computed once and transposed for the reverse pair.

    Parameters
    ----------
    models_features : sequence of mappings layer name -> array (n_samples, n_features_l)
        At least 2 models of one architecture on the same samples, with the same layer names (the first model's order
        is used).
    similarity : metric name of ``SIMILARITY_METRICS`` or callable ``f(X, Y) -> float``, default "linear_cka"
    exclude : layer names to leave out (e.g. the logits).
    device : torch device, optional
    **metric_kwargs : options of the metric (see ``similarity_matrix``).

    Returns
    -------
    IdentificationResult with ``accuracy`` in [0, 1] (higher is better; chance is about 1 / n_layers), per-layer
    accuracies and the per-pair matrices and argmax choices (``.failures()`` lists the misses).

    Raises
    ------
    ValueError
        Fewer than 2 models, models with different layer names, fewer than 2 layers left after ``exclude``, an
        excluded name that is not a layer, and every error of ``similarity_matrix``.
    """
    models = list(models_features)
    if len(models) < 2:
        raise ValueError(f"need features of at least 2 models; got {len(models)}")
    names0 = check_layers(models[0], "models_features[0]")
    for i, m in enumerate(models[1:], start=1):
        if set(check_layers(m, f"models_features[{i}]")) != set(names0):
            diff = sorted(set(m) ^ set(names0))
            raise ValueError(f"models_features[{i}] has different layers from model 0 (differing: {diff})")
    missing = sorted(set(exclude) - set(names0))
    if missing:
        raise ValueError(f"exclude names layers that do not exist: {missing}")
    layers = [n for n in names0 if n not in set(exclude)]
    if len(layers) < 2:
        raise ValueError(f"need at least 2 layers to identify; got {len(layers)} after exclude")
    feats = [{n: m[n] for n in layers} for m in models]

    symmetric = metric_is_symmetric(similarity, **metric_kwargs)
    mats: dict[tuple[int, int], np.ndarray] = {}
    for a in range(len(models)):
        for b in range(len(models)):
            if a == b or (a, b) in mats:
                continue
            S = similarity_matrix(feats[a], feats[b], metric=similarity, device=device, **metric_kwargs)
            mats[(a, b)] = S
            if symmetric:
                mats[(b, a)] = S.T
    pairs = []
    for (a, b), S in sorted(mats.items()):
        pred = _argmax_rows(S)
        pairs.append(PairIdentification(a, b, S, pred, pred == np.arange(len(layers))))
    correct = np.stack([p.correct for p in pairs])  # (pairs, layers)
    per_layer = {name: float(correct[:, i].mean()) for i, name in enumerate(layers)}
    return IdentificationResult(float(correct.mean()), layers, per_layer, pairs)
