"""The NumPy sliding-window loop the project used before the on-device one (the benchmark's baseline).

Windows go to the host as NumPy, and are accumulated into NumPy sum and weight buffers.
Grid, padding and weights come from :mod:`unet3d_keras.sliding_window`, so only the loop differs.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from unet3d_keras.sliding_window import (
    PredictFn, check_window_settings, gaussian_importance_map, require_channels_first, window_grid,
)


def numpy_sliding_window_inference(
    predict_fn: PredictFn,
    volume: np.ndarray,
    window: Sequence[int],
    overlap: int | Sequence[int] = 0,
    batch_size: int = 1,
    weighting: str = "uniform",
) -> np.ndarray:
    """Predict a whole channels-first volume window by window.

    Args:
        predict_fn: Channels-last batch of windows -> probabilities (see :data:`PredictFn`).
        volume: ``(n_channels, x, y, z)``.
        window: ``(px, py, pz)``.
        overlap: Voxels shared by neighbouring windows (per axis or one int).
        batch_size: Windows per ``predict_fn`` call; the last batch may be shorter.
        weighting: ``uniform`` (plain average of overlapping windows) or ``gaussian``
            (:func:`gaussian_importance_map`).

    Returns:
        float32 ``(n_labels, x, y, z)``.
    """
    check_window_settings(weighting, batch_size)
    volume = require_channels_first(volume)
    window = tuple(int(s) for s in window)
    image_shape = volume.shape[1:]
    corners, pad_low, pad_high = window_grid(image_shape, window, overlap)
    source = np.asarray(np.moveaxis(volume, 0, -1), dtype=np.float32)
    if pad_low.any() or pad_high.any():
        widths = [(int(lo), int(hi)) for lo, hi in zip(pad_low, pad_high)] + [(0, 0)]
        source = np.pad(source, widths, mode="edge")
    padded_shape = tuple(np.asarray(image_shape) + pad_low + pad_high)
    weights = gaussian_importance_map(window) if weighting == "gaussian" else None

    total = None
    weight_sum = np.zeros(padded_shape, dtype=np.float32)
    for start in range(0, len(corners), batch_size):
        chunk = corners[start:start + batch_size]
        slices = [tuple(slice(c, c + w) for c, w in zip(corner, window)) for corner in chunk]
        prediction = predict_fn(np.stack([source[s] for s in slices]))
        if total is None:
            total = np.zeros(padded_shape + (prediction.shape[-1],), dtype=np.float32)
        for window_prediction, s in zip(prediction, slices):
            if weights is None:
                total[s] += window_prediction
                weight_sum[s] += 1.0
            else:
                total[s] += window_prediction * weights[..., None]
                weight_sum[s] += weights
    crop = tuple(slice(int(lo), int(lo) + size) for lo, size in zip(pad_low, image_shape))
    total = total[crop]
    total /= weight_sum[crop][..., None]
    return np.ascontiguousarray(np.moveaxis(total, -1, 0))
