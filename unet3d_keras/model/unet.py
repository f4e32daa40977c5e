"""The 3D U-Net of Çiçek et al. 2016, as defined in 3DUnetCNN's ``unet.py``.

``build_unet_3d`` is the pure builder (an uncompiled functional model);
``unet_model_3d`` compiles it with Adam and the weighted Dice loss. Shapes
follow ``data_format`` (``keras.config.image_data_format()`` when None):
``(x, y, z, channels)`` by default.
"""

from __future__ import annotations

from typing import Callable, Sequence

import keras
import numpy as np

from ..checks import as_int_triple
from ..layout import channel_axis, resolve_data_format, split_input_shape
from ..metrics import LabelDiceCoefficient, dice_coefficient, weighted_dice_coefficient_loss
from .up_convolution import MatmulConv3DTranspose

Shape3 = Sequence[int]
#: The name of the U-Net's last convolution, whose outputs the softmax or sigmoid turns into probabilities.
HEAD_LAYER = "head"


def validate_input_shape(
    input_shape: Sequence[int | None], depth: int, pool_size: Shape3 | int, data_format: str | None = None
) -> None:
    """Check that a U-Net of this depth can pool and un-pool ``input_shape``.

    Args:
        input_shape: Model input shape in the model's data format.
        depth: Number of resolution levels (``depth - 1`` poolings).
        pool_size: Pooling factor per spatial axis.
        data_format: None reads ``keras.config.image_data_format()``.

    Raises:
        ValueError: Naming the failing size and the nearest sizes that work.
    """
    spatial, channels = split_input_shape(input_shape, data_format)
    if channels is None or int(channels) <= 0:
        raise ValueError(
            f"input_shape {tuple(input_shape)}: the channel count must be a positive integer, "
            f"received {channels!r} (channels are last by default: (x, y, z, channels))"
        )
    if depth < 1:
        raise ValueError(f"depth must be at least 1, received {depth}")
    pools = as_int_triple(pool_size, "pool_size").tolist()
    for axis_name, size, pool in zip("xyz", spatial, pools):
        if size is None:
            continue
        factor = pool ** (depth - 1)
        if size <= 0 or size % factor:
            lower = (size // factor) * factor
            options = [s for s in (lower, lower + factor) if s > 0]
            raise ValueError(
                f"input_shape {tuple(input_shape)}: spatial size {size} (axis {axis_name}) is not "
                f"divisible by {factor} = pool_size {pool} ** (depth {depth} - 1); "
                f"use a multiple of {factor} such as {' or '.join(map(str, options))}, or a smaller depth"
            )


def _activation_layer(activation, name: str | None):
    """Build the activation layer; ``activation`` may be None (ReLU), a string, a
    Layer class (such as ``keras.layers.LeakyReLU``) or a zero-argument factory."""
    if activation is None:
        return keras.layers.Activation("relu", name=name)
    if isinstance(activation, str):
        return keras.layers.Activation(activation, name=name)
    if isinstance(activation, type) and issubclass(activation, keras.layers.Layer):
        return activation(name=name)
    return activation()


def create_convolution_block(
    input_layer,
    n_filters: int,
    batch_normalization: bool = False,
    kernel: Shape3 = (3, 3, 3),
    activation=None,
    padding: str = "same",
    strides: Shape3 = (1, 1, 1),
    instance_normalization: bool = False,
    name: str | None = None,
    data_format: str | None = None,
):
    """Convolution, optional normalisation, activation.

    Args:
        input_layer: 5D Keras tensor in the model's data format.
        n_filters: Output channels.
        batch_normalization: BatchNormalization over the channel axis.
        kernel: Convolution kernel size.
        activation: None for ReLU, an activation name, or a layer class such
            as ``keras.layers.LeakyReLU``.
        padding: Convolution padding.
        strides: Convolution strides.
        instance_normalization: Instance normalisation (Keras
            ``GroupNormalization`` with one group per channel); ignored when
            ``batch_normalization`` is set.
        name: Base name; layers get ``name``, ``name_bn``/``name_in`` and ``name_act``.
        data_format: ``"channels_last"`` or ``"channels_first"``; None reads
            ``keras.config.image_data_format()``.

    Returns:
        The block's output tensor.
    """
    data_format = resolve_data_format(data_format)
    axis = channel_axis(data_format)
    layer = keras.layers.Conv3D(
        n_filters, kernel, padding=padding, strides=strides, data_format=data_format, name=name
    )(input_layer)
    if batch_normalization:
        layer = keras.layers.BatchNormalization(axis=axis, name=name and f"{name}_bn")(layer)
    elif instance_normalization:
        layer = keras.layers.GroupNormalization(groups=-1, axis=axis, name=name and f"{name}_in")(layer)
    return _activation_layer(activation, name and f"{name}_act")(layer)


def compute_level_output_shape(
    n_filters: int, depth: int, pool_size: Shape3, image_shape: Shape3, data_format: str | None = None
) -> tuple:
    """Shape of the output of a level ``depth`` poolings down.

    Args:
        n_filters: Channels of that level.
        depth: Number of poolings applied so far.
        pool_size: Pooling factor per axis.
        image_shape: Spatial input size ``(x, y, z)``.
        data_format: None reads ``keras.config.image_data_format()``.

    Returns:
        ``(None, x', y', z', n_filters)`` for channels_last or
        ``(None, n_filters, x', y', z')`` for channels_first.
    """
    spatial = np.asarray(np.divide(image_shape, np.power(pool_size, depth)), dtype=np.int32).tolist()
    if resolve_data_format(data_format) == "channels_last":
        return tuple([None] + spatial + [n_filters])
    return tuple([None, n_filters] + spatial)


def get_up_convolution(
    n_filters: int,
    pool_size: Shape3,
    kernel_size: Shape3 = (2, 2, 2),
    strides: Shape3 = (2, 2, 2),
    deconvolution: bool = False,
    name: str | None = None,
    data_format: str | None = None,
) -> keras.layers.Layer:
    """Transpose convolution (``deconvolution=True``) or up-sampling layer.

    The transpose convolution is a :class:`~unet3d_keras.model.up_convolution.MatmulConv3DTranspose`
    (a ``Conv3DTranspose`` computed as a matrix product where ``kernel_size == strides``).
    ``data_format``: None reads ``keras.config.image_data_format()``.
    """
    data_format = resolve_data_format(data_format)
    if deconvolution:
        return MatmulConv3DTranspose(
            filters=n_filters, kernel_size=kernel_size, strides=strides, data_format=data_format, name=name
        )
    return keras.layers.UpSampling3D(size=pool_size, data_format=data_format, name=name)


def build_unet_3d(
    input_shape: Sequence[int | None],
    pool_size: Shape3 = (2, 2, 2),
    n_labels: int = 1,
    deconvolution: bool = False,
    depth: int = 4,
    n_base_filters: int = 32,
    batch_normalization: bool = False,
    activation_name: str = "sigmoid",
    instance_normalization: bool = False,
    name: str = "unet3d",
    data_format: str | None = None,
) -> keras.Model:
    """Build the uncompiled 3D U-Net.

    Level ``d`` of the analysis path has two 3x3x3 convolutions with
    ``n_base_filters * 2**d`` and ``n_base_filters * 2**d * 2`` filters; the
    synthesis path up-convolves, concatenates the skip and applies two
    convolutions with the skip's channel count; a 1x1x1 convolution (``head``)
    maps to ``n_labels`` and the activation runs in float32.

    Args:
        input_shape: ``(x, y, z, channels)`` (channels_last); spatial sizes
            divisible by ``pool_size ** (depth - 1)``, or None.
        pool_size: Max-pooling factor.
        n_labels: Output channels.
        deconvolution: Transpose convolutions instead of up-sampling.
        depth: Number of resolution levels.
        n_base_filters: Filters of the first convolution.
        batch_normalization: BatchNormalization after every 3x3x3 convolution.
        activation_name: Final activation ("sigmoid" or "softmax").
        instance_normalization: Instance normalisation after every 3x3x3
            convolution (better than batch statistics when predicting whole
            volumes from a model trained on patches).
        name: Model name.
        data_format: ``"channels_last"`` or ``"channels_first"`` (then
            ``input_shape`` is ``(channels, x, y, z)``); None reads
            ``keras.config.image_data_format()``.

    Returns:
        A ``keras.Model`` mapping ``(batch, x, y, z, channels)`` to
        ``(batch, x, y, z, n_labels)`` (channels_last).
    """
    data_format = resolve_data_format(data_format)
    validate_input_shape(input_shape, depth, pool_size, data_format)
    if n_labels < 1:
        raise ValueError(f"n_labels must be at least 1, received {n_labels}")
    axis = channel_axis(data_format)
    norm = dict(
        batch_normalization=batch_normalization, instance_normalization=instance_normalization,
        data_format=data_format,
    )

    inputs = keras.Input(tuple(input_shape), name="input")
    current = inputs
    skips = []
    for level in range(depth):
        n_filters = n_base_filters * 2**level
        conv1 = create_convolution_block(current, n_filters, name=f"enc{level}_conv1", **norm)
        conv2 = create_convolution_block(conv1, n_filters * 2, name=f"enc{level}_conv2", **norm)
        skips.append(conv2)
        if level < depth - 1:
            current = keras.layers.MaxPooling3D(
                pool_size=pool_size, data_format=data_format, name=f"enc{level}_pool"
            )(conv2)
        else:
            current = conv2

    for level in range(depth - 2, -1, -1):
        skip = skips[level]
        up = get_up_convolution(
            n_filters=current.shape[axis],
            pool_size=pool_size,
            deconvolution=deconvolution,
            name=f"dec{level}_upconv",
            data_format=data_format,
        )(current)
        current = keras.layers.Concatenate(axis=axis, name=f"dec{level}_concat")([up, skip])
        n_filters = skip.shape[axis]
        current = create_convolution_block(current, n_filters, name=f"dec{level}_conv1", **norm)
        current = create_convolution_block(current, n_filters, name=f"dec{level}_conv2", **norm)

    head = keras.layers.Conv3D(n_labels, (1, 1, 1), data_format=data_format, name=HEAD_LAYER)(current)
    # float32 output so that losses stay accurate under mixed precision.
    outputs = keras.layers.Activation(activation_name, dtype="float32", name="head_activation")(head)
    return keras.Model(inputs=inputs, outputs=outputs, name=name)


def label_wise_metrics(n_labels: int) -> list:
    """One serializable ``label_{i}_dice_coef`` metric per label."""
    return [LabelDiceCoefficient(index) for index in range(n_labels)]


def unet_model_3d(
    input_shape: Sequence[int | None],
    pool_size: Shape3 = (2, 2, 2),
    n_labels: int = 1,
    initial_learning_rate: float = 0.00001,
    deconvolution: bool = False,
    depth: int = 4,
    n_base_filters: int = 32,
    include_label_wise_dice_coefficients: bool = False,
    metrics: Callable | list | None = dice_coefficient,
    batch_normalization: bool = False,
    activation_name: str = "sigmoid",
    instance_normalization: bool = False,
    loss: Callable | str = weighted_dice_coefficient_loss,
    data_format: str | None = None,
) -> keras.Model:
    """Build and compile the 3D U-Net.

    Compiled with Adam and ``weighted_dice_coefficient_loss`` (or ``loss``).
    See :func:`build_unet_3d` for the architecture and arguments; the
    uncompiled model comes from that function.

    Args:
        include_label_wise_dice_coefficients: Add a ``label_{i}_dice_coef``
            metric per label when ``n_labels > 1``.
        metrics: Metric or list of metrics (``dice_coefficient`` by default).
        initial_learning_rate: Adam learning rate.
        loss: Loss; the weighted Dice loss by default.
        data_format: None reads ``keras.config.image_data_format()``.

    Returns:
        The compiled model.
    """
    model = build_unet_3d(
        input_shape,
        pool_size=pool_size,
        n_labels=n_labels,
        deconvolution=deconvolution,
        depth=depth,
        n_base_filters=n_base_filters,
        batch_normalization=batch_normalization,
        activation_name=activation_name,
        instance_normalization=instance_normalization,
        data_format=data_format,
    )
    metrics = [] if metrics is None else (list(metrics) if isinstance(metrics, (list, tuple)) else [metrics])
    if include_label_wise_dice_coefficients and n_labels > 1:
        metrics = metrics + label_wise_metrics(n_labels)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=initial_learning_rate),
        loss=loss,
        metrics=metrics,
    )
    return model
