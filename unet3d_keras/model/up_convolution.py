"""The U-Net's up-convolution as a matrix product plus depth-to-space, exact and fast on every backend.

A transposed convolution whose ``kernel_size`` equals its ``strides`` (the reference's 2x2x2
up-convolution) never overlaps its output blocks: each input voxel ``v`` writes the block
``kernel[..., :, :] @ v`` of ``kx*ky*kz`` output voxels. :class:`MatmulConv3DTranspose` computes
exactly that with one matrix product of all voxels against the kernel reshaped to
``(in_channels, kx*ky*kz*filters)`` and one transpose that interleaves the blocks
(depth-to-space). It is a ``keras.layers.Conv3DTranspose`` with the same variables, shapes and
names, so weights, ``.keras`` files and the reference-weight loading carry over unchanged; other
settings (overlapping kernels, padding that crops, output padding, dilation) fall back to the
parent's transposed convolution.
"""

from __future__ import annotations

import keras
from keras import ops

__all__ = [
    "MatmulConv3DTranspose", "is_block_up_convolution", "with_matmul_up_convolutions", "with_plain_up_convolutions",
]


def is_block_up_convolution(layer: keras.layers.Layer) -> bool:
    """True for a ``Conv3DTranspose`` whose output blocks do not overlap (kernel == strides, no dilation,
    no output padding): the case :class:`MatmulConv3DTranspose` computes as a matrix product."""
    return (
        isinstance(layer, keras.layers.Conv3DTranspose)
        and tuple(layer.kernel_size) == tuple(layer.strides)
        and tuple(layer.dilation_rate) == (1, 1, 1)
        and layer.output_padding is None
    )


class MatmulConv3DTranspose(keras.layers.Conv3DTranspose):
    """``Conv3DTranspose`` computed as a per-voxel matrix product and a depth-to-space rearrangement.

    Same arguments, variables (``kernel`` ``(kx, ky, kz, filters, in_channels)``, ``bias``
    ``(filters,)``) and output as ``keras.layers.Conv3DTranspose``; where ``kernel_size !=
    strides`` (or with dilation or output padding) it runs the parent's transposed convolution.

    Input ``(batch, x, y, z, in_channels)`` (channels_last) or ``(batch, in_channels, x, y, z)``;
    output ``(batch, x*kx, y*ky, z*kz, filters)`` or ``(batch, filters, x*kx, y*ky, z*kz)``.
    """

    def call(self, inputs):
        if not is_block_up_convolution(self):
            return super().call(inputs)
        kx, ky, kz = self.kernel_size
        channels_last = self.data_format == "channels_last"
        if not channels_last:
            inputs = ops.transpose(inputs, (0, 2, 3, 4, 1))
        shape = ops.shape(inputs)
        batch, x, y, z, in_channels = shape[0], shape[1], shape[2], shape[3], shape[4]
        kernel = ops.cast(self.kernel, inputs.dtype)
        # (kx, ky, kz, filters, in) -> (in, kx*ky*kz*filters): one matrix product for all voxels.
        matrix = ops.reshape(ops.transpose(kernel, (4, 0, 1, 2, 3)), (in_channels, kx * ky * kz * self.filters))
        blocks = ops.matmul(ops.reshape(inputs, (-1, in_channels)), matrix)
        blocks = ops.reshape(blocks, (batch, x, y, z, kx, ky, kz, self.filters))
        if channels_last:  # depth-to-space: (b, x, kx, y, ky, z, kz, f)
            outputs = ops.transpose(blocks, (0, 1, 4, 2, 5, 3, 6, 7))
            outputs = ops.reshape(outputs, (batch, x * kx, y * ky, z * kz, self.filters))
        else:  # (b, f, x, kx, y, ky, z, kz)
            outputs = ops.transpose(blocks, (0, 7, 1, 4, 2, 5, 3, 6))
            outputs = ops.reshape(outputs, (batch, self.filters, x * kx, y * ky, z * kz))
        if self.use_bias:
            bias = ops.cast(self.bias, outputs.dtype)
            bias_shape = (1, 1, 1, 1, self.filters) if channels_last else (1, self.filters, 1, 1, 1)
            outputs = outputs + ops.reshape(bias, bias_shape)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs


# why: a .keras file stores each layer's weights under its class name in snake case; with the
# parent's class name, files written with keras.layers.Conv3DTranspose (before this layer
# existed) load into it and its files load into plain Conv3DTranspose models. The registered
# name stays distinct, so deserialisation still builds this class.
MatmulConv3DTranspose.__name__ = MatmulConv3DTranspose.__qualname__ = "Conv3DTranspose"
keras.saving.register_keras_serializable(package="unet3d_keras", name="MatmulConv3DTranspose")(MatmulConv3DTranspose)


def with_matmul_up_convolutions(model: keras.Model) -> keras.Model:
    """A copy of a functional model whose block ``Conv3DTranspose`` layers run as :class:`MatmulConv3DTranspose`.

    For models saved before the fast layer existed: the copy has the same layer names and
    weights (copied, not shared), so its outputs equal the original's to float32 rounding. A
    model without such layers is returned as it is.

    Args:
        model: A functional ``keras.Model``.

    Returns:
        The converted copy (uncompiled), or ``model`` itself when nothing needed converting.
    """
    swap = [layer for layer in model.layers
            if is_block_up_convolution(layer) and not isinstance(layer, MatmulConv3DTranspose)]
    if not swap:
        return model

    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        if layer in swap:
            return MatmulConv3DTranspose.from_config(layer.get_config())
        return layer.__class__.from_config(layer.get_config())

    copy = keras.models.clone_model(model, clone_function=clone)
    for source in model.layers:
        copy.get_layer(source.name).set_weights(source.get_weights())
    return copy


def with_plain_up_convolutions(model: keras.Model) -> keras.Model:
    """A copy of a functional model whose :class:`MatmulConv3DTranspose` layers are plain
    ``keras.layers.Conv3DTranspose`` (same names and weights): what a model file looked like before
    the fast layer, and a model readable by tools that know only Keras's own layers.

    Args:
        model: A functional ``keras.Model``.

    Returns:
        The copy (uncompiled), with the weights copied.
    """
    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        plain = isinstance(layer, MatmulConv3DTranspose)
        return (keras.layers.Conv3DTranspose if plain else layer.__class__).from_config(layer.get_config())

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy
