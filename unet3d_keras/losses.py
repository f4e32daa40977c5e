"""Losses for sparse annotation (Çiçek et al. 2016): softmax outputs, unlabeled voxels masked out.

The targets have a background channel first, then one channel per label, and
an unlabeled voxel is a voxel whose one-hot row is all zero. The mask is
therefore the sum of ``y_true`` over the channels: no separate input is
needed, and an unlabeled voxel contributes nothing to the loss and receives no
gradient, whatever its prediction. Tensors are in the model's data format
(``(batch, x, y, z, classes)`` for channels_last); losses return one value
per batch item, ``(batch,)``, computed in float32.

The models' Dice losses (``weighted_dice_coefficient_loss``,
``dice_coefficient_loss``) live in :mod:`unet3d_keras.metrics`.
"""

from __future__ import annotations

from typing import Sequence

import keras
from keras import ops

from .dice import annotation_mask, as_float32, per_label_dice
from .layout import channel_axis

__all__ = [
    "MaskedSegmentationLoss",
    "balanced_class_weights",
    "masked_dice_loss",
    "weighted_cross_entropy_dice_loss",
    "weighted_softmax_cross_entropy",
]

_PACKAGE = "unet3d_keras"


def _broadcast_weights(class_weights, n_classes: int, data_format: str | None = None):
    if class_weights is None:
        return None
    weights = ops.convert_to_tensor([float(w) for w in class_weights], dtype="float32")
    if len(class_weights) != n_classes:
        raise ValueError(
            f"class_weights has {len(class_weights)} values but the output has {n_classes} classes "
            "(background first, then one per label)"
        )
    if channel_axis(data_format) == -4:
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
    y_true, y_pred = as_float32(y_true, y_pred)
    axis = channel_axis()
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
    y_true, y_pred = as_float32(y_true, y_pred)
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
