"""The reference's augmentation helpers: random flips and a random scale of a channels-first
sample through its affine (:func:`augment_data`), the nibabel-image helpers they stand on, and
the 48 cube permutations.

Arrays are channels-first: images ``(n_channels, x, y, z)``, truth ``(x, y, z)`` or
``(1, x, y, z)``. The random functions take a ``numpy.random.Generator`` (or seed) as ``rng``.
The augmentation of this package's training (rotation, elastic deformation, gray values, all in
one resampling) lives in :mod:`unet3d_keras.augmentation`; :class:`AugmentationParams` and
:func:`augment_sample` are re-exported here for existing importers.
"""

from __future__ import annotations

from typing import Sequence

import nibabel as nib
import numpy as np

from .augmentation.compose import augment_sample
from .augmentation.params import AugmentationParams
from .augmentation.permutations import (
    generate_permutation_keys,
    permute_data,
    random_permutation_key,
    random_permutation_x_y,
    reverse_permutation_key,
    reverse_permute_data,
)
from .augmentation.spatial import (
    apply_spatial_transform,
    random_boolean,
    random_flip_dimensions,
    random_scale_factor,
)

__all__ = [
    "scale_image",
    "flip_image",
    "random_flip_dimensions",
    "random_scale_factor",
    "random_boolean",
    "distort_image",
    "augment_data",
    "get_image",
    "generate_permutation_keys",
    "random_permutation_key",
    "permute_data",
    "random_permutation_x_y",
    "reverse_permute_data",
    "reverse_permutation_key",
    "AugmentationParams",
    "augment_sample",
]


def get_image(
    data: np.ndarray, affine: np.ndarray, nib_class: type = nib.Nifti1Image
) -> nib.spatialimages.SpatialImage:
    """Wraps an array ``(x, y, z)`` and its 4x4 affine in a nibabel image."""
    return nib_class(dataobj=data, affine=affine)


def _scaled_affine(affine: np.ndarray, shape: Sequence[int], scale_factor: Sequence[float]) -> np.ndarray:
    affine = np.asarray(affine, dtype=np.float64)
    scale_factor = np.asarray(scale_factor, dtype=np.float64)
    new_affine = affine.copy()
    new_affine[:3, :3] = affine[:3, :3] * scale_factor
    new_affine[:3, 3] = affine[:3, 3] + (np.asarray(shape[:3]) * np.diag(affine)[:3] * (1 - scale_factor)) / 2
    return new_affine


def scale_image(image: nib.spatialimages.SpatialImage, scale_factor: Sequence[float]) -> nib.spatialimages.SpatialImage:
    """The same voxels with voxel sizes multiplied by ``scale_factor``, kept centred (reference).

    Resampling the result onto the original grid magnifies the image by ``scale_factor``.
    """
    new_affine = _scaled_affine(image.affine, image.shape, scale_factor)
    return image.__class__(np.asanyarray(image.dataobj), new_affine, image.header)


def flip_image(image: nib.spatialimages.SpatialImage, axis: int | Sequence[int]) -> nib.spatialimages.SpatialImage:
    """The image with its voxel array flipped along ``axis`` (one axis or several); same affine."""
    axes = (axis,) if np.isscalar(axis) else tuple(axis)
    data = np.asanyarray(image.dataobj)
    if axes:
        data = np.flip(data, axis=axes).copy()
    return image.__class__(data, image.affine, image.header)


def distort_image(
    image: nib.spatialimages.SpatialImage,
    flip_axis: Sequence[int] | None = None,
    scale_factor: Sequence[float] | None = None,
) -> nib.spatialimages.SpatialImage:
    """Flips, then scales (through the affine) an image (reference)."""
    if flip_axis:
        image = flip_image(image, flip_axis)
    if scale_factor is not None:
        image = scale_image(image, scale_factor)
    return image


def augment_data(
    data: np.ndarray,
    truth: np.ndarray,
    affine: np.ndarray,
    scale_deviation: float | None = None,
    flip: bool = True,
    rng: np.random.Generator | int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The reference's augmentation: random flips, then a random scale through the affine.

    Args:
        data: ``(n_channels, x, y, z)``.
        truth: ``(x, y, z)``.
        affine: 4x4 affine of the sample.
        scale_deviation: standard deviation of the per-axis scale factor; falsy disables it.
        flip: flip each axis with probability 1/2.
        rng: random generator (or seed).

    Returns:
        ``(data, truth)`` with the input shapes; data float32 (linear interpolation), truth in
        its dtype (nearest neighbour).
    """
    rng = np.random.default_rng(rng)
    truth = np.asarray(truth)
    truth_shape = truth.shape
    truth = truth.reshape(truth_shape[-3:])  # (1, x, y, z) is accepted too
    n_dim = truth.ndim
    scale_factor = random_scale_factor(n_dim, std=scale_deviation, rng=rng) if scale_deviation else None
    flip_axis = random_flip_dimensions(n_dim, rng) if flip else []
    if flip_axis:
        data = np.flip(data, axis=tuple(a + 1 for a in flip_axis))
        truth = np.flip(truth, axis=tuple(flip_axis))
    if scale_factor is not None:
        # Output voxel -> world (original affine) -> voxel of the scaled image, which holds the data.
        scaled = _scaled_affine(affine, truth.shape, scale_factor)
        matrix = np.linalg.inv(scaled) @ np.asarray(affine, dtype=np.float64)
        data, truth = apply_spatial_transform(data, truth, matrix=matrix)
    return np.ascontiguousarray(data, dtype=np.float32), np.ascontiguousarray(truth).reshape(truth_shape)
