"""Transferability: the penultimate features are the classifier's input, the scores agree with their metrics on
hand-made features, Kendall's tau on hand-made rankings, an image folder target is split by class, and a short run
ranks a trained network above its random initialisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from gbs_core.cache import DiskCache
from gbs_core.data import load_bundled, load_image_folder
from gbs_core.experiments.transfer import (
    TransferResult,
    penultimate_features,
    run_transfer,
    stratified_split,
    transfer_scores,
)
from gbs_core.pipeline import ModelSpec, load_model
from gbs_core.zoo.train import TrainConfig


def test_penultimate_features_are_the_input_of_the_last_linear_layer():
    m = load_model(ModelSpec("zoo", "resnet20")).model
    x = load_bundled("digits-noise", "test").images[:7]
    f = penultimate_features(m, x)
    head = [mod for mod in m.modules() if isinstance(mod, torch.nn.Linear)][-1]
    with torch.no_grad():
        torch.testing.assert_close(head(torch.from_numpy(f)), m(x), rtol=1e-5, atol=1e-5)
    assert f.shape == (7, head.in_features)


def test_scores_of_features_that_are_the_labels():
    labels = np.repeat(np.arange(3), 6)
    onehot = np.eye(3, dtype=np.float32)[labels]
    s = transfer_scores(onehot + 1e-3 * np.random.default_rng(0).random(onehot.shape, dtype=np.float32), labels)
    assert s["linear_cka_label"] == pytest.approx(1.0, abs=1e-3)
    assert s["gbs_label"] == pytest.approx(1.0, abs=1e-2)
    assert s["same_class_fraction"] == 1.0  # every kNN triangle lies inside a class
    # Q of a graph that never leaves the classes: 1 - sum over classes of (1/3)^2 = 2/3
    assert s["modularity"] == pytest.approx(2 / 3, abs=1e-6)


def test_kendall_tau_on_hand_made_rankings():
    res = TransferResult("t", ["a", "b", "c", "d"], {k: [1.0, 2.0, 3.0, 4.0] for k in
                         ("gbs_label", "same_class_fraction", "modularity", "linear_cka_label")},
                         {"probe_accuracy": [0.1, 0.2, 0.4, 0.3]})
    corr = res.correlations()
    # one discordant pair (c, d) of six: tau = (5 - 1) / 6
    assert corr["tau"].tolist() == pytest.approx([4 / 6] * 4)
    assert set(corr["n"]) == {4}
    assert TransferResult.from_dict(res.to_dict()) == res


def test_an_image_folder_target_is_split_by_class(tmp_path):
    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        for i in range(10):
            Image.fromarray((rng.random((20, 20)) * 255).astype(np.uint8)).save(tmp_path / c / f"{i}.png")
    data = load_image_folder(tmp_path, size=16, channels=1)
    train, test = stratified_split(data, seed=0)
    assert (len(train), len(test)) == (14, 6)
    assert np.bincount(test.labels).tolist() == [3, 3]
    assert train.dataset_id != test.dataset_id


def test_a_trained_network_transfers_better_than_its_random_init(tmp_path):
    train = load_bundled("digits", "train").subsample(300, seed=0)
    test = load_bundled("digits", "test").subsample(150, seed=0)
    sources = [load_model(ModelSpec("zoo", n)) for n in ("tiny10-s0", "tiny10-s0-ep0")]
    cache = DiskCache(tmp_path)
    res = run_transfer(sources, train, test, target_name="digits", score_samples=200,
                       finetune=TrainConfig(epochs=1, lr=0.01), cache=cache)
    table = res.table().set_index("source")
    for col in ("gbs_label", "same_class_fraction", "modularity", "linear_cka_label", "probe_accuracy",
                "finetune_accuracy"):
        assert table.loc["tiny10-s0", col] > table.loc["tiny10-s0-ep0", col], col
    again = run_transfer(sources, train, test, target_name="digits", score_samples=200,
                         finetune=TrainConfig(epochs=1, lr=0.01), cache=cache)
    assert again.to_dict() == res.to_dict()


def test_a_two_class_target_gets_a_two_class_head_and_fine_tunes():
    def two(split):
        d = load_bundled("digits", split)
        return d.subset(np.flatnonzero(d.labels < 2)[:80], f"two-{split}")

    train, test = two("train"), two("test")
    src = [load_model(ModelSpec("zoo", n)) for n in ("tiny10-s0", "tiny10-s0-digits", "tiny10-s0-ep0")]
    res = run_transfer(src, train, test, score_samples=60, finetune=TrainConfig(epochs=1, lr=0.01))
    table = res.table().set_index("source")
    assert table["finetune_accuracy"].between(0, 1).all()
    assert table.loc["tiny10-s0-digits", "probe_accuracy"] > 0.9


def test_the_probe_head_makes_the_probes_decisions_on_raw_features():
    from gbs_core.experiments.transfer import _probe

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4)) * [1, 5, 0.2, 3] + [0, 2, -1, 4]
    y = np.where(x[:, 0] + 0.1 * x[:, 1] > 0.2, 2, 0)  # classes 0 and 2 of three: a binary fit with a gap
    acc, w, b = _probe(x, y, x, y, 3)
    assert w.shape == (3, 4) and (w[1] == 0).all()
    pred = np.argmax(x @ w.T + b, axis=1)
    assert set(pred) <= {0, 2} and np.mean(pred == y) == pytest.approx(acc)
