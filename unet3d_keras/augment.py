"""Data augmentation for 3D training samples: the reference's flips, scaling and cube
permutations, and the paper's elastic deformation, plus rotation and gray-value changes.

Arrays are channels-first: images ``(n_channels, x, y, z)``, truth ``(x, y, z)`` or
``(1, x, y, z)``.

Design (as in torchio): the ``random_*`` functions and :func:`sample_augmentation` only draw
parameters from a ``numpy.random.Generator`` passed in; the transforms themselves
(:func:`apply_spatial_transform`, :func:`permute_data`, :func:`intensity_transform`, ...) are
deterministic. :func:`augment_sample` draws and applies everything an
:class:`AugmentationParams` switches on (all off by default).

Resampling: every spatial transform that is not an exact voxel permutation (scaling, rotation,
elastic deformation) is folded into one sampling-coordinate field, computed once per sample in
float32 and used for every channel (trilinear, ``order=1``) and for the labels (nearest
neighbour, ``order=0``), so image and labels stay aligned and each sample is interpolated only
once. Samples that fall outside the volume take the value of the nearest edge voxel.

Differences from the reference (``unet3dlegacy.augment``):

* resampling uses ``scipy.ndimage`` instead of nilearn; the reference filled voxels outside the
  volume with zeros, which after intensity normalisation is not the background value, so edge
  values are repeated instead;
* :func:`augment_sample` scales about the centre voxel ``(shape - 1) / 2``; the reference (and
  :func:`augment_data`, kept faithful to it) scales through the affine about ``shape / 2``, half
  a voxel off-centre, and only correctly for axis-aligned affines;
* all randomness comes from a passed ``numpy.random.Generator`` (``rng``); scale factors are
  clipped to at least :data:`MIN_SCALE_FACTOR` so that a large deviation cannot produce a zero
  or negative scale.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
from dataclasses import dataclass, field
from typing import Sequence

import nibabel as nib
import numpy as np
from scipy import ndimage

logger = logging.getLogger(__name__)

__all__ = [
    "AugmentationParams",
    "SampledAugmentation",
    "MIN_SCALE_FACTOR",
    "augment_data",
    "augment_sample",
    "sample_augmentation",
    "apply_augmentation",
    "apply_spatial_transform",
    "interpolate_linear",
    "interpolate_nearest",
    "sampling_coordinates",
    "scale_image",
    "flip_image",
    "random_flip_dimensions",
    "random_scale_factor",
    "random_boolean",
    "distort_image",
    "get_image",
    "scale_matrix",
    "rotation_matrix",
    "rotation_about_center",
    "random_rotation",
    "apply_rotation",
    "rotate",
    "elastic_grid",
    "elastic_node_displacements",
    "elastic_displacement_field",
    "elastic_transform",
    "intensity_transform",
    "random_intensity",
    "gamma_transform",
    "random_gamma",
    "generate_permutation_keys",
    "random_permutation_key",
    "permute_data",
    "random_permutation_x_y",
    "reverse_permute_data",
    "reverse_permutation_key",
]

#: A cube symmetry: ``((rotate_y, rotate_z), flip_x, flip_y, flip_z, transpose)``.
PermutationKey = tuple[tuple[int, int], int, int, int, int]

#: Scale factors drawn by :func:`random_scale_factor` are clipped to at least this value.
MIN_SCALE_FACTOR = 0.1


def _rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    return np.random.default_rng(rng)


# --------------------------------------------------------------------------------------------
# Parameters


@dataclass(frozen=True)
class AugmentationParams:
    """Which augmentations to draw for each training sample, and how strongly. All off by default.

    Attributes:
        flip: flip each spatial axis with probability 1/2 (exact, no interpolation).
        permute: apply one of the 48 rotations/reflections of the cube (cubic samples only).
        scale_deviation: standard deviation of a per-axis scale factor around 1 (the
            reference's ``augment_distortion_factor``); ``None`` or 0 disables it.
        elastic: apply the paper's elastic deformation.
        elastic_sigma: standard deviation (voxels) of the displacement at each grid node.
        elastic_grid_spacing: distance (voxels) between the nodes of the displacement grid.
        rotation_degrees: rotate about a random axis by an angle uniform in
            ``[-rotation_degrees, rotation_degrees]``; 0 disables it.
        intensity_scale: standard deviation of a per-channel factor ``1 + N(0, s)``; 0 disables it.
        intensity_shift: standard deviation of a per-channel offset ``N(0, s)``; 0 disables it.
        gamma_range: ``(low, high)``; a per-channel gamma drawn log-uniformly from it is applied
            to the channel rescaled to [0, 1]; ``None`` disables it.
    """

    flip: bool = False
    permute: bool = False
    scale_deviation: float | None = None
    elastic: bool = False
    elastic_sigma: float = 4.0
    elastic_grid_spacing: float = 32
    rotation_degrees: float = 0.0
    intensity_scale: float = 0.0
    intensity_shift: float = 0.0
    gamma_range: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        def check(condition: bool, name: str, allowed: str) -> None:
            if not condition:
                raise ValueError(f"AugmentationParams.{name} must be {allowed}; received {getattr(self, name)!r}")

        check(self.scale_deviation is None or self.scale_deviation >= 0, "scale_deviation", "None or >= 0")
        check(self.elastic_sigma >= 0, "elastic_sigma", ">= 0")
        check(self.elastic_grid_spacing > 0, "elastic_grid_spacing", "> 0")
        check(0 <= self.rotation_degrees <= 180, "rotation_degrees", "between 0 and 180")
        check(self.intensity_scale >= 0, "intensity_scale", ">= 0")
        check(self.intensity_shift >= 0, "intensity_shift", ">= 0")
        if self.gamma_range is not None:
            check(
                len(self.gamma_range) == 2 and 0 < self.gamma_range[0] <= self.gamma_range[1],
                "gamma_range", "None or (low, high) with 0 < low <= high",
            )
            object.__setattr__(self, "gamma_range", (float(self.gamma_range[0]), float(self.gamma_range[1])))

    @classmethod
    def from_reference(
        cls,
        augment: bool = False,
        augment_flip: bool = True,
        augment_distortion_factor: float | None = 0.25,
        permute: bool = False,
    ) -> "AugmentationParams":
        """The parameters the reference's generator arguments stand for."""
        return cls(
            flip=bool(augment and augment_flip),
            scale_deviation=(augment_distortion_factor or None) if augment else None,
            permute=bool(permute),
        )

    @property
    def enabled(self) -> bool:
        """Whether any augmentation is switched on."""
        return self.resampling or self.flip or self.permute or self.gray_value

    @property
    def resampling(self) -> bool:
        """Whether a transform that interpolates (scale, rotation, elastic) is switched on."""
        return bool(self.scale_deviation) or self.rotation_degrees > 0 or (self.elastic and self.elastic_sigma > 0)

    @property
    def gray_value(self) -> bool:
        """Whether an intensity or gamma change is switched on."""
        return self.intensity_scale > 0 or self.intensity_shift > 0 or self.gamma_range is not None


@dataclass
class SampledAugmentation:
    """Parameters drawn for one sample by :func:`sample_augmentation`; ``None``/empty means off.

    Attributes:
        flip_axes: spatial axes (0, 1, 2) to flip.
        scale_factor: ``(3,)`` per-axis scale about the centre (> 1 magnifies).
        rotation_axis: ``(3,)`` unit vector.
        rotation_degrees: angle about ``rotation_axis``.
        elastic_nodes: ``(3, nx, ny, nz)`` displacements at the elastic grid nodes (voxels).
        elastic_grid_spacing: node spacing the nodes were drawn for.
        permutation_key: see :func:`generate_permutation_keys`.
        intensity_scale: ``(n_channels,)`` factors.
        intensity_shift: ``(n_channels,)`` offsets.
        gamma: ``(n_channels,)`` exponents.
    """

    flip_axes: tuple[int, ...] = ()
    scale_factor: np.ndarray | None = None
    rotation_axis: np.ndarray | None = None
    rotation_degrees: float = 0.0
    elastic_nodes: np.ndarray | None = None
    elastic_grid_spacing: float = 32
    permutation_key: PermutationKey | None = None
    intensity_scale: np.ndarray | None = None
    intensity_shift: np.ndarray | None = None
    gamma: np.ndarray | None = field(default=None)


# --------------------------------------------------------------------------------------------
# The reference's nibabel-image helpers


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


def random_flip_dimensions(n_dimensions: int, rng: np.random.Generator | int | None = None) -> list[int]:
    """Each axis ``0 .. n_dimensions - 1`` with probability 1/2."""
    rng = _rng(rng)
    return [dim for dim in range(n_dimensions) if random_boolean(rng)]


def random_scale_factor(
    n_dim: int = 3, mean: float = 1, std: float = 0.25, rng: np.random.Generator | int | None = None
) -> np.ndarray:
    """``n_dim`` factors drawn from ``N(mean, std)``, clipped to at least :data:`MIN_SCALE_FACTOR`."""
    return np.maximum(_rng(rng).normal(mean, std, n_dim), MIN_SCALE_FACTOR)


def random_boolean(rng: np.random.Generator | int | None = None) -> bool:
    """True or False with probability 1/2."""
    return bool(_rng(rng).integers(0, 2))


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
    rng = _rng(rng)
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


# --------------------------------------------------------------------------------------------
# Resampling


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


# --------------------------------------------------------------------------------------------
# Rotation


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
    rng = _rng(rng)
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


# --------------------------------------------------------------------------------------------
# Elastic deformation (Cicek et al. 2016: N(0, 4 voxels) on a 32-voxel grid, B-spline interpolated)


def elastic_grid(shape: Sequence[int], grid_spacing: float = 32) -> tuple[tuple[int, int, int], np.ndarray]:
    """The node grid of the elastic deformation for a volume.

    Nodes are ``grid_spacing`` voxels apart, at least two per axis, and centred on the volume so
    that they cover it.

    Returns:
        ``(n_nodes, origin)``: nodes per axis, and the voxel position ``(3,)`` of node
        ``(0, 0, 0)``; node ``k`` of axis ``a`` lies at ``origin[a] + k * grid_spacing``.
    """
    shape = np.asarray(shape[-3:], dtype=np.float64)
    n_nodes = np.maximum(np.ceil((shape - 1) / grid_spacing).astype(np.int64) + 1, 2)
    origin = (shape - 1) / 2 - (n_nodes - 1) * grid_spacing / 2
    return tuple(int(n) for n in n_nodes), origin


def elastic_node_displacements(
    shape: Sequence[int],
    sigma: float = 4.0,
    grid_spacing: float = 32,
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """Random displacements at the grid nodes, ``N(0, sigma)`` voxels per axis.

    Returns:
        float32 ``(3, nx, ny, nz)``; see :func:`elastic_grid`.
    """
    n_nodes, _ = elastic_grid(shape, grid_spacing)
    return _rng(rng).normal(0.0, sigma, size=(3,) + n_nodes).astype(np.float32)


@functools.lru_cache(maxsize=64)
def _spline_weights(size: int, n_nodes: int, origin: float, spacing: float) -> np.ndarray:
    """``(size, n_nodes)`` matrix evaluating the interpolating cubic B-spline through node values."""
    positions = (np.arange(size, dtype=np.float64) - origin) / spacing
    weights = np.empty((size, n_nodes), dtype=np.float32)
    for node in range(n_nodes):
        unit = np.zeros(n_nodes)
        unit[node] = 1.0
        weights[:, node] = ndimage.map_coordinates(unit, positions[None], order=3, mode="mirror")
    weights.setflags(write=False)
    return weights


def elastic_displacement_field(
    node_displacements: np.ndarray, shape: Sequence[int], grid_spacing: float = 32
) -> np.ndarray:
    """The dense displacement field: the cubic B-spline through the node displacements.

    The spline interpolates: at a node the field equals that node's displacement. It is
    separable, so it is evaluated as three small matrix products (no per-voxel spline).

    Args:
        node_displacements: ``(3, nx, ny, nz)`` from :func:`elastic_node_displacements`.
        shape: ``(x, y, z)`` of the volume.
        grid_spacing: node spacing the nodes were drawn for.

    Returns:
        float32 ``(3, x, y, z)`` displacement in voxels.
    """
    shape = tuple(int(s) for s in shape[-3:])
    n_nodes, origin = elastic_grid(shape, grid_spacing)
    nodes = np.asarray(node_displacements, dtype=np.float32)
    if nodes.shape != (3,) + n_nodes:
        raise ValueError(
            f"node_displacements must have shape {(3,) + n_nodes} for a volume {shape} and grid spacing "
            f"{grid_spacing}; received {nodes.shape}"
        )
    wx, wy, wz = (_spline_weights(s, n, float(o), float(grid_spacing)) for s, n, o in zip(shape, n_nodes, origin))
    # Plain einsum loops, never BLAS (optimize=True would call it): see sampling_coordinates.
    field = np.einsum("aijk,xi->axjk", nodes, wx)
    field = np.einsum("axjk,yj->axyk", field, wy)
    return np.ascontiguousarray(np.einsum("axyk,zk->axyz", field, wz), dtype=np.float32)


def elastic_transform(
    data: np.ndarray | None,
    truth: np.ndarray | None,
    sigma: float = 4.0,
    grid_spacing: float = 32,
    rng: np.random.Generator | int | None = None,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The paper's elastic deformation of images (linear) and labels (nearest) together.

    Args:
        data: ``(n_channels, x, y, z)`` or None.
        truth: ``(x, y, z)`` or ``(1, x, y, z)`` or None.
        sigma: standard deviation of the node displacements, in voxels.
        grid_spacing: node spacing in voxels.
        rng: random generator (or seed).

    Returns:
        ``(data, truth)`` deformed, same shapes.
    """
    shape = (data if data is not None else truth).shape[-3:]
    nodes = elastic_node_displacements(shape, sigma, grid_spacing, rng)
    field_ = elastic_displacement_field(nodes, shape, grid_spacing)
    return apply_spatial_transform(data, truth, displacement=field_)


# --------------------------------------------------------------------------------------------
# Gray values (images only)


def _per_channel(values: np.ndarray | float, n_channels: int) -> np.ndarray:
    values = np.asarray(values, dtype=np.float32).reshape(-1)
    if values.size == 1:
        values = np.repeat(values, n_channels)
    if values.size != n_channels:
        raise ValueError(f"expected 1 or {n_channels} values (one per channel); received {values.size}")
    return values.reshape((n_channels, 1, 1, 1))


def intensity_transform(
    data: np.ndarray, scale: np.ndarray | float = 1.0, shift: np.ndarray | float = 0.0
) -> np.ndarray:
    """``data * scale + shift`` per channel.

    Args:
        data: ``(n_channels, x, y, z)``.
        scale, shift: one value, or one per channel.

    Returns:
        float32 ``(n_channels, x, y, z)``.
    """
    data = np.asarray(data, dtype=np.float32)
    n_channels = data.shape[0]
    return data * _per_channel(scale, n_channels) + _per_channel(shift, n_channels)


def random_intensity(
    data: np.ndarray, scale_std: float = 0.1, shift_std: float = 0.1, rng: np.random.Generator | int | None = None
) -> np.ndarray:
    """Per-channel factor ``1 + N(0, scale_std)`` and offset ``N(0, shift_std)``."""
    rng = _rng(rng)
    n_channels = data.shape[0]
    scale = 1 + rng.normal(0, scale_std, n_channels)
    shift = rng.normal(0, shift_std, n_channels)
    return intensity_transform(data, scale, shift)


def gamma_transform(data: np.ndarray, gamma: np.ndarray | float) -> np.ndarray:
    """Gamma correction per channel, of the channel rescaled to [0, 1] and back.

    Args:
        data: ``(n_channels, x, y, z)``; any value range (normalised data are negative too).
        gamma: one exponent, or one per channel.

    Returns:
        float32 ``(n_channels, x, y, z)`` with each channel's minimum and maximum unchanged.
    """
    data = np.asarray(data, dtype=np.float32)
    gammas = _per_channel(gamma, data.shape[0]).reshape(-1)
    result = np.empty_like(data)
    for index, value in enumerate(gammas):
        channel = data[index]
        low, high = float(channel.min()), float(channel.max())
        if high <= low:
            result[index] = channel
            continue
        unit = (channel - low) / (high - low)
        result[index] = np.power(unit, value, dtype=np.float32) * (high - low) + low
    return result


def random_gamma(
    data: np.ndarray, gamma_range: tuple[float, float] = (0.7, 1.5), rng: np.random.Generator | int | None = None
) -> np.ndarray:
    """Per-channel gamma drawn log-uniformly from ``gamma_range``; see :func:`gamma_transform`."""
    gamma = np.exp(_rng(rng).uniform(np.log(gamma_range[0]), np.log(gamma_range[1]), data.shape[0]))
    return gamma_transform(data, gamma)


# --------------------------------------------------------------------------------------------
# Cube permutations (the reference's 48 rotations and reflections)


def generate_permutation_keys() -> set[PermutationKey]:
    """The 48 rotations and reflections of a cube, as keys for :func:`permute_data`.

    A key is ``((rotate_y, rotate_z), flip_x, flip_y, flip_z, transpose)``: e.g.
    ``((0, 1), 0, 1, 0, 1)`` rotates 90 degrees about the z axis, reverses the y axis, then
    transposes. 3 rotation pairs x 2**4 flip/transpose choices = 48
    (https://en.wikipedia.org/wiki/Octahedral_symmetry#The_isometries_of_the_cube).
    """
    rotations = ((0, 0), (0, 1), (1, 1))
    flags = (0, 1)
    return set(itertools.product(rotations, flags, flags, flags, flags))


def random_permutation_key(rng: np.random.Generator | int | None = None) -> PermutationKey:
    """One of :func:`generate_permutation_keys`, uniformly."""
    keys = sorted(generate_permutation_keys())
    return keys[int(_rng(rng).integers(len(keys)))]


def _check_cube(data: np.ndarray) -> None:
    if data.ndim != 4 or not data.shape[1] == data.shape[2] == data.shape[3]:
        raise ValueError(
            f"permutations need data of shape (n_channels, n, n, n) (a cube); received {tuple(data.shape)}"
        )


def permute_data(data: np.ndarray, key: PermutationKey) -> np.ndarray:
    """Applies a cube symmetry to every channel.

    Args:
        data: ``(n_channels, n, n, n)``.
        key: ``((rotate_y, rotate_z), flip_x, flip_y, flip_z, transpose)``.

    Returns:
        A new C-contiguous array of the same shape.
    """
    data = np.asarray(data)
    _check_cube(data)
    (rotate_y, rotate_z), flip_x, flip_y, flip_z, transpose = key
    result = data
    if rotate_y:
        result = np.rot90(result, rotate_y, axes=(1, 3))
    if rotate_z:
        result = np.rot90(result, rotate_z, axes=(2, 3))
    if flip_x:
        result = result[:, ::-1]
    if flip_y:
        result = result[:, :, ::-1]
    if flip_z:
        result = result[:, :, :, ::-1]
    if transpose:
        result = result.transpose(0, 3, 2, 1)
    return np.array(result, order="C")


def random_permutation_x_y(
    x_data: np.ndarray, y_data: np.ndarray, rng: np.random.Generator | int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The same random cube symmetry applied to ``x_data`` and ``y_data``, both ``(n, s, s, s)``."""
    key = random_permutation_key(rng)
    return permute_data(x_data, key), permute_data(y_data, key)


def reverse_permutation_key(key: PermutationKey) -> PermutationKey:
    """The key with its rotations negated; :func:`reverse_permute_data` applies it in reverse order."""
    rotation = tuple(-rotate for rotate in key[0])
    return (rotation, key[1], key[2], key[3], key[4])


def reverse_permute_data(data: np.ndarray, key: PermutationKey) -> np.ndarray:
    """Undoes :func:`permute_data` with the same ``key``: ``reverse(permute(d, k), k) == d``."""
    data = np.asarray(data)
    _check_cube(data)
    (rotate_y, rotate_z), flip_x, flip_y, flip_z, transpose = reverse_permutation_key(key)
    result = data
    if transpose:
        result = result.transpose(0, 3, 2, 1)
    if flip_z:
        result = result[:, :, :, ::-1]
    if flip_y:
        result = result[:, :, ::-1]
    if flip_x:
        result = result[:, ::-1]
    if rotate_z:
        result = np.rot90(result, rotate_z, axes=(2, 3))
    if rotate_y:
        result = np.rot90(result, rotate_y, axes=(1, 3))
    return np.array(result, order="C")


# --------------------------------------------------------------------------------------------
# One entry point


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
    rng = _rng(rng)
    n_channels = int(data_shape[0])
    shape = tuple(int(s) for s in data_shape[-3:])
    sampled = SampledAugmentation(elastic_grid_spacing=params.elastic_grid_spacing)
    if params.flip:
        sampled.flip_axes = tuple(random_flip_dimensions(3, rng))
    if params.scale_deviation:
        sampled.scale_factor = random_scale_factor(3, std=params.scale_deviation, rng=rng)
    if params.rotation_degrees > 0:
        sampled.rotation_axis, sampled.rotation_degrees = random_rotation(params.rotation_degrees, rng)
    if params.elastic and params.elastic_sigma > 0:
        sampled.elastic_nodes = elastic_node_displacements(
            shape, params.elastic_sigma, params.elastic_grid_spacing, rng
        )
    if params.permute:
        if not shape[0] == shape[1] == shape[2]:
            raise ValueError(f"permute=True needs a cubic sample; received spatial shape {shape}")
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

    Order: flips (exact); scaling, rotation and elastic deformation composed into one
    resampling; the cube permutation (exact); then intensity and gamma on the images only.

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
