"""Test-time augmentation as wrappers of a predict function.

Each wrapper takes a predict function and returns one with the same signature that averages
the predictions of transformed inputs, each mapped back: :func:`mirrored` over the 8
mirrorings of a batch of windows, :func:`permutation_averaged` over the 48 rotations and
reflections of a cubic volume. Wrappers compose, e.g. permutations of mirrored windows.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Sequence

import numpy as np
from keras import ops
from tqdm.auto import tqdm

from .augmentation.permutations import generate_permutation_keys, permute_data, reverse_permute_data

# Spatial axes of a channels-last batch (n, x, y, z, channels).
BATCH_SPATIAL_AXES = (1, 2, 3)


def flip_axes(tensor, axes: Sequence[int]):
    """``tensor`` reversed along each of ``axes`` (keras.ops, on the tensor's device)."""
    for axis in axes:
        tensor = ops.flip(tensor, axis=axis)
    return tensor


def mirrored(predict_fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Average of ``predict_fn`` over the 8 mirrorings of a channels-last batch (8x the calls).

    The flips and the sum run with ``keras.ops`` on the backend's device.

    Args:
        predict_fn: ``(n, x, y, z, n_channels)`` -> float32 ``(n, x, y, z, n_labels)`` (backend tensors).

    Returns:
        A function of the same shapes, returning a float32 backend tensor.
    """

    def predict_mirrored(batch):
        batch = ops.convert_to_tensor(batch)
        prediction = ops.cast(predict_fn(batch), "float32")
        count = 1
        for n_axes in (1, 2, 3):
            for axes in itertools.combinations(BATCH_SPATIAL_AXES, n_axes):
                prediction = prediction + flip_axes(ops.cast(predict_fn(flip_axes(batch, axes)), "float32"), axes)
                count += 1
        return prediction / count

    return predict_mirrored


def permutation_averaged(
    predict_volume: Callable[[np.ndarray], np.ndarray], show_progress: bool = False
) -> Callable[[np.ndarray], np.ndarray]:
    """Average of ``predict_volume`` over the 48 cube permutations of a volume (48x the calls).

    Args:
        predict_volume: channels-first ``(n_channels, x, y, z)`` -> ``(n_labels, x, y, z)``;
            the volume must be a cube.
        show_progress: Progress bar over permutations.

    Returns:
        A function of the same shapes.
    """

    def predict_permuted(volume: np.ndarray) -> np.ndarray:
        keys = sorted(generate_permutation_keys())
        total = None
        for key in tqdm(keys, desc="permutations", disable=not show_progress, leave=False):
            restored = reverse_permute_data(predict_volume(permute_data(volume, key)), key)
            total = restored if total is None else total + restored
        return total / len(keys)

    return predict_permuted
