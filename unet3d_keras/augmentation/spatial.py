"""Spatial transforms that resample: the sampling-coordinate field, trilinear and nearest
interpolation, and the scale and rotation maps (with their random draws).

Every transform that is not an exact voxel permutation (scaling, rotation, elastic deformation)
is folded into one sampling-coordinate field, computed once per sample in float32 and used for
every channel (trilinear) and for the labels (nearest neighbour), so image and labels stay
aligned and each sample is interpolated only once. Samples that fall outside the volume take the
value of the nearest edge voxel.

Arrays are channels-first: images ``(n_channels, x, y, z)``, truth ``(x, y, z)`` or
``(1, x, y, z)``.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

__all__ = [
    "MIN_SCALE_FACTOR",
    "random_boolean",
    "random_flip_dimensions",
    "random_scale_factor",
    "sampling_coordinates",
    "apply_spatial_transform",
    "interpolate_linear",
    "interpolate_nearest",
    "scale_matrix",
    "rotation_matrix",
    "rotation_about_center",
    "random_rotation",
    "apply_rotation",
    "rotate",
]

#: Scale factors drawn by :func:`random_scale_factor` are clipped to at least this value, so that
#: a large deviation cannot produce a zero or negative scale.
MIN_SCALE_FACTOR = 0.1


def random_flip_dimensions(n_dimensions: int, rng: np.random.Generator | int | None = None) -> list[int]:
    """Each axis ``0 .. n_dimensions - 1`` with probability 1/2."""
    rng = np.random.default_rng(rng)
    return [dim for dim in range(n_dimensions) if random_boolean(rng)]


def random_scale_factor(
    n_dim: int = 3, mean: float = 1, std: float = 0.25, rng: np.random.Generator | int | None = None
) -> np.ndarray:
    """``n_dim`` factors drawn from ``N(mean, std)``, clipped to at least :data:`MIN_SCALE_FACTOR`."""
    return np.maximum(np.random.default_rng(rng).normal(mean, std, n_dim), MIN_SCALE_FACTOR)


def random_boolean(rng: np.random.Generator | int | None = None) -> bool:
    """True or False with probability 1/2."""
    return bool(np.random.default_rng(rng).integers(0, 2))


def sampling_coordinates(
    shape: Sequence[int], matrix: np.ndarray | None = None, displacement: np.ndarray | None = None
) -> np.ndarray:
    """Where each output voxel samples the input: ``matrix @ (voxel + displacement(voxel))``.

    Args:
        shape: ``(x, y, z)``.
        matrix: 4x4 (or 3x4) homogeneous map from output to input voxel coordinates.
        displacement: ``(3, x, y, z)`` displacement added to each voxel position first.

    Returns:
        float32 ``(3, x, y, z)`` input voxel coordinates.
    """
    shape = tuple(int(s) for s in shape)
    coords = np.indices(shape, dtype=np.float32)
    if displacement is not None:
        coords += np.asarray(displacement, dtype=np.float32)
    if matrix is not None:
        matrix = np.asarray(matrix, dtype=np.float64)
        linear = matrix[:3, :3].astype(np.float32)
        offset = matrix[:3, 3].astype(np.float32)
        # Element-wise, not np.tensordot: a BLAS product wakes OpenBLAS's worker threads, which
        # then spin for a while and take the cores from the training step this work overlaps.
        mapped = np.empty_like(coords)
        for row in range(3):
            np.multiply(coords[0], linear[row, 0], out=mapped[row])
            mapped[row] += linear[row, 1] * coords[1]
            mapped[row] += linear[row, 2] * coords[2]
            mapped[row] += offset[row]
        coords = mapped
    return coords


def apply_spatial_transform(
    data: np.ndarray | None,
    truth: np.ndarray | None = None,
    matrix: np.ndarray | None = None,
    displacement: np.ndarray | None = None,
    coordinates: np.ndarray | None = None,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Resamples images (linear) and labels (nearest) with one shared coordinate field.

    Args:
        data: ``(n_channels, x, y, z)`` or ``(x, y, z)`` images, or None.
        truth: ``(x, y, z)`` or ``(1, x, y, z)`` labels, or None.
        matrix, displacement: see :func:`sampling_coordinates`.
        coordinates: a precomputed ``(3, x, y, z)`` field (overrides ``matrix``/``displacement``).

    Returns:
        ``(data, truth)``, same shapes; data float32, truth in its own dtype.
    """
    reference = data if data is not None else truth
    shape = reference.shape[-3:]
    if coordinates is None:
        coordinates = sampling_coordinates(shape, matrix, displacement)
    new_data = new_truth = None
    if data is not None:
        channels = np.asarray(data, dtype=np.float32).reshape((-1,) + tuple(shape))
        new_data = interpolate_linear(channels, coordinates).reshape(np.shape(data))
    if truth is not None:
        truth = np.asarray(truth)
        new_truth = interpolate_nearest(truth.reshape(tuple(shape)), coordinates).reshape(truth.shape)
    return new_data, new_truth


def interpolate_linear(channels: np.ndarray, coordinates: np.ndarray) -> np.ndarray:
    """Trilinear samples of every channel at the same points, edges repeated outside.

    The same values as ``scipy.ndimage.map_coordinates(channel, coordinates, order=1,
    mode="nearest")`` for each channel (to float32 rounding), faster for several channels: the
    corner indices and weights are computed once for all of them.

    Args:
        channels: ``(n_channels, x, y, z)`` float32.
        coordinates: ``(3, n_points)`` (or ``(3, ...)``) input voxel coordinates.

    Returns:
        float32 ``(n_channels, n_points)``.
    """
    coordinates = np.asarray(coordinates, dtype=np.float32).reshape(3, -1)
    result = np.empty((channels.shape[0], coordinates.shape[1]), dtype=np.float32)
    # In chunks, so that the index and weight arrays stay small for whole-volume transforms.
    for start in range(0, coordinates.shape[1], _INTERPOLATION_CHUNK):
        stop = start + _INTERPOLATION_CHUNK
        _interpolate_linear_chunk(channels, coordinates[:, start:stop], result[:, start:stop])
    return result


_INTERPOLATION_CHUNK = 1 << 18


def _interpolate_linear_chunk(channels: np.ndarray, coordinates: np.ndarray, out: np.ndarray) -> None:
    """Writes the trilinear samples at ``coordinates`` ``(3, n)`` into ``out`` ``(n_channels, n)``."""
    shape = channels.shape[1:]
    strides = (shape[1] * shape[2], shape[2], 1)
    flat = channels.reshape(channels.shape[0], -1)
    base = np.zeros(coordinates.shape[1], dtype=np.intp)
    fractions, steps = [], []
    for axis in range(3):
        # Clamping the coordinate first is what mode="nearest" does for linear interpolation.
        position = np.clip(coordinates[axis], 0, shape[axis] - 1)
        lower = np.minimum(position.astype(np.intp), max(shape[axis] - 2, 0))
        fractions.append(position - lower.astype(np.float32))
        base += lower * strides[axis]
        steps.append(strides[axis] if shape[axis] > 1 else 0)
    fx, fy, fz = fractions
    out.fill(0)
    for dx, wx in ((0, 1 - fx), (steps[0], fx)):
        for dy, wy in ((0, 1 - fy), (steps[1], fy)):
            wxy = wx * wy
            for dz, wz in ((0, 1 - fz), (steps[2], fz)):
                corner = np.take(flat, base + (dx + dy + dz), axis=1)
                corner *= wxy * wz
                out += corner


def interpolate_nearest(volume: np.ndarray, coordinates: np.ndarray) -> np.ndarray:
    """Nearest-voxel samples (labels), edges repeated outside.

    The same values as ``scipy.ndimage.map_coordinates(volume, coordinates, order=0,
    mode="nearest")``, which rounds with ``floor(c + 0.5)``.

    Args:
        volume: ``(x, y, z)`` of any dtype.
        coordinates: ``(3, n_points)`` (or ``(3, ...)``) input voxel coordinates.

    Returns:
        ``(n_points,)`` in the volume's dtype.
    """
    shape = volume.shape
    coordinates = np.asarray(coordinates, dtype=np.float32).reshape(3, -1)
    index = np.zeros(coordinates.shape[1], dtype=np.intp)
    for axis, stride in enumerate((shape[1] * shape[2], shape[2], 1)):
        nearest = np.clip(np.floor(coordinates[axis] + np.float32(0.5)), 0, shape[axis] - 1).astype(np.intp)
        index += nearest * stride
    return np.take(volume.reshape(-1), index)


def _center(shape: Sequence[int]) -> np.ndarray:
    return (np.asarray(shape[-3:], dtype=np.float64) - 1) / 2


def _about_center(shape: Sequence[int], linear: np.ndarray) -> np.ndarray:
    """4x4 map ``x -> linear @ (x - c) + c`` with ``c`` the centre voxel."""
    c = _center(shape)
    matrix = np.eye(4)
    matrix[:3, :3] = linear
    matrix[:3, 3] = c - linear @ c
    return matrix


def scale_matrix(shape: Sequence[int], scale_factor: Sequence[float]) -> np.ndarray:
    """4x4 output-to-input voxel map that magnifies by ``scale_factor`` about the centre voxel."""
    return _about_center(shape, np.diag(1.0 / np.asarray(scale_factor, dtype=np.float64)))


def rotation_matrix(axis: Sequence[float], angle_degrees: float) -> np.ndarray:
    """3x3 rotation by ``angle_degrees`` about ``axis`` (Rodrigues' formula)."""
    axis = np.asarray(axis, dtype=np.float64)
    norm = np.linalg.norm(axis)
    if norm == 0:
        raise ValueError("rotation axis must not be zero")
    x, y, z = axis / norm
    angle = math.radians(angle_degrees)
    k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * (k @ k)


def _voxel_spacing(affine: np.ndarray | None) -> np.ndarray:
    if affine is None:
        return np.ones(3)
    spacing = np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)
    return np.where(spacing > 0, spacing, 1.0)


def rotation_about_center(
    shape: Sequence[int], axis: Sequence[float], angle_degrees: float, affine: np.ndarray | None = None
) -> np.ndarray:
    """4x4 output-to-input voxel map rotating about the centre voxel.

    The rotation is physical: with an ``affine`` its voxel sizes are honoured, so anisotropic
    voxels rotate without shearing the anatomy.
    """
    spacing = _voxel_spacing(affine)
    linear = np.diag(1 / spacing) @ rotation_matrix(axis, angle_degrees) @ np.diag(spacing)
    return _about_center(shape, linear)


def random_rotation(max_degrees: float, rng: np.random.Generator | int | None = None) -> tuple[np.ndarray, float]:
    """A uniformly random axis and an angle uniform in ``[-max_degrees, max_degrees]``."""
    rng = np.random.default_rng(rng)
    axis = rng.standard_normal(3)
    while np.linalg.norm(axis) < 1e-8:
        axis = rng.standard_normal(3)
    axis = axis / np.linalg.norm(axis)
    return axis, float(rng.uniform(-max_degrees, max_degrees))


def apply_rotation(
    data: np.ndarray | None,
    truth: np.ndarray | None,
    axis: Sequence[float],
    angle_degrees: float,
    affine: np.ndarray | None = None,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Rotates images (linear) and labels (nearest) about the volume centre (deterministic)."""
    shape = (data if data is not None else truth).shape[-3:]
    return apply_spatial_transform(data, truth, matrix=rotation_about_center(shape, axis, angle_degrees, affine))


def rotate(
    data: np.ndarray | None,
    truth: np.ndarray | None,
    max_degrees: float = 10.0,
    rng: np.random.Generator | int | None = None,
    affine: np.ndarray | None = None,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """A small random rotation about a random axis; see :func:`random_rotation`."""
    axis, angle = random_rotation(max_degrees, rng)
    return apply_rotation(data, truth, axis, angle, affine)
