"""The digits in noise: determinism, ids, shapes, the transform's geometry, and that it is hard in pixel space."""

import math

import numpy as np
import pytest
import torch

from gbs_core.data import BUNDLED_SOURCES, DEFAULT_SOURCE, load_bundled, load_digits
from gbs_core.digits_noise import (
    CONSTRUCTION_VERSION,
    NOISE_AMPLITUDE,
    DigitsNoiseAugment,
    apply_noise_transform,
    load_digits_noise,
    random_transform_params,
)
from gbs_core.graphs import knn_graph
from gbs_core.metrics.modularity import modularity


@pytest.fixture(scope="module")
def noisy_test():
    return load_digits_noise("test")


def test_same_images_every_time_and_the_id_names_the_construction(noisy_test):
    again = load_digits_noise("test")
    assert torch.equal(noisy_test.images, again.images)
    assert noisy_test.dataset_id == f"digits-noise-v{CONSTRUCTION_VERSION}-test-16px"
    assert noisy_test.dataset_id != load_digits("test").dataset_id
    assert load_digits_noise("train").dataset_id != noisy_test.dataset_id


def test_shapes_labels_and_range_match_the_plain_split(noisy_test):
    plain = load_digits("test")
    assert noisy_test.images.shape == (540, 1, 16, 16)
    assert noisy_test.images.dtype == torch.float32
    np.testing.assert_array_equal(noisy_test.labels, plain.labels)
    assert noisy_test.class_names == plain.class_names
    assert float(noisy_test.images.min()) >= 0.0 and float(noisy_test.images.max()) <= 1.0
    assert len(load_digits_noise("train")) == 1257


def test_a_fingerprint_of_the_fixed_split_pins_the_construction(noisy_test):
    # Not a value copied from the code: the properties any max(warp, U[0, 1)) image must have. The mean of
    # max(a, u) over u ~ U[0, 1) is (1 + a^2) / 2 >= 1/2, so the mean pixel is above 0.5 and below 1.
    mean = float(noisy_test.images.mean())
    assert 0.5 < mean < 0.75
    # every pixel is at least its noise draw, so no image is all dark
    assert float(noisy_test.images.flatten(1).max(1).values.min()) > 0.9


def test_identity_parameters_and_zero_noise_leave_the_image_unchanged():
    x = load_digits("test").images[:5]
    params = torch.tensor([[0.0, 1.0, 0.0, 0.0]] * 5)
    out = apply_noise_transform(x, params, torch.zeros_like(x))
    torch.testing.assert_close(out, x, atol=1e-6, rtol=0)


def test_rotation_by_90_degrees_rotates_the_pixel_grid():
    x = torch.rand(2, 1, 16, 16)
    params = torch.tensor([[math.pi / 2, 1.0, 0.0, 0.0]] * 2)
    out = apply_noise_transform(x, params, torch.zeros_like(x))
    # a quarter turn maps the pixel grid onto itself: the result is a rot90 of the input (one of the two senses)
    candidates = [torch.rot90(x, 1, dims=(2, 3)), torch.rot90(x, -1, dims=(2, 3))]
    assert min(float((out - c).abs().max()) for c in candidates) < 1e-5


def test_a_shift_of_a_quarter_side_moves_content_by_four_pixels():
    x = torch.zeros(1, 1, 16, 16)
    x[0, 0, 8, 5] = 1.0
    out = apply_noise_transform(x, torch.tensor([[0.0, 1.0, 0.25, 0.0]]), torch.zeros_like(x))
    assert out[0, 0, 8, 9] == pytest.approx(1.0, abs=1e-6)


def test_the_background_is_the_max_with_the_noise():
    x = torch.zeros(1, 1, 4, 4)
    noise = torch.full_like(x, 0.3)
    noise[0, 0, 0, 0] = 0.9
    out = apply_noise_transform(x, torch.tensor([[0.0, 1.0, 0.0, 0.0]]), noise)
    torch.testing.assert_close(out, noise)


def test_parameters_stay_in_their_ranges():
    p = random_transform_params(10_000, np.random.default_rng(0))
    assert np.abs(np.rad2deg(p[:, 0])).max() <= 60.0
    assert p[:, 1].min() >= 0.85 and p[:, 1].max() <= 1.15
    assert np.abs(p[:, 2:]).max() <= 0.15


def test_training_augmentation_is_fresh_per_call_and_reproducible_per_seed():
    x = load_digits("train").images[:16]
    aug = DigitsNoiseAugment()
    a1 = aug(x, torch.Generator().manual_seed(3))
    a2 = aug(x, torch.Generator().manual_seed(3))
    assert torch.equal(a1, a2)
    gen = torch.Generator().manual_seed(3)
    first, second = aug(x, gen), aug(x, gen)
    assert not torch.equal(first, second)  # the next epoch's batch gets new transforms
    assert first.shape == x.shape and float(first.min()) >= 0 and float(first.max()) <= max(1.0, NOISE_AMPLITUDE)


def test_raw_pixels_no_longer_separate_the_classes(noisy_test):
    # the point of the source: plain digits give Q ~ 0.84 on raw pixels, the noisy ones far less
    plain = load_digits("test")
    q_plain = modularity(knn_graph(plain.images.flatten(1).numpy(), 3), plain.labels)
    q_noisy = modularity(knn_graph(noisy_test.images.flatten(1).numpy(), 3), noisy_test.labels)
    assert q_plain > 0.75
    assert q_noisy < 0.2


def test_load_bundled_names_both_sources_and_refuses_others():
    assert DEFAULT_SOURCE == "digits-noise" and set(BUNDLED_SOURCES) == {"digits-noise", "digits"}
    assert load_bundled("digits").dataset_id == load_digits("test").dataset_id
    assert load_bundled().dataset_id.startswith("digits-noise")
    with pytest.raises(ValueError, match="unknown bundled source 'mnist'"):
        load_bundled("mnist")
