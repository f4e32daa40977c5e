"""Dice coefficients and losses of the reference, written with ``keras.ops``.

All functions take ``y_true`` and ``y_pred`` in the model's data format:
``(batch, x, y, z, labels)`` for ``channels_last`` (the default) or
``(batch, labels, x, y, z)`` for ``channels_first``. The spatial axes are
counted from the end, so an unbatched ``(x, y, z, labels)`` tensor works too.
Everything is computed in float32, also when the model runs under a
mixed-precision policy.
"""

from __future__ import annotations

from typing import Callable, Sequence

import keras
from keras import ops

_PACKAGE = "unet3d_keras"


def spatial_axes(data_format: str | None = None) -> tuple[int, int, int]:
    """Negative indices of the three spatial axes for a data format.

    Args:
        data_format: ``"channels_last"`` or ``"channels_first"``; ``None``
            reads ``keras.config.image_data_format()``.

    Returns:
        ``(-4, -3, -2)`` for channels_last, ``(-3, -2, -1)`` for channels_first.
    """
    data_format = data_format or keras.config.image_data_format()
    if data_format == "channels_last":
        return (-4, -3, -2)
    if data_format == "channels_first":
        return (-3, -2, -1)
    raise ValueError(
        f"data_format must be 'channels_last' or 'channels_first', received {data_format!r}"
    )


def _as_float32(y_true, y_pred):
    return ops.cast(y_true, "float32"), ops.cast(y_pred, "float32")


@keras.saving.register_keras_serializable(package=_PACKAGE)
def dice_coefficient(y_true, y_pred, smooth: float = 1.0):
    """Dice coefficient over all voxels and labels of the batch (a scalar).

    Args:
        y_true: Binary or one-hot truth, any shape.
        y_pred: Prediction of the same shape, values in [0, 1].
        smooth: Added to numerator and denominator; 1 as in the reference.

    Returns:
        Scalar ``(2 |A.B| + smooth) / (|A| + |B| + smooth)``.
    """
    y_true, y_pred = _as_float32(y_true, y_pred)
    y_true_f = ops.reshape(y_true, (-1,))
    y_pred_f = ops.reshape(y_pred, (-1,))
    intersection = ops.sum(y_true_f * y_pred_f)
    return (2.0 * intersection + smooth) / (ops.sum(y_true_f) + ops.sum(y_pred_f) + smooth)


@keras.saving.register_keras_serializable(package=_PACKAGE)
def dice_coefficient_loss(y_true, y_pred):
    """Negative :func:`dice_coefficient` (the reference's sign convention)."""
    return -dice_coefficient(y_true, y_pred)


@keras.saving.register_keras_serializable(package=_PACKAGE)
def weighted_dice_coefficient(y_true, y_pred, axis: Sequence[int] | None = None, smooth: float = 1e-5):
    """Mean over batch items and labels of the per-label Dice coefficient.

    Each label weighs the same whatever its size, which is what makes small
    structures (the enhancing tumour) count in the loss.

    Args:
        y_true: One-hot truth ``(batch, x, y, z, labels)`` (channels_last).
        y_pred: Prediction of the same shape.
        axis: Spatial axes to sum over; ``None`` follows the image data format
            (the reference's default ``(-3, -2, -1)`` is channels_first).
        smooth: Keeps an empty label that is predicted empty at Dice 1.

    Returns:
        Scalar mean Dice.
    """
    return ops.mean(per_label_dice(y_true, y_pred, axis=axis, smooth=smooth))


def per_label_dice(y_true, y_pred, axis: Sequence[int] | None = None, smooth: float = 1e-5):
    """Dice of every label of every batch item.

    Returns:
        ``(batch, labels)`` (or ``(labels,)`` for unbatched inputs).
    """
    y_true, y_pred = _as_float32(y_true, y_pred)
    axis = tuple(spatial_axes() if axis is None else axis)
    intersection = ops.sum(y_true * y_pred, axis=axis)
    denominator = ops.sum(y_true, axis=axis) + ops.sum(y_pred, axis=axis)
    return 2.0 * (intersection + smooth / 2) / (denominator + smooth)


@keras.saving.register_keras_serializable(package=_PACKAGE)
def weighted_dice_coefficient_loss(y_true, y_pred):
    """Negative :func:`weighted_dice_coefficient`, the models' default loss.

    Returns one value per batch item, ``(batch,)``, whose mean is the
    reference's scalar loss; Keras then averages over the global batch, which
    keeps the loss right when the batch is split across devices.
    """
    return -ops.mean(per_label_dice(y_true, y_pred), axis=-1)


def _take_label(tensor, label_index: int, data_format: str | None = None):
    data_format = data_format or keras.config.image_data_format()
    axis = -1 if data_format == "channels_last" else -4
    return ops.take(tensor, label_index, axis=axis)


def label_wise_dice_coefficient(y_true, y_pred, label_index: int):
    """:func:`dice_coefficient` of one label channel.

    Args:
        y_true: One-hot truth in the model's data format.
        y_pred: Prediction of the same shape.
        label_index: Index of the label channel.

    Returns:
        Scalar Dice of that channel.
    """
    return dice_coefficient(_take_label(y_true, label_index), _take_label(y_pred, label_index))


def get_label_dice_coefficient_function(label_index: int) -> Callable:
    """A function computing the Dice of one label, named ``label_{i}_dice_coef``.

    For use as a compile metric that survives saving, prefer
    :class:`LabelDiceCoefficient`, which the builders use.
    """

    def label_dice(y_true, y_pred):
        return label_wise_dice_coefficient(y_true, y_pred, label_index)

    label_dice.__name__ = f"label_{label_index}_dice_coef"
    label_dice.__qualname__ = label_dice.__name__
    return label_dice


@keras.saving.register_keras_serializable(package=_PACKAGE)
class LabelDiceCoefficient(keras.metrics.MeanMetricWrapper):
    """Running mean of the Dice of one label channel, serializable.

    Args:
        label_index: Index of the label channel in the model output.
        name: Metric name; ``label_{label_index}_dice_coef`` by default.
    """

    def __init__(self, label_index: int, name: str | None = None, dtype=None):
        super().__init__(
            fn=label_wise_dice_coefficient,
            name=name or f"label_{label_index}_dice_coef",
            dtype=dtype,
            label_index=label_index,
        )
        self.label_index = int(label_index)

    def get_config(self) -> dict:
        return {"label_index": self.label_index, "name": self.name, "dtype": self.dtype}


dice_coef = dice_coefficient
dice_coef_loss = dice_coefficient_loss
