"""The compiled model a config asks for, and the check that a loaded model fits a config."""

from __future__ import annotations

import os

import keras

from .config import Config, ConfigError
from .losses import MaskedSegmentationLoss
from .metrics import MaskedLabelDiceCoefficient
from .model import isensee2017_model, unet_model_3d
from .tasks import TrainingTask, resolve_task


def loss_and_metrics(config: Config, task: TrainingTask) -> tuple[keras.losses.Loss, list[keras.metrics.Metric]]:
    """The masked loss of a softmax ``task`` and, when configured, its Dice metric per label."""
    loss = MaskedSegmentationLoss(task.class_weights, cross_entropy=task.loss != "dice",
                                  dice=task.loss != "cross_entropy")
    metrics = []
    if config.model.include_label_wise_dice_coefficients:
        metrics = [MaskedLabelDiceCoefficient(index) for index in range(config.n_labels)]
    return loss, metrics


def build_model(config: Config, task: TrainingTask | None = None) -> keras.Model:
    """The compiled model chosen in ``config.model``, for ``task`` (resolved without data when None).

    The input is ``(x, y, z, n_channels)`` (channels first under that Keras data format); the
    output has one channel per label, plus a background channel first for a softmax task.
    """
    task = task or resolve_task(config)
    n_outputs = config.n_labels + 1 if task.softmax else config.n_labels
    extra = {}
    if task.softmax:
        loss, metrics = loss_and_metrics(config, task)
        extra = dict(loss=loss, metrics=metrics)
    model = config.model
    input_shape = tuple(config.spatial_input_shape) + (config.n_channels,)
    if keras.config.image_data_format() == "channels_first":
        input_shape = (config.n_channels,) + tuple(config.spatial_input_shape)
    if model.name == "isensee2017":
        return isensee2017_model(
            input_shape=input_shape, n_base_filters=model.n_base_filters, depth=model.depth,
            dropout_rate=model.dropout_rate, n_segmentation_levels=model.n_segmentation_levels,
            n_labels=n_outputs, initial_learning_rate=config.training.initial_learning_rate,
            activation_name=task.activation, **({"loss_function": extra["loss"]} if extra else {}),
        )
    return unet_model_3d(
        input_shape=input_shape, pool_size=model.pool_size, n_labels=n_outputs,
        initial_learning_rate=config.training.initial_learning_rate, deconvolution=model.deconvolution,
        depth=model.depth, n_base_filters=model.n_base_filters,
        include_label_wise_dice_coefficients=model.include_label_wise_dice_coefficients and not task.softmax,
        batch_normalization=model.batch_normalization, activation_name=task.activation,
        instance_normalization=model.instance_normalization, **extra,
    )


def check_model_matches_config(model: keras.Model, config: Config, model_file: str | os.PathLike) -> None:
    """Raise if a loaded model's input or output does not fit the config."""
    expected_in = (*config.spatial_input_shape, config.n_channels)
    # A softmax model has a background output first.
    expected_out = {"sigmoid": [config.n_labels], "softmax": [config.n_labels + 1]}.get(
        config.model.activation, [config.n_labels, config.n_labels + 1])
    if config.model.output == "regions":  # one sigmoid output per region
        expected_out = [config.n_labels]
    got_in = tuple(model.input_shape[1:])
    got_out = model.output_shape[-1]
    if keras.config.image_data_format() == "channels_first":
        got_in = (*got_in[1:], got_in[0])
        got_out = model.output_shape[1]
    spatial_ok = all(g is None or g == e for g, e in zip(got_in[:3], expected_in[:3]))
    if not spatial_ok or got_in[3] != expected_in[3] or got_out not in expected_out:
        raise ConfigError(
            f"{model_file}: the model takes input {got_in} (x, y, z, channels) and gives {got_out} outputs, "
            f"but the config needs input {expected_in} and {' or '.join(map(str, expected_out))} outputs"
        )
