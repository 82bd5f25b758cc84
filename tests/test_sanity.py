"""Layer-identification sanity check: identical models, a slow reference on synthetic networks, scoring, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gbs_core.activations import extract_activations
from gbs_core.cache import DiskCache
from gbs_core.data import load_digits
from gbs_core.experiments.sanity import SANITY_METRICS, SanityResult, identification_scores, run_sanity_check
from gbs_core.metrics import (
    gbs_similarity,
    layer_identification_accuracy,
    linear_cka,
    linear_regression_similarity,
    mean_cca,
    mean_squared_cca,
    pwcca,
    rbf_cka,
    svcca,
)
from gbs_core.zoo.architectures import Tiny10

ALL_KEYS = [m.key for m in SANITY_METRICS]

# The same indices through the pair functions, one call per pair of layers: the slow, obvious reference.
PAIR_FUNCTIONS = {
    "linear_cka": lambda x, y: linear_cka(x, y),
    "debiased_linear_cka": lambda x, y: linear_cka(x, y, debiased=True),
    "rbf_cka_0.2": lambda x, y: rbf_cka(x, y, sigma_fraction=0.2),
    "rbf_cka_0.4": lambda x, y: rbf_cka(x, y, sigma_fraction=0.4),
    "rbf_cka_0.8": lambda x, y: rbf_cka(x, y, sigma_fraction=0.8),
    "gbs_dense": lambda x, y: gbs_similarity(x, y, graph="dense"),
    "gbs_knn": lambda x, y: gbs_similarity(x, y, graph="knn", k=5),
    "mean_cca": mean_cca,
    "mean_squared_cca": mean_squared_cca,
    "svcca": svcca,
    "pwcca": pwcca,
    "linear_regression": linear_regression_similarity,
}


def test_every_listed_index_is_in_the_check():
    assert ALL_KEYS == ["linear_cka", "debiased_linear_cka", "rbf_cka_0.2", "rbf_cka_0.4", "rbf_cka_0.8", "gbs_dense",
                        "gbs_knn", "mean_cca", "mean_squared_cca", "svcca", "pwcca", "linear_regression"]
    paper = {m.key: m.paper for m in SANITY_METRICS}
    assert paper["linear_cka"] == "99.3" and paper["rbf_cka_0.4"] == "99.1" and paper["linear_regression"] == "45.4"
    assert paper["pwcca"] == "11.1"


def test_two_copies_of_one_model_score_100_percent_for_every_index():
    torch.manual_seed(0)
    model = Tiny10().eval()
    data = load_digits("test").subsample(100, seed=0)
    feats = extract_activations(model, data, model.default_layers(), pool=True).features  # widths 16..64 < N
    res = run_sanity_check([feats, feats], ["copy-a", "copy-b"])
    assert res.accuracy == {k: 1.0 for k in ALL_KEYS}
    assert all(v == [1.0] * 8 for v in res.per_layer.values())


def _synthetic_networks(n_models=3, n=40, seed=0):
    """Layers l = 0..3 of each 'network': a shared signal of layer l through a random per-model rotation, plus
    per-model noise whose size grows with the seed, so that some indices miss some layers."""
    rng = np.random.default_rng(seed)
    base = [rng.normal(size=(n, 6)) for _ in range(4)]
    for depth in range(1, 4):
        base[depth] = 0.6 * base[depth - 1] + 0.8 * base[depth]  # neighbouring layers resemble each other
    models = []
    for m in range(n_models):
        feats = {}
        for depth in range(4):
            Q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
            feats[f"layer{depth}"] = base[depth] @ Q + (0.4 + 0.3 * m) * rng.normal(size=(n, 6))
        models.append(feats)
    return models


def _slow_accuracy(models, f):
    layers = list(models[0])
    correct = total = 0
    per_layer = np.zeros(len(layers))
    for a in range(len(models)):
        for b in range(len(models)):
            if a == b:
                continue
            for i, la in enumerate(layers):
                sims = [f(models[a][la], models[b][lb]) for lb in layers]
                best = int(np.argmax(sims))
                correct += best == i
                per_layer[i] += best == i
                total += 1
    n_pairs = len(models) * (len(models) - 1)
    return correct / total, per_layer / n_pairs


def test_matches_a_slow_reference_on_synthetic_networks(tmp_path):
    models = _synthetic_networks()
    res = run_sanity_check(models, ["m0", "m1", "m2"], cache=DiskCache(tmp_path), cache_ids=["i0", "i1", "i2"])
    accuracies = set()
    for key, f in PAIR_FUNCTIONS.items():
        acc, per_layer = _slow_accuracy(models, f)
        assert res.accuracy[key] == pytest.approx(acc), key
        np.testing.assert_allclose(res.per_layer[key], per_layer, err_msg=key)
        accuracies.add(round(acc, 6))
    assert len(accuracies) > 1  # the synthetic set separates the indices: not every one is perfect
    # and agrees with the metrics package's own check
    ref = layer_identification_accuracy(models, "linear_cka")
    assert res.accuracy["linear_cka"] == pytest.approx(ref.accuracy)
    # a second run is read from the cache and gives the same matrices
    again = run_sanity_check(models, ["m0", "m1", "m2"], cache=DiskCache(tmp_path), cache_ids=["i0", "i1", "i2"])
    for key in ALL_KEYS:
        for pair, S in res.matrices[key].items():
            np.testing.assert_array_equal(again.matrices[key][pair], S)


def test_identification_scores_by_hand():
    S_ab = np.array([[0.9, 0.1, 0.0], [0.2, 0.3, 0.8], [0.1, 0.2, 0.7]])  # rows 0 and 2 right, row 1 wrong
    S_ba = np.array([[0.5, 0.5, 0.0], [np.nan, np.nan, np.nan], [0.0, 0.1, np.nan]])  # tie -> 0 right; NaN row wrong
    acc, per_layer = identification_scores({(0, 1): S_ab, (1, 0): S_ba}, 3)
    assert acc == pytest.approx(3 / 6)
    np.testing.assert_allclose(per_layer, [1.0, 0.0, 0.5])


def test_pair_heatmap_marks_and_json_round_trip():
    models = _synthetic_networks()
    res = run_sanity_check(models, ["m0", "m1", "m2"], metrics=["linear_cka", "pwcca"])
    S, pred, ok = res.pair_heatmap("pwcca", 2, 0)
    assert S.shape == (4, 4)
    np.testing.assert_array_equal(pred, np.argmax(S, axis=1))
    np.testing.assert_array_equal(ok, pred == np.arange(4))
    table = res.table()
    assert list(table["key"]) == ["linear_cka", "pwcca"] and list(table["paper_pct"]) == ["99.3", "11.1"]
    assert table.loc[0, "ours_pct"] == pytest.approx(100 * res.accuracy["linear_cka"])
    assert len(res.pairs_table()) == 2 * 6
    back = SanityResult.from_dict(res.to_dict())
    assert back.accuracy == res.accuracy
    np.testing.assert_allclose(back.matrices["pwcca"][(2, 0)], S)
    with pytest.raises(ValueError, match="was not computed"):
        res.pair_heatmap("svcca", 0, 1)
    with pytest.raises(ValueError, match="no pair"):
        res.pair_heatmap("pwcca", 1, 1)


def test_errors():
    models = _synthetic_networks()
    with pytest.raises(ValueError, match="at least 2 models"):
        run_sanity_check(models[:1], ["m0"])
    with pytest.raises(ValueError, match="unknown sanity-check index 'cka'"):
        run_sanity_check(models, ["a", "b", "c"], metrics=["cka"])
    with pytest.raises(ValueError, match="2 names for 3 models"):
        run_sanity_check(models, ["a", "b"])
    bad = [models[0], {"other": models[1]["layer0"]}]
    with pytest.raises(ValueError, match="has layers"):
        run_sanity_check(bad, ["a", "b"])


def test_require_cached_reads_a_finished_check_and_never_computes(tmp_path):
    from gbs_core.cache import DiskCache

    rng = np.random.default_rng(0)
    feats = [{f"l{i}": rng.normal(size=(30, 6)) + i for i in range(3)} for _ in range(2)]
    cache, ids = DiskCache(tmp_path), ["a", "b"]
    with pytest.raises(LookupError, match="not in the cache"):
        run_sanity_check(feats, ["m0", "m1"], metrics=["linear_cka"], cache=cache, cache_ids=ids, require_cached=True)
    with pytest.raises(LookupError, match="none was given"):
        run_sanity_check(feats, ["m0", "m1"], metrics=["linear_cka"], require_cached=True)
    done = run_sanity_check(feats, ["m0", "m1"], metrics=["linear_cka"], cache=cache, cache_ids=ids)
    read = run_sanity_check(feats, ["m0", "m1"], metrics=["linear_cka"], cache=cache, cache_ids=ids,
                            require_cached=True)
    assert read.accuracy == done.accuracy
    np.testing.assert_array_equal(read.matrices["linear_cka"][(0, 1)], done.matrices["linear_cka"][(0, 1)])
