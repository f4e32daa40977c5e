"""The Isensee et al. 2017 BraTS network, as defined in 3DUnetCNN's ``isensee2017.py``.

Residual context modules with LeakyReLU and instance normalisation (Keras's
``GroupNormalization`` with one group per channel), strided convolutions for
down-sampling, localisation modules on the way up and deep supervision by
summing up-sampled segmentation layers. Shapes follow ``data_format``
(``keras.config.image_data_format()`` when None): ``(x, y, z, channels)`` by default.
"""

from __future__ import annotations

from typing import Callable, Sequence

import keras

from ..layout import channel_axis, resolve_data_format
from ..metrics import weighted_dice_coefficient_loss
from . import unet


def create_convolution_block(
    input_layer, n_filters: int, kernel=(3, 3, 3), strides=(1, 1, 1), name=None, data_format: str | None = None
):
    """Convolution, instance normalisation and LeakyReLU.

    ``data_format``: None reads ``keras.config.image_data_format()``.
    """
    return unet.create_convolution_block(
        input_layer,
        n_filters,
        kernel=kernel,
        strides=strides,
        activation=keras.layers.LeakyReLU,
        instance_normalization=True,
        name=name,
        data_format=data_format,
    )


def create_context_module(
    input_layer, n_level_filters: int, dropout_rate: float = 0.3, data_format: str | None = None, name: str | None = None
):
    """Two convolution blocks with spatial dropout between them.

    Args:
        input_layer: 5D tensor in the model's data format.
        n_level_filters: Channels of the level.
        dropout_rate: SpatialDropout3D rate.
        data_format: Defaults to ``keras.config.image_data_format()``.
        name: Base layer name.

    Returns:
        The module's output tensor (same shape as its input).
    """
    data_format = resolve_data_format(data_format)
    convolution1 = create_convolution_block(
        input_layer, n_level_filters, name=name and f"{name}_conv1", data_format=data_format
    )
    dropout = keras.layers.SpatialDropout3D(
        rate=dropout_rate, data_format=data_format, name=name and f"{name}_dropout"
    )(convolution1)
    return create_convolution_block(dropout, n_level_filters, name=name and f"{name}_conv2", data_format=data_format)


def create_up_sampling_module(
    input_layer, n_filters: int, size=(2, 2, 2), name: str | None = None, data_format: str | None = None
):
    """Up-sampling followed by a convolution block.

    ``data_format``: None reads ``keras.config.image_data_format()``.
    """
    data_format = resolve_data_format(data_format)
    up_sample = keras.layers.UpSampling3D(
        size=size, data_format=data_format, name=name and f"{name}_upsample"
    )(input_layer)
    return create_convolution_block(up_sample, n_filters, name=name and f"{name}_conv", data_format=data_format)


def create_localization_module(input_layer, n_filters: int, name: str | None = None, data_format: str | None = None):
    """A 3x3x3 then a 1x1x1 convolution block.

    ``data_format``: None reads ``keras.config.image_data_format()``.
    """
    convolution1 = create_convolution_block(
        input_layer, n_filters, name=name and f"{name}_conv1", data_format=data_format
    )
    return create_convolution_block(
        convolution1, n_filters, kernel=(1, 1, 1), name=name and f"{name}_conv2", data_format=data_format
    )


def build_isensee2017(
    input_shape: Sequence[int | None] = (128, 128, 128, 4),
    n_base_filters: int = 16,
    depth: int = 5,
    dropout_rate: float = 0.3,
    n_segmentation_levels: int = 3,
    n_labels: int = 4,
    activation_name: str = "sigmoid",
    name: str = "isensee2017",
    data_format: str | None = None,
) -> keras.Model:
    """Build the uncompiled Isensee 2017 model.

    Args:
        input_shape: ``(x, y, z, channels)`` (channels_last), spatial sizes
            divisible by ``2 ** (depth - 1)``.
        n_base_filters: Filters of the first level, doubled per level.
        depth: Number of levels.
        dropout_rate: Spatial dropout inside the context modules.
        n_segmentation_levels: Number of deep-supervision outputs summed.
        n_labels: Output channels.
        activation_name: Final activation, computed in float32.
        name: Model name.
        data_format: ``"channels_last"`` or ``"channels_first"`` (then
            ``input_shape`` is ``(channels, x, y, z)``); None reads
            ``keras.config.image_data_format()``.

    Returns:
        A model mapping ``(batch, x, y, z, channels)`` to ``(batch, x, y, z, n_labels)`` (channels_last).
    """
    data_format = resolve_data_format(data_format)
    unet.validate_input_shape(input_shape, depth, 2, data_format)
    if not 1 <= n_segmentation_levels <= depth - 1:
        raise ValueError(
            f"n_segmentation_levels must be between 1 and depth - 1 = {depth - 1}, "
            f"received {n_segmentation_levels}"
        )
    axis = channel_axis(data_format)
    inputs = keras.Input(tuple(input_shape), name="input")

    current = inputs
    level_outputs = []
    level_filters = []
    for level in range(depth):
        n_level_filters = (2**level) * n_base_filters
        level_filters.append(n_level_filters)
        strides = (1, 1, 1) if level == 0 else (2, 2, 2)
        in_conv = create_convolution_block(
            current, n_level_filters, strides=strides, name=f"ctx{level}_in", data_format=data_format
        )
        context = create_context_module(
            in_conv, n_level_filters, dropout_rate=dropout_rate, name=f"ctx{level}", data_format=data_format
        )
        current = keras.layers.Add(name=f"ctx{level}_add")([in_conv, context])
        level_outputs.append(current)

    segmentation_layers = []
    for level in range(depth - 2, -1, -1):
        up_sampling = create_up_sampling_module(
            current, level_filters[level], name=f"up{level}", data_format=data_format
        )
        concat = keras.layers.Concatenate(axis=axis, name=f"loc{level}_concat")([level_outputs[level], up_sampling])
        current = create_localization_module(concat, level_filters[level], name=f"loc{level}", data_format=data_format)
        if level < n_segmentation_levels:
            segmentation = keras.layers.Conv3D(n_labels, (1, 1, 1), data_format=data_format, name=f"seg{level}")
            segmentation_layers.insert(0, segmentation(current))

    output = None
    for level in reversed(range(n_segmentation_levels)):
        segmentation = segmentation_layers[level]
        output = segmentation if output is None else keras.layers.Add(name=f"seg{level}_add")([output, segmentation])
        if level > 0:
            output = keras.layers.UpSampling3D(size=(2, 2, 2), data_format=data_format, name=f"seg{level}_up")(output)

    outputs = keras.layers.Activation(activation_name, dtype="float32", name="head_activation")(output)
    return keras.Model(inputs=inputs, outputs=outputs, name=name)


def isensee2017_model(
    input_shape: Sequence[int | None] = (128, 128, 128, 4),
    n_base_filters: int = 16,
    depth: int = 5,
    dropout_rate: float = 0.3,
    n_segmentation_levels: int = 3,
    n_labels: int = 4,
    optimizer: Callable = keras.optimizers.Adam,
    initial_learning_rate: float = 5e-4,
    loss_function: Callable | str = weighted_dice_coefficient_loss,
    activation_name: str = "sigmoid",
    data_format: str | None = None,
) -> keras.Model:
    """Build and compile the Isensee 2017 model.

    See :func:`build_isensee2017` for the architecture and ``data_format``.
    ``optimizer`` is an optimizer class called with
    ``learning_rate=initial_learning_rate``; ``input_shape`` is in the model's
    data format.

    Returns:
        The compiled model.
    """
    model = build_isensee2017(
        input_shape,
        n_base_filters=n_base_filters,
        depth=depth,
        dropout_rate=dropout_rate,
        n_segmentation_levels=n_segmentation_levels,
        n_labels=n_labels,
        activation_name=activation_name,
        data_format=data_format,
    )
    model.compile(optimizer=optimizer(learning_rate=initial_learning_rate), loss=loss_function)
    return model
