import numpy as np
import pytest

from gbs_core.cache import DiskCache
from gbs_core.data import load_digits
from gbs_core.pipeline import ModelSpec, cached_activations, load_model, model_fingerprint
from gbs_core.zoo import CheckpointError, build_model


def test_zoo_spec_and_cached_activations(tmp_path):
    loaded = load_model(ModelSpec("zoo", "tiny10-s0"))
    assert loaded.test_accuracy >= 0.95 and loaded.model_id == model_fingerprint(loaded.model)
    data = load_digits("test").subsample(40, seed=0)
    cache = DiskCache(tmp_path)
    first = cached_activations(loaded, data, ["features.7", "features.0"], cache=cache)
    assert list(first.features) == ["features.0", "features.7"]
    misses = cache.stats.misses
    again = cached_activations(load_model(ModelSpec("zoo", "tiny10-s0")), data, ["features.0", "features.7"], cache=cache)
    assert cache.stats.misses == misses  # everything came from disk
    for k in first.features:
        np.testing.assert_array_equal(first.features[k], again.features[k])
    np.testing.assert_array_equal(first.predictions, again.predictions)
    # adding a layer extracts only that layer
    more = cached_activations(loaded, data, ["features.0", "features.3"], cache=cache)
    assert list(more.features) == ["features.0", "features.3"]


def test_different_weights_get_different_ids():
    a, b = load_model(ModelSpec("zoo", "tiny10-s0")), load_model(ModelSpec("zoo", "tiny10-s1"))
    assert a.model_id != b.model_id


def test_checkpoint_and_torchvision_specs(tmp_path):
    import torch

    path = tmp_path / "m.pt"
    torch.save(build_model("tiny10").state_dict(), path)
    loaded = load_model(ModelSpec("checkpoint", "tiny10", checkpoint=str(path)))
    assert loaded.test_accuracy is None and "m.pt" in loaded.label
    with pytest.raises(CheckpointError, match="does not fit"):
        load_model(ModelSpec("checkpoint", "resnet20", checkpoint=str(path)))
    tv1 = load_model(ModelSpec("torchvision", "mobilenet_v3_small", seed=1))
    tv2 = load_model(ModelSpec("torchvision", "mobilenet_v3_small", seed=1))
    assert tv1.model_id == tv2.model_id
    with pytest.raises(ValueError, match="unknown model source"):
        load_model(ModelSpec("hub", "x"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown architecture 'nope'"):
        load_model(ModelSpec("checkpoint", "nope", checkpoint=str(path)))


def test_subsamples_are_nested_in_n_for_one_seed():
    from gbs_core.data import load_bundled

    d = load_bundled("digits-noise", "test")
    big, small = d.subsample(500, seed=2), d.subsample(300, seed=2)
    assert set(small.origin.indices) <= set(big.origin.indices)
    assert not set(d.subsample(300, seed=3).origin.indices) <= set(big.origin.indices)  # another seed, other samples
    steps = [set(d.subsample(n, seed=1).origin.indices) <= set(d.subsample(n + 1, seed=1).origin.indices)
             for n in range(1, 539)]
    assert sum(steps) >= 530  # nested but for the rare largest-remainder (Alabama) step


def test_a_smaller_n_reuses_the_features_of_a_larger_one(tmp_path, monkeypatch):
    """N = 500 then N = 300 of the same seed: the second run cuts its rows from the first's features (no forward
    pass) and they equal a fresh extraction of those 300 samples."""
    from gbs_core import pipeline
    from gbs_core.cache import DiskCache
    from gbs_core.data import load_bundled

    d = load_bundled("digits-noise", "test")
    loaded = pipeline.load_model(pipeline.ModelSpec("zoo", "tiny10-s0"), data_shape=(1, 16, 16), num_classes=10)
    cache = DiskCache(tmp_path)
    layers = ["features.1", "features.5"]
    pipeline.cached_activations(loaded, d.subsample(500, seed=0), layers, cache=cache)
    calls = []
    real = pipeline.extract_activations
    monkeypatch.setattr(pipeline, "extract_activations", lambda *a, **k: calls.append(1) or real(*a, **k))
    small = d.subsample(300, seed=0)
    cut = pipeline.cached_activations(loaded, small, layers, cache=cache)
    assert calls == []
    fresh = pipeline.cached_activations(loaded, small, layers, cache=None)  # the reference: one forward pass
    assert len(calls) == 1
    for name in layers:
        np.testing.assert_allclose(cut.features[name], fresh.features[name], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(cut.predictions, fresh.predictions)
    pipeline.cached_activations(loaded, d.subsample(300, seed=1), layers, cache=cache)  # another seed: extracted
    assert len(calls) == 2
