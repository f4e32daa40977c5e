"""Sliding-window inference: cut windows from a volume, predict them in batches, blend them back.

The loop knows nothing of Keras: it calls a ``predict_fn`` that maps a channels-last batch of
windows ``(n, px, py, pz, n_channels)`` to probabilities ``(n, px, py, pz, n_labels)``. The
volume is moved to channels-last and edge-padded once, so that every window is a view of it;
predictions are accumulated into one preallocated sum buffer and one weight buffer
(memory O(volume + batch of windows)).
"""

from __future__ import annotations

import logging
from typing import Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

from .utils.patches import compute_patch_indices

logger = logging.getLogger(__name__)

WEIGHTINGS = ("uniform", "gaussian")

# A channels-last batch of windows (n, px, py, pz, n_channels) -> probabilities (n, px, py, pz, n_labels).
PredictFn = Callable[[np.ndarray], np.ndarray]


def check_window_settings(weighting: str, batch_size: int) -> None:
    """Raise ``ValueError`` for an unknown ``weighting`` or a ``batch_size`` below 1."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {', '.join(WEIGHTINGS)}, received {weighting!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, received {batch_size}")


def require_channels_first(volume: np.ndarray) -> np.ndarray:
    """``volume`` as an array, refused unless it is ``(n_channels, x, y, z)``."""
    volume = np.asarray(volume)
    if volume.ndim != 4:
        raise ValueError(f"expected a channels-first volume (n_channels, x, y, z), received shape {volume.shape}")
    return volume


def gaussian_importance_map(patch_shape: Sequence[int], sigma_scale: float = 1.0 / 8) -> np.ndarray:
    """Window weights that fall off from the centre (nnU-Net's importance map).

    Args:
        patch_shape: ``(px, py, pz)``.
        sigma_scale: Standard deviation as a fraction of the window size.

    Returns:
        float32 ``(px, py, pz)``, maximum 1, strictly positive.
    """
    axes = []
    for size in patch_shape:
        coords = np.arange(size, dtype=np.float64) - (size - 1) / 2
        sigma = max(size * sigma_scale, 1e-6)
        axes.append(np.exp(-0.5 * (coords / sigma) ** 2))
    weights = axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]
    weights /= weights.max()
    # Zero weights would leave border voxels undefined where only one window covers them.
    return np.maximum(weights, 1e-3).astype(np.float32)


def window_grid(
    image_shape: Sequence[int], window: Sequence[int], overlap: int | Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The centred grid of windows over a volume, in the coordinates of the edge-padded volume.

    Returns:
        ``(corners, pad_low, pad_high)``: int ``(n_windows, 3)`` window corners in the padded
        volume, and the padding ``(3,)`` before and after each axis that keeps every window inside.
    """
    indices = compute_patch_indices(image_shape, window, overlap)
    pad_low = np.maximum(-indices.min(axis=0), 0)
    pad_high = np.maximum(indices.max(axis=0) + np.asarray(window) - np.asarray(image_shape), 0)
    return indices + pad_low, pad_low, pad_high


def sliding_window_inference(
    predict_fn: PredictFn,
    volume: np.ndarray,
    window: Sequence[int],
    overlap: int | Sequence[int] = 0,
    batch_size: int = 1,
    weighting: str = "uniform",
    show_progress: bool = False,
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
        show_progress: Progress bar over windows.

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
    progress = tqdm(total=len(corners), desc="windows", unit="window", disable=not show_progress, leave=False)
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
        progress.update(len(chunk))
    progress.close()
    crop = tuple(slice(int(lo), int(lo) + size) for lo, size in zip(pad_low, image_shape))
    total = total[crop]
    total /= weight_sum[crop][..., None]
    return np.ascontiguousarray(np.moveaxis(total, -1, 0))
