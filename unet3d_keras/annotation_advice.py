"""Where to look next: the slices not yet annotated where a densify model is least sure of a class.

After a densification, each voxel's averaged softmax says how sure the model is. For one class,
a voxel's expected error is the probability that its decision about that class is wrong: ``1 - p``
where the class won the voxel, ``p`` where another class did. Summed over the unannotated voxels of
a slice, it is the number of voxels the model itself expects to get wrong about the class there.
Along each axis, the slice with the largest sum among those not yet annotated (less than half of
their voxels, :func:`~unet3d_keras.densify_holdout.annotated_planes`) is where to check the map
and annotate. :func:`least_sure_slices` names them for each class of a run, :func:`slice_list` as a user reads
them, and :func:`classes_to_check` the classes that densify's picture of those slices shows. This module does not
load Keras.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .densify_holdout import annotated_planes

__all__ = ["AXES", "MIN_EXPECTED_ERRORS", "MAX_CLASSES_DRAWN", "expected_errors", "least_certain_slices",
           "slices_to_check", "least_sure_slices", "classes_to_check", "slice_list"]

#: The names of the 3 spatial axes, in the arrays' order.
AXES = ("x", "y", "z")
#: A slice where the model expects fewer of the unannotated voxels wrong than this is not worth checking.
MIN_EXPECTED_ERRORS = 0.5
#: The most classes that the picture of the slices to check shows (each takes two rows of panels).
MAX_CLASSES_DRAWN = 4


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


def least_sure_slices(probabilities: np.ndarray, classes: list[int], annotated: np.ndarray
                      ) -> dict[int, list[tuple[int | None, float]]]:
    """Per foreground class, :func:`least_certain_slices` of the volume.

    Args:
        probabilities: ``(n_classes, x, y, z)`` the volume's softmax outputs.
        classes: the label value of each class.
        annotated: bool ``(x, y, z)``, True where the label map was annotated.

    Returns:
        Label value -> per axis ``(slice index or None, expected errors)``, for every class but the first.
    """
    winners = np.argmax(probabilities, axis=0)  # once for all classes
    return {c: least_certain_slices(probabilities, position, annotated, winners)
            for position, c in enumerate(classes) if position}


def classes_to_check(classes: list[int], low_classes: list[int],
                     next_slices: dict[int, list[tuple[int | None, float]]]
                     ) -> tuple[list[tuple[int, str, list[int | None]]], list[int]]:
    """The classes that the picture of the slices to check shows, as ``densify_check_figure`` takes them.

    Those warned about, but the first class, and at most :data:`MAX_CLASSES_DRAWN` of them (those whose
    named slices hold the most expected errors); when none is, the foreground class whose named
    slices hold the most. Only slices worth checking (``slices_to_check``) count, and a class with
    none is never shown.

    Args:
        classes: the label value of each class.
        low_classes: the label values warned about.
        next_slices: per foreground label value, :func:`least_sure_slices`' choice.

    Returns:
        ``(shown, left_out)``: per class shown, ``(position, label value as text, slice index or None per
        axis)``, in the order of the label values; the label values warned about, with slices worth
        checking, that were left out.
    """
    checked = {c: slices_to_check(chosen) for c, chosen in next_slices.items()}
    worth = {c: sum(errors for index, (_, errors) in zip(checked[c], chosen) if index is not None)
             for c, chosen in next_slices.items() if any(index is not None for index in checked[c])}
    warned = [c for c in low_classes if c in worth]
    # most expected errors first; of equal sums, the lower label value
    ranked = sorted(warned or worth, key=lambda c: (-worth[c], c))
    picked = sorted(ranked[:MAX_CLASSES_DRAWN] if warned else ranked[:1])
    left_out = [c for c in warned if c not in picked]
    return [(classes.index(c), str(c), checked[c]) for c in picked], left_out


def slice_list(chosen: Sequence[tuple[int | None, float]], label: int) -> str:
    """``least_certain_slices``' choice for class ``label`` as a user reads it: "slices x 31, y 20, z 25 (...)".

    An axis whose every slice is at least half annotated, or where the model expects less than half a
    voxel wrong, is left out.
    """
    named = [(axis, index, math.floor(errors + 0.5)) for axis, index, (_, errors) in
             zip(AXES, slices_to_check(chosen), chosen) if index is not None]
    if not named:
        return ("none: every slice is at least half annotated" if all(index is None for index, _ in chosen) else
                "none: the model expects no error about it in the slices not yet annotated")
    counts = [str(errors) for _, _, errors in named]
    counts = counts[0] if len(counts) == 1 else f"{', '.join(counts[:-1])} and {counts[-1]}"
    return (f"slice{'s' * (len(named) > 1)} " + ", ".join(f"{axis} {index}" for axis, index, _ in named)
            + f" (voxel indices from 0; the model itself expects about {counts} of "
            f"{'their' if len(named) > 1 else 'the'} unannotated voxels to be wrong about class {label})")
