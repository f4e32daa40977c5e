"""Sliding-window inference: cut windows from a volume, predict them in batches, blend them back.

The loop calls a ``predict_fn`` that maps a channels-last batch of windows
``(n, px, py, pz, n_channels)`` to probabilities ``(n, px, py, pz, n_labels)``, and runs on the
Keras backend's device (``keras.ops``): the volume is moved there once as it is, windows are
sliced from it (repeating edge voxels where they stick out), and their weighted predictions are
summed there.
Only finished probabilities come back to the host, one x-slab at a time, into the float32
output array. Windows run in grid order (x slowest): each is added into a row buffer
(one window high and deep), a finished row into a slab buffer (one window deep), and the part of
a slab that no later window reaches is normalised and copied out. Adding into the small buffers
keeps the copies the backends' functional updates make small (memory O(output + one slab)).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

import numpy as np
from keras import ops
from tqdm.auto import tqdm

from .utils.patches import WEIGHTINGS, compute_patch_indices

logger = logging.getLogger(__name__)

# A channels-last batch of windows (n, px, py, pz, n_channels) -> probabilities (n, px, py, pz, n_labels):
# backend tensors in and out (NumPy arrays out are accepted too).
PredictFn = Callable[[Any], Any]


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


def cut_window(source, corner: Sequence[int], window: Sequence[int], pad_low: Sequence[int]):
    """One window of a channels-first volume, as if the volume were edge-padded by ``pad_low``.

    Args:
        source: ``(n_channels, x, y, z)`` tensor (not padded: the padding is never built).
        corner: Window corner in padded coordinates.
        window: ``(px, py, pz)``.
        pad_low: Padding before each spatial axis.

    Returns:
        ``(n_channels, px, py, pz)``: a slice, with edge voxels repeated where it sticks out.
    """
    shape = tuple(int(s) for s in source.shape[1:])
    lows = [min(max(int(c) - int(p), 0), n - 1) for c, p, n in zip(corner, pad_low, shape)]
    highs = [max(min(int(c) - int(p) + w, n), low + 1) for c, p, w, n, low in zip(corner, pad_low, window, shape, lows)]
    piece = ops.slice(source, [0] + lows, [int(source.shape[0])] + [h - lo for lo, h in zip(lows, highs)])
    for axis, (c, p, w, low, high) in enumerate(zip(corner, pad_low, window, lows, highs)):
        if high - low != w:  # sticks out: repeat the edge voxels
            index = np.clip(np.arange(int(c) - int(p), int(c) - int(p) + w), low, high - 1) - low
            piece = ops.take(piece, index, axis=axis + 1)
    return piece


def axis_slice(tensor, axis: int, low: int, high: int):
    """``tensor[..., low:high, ...]`` along ``axis``."""
    starts = [0] * len(tensor.shape)
    sizes = list(tensor.shape)
    starts[axis], sizes[axis] = low, high - low
    return ops.slice(tensor, starts, sizes)


def overlap_add(parts: Sequence[tuple[int, Any]], axis: int, length: int):
    """Sum of tensors placed at offsets along one axis, built as a concatenation of segments.

    Each output segment between consecutive part borders is the sum of the parts covering it,
    so every value is copied about once (functional updates of a preallocated buffer would copy
    the whole buffer for every part).

    Args:
        parts: ``(offset, tensor)``, tensors of equal shape but for ``axis``, inside ``[0, length)``.
        axis: The axis they are placed along.
        length: Output size along ``axis``; uncovered voxels are 0.

    Returns:
        A tensor of the first part's shape with ``length`` along ``axis``.
    """
    spans = [(o, o + int(t.shape[axis]), t) for o, t in parts]
    borders = sorted({0, length} | {low for low, _, _ in spans} | {high for _, high, _ in spans})
    segments = []
    for low, high in zip(borders[:-1], borders[1:]):
        covering = [axis_slice(t, axis, low - o, high - o) for o, end, t in spans if o <= low and high <= end]
        if covering:
            total = covering[0]
            for piece in covering[1:]:
                total = total + piece
        else:
            shape = list(parts[0][1].shape)
            shape[axis] = high - low
            total = ops.zeros(shape, parts[0][1].dtype)
        segments.append(total)
    return segments[0] if len(segments) == 1 else ops.concatenate(segments, axis=axis)


def sliding_window_inference(
    predict_fn: PredictFn,
    volume: np.ndarray,
    window: Sequence[int],
    overlap: int | Sequence[int] = 0,
    batch_size: int = 1,
    weighting: str = "uniform",
    show_progress: bool = False,
) -> np.ndarray:
    """Predict a whole channels-first volume window by window on the backend's device.

    Args:
        predict_fn: Channels-last batch of windows -> probabilities (see :data:`PredictFn`).
        volume: ``(n_channels, x, y, z)``, a NumPy array or a backend tensor.
        window: ``(px, py, pz)``.
        overlap: Voxels shared by neighbouring windows (per axis or one int).
        batch_size: Windows per ``predict_fn`` call; the last batch may be shorter.
        weighting: ``uniform`` (plain average of overlapping windows) or ``gaussian``
            (:func:`gaussian_importance_map`).
        show_progress: Progress bar over windows.

    Returns:
        float32 NumPy ``(n_labels, x, y, z)``.
    """
    check_window_settings(weighting, batch_size)
    if not ops.is_tensor(volume):
        volume = require_channels_first(volume)
    elif len(volume.shape) != 4:
        raise ValueError("expected a channels-first volume (n_channels, x, y, z), received shape "
                         f"{tuple(volume.shape)}")
    window = tuple(int(s) for s in window)
    image_shape = tuple(int(s) for s in volume.shape[1:])
    corners, pad_low, pad_high = window_grid(image_shape, window, overlap)
    # The volume goes to the device once, as it is: windows that stick out repeat its edge voxels.
    source = ops.cast(ops.convert_to_tensor(volume), "float32")
    padded = tuple(int(s) for s in np.asarray(image_shape) + pad_low + pad_high)
    weights = ops.convert_to_tensor(
        gaussian_importance_map(window) if weighting == "gaussian" else np.ones(window, np.float32))[..., None]
    blender = _Blender(padded, window, image_shape, pad_low)
    progress = tqdm(total=len(corners), desc="windows", unit="window", disable=not show_progress, leave=False)
    for first in range(0, len(corners), batch_size):
        chunk = corners[first:first + batch_size]
        batch = ops.transpose(ops.stack([cut_window(source, corner, window, pad_low) for corner in chunk]),
                              (0, 2, 3, 4, 1))
        prediction = ops.cast(ops.convert_to_tensor(predict_fn(batch)), "float32")
        # The weight rides along as one more channel, so one sum holds both.
        ones = ops.broadcast_to(weights, tuple(prediction.shape[:-1]) + (1,))
        weighted = ops.concatenate([prediction * weights, ones], axis=-1)
        for index, corner in enumerate(chunk):
            blender.add(weighted[index], corner)
        progress.update(len(chunk))
    progress.close()
    return blender.finish()


class _Blender:
    """Sums weighted windows (last channel: their weight) on the device, row by row (along z) and slab
    by slab (along y), and copies each finished x-range out, normalised, into a channels-first NumPy array."""

    def __init__(self, padded: tuple[int, int, int], window: tuple[int, int, int],
                 image_shape: tuple[int, ...], pad_low: np.ndarray) -> None:
        self.padded, self.window, self.image_shape = padded, window, image_shape
        self.pad_low = [int(p) for p in pad_low]
        self.output: np.ndarray | None = None
        self.row: list[tuple[int, Any]] = []  # (z, window) of the current row
        self.rows: list[tuple[int, Any]] = []  # (y, row) of the current slab
        self.row_at: tuple[int, int] | None = None  # (x, y) corner of the current row
        self.carry = None  # the previous slab's part that the next slab overlaps
        self.carry_x: int | None = None  # its padded x corner
        self.done_x = 0  # padded x below which everything was copied out

    def add(self, values, corner: Sequence[int]) -> None:
        x, y, z = (int(c) for c in corner)
        if self.output is None:
            self.output = np.empty((values.shape[-1] - 1,) + tuple(self.image_shape), np.float32)
        if self.row_at != (x, y):
            self._flush_row()
            if self.row_at is not None and self.row_at[0] != x:
                self._flush_slab(next_x=x)
            self.row_at = (x, y)
        self.row.append((z, values))

    def _flush_row(self) -> None:
        if self.row:
            self.rows.append((self.row_at[1], overlap_add(self.row, axis=2, length=self.padded[2])))
            self.row = []

    def _flush_slab(self, next_x: int | None) -> None:
        """Join the slab's rows, add the previous slab's overlap, copy out what no later slab reaches."""
        x = self.row_at[0]
        if self.carry_x is not None and x < self.carry_x:
            raise ValueError("sliding_window_inference needs window corners in ascending x order")
        slab = overlap_add(self.rows, axis=1, length=self.padded[1])
        self.rows = []
        if self.carry is not None:  # it starts at x: the previous flush kept from next_x == x on
            slab = overlap_add([(0, slab), (self.carry_x - x, self.carry)], axis=0, length=int(slab.shape[0]))
        start = x
        end = start + int(slab.shape[0])
        keep_from = end if next_x is None else min(max(next_x, start), end)
        self._copy_out(slab, start, keep_from)
        self.carry = axis_slice(slab, 0, keep_from - start, end - start) if keep_from < end else None
        self.carry_x = keep_from

    def _copy_out(self, slab, slab_x: int, high: int) -> None:
        """Normalise the slab's padded x-range ``[slab_x, high)`` and write its cropped part into the output."""
        crop_low = max(slab_x, self.pad_low[0], self.done_x)
        crop_high = min(high, self.pad_low[0] + self.image_shape[0])
        self.done_x = max(self.done_x, high)
        if crop_high <= crop_low:
            return
        (_, py, pz), (ny, nz) = self.pad_low, self.image_shape[1:]
        part = ops.slice(slab, (crop_low - slab_x, py, pz, 0), (crop_high - crop_low, ny, nz, int(slab.shape[-1])))
        part = part[..., :-1] / part[..., -1:]
        target = slice(crop_low - self.pad_low[0], crop_high - self.pad_low[0])
        self.output[:, target] = np.moveaxis(ops.convert_to_numpy(part), -1, 0)

    def finish(self) -> np.ndarray:
        self._flush_row()
        self._flush_slab(next_x=None)
        return self.output
