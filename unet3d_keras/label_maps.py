"""Label maps and NIfTI images from predicted probabilities (sigmoid or softmax outputs)."""

from __future__ import annotations

from typing import Sequence

import nibabel as nib
import numpy as np

from .regions import regions_to_label_map


def get_prediction_labels(
    prediction: np.ndarray, threshold: float = 0.5, labels: Sequence[int] | None = None,
    regions: Sequence[Sequence[int]] | None = None,
) -> list[np.ndarray]:
    """Label maps from a batch of sigmoid or softmax predictions.

    Sigmoid outputs (one channel per label): each voxel takes the label of its
    largest output, or 0 where no output reaches ``threshold``. Softmax outputs
    (``len(labels) + 1`` channels, background first): each voxel takes its most
    probable class, 0 for background.

    Args:
        prediction: ``(n, n_labels, x, y, z)``, or ``(n, n_labels + 1, x, y, z)`` for softmax.
        threshold: Minimum sigmoid output for a label.
        labels: Label values of the outputs, e.g. ``(1, 2, 4)``; 1..n_labels
            when None.
        regions: For a region-based model, the label values of each output (outer first); the
            regions are painted into the map (:func:`~unet3d_keras.regions.regions_to_label_map`).

    Returns:
        A list of n uint8 ``(x, y, z)`` label maps.
    """
    prediction = np.asarray(prediction)
    if regions is not None:
        return [regions_to_label_map(item, regions, threshold) for item in prediction]
    n_labels = prediction.shape[1]
    if labels and n_labels == len(labels) + 1:
        lookup = np.asarray([0, *labels], dtype=np.uint8)
        return [lookup[np.argmax(item, axis=0)] for item in prediction]
    values = np.asarray(list(labels) if labels else range(1, n_labels + 1), dtype=np.uint8)
    if len(values) != n_labels:
        raise ValueError(f"{len(values)} label values {values.tolist()} for {n_labels} prediction channels")
    lookup = np.concatenate([[0], values]).astype(np.uint8)
    maps = []
    for item in prediction:
        index = np.argmax(item, axis=0) + 1
        index[np.max(item, axis=0) < threshold] = 0
        maps.append(lookup[index])
    return maps


def prediction_to_image(
    prediction: np.ndarray,
    affine: np.ndarray,
    label_map: bool = False,
    threshold: float = 0.5,
    labels: Sequence[int] | None = None,
    regions: Sequence[Sequence[int]] | None = None,
):
    """NIfTI image(s) of a prediction ``(1, n_labels, x, y, z)`` (``regions``: see :func:`get_prediction_labels`).

    Returns:
        One label-map image when ``label_map`` (or for a single output);
        otherwise a list of one probability image per label.
    """
    prediction = np.asarray(prediction)
    if prediction.ndim != 5 or prediction.shape[1] < 1:
        raise ValueError(f"expected a prediction of shape (1, n_labels, x, y, z), received {prediction.shape}")
    if prediction.shape[1] == 1 and regions is None:
        data = prediction[0, 0]
        if label_map:
            label = labels[0] if labels else 1
            data = np.where(data > threshold, label, 0).astype(np.uint8)
        return nib.Nifti1Image(data, affine)
    if label_map:
        return nib.Nifti1Image(get_prediction_labels(prediction, threshold, labels, regions)[0], affine)
    return multi_class_prediction(prediction, affine)


def multi_class_prediction(prediction: np.ndarray, affine: np.ndarray) -> list[nib.Nifti1Image]:
    """One image per output channel of a prediction ``(1, n_labels, x, y, z)``."""
    return [nib.Nifti1Image(prediction[0, i], affine) for i in range(prediction.shape[1])]
