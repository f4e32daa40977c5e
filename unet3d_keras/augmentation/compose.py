"""One entry point for augmenting a training sample: draw the parameters of everything an
:class:`~unet3d_keras.augmentation.params.AugmentationParams` switches on, then apply them.

Drawing (:func:`sample_augmentation`) takes all randomness from the ``numpy.random.Generator``
passed in; applying (:func:`apply_augmentation`) is deterministic.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..checks import require_cube
from .elastic import elastic_displacement_field, elastic_node_displacements
from .intensity import gamma_transform, intensity_transform
from .params import AugmentationParams, SampledAugmentation
from .permutations import permute_data, random_permutation_key
from .spatial import (
    apply_spatial_transform,
    random_flip_dimensions,
    random_rotation,
    random_scale_factor,
    rotation_about_center,
    scale_matrix,
)

__all__ = ["sample_augmentation", "apply_augmentation", "augment_sample"]


def sample_augmentation(
    params: AugmentationParams, data_shape: Sequence[int], rng: np.random.Generator | int | None = None
) -> SampledAugmentation:
    """Draws the parameters of every augmentation ``params`` switches on, for one sample.

    Args:
        params: what to draw.
        data_shape: ``(n_channels, x, y, z)``.
        rng: random generator (or seed).

    Raises:
        ValueError: ``params.permute`` with a sample that is not a cube.
    """
    rng = np.random.default_rng(rng)
    n_channels = int(data_shape[0])
    shape = tuple(int(s) for s in data_shape[-3:])
    sampled = SampledAugmentation(elastic_grid_spacing=params.elastic_grid_spacing)
    if params.flip:
        sampled.flip_axes = tuple(random_flip_dimensions(3, rng))
    if params.distortion_factor:
        sampled.scale_factor = random_scale_factor(3, std=params.distortion_factor, rng=rng)
    if params.rotation_degrees > 0:
        sampled.rotation_axis, sampled.rotation_degrees = random_rotation(params.rotation_degrees, rng)
    if params.elastic and params.elastic_sigma > 0:
        sampled.elastic_nodes = elastic_node_displacements(
            shape, params.elastic_sigma, params.elastic_grid_spacing, rng
        )
    if params.permute:
        require_cube(shape, "sample (augmentation with permute=True)")
        sampled.permutation_key = random_permutation_key(rng)
    if params.intensity_scale > 0:
        sampled.intensity_scale = (1 + rng.normal(0, params.intensity_scale, n_channels)).astype(np.float32)
    if params.intensity_shift > 0:
        sampled.intensity_shift = rng.normal(0, params.intensity_shift, n_channels).astype(np.float32)
    if params.gamma_range is not None:
        low, high = params.gamma_range
        sampled.gamma = np.exp(rng.uniform(np.log(low), np.log(high), n_channels)).astype(np.float32)
    return sampled


def apply_augmentation(
    data: np.ndarray,
    truth: np.ndarray | None,
    sampled: SampledAugmentation,
    affine: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Applies drawn parameters (deterministic).

    Order: flips (exact); scaling (about the centre voxel ``(shape - 1) / 2``), rotation and
    elastic deformation composed into one resampling; the cube permutation (exact); then
    intensity and gamma on the images only.

    Args:
        data: ``(n_channels, x, y, z)``.
        truth: ``(x, y, z)`` or ``(1, x, y, z)``, or None.
        sampled: from :func:`sample_augmentation`.
        affine: the sample's affine; only its voxel sizes are used (physical rotation).

    Returns:
        ``(data, truth)``: float32 data and truth in its dtype, with the input shapes.
    """
    data = np.asarray(data)
    truth_shape = None if truth is None else np.shape(truth)
    shape = data.shape[-3:]
    if sampled.flip_axes:
        data = np.flip(data, axis=tuple(a + 1 for a in sampled.flip_axes))
        if truth is not None:
            truth = np.flip(np.asarray(truth), axis=tuple(a + len(truth_shape) - 3 for a in sampled.flip_axes))

    # Output voxel p samples the input at scale(rotate(p + elastic(p))): one interpolation.
    matrix = None
    if sampled.scale_factor is not None:
        matrix = scale_matrix(shape, sampled.scale_factor)
    if sampled.rotation_axis is not None and sampled.rotation_degrees != 0:
        rotation = rotation_about_center(shape, sampled.rotation_axis, sampled.rotation_degrees, affine)
        matrix = rotation if matrix is None else matrix @ rotation
    displacement = None
    if sampled.elastic_nodes is not None:
        displacement = elastic_displacement_field(sampled.elastic_nodes, shape, sampled.elastic_grid_spacing)
    if matrix is not None or displacement is not None:
        data, truth = apply_spatial_transform(data, truth, matrix=matrix, displacement=displacement)

    if sampled.permutation_key is not None:
        data = permute_data(data, sampled.permutation_key)
        if truth is not None:
            truth = permute_data(np.reshape(truth, (1,) + tuple(shape)), sampled.permutation_key).reshape(truth_shape)

    data = np.asarray(data, dtype=np.float32)
    if sampled.intensity_scale is not None or sampled.intensity_shift is not None:
        scale = 1.0 if sampled.intensity_scale is None else sampled.intensity_scale
        shift = 0.0 if sampled.intensity_shift is None else sampled.intensity_shift
        data = intensity_transform(data, scale, shift)
    if sampled.gamma is not None:
        data = gamma_transform(data, sampled.gamma)
    data = np.ascontiguousarray(data)
    if truth is not None:
        truth = np.ascontiguousarray(truth)
    return data, truth


def augment_sample(
    data: np.ndarray,
    truth: np.ndarray | None,
    affine: np.ndarray | None,
    params: AugmentationParams,
    rng: np.random.Generator | int | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Draws and applies the augmentations ``params`` switches on, to one sample.

    Args:
        data: ``(n_channels, x, y, z)``.
        truth: ``(x, y, z)`` or ``(1, x, y, z)`` labels, or None.
        affine: the sample's 4x4 affine (voxel sizes for rotation), or None.
        params: what to apply.
        rng: random generator (or seed).

    Returns:
        ``(data, truth)`` with the input shapes; data float32.
    """
    if not params.enabled:
        return np.asarray(data, dtype=np.float32), truth
    sampled = sample_augmentation(params, np.shape(data), rng)
    return apply_augmentation(data, truth, sampled, affine)
