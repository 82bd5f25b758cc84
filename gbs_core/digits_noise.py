"""The digits in noise: the bundled digits made hard enough for the papers' phenomena to show.

Plain digits are separable in pixel space (the raw pixels' kNN graph already has modularity Q of about 0.84 at
k = 3), so every trained model's modularity curve is flat. This source applies to each 16 x 16 digit

1. a random affine map: rotation by an angle uniform in [-60, 60] degrees, isotropic scaling by a factor uniform in
   [0.85, 1.15], and a shift of up to 15% of the image side along each axis (one ``affine_grid`` / ``grid_sample``,
   bilinear, zero outside the image);
2. a random background: ``max(image, u)`` with ``u`` uniform in ``[0, NOISE_AMPLITUDE)`` per pixel.

This is the construction of the established MNIST variants with rotation and random backgrounds (Larochelle et al.
2007, *mnist-rot* and *mnist-back-rand*). The raw pixels' Q falls to about 0.1, like CIFAR-10's first layers.

- The **held-out split** (540 images, the same digits as :func:`gbs_core.data.load_digits`) is transformed once with a
  fixed seed (:data:`TEST_SEED`): parameters and noise come from numpy's PCG64 generator and the resampling is done in
  float64, so the images are the same on every machine and in every run. Its ``dataset_id`` names the construction's
  version, so the disk cache never mixes two constructions.
- The **training split** gets a fresh random transform every epoch (:class:`DigitsNoiseAugment`, seeded by the training
  generator), so a model never sees the same noisy image twice.

References
----------
Larochelle, Erhan, Courville, Bergstra, Bengio. An empirical evaluation of deep architectures on problems with many
factors of variation. ICML 2007.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from gbs_core.data import DIGITS_SIZE, Dataset, bundled_dataset_id, load_digits

__all__ = [
    "MAX_ROTATION_DEG",
    "SCALE_RANGE",
    "MAX_SHIFT_FRACTION",
    "NOISE_AMPLITUDE",
    "TEST_SEED",
    "CONSTRUCTION_VERSION",
    "apply_noise_transform",
    "random_transform_params",
    "load_digits_noise",
    "DigitsNoiseAugment",
]

MAX_ROTATION_DEG = 60.0
SCALE_RANGE = (0.85, 1.15)
MAX_SHIFT_FRACTION = 0.15
NOISE_AMPLITUDE = 1.0
TEST_SEED = 20_240_601
CONSTRUCTION_VERSION = 1  # bump when any constant above changes: it is part of the data set's id


def random_transform_params(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` rows of (angle in radians, scale, shift x, shift y), the shifts as fractions of the image side."""
    angle = np.deg2rad(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG, n))
    scale = rng.uniform(*SCALE_RANGE, n)
    shift = rng.uniform(-MAX_SHIFT_FRACTION, MAX_SHIFT_FRACTION, (n, 2))
    return np.column_stack([angle, scale, shift])


def apply_noise_transform(images: torch.Tensor, params: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Warp each image by its affine parameters and lay it over its noise background.

    Parameters
    ----------
    images : torch.Tensor, shape (n, c, h, w), values in [0, 1]
    params : torch.Tensor, shape (n, 4)
        Angle (radians), scale, shift x and shift y (fractions of the side), as from :func:`random_transform_params`.
    noise : torch.Tensor, shape (n, c, h, w)
        The background, already scaled to ``[0, NOISE_AMPLITUDE)``.

    Returns
    -------
    torch.Tensor, shape (n, c, h, w), dtype of ``images``: ``max(warped image, noise)``.
    """
    dtype = images.dtype
    x = images.to(torch.float64)
    p = params.to(torch.float64)
    cos, sin = torch.cos(p[:, 0]), torch.sin(p[:, 0])
    inv_scale = 1.0 / p[:, 1]
    # affine_grid maps output coordinates to input coordinates: the inverse of "scale, rotate, then shift".
    # Normalised coordinates span 2 units per side, so a shift of f sides is 2 f units.
    theta = torch.zeros(len(x), 2, 3, dtype=torch.float64)
    theta[:, 0, 0], theta[:, 0, 1] = cos * inv_scale, sin * inv_scale
    theta[:, 1, 0], theta[:, 1, 1] = -sin * inv_scale, cos * inv_scale
    shift = 2.0 * p[:, 2:4]
    theta[:, :, 2] = -torch.einsum("nij,nj->ni", theta[:, :, :2], shift)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    warped = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return torch.maximum(warped, noise.to(torch.float64)).to(dtype)


def load_digits_noise(split: Literal["train", "test", "all"] = "test", *, size: int = DIGITS_SIZE) -> Dataset:
    """The digits in noise: the held-out (or any) split of the digits under the fixed, seeded transform.

    The same digits as :func:`gbs_core.data.load_digits` with the same ``split``, each under its own fixed affine map
    and noise background (see the module docstring). Training uses the plain training split with
    :class:`DigitsNoiseAugment` instead, so the fixed training images here are for inspection only.
    """
    base = load_digits(split, size=size)
    rng = np.random.default_rng([TEST_SEED, {"train": 0, "test": 1, "all": 2}[split]])
    params = torch.from_numpy(random_transform_params(len(base), rng))
    noise = torch.from_numpy(rng.uniform(0.0, NOISE_AMPLITUDE, tuple(base.images.shape)))
    images = apply_noise_transform(base.images, params, noise).contiguous()
    return Dataset(images=images, labels=base.labels, class_names=base.class_names,
                   dataset_id=bundled_dataset_id("digits-noise", split, size=size))


class DigitsNoiseAugment:
    """A fresh random affine map and noise background for every image of every batch (training on the digits in noise).

    Callable as ``augment(x, gen)`` with ``x`` a batch ``(n, c, h, w)`` of plain digits and ``gen`` the training's
    ``torch.Generator``: the draws come from ``gen`` only, so a seeded training run is reproducible.
    """

    name = f"digits-noise-v{CONSTRUCTION_VERSION}"

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        n = len(x)
        u = torch.rand(n, 4, generator=gen, dtype=torch.float64)
        lo, hi = SCALE_RANGE
        params = torch.stack([
            (2 * u[:, 0] - 1) * math.radians(MAX_ROTATION_DEG),
            lo + (hi - lo) * u[:, 1],
            (2 * u[:, 2] - 1) * MAX_SHIFT_FRACTION,
            (2 * u[:, 3] - 1) * MAX_SHIFT_FRACTION,
        ], dim=1)
        noise = NOISE_AMPLITUDE * torch.rand(x.shape, generator=gen)
        return apply_noise_transform(x, params, noise)
