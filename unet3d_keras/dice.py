"""Soft Dice overlap of label channels, and the annotation mask of sparse truth, in ``keras.ops``.

The building blocks shared by the metrics (:mod:`unet3d_keras.metrics`) and the
losses (:mod:`unet3d_keras.losses`). Tensors are in the model's data format:
``(batch, x, y, z, labels)`` for ``channels_last`` or ``(batch, labels, x, y,
z)`` for ``channels_first``; axes are counted from the end, so one unbatched
item works too. Everything is computed in float32, also under a
mixed-precision policy.
"""

from __future__ import annotations

from typing import Sequence

from keras import ops

from .layout import channel_axis, spatial_axes

__all__ = ["annotation_mask", "as_float32", "per_label_dice", "take_channel"]


def as_float32(y_true, y_pred):
    """``y_true`` and ``y_pred`` cast to float32 (low-precision sums lose small labels)."""
    return ops.cast(y_true, "float32"), ops.cast(y_pred, "float32")


def per_label_dice(y_true, y_pred, axis: Sequence[int] | None = None, smooth: float = 1e-5):
    """Dice of every label of every batch item.

    Args:
        y_true: One-hot truth ``(batch, x, y, z, labels)`` (channels_last).
        y_pred: Prediction of the same shape.
        axis: Spatial axes to sum over; None follows the image data format.
        smooth: Keeps an empty label that is predicted empty at Dice 1.

    Returns:
        ``(batch, labels)`` (or ``(labels,)`` for unbatched inputs).
    """
    y_true, y_pred = as_float32(y_true, y_pred)
    axis = tuple(spatial_axes() if axis is None else axis)
    intersection = ops.sum(y_true * y_pred, axis=axis)
    denominator = ops.sum(y_true, axis=axis) + ops.sum(y_pred, axis=axis)
    return 2.0 * (intersection + smooth / 2) / (denominator + smooth)


def take_channel(tensor, index: int, data_format: str | None = None):
    """Channel ``index`` of a tensor, the channel axis dropped: ``(batch, x, y, z)``."""
    return ops.take(tensor, index, axis=channel_axis(data_format))


def annotation_mask(y_true, data_format: str | None = None):
    """1 where a voxel is annotated (its one-hot row sums to 1), 0 where it is not.

    Sparse truth has a background channel first, then one channel per label;
    an unlabeled voxel is a voxel whose one-hot row is all zero.

    Args:
        y_true: One-hot truth with a background channel, ``(batch, x, y, z, classes)``
            (channels_last).
        data_format: None reads ``keras.config.image_data_format()``.

    Returns:
        float32 mask with the channel axis kept, ``(batch, x, y, z, 1)``.
    """
    return ops.sum(ops.cast(y_true, "float32"), axis=channel_axis(data_format), keepdims=True)
