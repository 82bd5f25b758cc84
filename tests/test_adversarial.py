"""Adversarial inputs: a zero budget changes nothing, every attack lowers a bundled model's accuracy within its
budget, runs are seeded and cached chunk by chunk, and the attacked modularity curves sit below the clean one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gbs_core.analysis import feature_set, modularity_by_layer
from gbs_core.cache import DiskCache
from gbs_core.data import load_bundled
from gbs_core.experiments import adversarial as adv
from gbs_core.experiments.adversarial import (
    AdversarialResult,
    AttackSpec,
    adversarial_dataset,
    attack_images,
    parse_attack,
    run_adversarial,
)
from gbs_core.pipeline import ModelSpec, load_model


@pytest.fixture(scope="module")
def model():
    return load_model(ModelSpec("zoo", "tiny10-s0"))


@pytest.fixture(scope="module")
def data():
    return load_bundled("digits-noise", "test").subsample(100, seed=0)


def _accuracy(m, images, labels) -> float:
    with torch.no_grad():
        return float(np.mean(m.model(images).argmax(1).numpy() == labels))


@pytest.mark.parametrize("kind", ["fgsm", "pgd"])
def test_a_zero_budget_changes_nothing(model, data, kind):
    x = attack_images(model.model, data.images, data.labels, AttackSpec(kind, 0.0), n_classes=10)
    torch.testing.assert_close(x, data.images, rtol=0, atol=0)


@pytest.mark.parametrize("spec, max_accuracy", [
    (AttackSpec("fgsm", 0.1), 0.5),
    (AttackSpec("pgd", 0.05), 0.5),
])
def test_gradient_attacks_lower_accuracy_within_their_budget(model, data, spec, max_accuracy):
    clean = _accuracy(model, data.images, data.labels)
    x = attack_images(model.model, data.images, data.labels, spec, n_classes=10)
    assert clean > 0.9
    assert _accuracy(model, x, data.labels) < max_accuracy
    assert float((x - data.images).abs().max()) <= spec.strength + 1e-6
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0


def test_one_pixel_changes_one_pixel_and_cw_lowers_accuracy(model, data):
    few = data.subset(np.arange(12), "few")
    clean = _accuracy(model, few.images, few.labels)
    one = attack_images(model.model, few.images, few.labels, AttackSpec("one-pixel", 1), n_classes=10)
    changed = (one != few.images).flatten(1).sum(1)
    assert int(changed.max()) <= 1
    assert _accuracy(model, one, few.labels) <= clean
    cw = attack_images(model.model, few.images, few.labels, AttackSpec("cw", 0.0), n_classes=10)
    assert _accuracy(model, cw, few.labels) < clean


def test_attacks_are_seeded_and_leave_the_global_generators_alone(model, data):
    np.random.seed(123)
    before = np.random.random()
    np.random.seed(123)
    a = attack_images(model.model, data.images[:20], data.labels[:20], AttackSpec("pgd", 0.03), n_classes=10, seed=4)
    assert np.random.random() == before
    b = attack_images(model.model, data.images[:20], data.labels[:20], AttackSpec("pgd", 0.03), n_classes=10, seed=4)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_attacked_sets_are_cached_per_chunk(model, data, tmp_path, monkeypatch):
    cache = DiskCache(tmp_path)
    spec = AttackSpec("pgd", 0.03)
    with pytest.raises(LookupError, match="not in the cache"):
        adversarial_dataset(model, data, spec, cache=cache, require_cached=True)
    moved = []
    first = adversarial_dataset(model, data, spec, cache=cache, progress=lambda d, n: moved.append(d))
    assert moved == [100]  # PGD chunks hold 250 samples
    monkeypatch.setattr(adv, "attack_images", lambda *a, **k: pytest.fail("recomputed a cached chunk"))
    again = adversarial_dataset(model, data, spec, cache=cache, require_cached=True)
    torch.testing.assert_close(again.images, first.images, rtol=0, atol=0)
    assert again.dataset_id == first.dataset_id != data.dataset_id
    np.testing.assert_array_equal(again.labels, data.labels)


def test_attacked_curves_sit_below_the_clean_one(model, data, tmp_path):
    cache = DiskCache(tmp_path)
    steps = []
    res = run_adversarial(model, data, [AttackSpec("fgsm", 0.0), AttackSpec("fgsm", 0.1), AttackSpec("pgd", 0.05)],
                          cache=cache, progress=lambda d, n, m: steps.append((d, n)))
    assert res.attacks[0] == "clean" and res.kinds == ["clean", "fgsm", "fgsm", "pgd"]
    clean_curve = modularity_by_layer(feature_set(model, data), k=3)
    np.testing.assert_allclose(res.q[0], [clean_curve[n].mean() for n in res.layers], atol=1e-12)
    np.testing.assert_allclose(res.q[1], res.q[0], atol=1e-12)  # eps = 0 is the clean curve
    assert res.accuracy[1] == res.accuracy[0] and res.linf[1] == 0.0
    for row in (2, 3):
        assert res.accuracy[row] < res.accuracy[0] - 0.4
        assert res.q[row, -1] < res.q[0, -1] - 0.2  # the last layer's communities collapse
    done = [d for d, _ in steps]
    assert done == sorted(done) and steps[-1][0] == steps[-1][1]
    np.testing.assert_allclose(res.difference(0), np.abs(res.q[0][:, None] - res.q[0][None, :]))
    assert AdversarialResult.from_dict(res.to_dict()).to_dict() == res.to_dict()


def test_attack_specs_are_checked():
    assert parse_attack("fgsm:0.03") == AttackSpec("fgsm", 0.03)
    assert parse_attack("one-pixel") == AttackSpec("one-pixel", 1)
    assert parse_attack("cw") == AttackSpec("cw", 0.0)
    assert AttackSpec("pgd", 0.1).label == "PGD (L-inf, 10 steps) eps=0.1"
    with pytest.raises(ValueError, match="unknown attack 'deepfool'"):
        parse_attack("deepfool:1")
    with pytest.raises(ValueError, match="must be a number"):
        parse_attack("fgsm:big")
    with pytest.raises(ValueError, match=r"eps must lie in \[0, 1.0\]"):
        AttackSpec("fgsm", -0.1)
    with pytest.raises(ValueError, match="whole number >= 1"):
        AttackSpec("one-pixel", 0)
    with pytest.raises(ValueError, match="images in \\[0, 1\\]"):
        attack_images(torch.nn.Flatten(), torch.full((2, 1, 4, 4), 2.0), np.array([0, 1]), AttackSpec("fgsm", 0.1),
                      n_classes=2)


def test_any_seed_is_a_valid_seed(model, data):
    few = data.subset(np.arange(8), "few")
    for seed in (0, 5000, 2**40, -3):
        adversarial_dataset(model, few, AttackSpec("pgd", 0.03), seed=seed)
