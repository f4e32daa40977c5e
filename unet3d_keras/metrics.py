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


# --------------------------------------------------------------------------------------------
# Sparse annotation (Cicek et al. 2016): softmax outputs, unlabeled voxels masked out.
#
# The targets of these losses have a background channel first, then one channel per label,
# and an unlabeled voxel is a voxel whose one-hot row is all zero. The mask is therefore the
# sum of ``y_true`` over the channels: no separate input is needed, and an unlabeled voxel
# contributes nothing to the loss and receives no gradient, whatever its prediction.


def _channel_axis(data_format: str | None = None) -> int:
    data_format = data_format or keras.config.image_data_format()
    return -1 if data_format == "channels_last" else -4


def annotation_mask(y_true, data_format: str | None = None):
    """1 where a voxel is annotated (its one-hot row sums to 1), 0 where it is not.

    Args:
        y_true: One-hot truth with a background channel, ``(batch, x, y, z, classes)``
            (channels_last).

    Returns:
        float32 mask with the channel axis kept, ``(batch, x, y, z, 1)``.
    """
    return ops.sum(ops.cast(y_true, "float32"), axis=_channel_axis(data_format), keepdims=True)


def _broadcast_weights(class_weights, n_classes: int, data_format: str | None = None):
    if class_weights is None:
        return None
    weights = ops.convert_to_tensor([float(w) for w in class_weights], dtype="float32")
    if len(class_weights) != n_classes:
        raise ValueError(
            f"class_weights has {len(class_weights)} values but the output has {n_classes} classes "
            "(background first, then one per label)"
        )
    if _channel_axis(data_format) == -4:
        weights = ops.reshape(weights, (n_classes, 1, 1, 1))
    return weights


@keras.saving.register_keras_serializable(package=_PACKAGE)
def weighted_softmax_cross_entropy(y_true, y_pred, class_weights: Sequence[float] | None = None,
                                   epsilon: float = 1e-7):
    """The paper's weighted softmax cross-entropy over the annotated voxels.

    Each annotated voxel of class c weighs ``class_weights[c]``; unlabeled voxels
    (all-zero rows of ``y_true``) weigh 0. The result is the weighted mean over
    the annotated voxels of each batch item (0 for an item without any).

    Args:
        y_true: One-hot truth with background first, ``(batch, x, y, z, classes)``.
        y_pred: Softmax output of the same shape.
        class_weights: One weight per class (background first); all 1 when None.
        epsilon: Lower clip of the probabilities before the logarithm.

    Returns:
        ``(batch,)`` losses.
    """
    y_true, y_pred = _as_float32(y_true, y_pred)
    axis = _channel_axis()
    weights = _broadcast_weights(class_weights, y_true.shape[axis])
    weighted_truth = y_true if weights is None else y_true * weights
    log_probability = ops.log(ops.clip(y_pred, epsilon, 1.0))
    voxel_loss = -ops.sum(weighted_truth * log_probability, axis=axis)
    voxel_weight = ops.sum(weighted_truth, axis=axis)
    spatial = tuple(range(1, len(voxel_loss.shape)))
    return ops.sum(voxel_loss, axis=spatial) / (ops.sum(voxel_weight, axis=spatial) + epsilon)


@keras.saving.register_keras_serializable(package=_PACKAGE)
def masked_dice_loss(y_true, y_pred, smooth: float = 1e-5):
    """1 minus the soft Dice of every class, computed on the annotated voxels only.

    Args:
        y_true: One-hot truth with background first; unlabeled voxels all zero.
        y_pred: Softmax output of the same shape.
        smooth: Keeps a class absent from truth and prediction at Dice 1.

    Returns:
        ``(batch,)``: 1 minus the mean Dice over the classes.
    """
    y_true, y_pred = _as_float32(y_true, y_pred)
    mask = annotation_mask(y_true)
    return 1.0 - ops.mean(per_label_dice(y_true, y_pred * mask, smooth=smooth), axis=-1)


@keras.saving.register_keras_serializable(package=_PACKAGE)
def weighted_cross_entropy_dice_loss(y_true, y_pred, class_weights: Sequence[float] | None = None):
    """:func:`weighted_softmax_cross_entropy` plus :func:`masked_dice_loss`, ``(batch,)``."""
    return weighted_softmax_cross_entropy(y_true, y_pred, class_weights) + masked_dice_loss(y_true, y_pred)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MaskedSegmentationLoss(keras.losses.Loss):
    """Serializable sparse-annotation loss: weighted cross-entropy, masked Dice, or their sum.

    Args:
        class_weights: One weight per class, background first (None: all 1).
        cross_entropy: Include :func:`weighted_softmax_cross_entropy`.
        dice: Include :func:`masked_dice_loss`.
    """

    def __init__(self, class_weights: Sequence[float] | None = None, cross_entropy: bool = True,
                 dice: bool = True, name: str = "masked_segmentation_loss", reduction="sum_over_batch_size",
                 dtype=None):
        if not (cross_entropy or dice):
            raise ValueError("MaskedSegmentationLoss needs cross_entropy, dice or both")
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]
        self.cross_entropy = bool(cross_entropy)
        self.dice = bool(dice)

    def call(self, y_true, y_pred):
        loss = 0.0
        if self.cross_entropy:
            loss = loss + weighted_softmax_cross_entropy(y_true, y_pred, self.class_weights)
        if self.dice:
            loss = loss + masked_dice_loss(y_true, y_pred)
        return loss

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(class_weights=self.class_weights, cross_entropy=self.cross_entropy, dice=self.dice)
        return config


def masked_label_dice_coefficient(y_true, y_pred, label_index: int):
    """Dice of label ``label_index`` (channel ``label_index + 1``) on the annotated voxels."""
    mask = annotation_mask(y_true)
    channel = label_index + 1
    return dice_coefficient(_take_label(y_true, channel), _take_label(ops.cast(y_pred, "float32") * mask, channel))


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MaskedLabelDiceCoefficient(keras.metrics.MeanMetricWrapper):
    """Running mean Dice of one label of a softmax output, counting annotated voxels only.

    Args:
        label_index: Index of the label (0 for the first label; its channel is ``label_index + 1``).
        name: Metric name; ``label_{label_index}_dice_coef`` by default.
    """

    def __init__(self, label_index: int, name: str | None = None, dtype=None):
        super().__init__(
            fn=masked_label_dice_coefficient,
            name=name or f"label_{label_index}_dice_coef",
            dtype=dtype,
            label_index=label_index,
        )
        self.label_index = int(label_index)

    def get_config(self) -> dict:
        return {"label_index": self.label_index, "name": self.name, "dtype": self.dtype}


def balanced_class_weights(class_counts: Sequence[int]) -> list[float]:
    """Inverse-frequency class weights, normalised so that a uniform split gives all 1.

    ``w_c = total / (n_classes * count_c)``; a class with no voxel gets 1.

    Args:
        class_counts: Annotated voxels per class, background first.

    Returns:
        One weight per class.
    """
    counts = [int(c) for c in class_counts]
    total = sum(counts)
    return [total / (len(counts) * c) if c > 0 else 1.0 for c in counts]
