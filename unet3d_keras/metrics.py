"""Dice coefficients and Dice losses of the 3D U-Net, and the per-label Dice metric.

All functions take ``y_true`` and ``y_pred`` in the model's data format:
``(batch, x, y, z, labels)`` for ``channels_last`` (the default) or
``(batch, labels, x, y, z)`` for ``channels_first``. The spatial axes are
counted from the end, so an unbatched ``(x, y, z, labels)`` tensor works too.
Everything is computed in float32, also when the model runs under a
mixed-precision policy. The sparse-annotation losses live in
:mod:`unet3d_keras.losses` and are importable from here too.
"""

from __future__ import annotations

from typing import Callable, Sequence

import keras
from keras import ops

from .dice import annotation_mask, as_float32, per_label_dice, take_channel
from .layout import spatial_axes

# Importable from here as before they moved to their own module.
from .losses import (
    MaskedSegmentationLoss,
    balanced_class_weights,
    masked_dice_loss,
    weighted_cross_entropy_dice_loss,
    weighted_softmax_cross_entropy,
)

__all__ = [
    "LabelDiceCoefficient",
    "MaskedLabelDiceCoefficient",
    "MaskedSegmentationLoss",
    "annotation_mask",
    "balanced_class_weights",
    "dice_coef",
    "dice_coef_loss",
    "dice_coefficient",
    "dice_coefficient_loss",
    "get_label_dice_coefficient_function",
    "label_wise_dice_coefficient",
    "masked_dice_loss",
    "masked_label_dice_coefficient",
    "per_label_dice",
    "spatial_axes",
    "weighted_cross_entropy_dice_loss",
    "weighted_dice_coefficient",
    "weighted_dice_coefficient_loss",
    "weighted_softmax_cross_entropy",
]

_PACKAGE = "unet3d_keras"


@keras.saving.register_keras_serializable(package=_PACKAGE)
def dice_coefficient(y_true, y_pred, smooth: float = 1.0):
    """Dice coefficient over all voxels and labels of the batch (a scalar).

    Args:
        y_true: Binary or one-hot truth, any shape.
        y_pred: Prediction of the same shape, values in [0, 1].
        smooth: Added to numerator and denominator.

    Returns:
        Scalar ``(2 |A.B| + smooth) / (|A| + |B| + smooth)``.
    """
    y_true, y_pred = as_float32(y_true, y_pred)
    y_true_f = ops.reshape(y_true, (-1,))
    y_pred_f = ops.reshape(y_pred, (-1,))
    intersection = ops.sum(y_true_f * y_pred_f)
    return (2.0 * intersection + smooth) / (ops.sum(y_true_f) + ops.sum(y_pred_f) + smooth)


@keras.saving.register_keras_serializable(package=_PACKAGE)
def dice_coefficient_loss(y_true, y_pred):
    """Negative :func:`dice_coefficient` (lower is better, as Keras minimises)."""
    return -dice_coefficient(y_true, y_pred)


@keras.saving.register_keras_serializable(package=_PACKAGE)
def weighted_dice_coefficient(y_true, y_pred, axis: Sequence[int] | None = None, smooth: float = 1e-5):
    """Mean over batch items and labels of the per-label Dice coefficient.

    Each label weighs the same whatever its size, which is what makes small
    structures (the enhancing tumour) count in the loss.

    Args:
        y_true: One-hot truth ``(batch, x, y, z, labels)`` (channels_last).
        y_pred: Prediction of the same shape.
        axis: Spatial axes to sum over; ``None`` follows the image data format.
        smooth: Keeps an empty label that is predicted empty at Dice 1.

    Returns:
        Scalar mean Dice.
    """
    return ops.mean(per_label_dice(y_true, y_pred, axis=axis, smooth=smooth))


@keras.saving.register_keras_serializable(package=_PACKAGE)
def weighted_dice_coefficient_loss(y_true, y_pred):
    """Negative :func:`weighted_dice_coefficient`, the models' default loss.

    Returns one value per batch item, ``(batch,)``, whose mean is the scalar
    ``-weighted_dice_coefficient``; Keras then averages over the global batch,
    which keeps the loss right when the batch is split across devices.
    """
    return -ops.mean(per_label_dice(y_true, y_pred), axis=-1)


def label_wise_dice_coefficient(y_true, y_pred, label_index: int):
    """:func:`dice_coefficient` of one label channel.

    Args:
        y_true: One-hot truth in the model's data format.
        y_pred: Prediction of the same shape.
        label_index: Index of the label channel.

    Returns:
        Scalar Dice of that channel.
    """
    return dice_coefficient(take_channel(y_true, label_index), take_channel(y_pred, label_index))


def masked_label_dice_coefficient(y_true, y_pred, label_index: int):
    """Dice of label ``label_index`` (channel ``label_index + 1``) on the annotated voxels.

    Args:
        y_true: One-hot truth with background first; unlabeled voxels all zero.
        y_pred: Softmax output of the same shape.
        label_index: Index of the label (0 for the first label after background).

    Returns:
        Scalar Dice of that label where the truth is annotated.
    """
    mask = annotation_mask(y_true)
    channel = label_index + 1
    return dice_coefficient(take_channel(y_true, channel), take_channel(ops.cast(y_pred, "float32") * mask, channel))


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
        label_index: Index of the label.
        name: Metric name; ``label_{label_index}_dice_coef`` by default.
        dtype: Dtype of the metric's state.
        masked: For a sparse-annotation softmax output (background first, so
            label ``i`` is channel ``i + 1``): count annotated voxels only, see
            :func:`masked_label_dice_coefficient`. Otherwise label ``i`` is
            channel ``i`` (:func:`label_wise_dice_coefficient`).
    """

    def __init__(self, label_index: int, name: str | None = None, dtype=None, masked: bool = False):
        super().__init__(
            fn=masked_label_dice_coefficient if masked else label_wise_dice_coefficient,
            name=name or f"label_{label_index}_dice_coef",
            dtype=dtype,
            label_index=label_index,
        )
        self.label_index = int(label_index)
        self.masked = bool(masked)

    def get_config(self) -> dict:
        config = {"label_index": self.label_index, "name": self.name, "dtype": self.dtype}
        if self.masked:
            config["masked"] = True
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MaskedLabelDiceCoefficient(LabelDiceCoefficient):
    """:class:`LabelDiceCoefficient` with ``masked=True``.

    Registered under its own name so that model files saved with it load.

    Args:
        label_index: Index of the label (0 for the first label; its channel is ``label_index + 1``).
        name: Metric name; ``label_{label_index}_dice_coef`` by default.
    """

    def __init__(self, label_index: int, name: str | None = None, dtype=None, masked: bool = True):
        if not masked:
            raise ValueError("MaskedLabelDiceCoefficient is always masked; use LabelDiceCoefficient(masked=False)")
        super().__init__(label_index, name=name, dtype=dtype, masked=True)


dice_coef = dice_coefficient
dice_coef_loss = dice_coefficient_loss
