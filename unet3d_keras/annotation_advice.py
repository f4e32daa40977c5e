"""Where to look next: the slices not yet annotated where a densify model is least sure of a class.

After a densification, each voxel's averaged softmax says how sure the model is. For one class,
a voxel's expected error is the probability that its decision about that class is wrong: ``1 - p``
where the class won the voxel, ``p`` where another class did. Summed over the unannotated voxels of
a slice, it is the number of voxels the model itself expects to get wrong about the class there.
Along each axis, the slice with the largest sum among those not yet annotated (less than half of
their voxels, :func:`~unet3d_keras.densify_holdout.annotated_planes`) is where to check the map
and annotate. This module does not load Keras.
"""

from __future__ import annotations

import numpy as np

from .densify_holdout import annotated_planes

__all__ = ["AXES", "MIN_EXPECTED_ERRORS", "expected_errors", "least_certain_slices", "slices_to_check"]

#: The names of the 3 spatial axes, in the arrays' order.
AXES = ("x", "y", "z")
#: A slice where the model expects fewer of the unannotated voxels wrong than this is not worth checking.
MIN_EXPECTED_ERRORS = 0.5


def expected_errors(probabilities: np.ndarray, position: int, winners: np.ndarray | None = None) -> np.ndarray:
    """Each voxel's probability, by the model's own softmax, that its decision about one class is wrong.

    Args:
        probabilities: ``(n_classes, x, y, z)`` softmax outputs.
        position: the class's index along the first axis.
        winners: ``(x, y, z)`` the index of the class each voxel was given (None: the argmax of
            ``probabilities``, a tie going to the lower index, as densify's prediction does).

    Returns:
        float32 ``(x, y, z)``, from 0 to 1: ``1 - p`` where the class won the voxel, ``p`` elsewhere.
    """
    if winners is None:
        winners = np.argmax(probabilities, axis=0)
    probability = np.asarray(probabilities[position], dtype=np.float32)
    return np.where(winners == position, 1 - probability, probability)


def least_certain_slices(probabilities: np.ndarray, position: int, annotated: np.ndarray,
                         winners: np.ndarray | None = None) -> list[tuple[int | None, float]]:
    """Per axis, the slice not yet annotated where the model expects the most errors about a class.

    Args:
        probabilities: ``(n_classes, x, y, z)`` softmax outputs of the whole volume.
        position: the class's index along the first axis.
        annotated: bool ``(x, y, z)``, True where someone annotated. Annotated voxels do not count, and
            slices at least half annotated (:func:`~unet3d_keras.densify_holdout.annotated_planes`) are
            never chosen.
        winners: as for :func:`expected_errors`; pass it to spare an argmax per class.

    Returns:
        For x, y and z, ``(index, errors)``: the slice's index from 0 (the lowest of equal sums) and the
        unannotated voxels the model expects to get wrong about the class there (the sum of
        :func:`expected_errors`); ``(None, 0.0)`` on an axis whose every slice is at least half annotated.
    """
    annotated = np.asarray(annotated, dtype=bool)
    if probabilities.shape[1:] != annotated.shape:
        raise ValueError(f"annotated: expected the shape {probabilities.shape[1:]} of the probabilities, "
                         f"received {annotated.shape}")
    errors = expected_errors(probabilities, position, winners)
    np.putmask(errors, annotated, 0.0)  # in place: one volume-sized array per class, not two
    chosen: list[tuple[int | None, float]] = []
    for axis, planes in enumerate(annotated_planes(annotated)):
        per_slice = errors.sum(axis=tuple(a for a in range(3) if a != axis), dtype=np.float64)
        per_slice[planes] = -np.inf
        index = int(np.argmax(per_slice))
        chosen.append((index, float(per_slice[index])) if np.isfinite(per_slice[index]) else (None, 0.0))
    return chosen


def slices_to_check(chosen: list[tuple[int | None, float]]) -> list[int | None]:
    """The slices of :func:`least_certain_slices`' choice worth checking, per axis.

    Args:
        chosen: per axis, ``(index or None, expected errors)``.

    Returns:
        Per axis the index, or None where every slice is at least half annotated or where the model
        expects fewer than :data:`MIN_EXPECTED_ERRORS` voxels wrong.
    """
    return [index if index is not None and errors >= MIN_EXPECTED_ERRORS else None for index, errors in chosen]
