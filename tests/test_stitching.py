"""Model stitching: an identity stitch of a network into itself is the network, shapes decide what can be stitched,
only the stitch trains, a short run on two Tiny-10 seeds stitches well and is cached, and the rank correlation is
Spearman's on hand-made numbers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gbs_core.cache import DiskCache
from gbs_core.data import load_bundled
from gbs_core.experiments.stitching import (
    Stitch,
    StitchedNetwork,
    StitchResult,
    layer_shapes,
    rank_correlation,
    run_stitching,
)
from gbs_core.pipeline import ModelSpec, load_model
from gbs_core.zoo.architectures import MLP
from gbs_core.zoo.train import TrainConfig


@pytest.fixture(scope="module")
def tiny():
    return load_model(ModelSpec("zoo", "tiny10-s0")), load_model(ModelSpec("zoo", "tiny10-s1"))


@pytest.fixture(scope="module")
def data():
    return load_bundled("digits-noise", "test")


@pytest.mark.parametrize("layer", ["features.0", "features.3", "features.7"])
def test_identity_stitch_into_itself_reproduces_the_network(tiny, data, layer):
    a = tiny[0].model
    shape = layer_shapes(a, [layer], (1, 16, 16))[layer]
    net = StitchedNetwork(a, layer, a, layer, Stitch(shape, shape).identity())
    x = data.images[:64]
    with torch.no_grad():
        torch.testing.assert_close(net(x), a(x), rtol=0, atol=1e-5)


def test_identity_stitch_of_vectors_in_an_mlp():
    torch.manual_seed(0)
    m = MLP(in_features=256, hidden=32, depth=3).eval()
    layer = m.default_layers()[1]
    shape = layer_shapes(m, [layer], (1, 16, 16))[layer]
    net = StitchedNetwork(m, layer, m, layer, Stitch(shape, shape).identity())
    x = torch.rand(10, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(net(x), m(x), rtol=0, atol=1e-5)


def test_stitch_shapes():
    s = Stitch((16, 8, 8), (32, 4, 4))
    assert s(torch.rand(3, 16, 8, 8)).shape == (3, 32, 4, 4)  # resized, then a 1x1 conv
    v = Stitch((16, 4, 4), (10,))
    assert v(torch.rand(3, 16, 4, 4)).shape == (3, 10)
    with pytest.raises(ValueError, match="cannot stitch a vector"):
        Stitch((10,), (16, 4, 4))
    with pytest.raises(ValueError, match="equal widths"):
        s.identity()


def test_least_squares_start_recovers_a_linear_map():
    torch.manual_seed(1)
    x = torch.rand(50, 4, 3, 3)
    W = torch.randn(6, 4)
    y = torch.relu(torch.einsum("oc,nchw->nohw", W, x) + 0.5)
    s = Stitch((4, 3, 3), (6, 3, 3)).fit_least_squares(x, torch.einsum("oc,nchw->nohw", W, x) + 0.5, ridge=0.0)
    torch.testing.assert_close(s(x), y, rtol=1e-4, atol=1e-4)


def test_only_the_stitch_trains_and_the_frozen_halves_keep_their_statistics(tiny, data):
    a, b = tiny[0].model, tiny[1].model
    before = {k: v.clone() for k, v in b.state_dict().items()}
    shape_a = layer_shapes(a, ["features.2"], (1, 16, 16))["features.2"]
    shape_b = layer_shapes(b, ["features.2"], (1, 16, 16))["features.2"]
    net = StitchedNetwork(a, "features.2", b, "features.2", Stitch(shape_a, shape_b))
    assert {n for n, p in net.named_parameters() if p.requires_grad} == {"stitch.map.weight", "stitch.map.bias"}
    net.train()
    assert net.stitch.training and not net.a.training and not net.b.training
    net(data.images[:32]).sum().backward()
    for k, v in b.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    # the models passed in stay trainable: the stitched network froze copies of them
    assert all(p.requires_grad for p in [*a.parameters(), *b.parameters()])


def test_stitching_two_tiny10_seeds_is_cached_and_scored(tiny, data, tmp_path):
    train = load_bundled("digits-noise", "train").subsample(300, seed=0)
    test = data.subsample(200, seed=0)
    cache = DiskCache(tmp_path)
    cfg = TrainConfig(epochs=1, lr=0.005, weight_decay=0.0, max_shift=0)
    pairs = [("features.1", "features.1"), ("features.6", "features.6"), ("features.1", "features.6")]
    steps = []
    res = run_stitching(*tiny, train, test, pairs=pairs, config=cfg, index_samples=100, cache=cache,
                        progress=lambda d, n, m: steps.append((d, n)))
    acc = res.pairs_table().set_index(["layer_a", "layer_b"])["stitched_accuracy"]
    assert acc[("features.1", "features.1")] > 0.6 and acc[("features.6", "features.6")] > 0.8
    assert np.isnan(res.accuracy[0, 0])  # not asked for
    assert steps[-1][0] == steps[-1][1] and [d for d, _ in steps] == sorted(d for d, _ in steps)
    corr = res.correlations()
    assert set(corr["index"]) == {"same_class_fraction_a", "linear_cka", "gbs_dense"} and (corr["n"] == 3).all()
    again = run_stitching(*tiny, train, test, pairs=pairs, config=cfg, index_samples=100, cache=cache)
    np.testing.assert_array_equal(again.accuracy, res.accuracy)
    back = StitchResult.from_dict(res.to_dict())
    np.testing.assert_array_equal(back.accuracy, res.accuracy)


def test_rank_correlation_on_hand_made_numbers():
    # y is a monotone function of x except for one swap: d = (0, 0, 1, -1, 0), sum d^2 = 2, n = 5
    r = rank_correlation([1, 2, 3, 4, 5], [10, 20, 40, 30, 50])
    assert r["rho"] == pytest.approx(1 - 6 * 2 / (5 * (25 - 1)))  # 0.9
    assert r["n"] == 5 and 0 < r["p"] < 0.05
    assert rank_correlation([1, 2, 3], [3, 2, 1])["rho"] == pytest.approx(-1.0)
    nan = rank_correlation([1, 2, np.nan, 4], [1, 2, 3, np.nan])  # pairs with a NaN are dropped: 2 left
    assert nan["n"] == 2 and np.isnan(nan["rho"])
    assert np.isnan(rank_correlation([1, 1, 1], [1, 2, 3])["rho"])
