"""Patch grids over 3D volumes: computing patch corners, extracting patches, reassembling them.

Arrays are channels-first as everywhere in the data pipeline: a volume is ``(x, y, z)`` or
``(n_channels, x, y, z)`` (any number of leading axes); a patch index is the ``(x, y, z)`` corner
of the patch in voxels and may lie partly outside the volume (negative, or past the end), in
which case the patch is completed by repeating the edge voxels. Randomness comes from a
``numpy.random.Generator`` (or seed) passed in as ``rng``.
"""

from __future__ import annotations

import logging
from typing import Iterable, Sequence

import numpy as np

from ..checks import as_int_triple

logger = logging.getLogger(__name__)

#: How overlapping windows are blended: a plain average, or weights falling off from the window's
#: centre (``sliding_window.gaussian_importance_map``). Here, without Keras, so that commands can check it first.
WEIGHTINGS = ("uniform", "gaussian")

__all__ = [
    "WEIGHTINGS",
    "compute_patch_indices",
    "get_set_of_patch_indices",
    "get_random_patch_index",
    "get_random_nd_index",
    "get_patch_from_3d_data",
    "fix_out_of_bound_patch_attempt",
    "reconstruct_from_patches",
    "get_patch_bounds",
]


def compute_patch_indices(
    image_shape: Sequence[int],
    patch_size: Sequence[int],
    overlap: int | Sequence[int],
    start: int | Sequence[int] | None = None,
) -> np.ndarray:
    """Corners of a grid of patches that tiles a volume.

    Neighbouring patches share ``overlap`` voxels per axis. Without ``start`` the grid is centred:
    it covers the whole volume and sticks out by (about) the same amount on both sides. With
    ``start`` (usually zero or negative, e.g. a random training offset) the grid begins there and
    steps through ``image_shape`` voxels, so the number of patches does not depend on ``start``.

    Args:
        image_shape: ``(x, y, z)`` of the volume.
        patch_size: ``(px, py, pz)``.
        overlap: voxels shared by neighbouring patches, an int or one per axis; must be smaller
            than the patch size.
        start: corner of the first patch, an int or one per axis.

    Returns:
        int64 array ``(n_patches, 3)`` of patch corners, ``x`` varying slowest.

    Raises:
        ValueError: the overlap is not smaller than the patch in some axis.
    """
    image_shape = as_int_triple(image_shape, "image_shape")
    patch_size = as_int_triple(patch_size, "patch_size")
    overlap = as_int_triple(overlap, "overlap")
    step = patch_size - overlap
    if np.any(step <= 0):
        raise ValueError(
            f"overlap {overlap.tolist()} must be smaller than the patch size {patch_size.tolist()} in every axis"
        )
    if start is None:
        n_patches = np.ceil(image_shape / step)
        overflow = step * n_patches - image_shape + overlap
        start = -np.ceil(overflow / 2).astype(np.int64)
    else:
        start = as_int_triple(start, "start")
    stop = image_shape + start
    return get_set_of_patch_indices(start, stop, step)


def get_set_of_patch_indices(start: Sequence[int], stop: Sequence[int], step: Sequence[int]) -> np.ndarray:
    """All corners ``start + k * step`` below ``stop`` in each axis.

    Returns:
        int64 array ``(n_patches, 3)``, ``x`` varying slowest.
    """
    start, stop, step = (np.asarray(v, dtype=np.int64) for v in (start, stop, step))
    grid = np.mgrid[start[0]:stop[0]:step[0], start[1]:stop[1]:step[1], start[2]:stop[2]:step[2]]
    return np.asarray(grid.reshape(3, -1).T, dtype=np.int64)


def get_random_patch_index(
    image_shape: Sequence[int], patch_shape: Sequence[int], rng: np.random.Generator | int | None = None
) -> tuple[int, ...]:
    """A random corner such that the patch lies inside the volume.

    Sampling training patches this way shows the centre of the volume to the model far more
    often than its border.
    """
    return get_random_nd_index(np.subtract(image_shape, patch_shape), rng=rng)


def get_random_nd_index(
    index_max: Sequence[int], rng: np.random.Generator | int | None = None
) -> tuple[int, ...]:
    """A random index with ``0 <= index[i] <= index_max[i]`` (uniform, inclusive)."""
    rng = np.random.default_rng(rng)
    return tuple(int(rng.integers(0, int(m) + 1)) for m in index_max)


def get_patch_bounds(
    image_shape: Sequence[int], patch_shape: Sequence[int], patch_index: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """The part of a patch that lies inside the volume, as ``(low, high)`` voxel bounds.

    Never empty: a patch wholly outside the volume gets the nearest one-voxel slab, whose edge
    repetition is then the patch's content.

    Returns:
        Two int64 arrays of 3 values, ``low`` inclusive and ``high`` exclusive.
    """
    image_shape = np.asarray(image_shape, dtype=np.int64)[-3:]
    patch_index = np.asarray(patch_index, dtype=np.int64)
    low = np.clip(patch_index, 0, image_shape - 1)
    high = np.clip(patch_index + np.asarray(patch_shape, dtype=np.int64), low + 1, image_shape)
    return low, high


def get_patch_from_3d_data(data: np.ndarray, patch_shape: Sequence[int], patch_index: Sequence[int]) -> np.ndarray:
    """Extracts a patch; voxels outside the volume repeat the nearest edge voxel.

    Args:
        data: ``(..., x, y, z)``, e.g. ``(n_channels, x, y, z)`` or ``(x, y, z)``.
        patch_shape: ``(px, py, pz)``.
        patch_index: corner ``(x, y, z)`` of the patch, possibly outside the volume.

    Returns:
        ``(..., px, py, pz)``: a view of ``data`` when the patch lies inside the volume, a new
        array otherwise.
    """
    patch_shape = as_int_triple(patch_shape, "patch_shape")
    index = np.asarray(patch_index, dtype=np.int64)
    image_shape = np.asarray(data.shape[-3:], dtype=np.int64)
    stop = index + patch_shape
    if np.all(index >= 0) and np.all(stop <= image_shape):
        return data[..., index[0]:stop[0], index[1]:stop[1], index[2]:stop[2]]
    # Clipped index vectors give exactly numpy's "edge" padding, for the patch only.
    axes = [np.clip(np.arange(i, i + p), 0, n - 1) for i, p, n in zip(index, patch_shape, image_shape)]
    return data[(Ellipsis,) + np.ix_(*axes)]


def fix_out_of_bound_patch_attempt(
    data: np.ndarray, patch_shape: Sequence[int], patch_index: Sequence[int], ndim: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """Edge-pads ``data`` so that the patch at ``patch_index`` lies inside it.

    ``get_patch_from_3d_data`` does not use this: it pads only the patch.

    Returns:
        ``(padded_data, new_patch_index)``; the caller's ``patch_index`` is not modified.
    """
    image_shape = np.asarray(data.shape[-ndim:], dtype=np.int64)
    patch_index = np.asarray(patch_index, dtype=np.int64)
    patch_shape = np.asarray(patch_shape, dtype=np.int64)
    pad_before = np.maximum(-patch_index, 0)
    pad_after = np.maximum(patch_index + patch_shape - image_shape, 0)
    pad_width = [(0, 0)] * (data.ndim - ndim) + list(zip(pad_before.tolist(), pad_after.tolist()))
    return np.pad(data, pad_width, mode="edge"), patch_index + pad_before


def reconstruct_from_patches(
    patches: Iterable[np.ndarray] | np.ndarray,
    patch_indices: Iterable[Sequence[int]] | np.ndarray,
    data_shape: Sequence[int],
    default_value: float = 0,
) -> np.ndarray:
    """Reassembles a volume from patches; where patches overlap their values are averaged.

    One pass over one preallocated sum array and one count array: memory
    O(volume) and time O(volume + n_patches * patch size). Parts of patches outside the volume
    are ignored.

    Args:
        patches: patches ``(..., px, py, pz)`` (leading axes matching ``data_shape``), as a list
            or an array ``(n_patches, ..., px, py, pz)``; patches may differ in size.
        patch_indices: corner ``(x, y, z)`` of each patch, e.g. from
            :func:`compute_patch_indices`.
        data_shape: shape of the result, ``(..., x, y, z)``.
        default_value: value of voxels that no patch covers.

    Returns:
        Array of ``data_shape``; float64 for integer or float64 patches, float32 for float32
        (or smaller) patches.
    """
    data_shape = tuple(int(s) for s in data_shape)
    image_shape = np.asarray(data_shape[-3:], dtype=np.int64)
    total = None
    count = np.zeros(data_shape[-3:], dtype=np.int32)
    for patch, index in zip(patches, patch_indices):
        patch = np.asarray(patch)
        if total is None:
            total = np.zeros(data_shape, dtype=np.result_type(patch.dtype, np.float32))
        index = np.asarray(index, dtype=np.int64)
        patch_shape = np.asarray(patch.shape[-3:], dtype=np.int64)
        low = np.maximum(index, 0)
        high = np.minimum(index + patch_shape, image_shape)
        if np.any(high <= low):
            continue  # wholly outside the volume
        src_low, src_high = low - index, high - index
        target = (Ellipsis, slice(low[0], high[0]), slice(low[1], high[1]), slice(low[2], high[2]))
        source = (Ellipsis,) + tuple(slice(a, b) for a, b in zip(src_low, src_high))
        total[target] += patch[source]
        count[target[1:]] += 1
    if total is None:
        return np.full(data_shape, default_value, dtype=np.float64)
    covered = count > 0
    # Divide in place, then fill the uncovered voxels, to avoid another full-size temporary.
    np.divide(total, np.maximum(count, 1), out=total, casting="unsafe")
    total[..., ~covered] = default_value
    return total
