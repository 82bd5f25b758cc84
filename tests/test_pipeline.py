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
