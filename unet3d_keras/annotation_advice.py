"""Where to annotate next: the unannotated slices where a densify model is least sure of a class.

After a densification, each voxel's averaged softmax says how sure the model is. For one class,
a voxel's expected error is the probability that its decision about that class is wrong: ``1 - p``
where the class won the voxel, ``p`` where another class did. Summed over the never-annotated
voxels of a slice, it is the number of voxels the model itself expects to get wrong about the class
there; the slice along each axis with the largest sum, and no annotation of its own yet, is the
one to annotate next. This module does not load Keras.
"""

from __future__ import annotations

import numpy as np

from .densify_holdout import annotated_planes

__all__ = ["expected_errors", "least_certain_slices"]

AXES = ("x", "y", "z")


def expected_errors(probabilities: np.ndarray, position: int) -> np.ndarray:
    """Each voxel's probability, by the model's own softmax, that its decision about one class is wrong.

    Args:
        probabilities: ``(n_classes, x, y, z)`` softmax outputs.
        position: the class's index along the first axis.

    Returns:
        float32 ``(x, y, z)``, from 0 to 1: ``1 - p`` where the class has the highest probability, ``p`` elsewhere.
    """
    probability = np.asarray(probabilities[position], dtype=np.float32)
    won = np.argmax(probabilities, axis=0) == position
    return np.where(won, 1 - probability, probability)


def least_certain_slices(probabilities: np.ndarray, position: int, annotated: np.ndarray
                         ) -> list[tuple[int, float]]:
    """Per axis, the slice with no annotation where the model expects the most errors about a class.

    Args:
        probabilities: ``(n_classes, x, y, z)`` softmax outputs of the whole volume.
        position: the class's index along the first axis.
        annotated: bool ``(x, y, z)``, True where someone annotated. Annotated voxels do not count;
            slices already annotated (:func:`~unet3d_keras.densify_holdout.annotated_planes`) are never chosen.

    Returns:
        For x, y and z, ``(index, errors)``: the slice's index from 0 and the voxels the model expects to get
        wrong about the class there (the sum of :func:`expected_errors`); ``(-1, 0.0)`` on an axis whose every
        slice is annotated.
    """
    annotated = np.asarray(annotated, dtype=bool)
    if probabilities.shape[1:] != annotated.shape:
        raise ValueError(f"annotated: expected the shape {probabilities.shape[1:]} of the probabilities, "
                         f"received {annotated.shape}")
    errors = np.where(annotated, 0.0, expected_errors(probabilities, position))
    chosen = []
    for axis, planes in enumerate(annotated_planes(annotated)):
        per_slice = errors.sum(axis=tuple(a for a in range(3) if a != axis), dtype=np.float64)
        per_slice[planes] = -np.inf
        index = int(np.argmax(per_slice))
        chosen.append((index, float(per_slice[index])) if np.isfinite(per_slice[index]) else (-1, 0.0))
    return chosen
