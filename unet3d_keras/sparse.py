"""Sparse annotations (Cicek et al. 2016): a few full orthogonal slices of a label map.

The paper's annotators labelled a few full orthogonal slices of each volume; every other voxel
is *unlabeled* and carries the ignore value (``data.ignore_label``, 255 by default). This module
chooses the slices, makes such annotations from dense label maps and checks them for training.
It does not load Keras, so scripts can check an annotation before Keras loads.

Training on one annotated volume and predicting it densely (the paper's semi-automated mode) is
:mod:`unet3d_keras.densify`; the fully-automated mode is ordinary training on sparse truth
volumes (the pipeline notices the ignore value and uses the masked loss).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .checks import require_integer_values
from .errors import DataError

__all__ = ["slice_positions", "make_sparse_annotation", "check_label_range", "annotated_classes"]


def slice_positions(size: int, count: int, rng: np.random.Generator | None = None,
                    nested: bool = False) -> np.ndarray:
    """Indices of ``count`` slices along an axis of ``size`` voxels.

    Evenly spread (the centres of ``count`` equal parts) when ``rng`` is None, else drawn
    without replacement from ``rng``. ``nested`` keeps the slices of every smaller count and
    adds each new slice in the middle of the widest gap, at fractions 1/2, 1/4, 3/4, 1/8, 5/8,
    3/8, 7/8, ... of the axis: the annotation of a user who adds slices to the ones they have.
    One slice is the same either way; 3, 7, 15, ... nested slices are equally spaced, at
    ``i / (count + 1)`` of the axis.

    Returns:
        Sorted int64 indices.
    """
    if not 0 <= count <= size:
        raise ValueError(f"count: expected 0 to {size} slices along an axis of {size} voxels, received {count}")
    if rng is not None and nested:
        raise ValueError("nested slices are placed, not drawn: pass rng=None with nested=True")
    if rng is not None:
        return np.sort(rng.choice(size, size=count, replace=False)).astype(np.int64)
    if not nested:
        return np.floor((np.arange(count) + 0.5) * size / count).astype(np.int64)
    chosen: dict[int, None] = {}
    n = 1
    while len(chosen) < count:
        # Van der Corput: n's binary digits mirrored around the point (5 = 101b -> 0.101b = 5/8).
        fraction, weight, rest = 0.0, 0.5, n
        while rest:
            fraction += weight * (rest & 1)
            rest, weight = rest >> 1, weight / 2
        chosen.setdefault(int(fraction * size), None)  # close fractions of a short axis share a slice
        n += 1
    return np.sort(np.fromiter(chosen, dtype=np.int64, count=count))


def make_sparse_annotation(
    dense: np.ndarray,
    slices_per_axis: Sequence[int] = (1, 1, 1),
    rng: np.random.Generator | None = None,
    ignore_label: int = 255,
    nested: bool = False,
) -> np.ndarray:
    """Keep ``k`` full slices per orthogonal axis of a dense label map; the rest is unlabeled.

    Args:
        dense: integer label map ``(x, y, z)`` (floats holding whole numbers are read as int64).
        slices_per_axis: ``(k_x, k_y, k_z)`` slices kept across each axis.
        rng: draws the slices at random; None spreads them evenly.
        ignore_label: value given to every voxel outside the kept slices.
        nested: place the slices so that those of a smaller count are kept by every larger one
            (see :func:`slice_positions`), instead of spreading each count evenly.

    Returns:
        ``(x, y, z)`` label map, in ``dense``'s dtype (widened if the ignore value does not fit).

    Raises:
        ValueError: not 3D, not whole numbers, more slices than voxels, or ``ignore_label`` already
            used in ``dense`` (it would be mistaken for unlabeled voxels).
    """
    dense = np.asarray(dense)
    if dense.ndim != 3:
        raise ValueError(f"expected a 3D label map, received shape {dense.shape}")
    require_integer_values(dense, "the dense label map")
    if dense.dtype.kind == "f":
        dense = dense.astype(np.int64)
    if len(slices_per_axis) != 3:
        raise ValueError(f"slices_per_axis needs 3 counts (x, y, z), received {tuple(slices_per_axis)}")
    if np.any(dense == ignore_label):
        raise ValueError(
            f"ignore_label {ignore_label} is already a label of the dense map (values "
            f"{np.unique(dense).tolist()[:20]}); choose a value that no voxel has"
        )
    keep = np.zeros(dense.shape, dtype=bool)
    for axis, count in enumerate(slices_per_axis):
        index = [slice(None)] * 3
        index[axis] = slice_positions(dense.shape[axis], int(count), rng, nested)
        keep[tuple(index)] = True
    dtype = np.result_type(dense.dtype, np.min_scalar_type(ignore_label))
    sparse = np.full(dense.shape, ignore_label, dtype=dtype)
    sparse[keep] = dense[keep]
    return sparse


def check_label_range(values: np.ndarray | list[int], name: str = "the label map") -> None:
    """Refuse label values outside 0-255 (the annotated classes and the ignore value alike).

    Raises:
        DataError: naming ``name`` and the values found outside.
    """
    values = np.unique(np.asarray(values))
    outside = [v for v in values.tolist() if not 0 <= v <= 255]
    if outside:
        raise DataError(f"{name}: label values must lie between 0 and 255, found {outside[:10]}")


def annotated_classes(sparse: np.ndarray, ignore_label: int = 255, name: str = "the label map") -> list[int]:
    """The label values present in a sparse annotation, checked for training.

    Args:
        sparse: ``(x, y, z)`` label values, ``ignore_label`` where nobody annotated.
        ignore_label: the value of the unannotated voxels.
        name: the file or array named in error messages.

    Returns:
        The annotated values, ascending.

    Raises:
        DataError: a value that is not a whole number or lies outside 0-255, no annotated voxel, or fewer than
            two classes annotated.
    """
    values = np.unique(np.asarray(sparse))
    require_integer_values(values, name, error=DataError)
    check_label_range(values, name)
    classes = [int(v) for v in values if v != ignore_label]
    if not classes:
        raise DataError(f"{name}: no annotated voxel (every voxel has the ignore value {ignore_label})")
    if len(classes) < 2:
        raise DataError(
            f"{name}: only one class ({classes[0]}) is annotated; at least two classes are needed to learn "
            "a segmentation (annotate some background too)"
        )
    return classes
