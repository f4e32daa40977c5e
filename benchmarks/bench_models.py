"""Networks the benchmarks compare the project's models with, and their analytic FLOPs.

* :func:`raw_keras_unet`: a minimal hand-written Keras U-Net, layer for layer the architecture of
  ``unet3d_keras.model.build_unet_3d`` (deconvolution, no normalisation), compiled with Adam and an
  inline weighted Dice loss, no metrics.
* :class:`TorchUNet` and :class:`TorchIsensee2017`: the same networks in PyTorch, ``NCDHW``
  tensors kept in ``torch.channels_last_3d`` memory (the layout of the Keras models).
  :func:`copy_keras_weights` loads a Keras model's weights, so that a test can check that the
  outputs agree.
* :func:`conv_flops`: floating-point operations of one forward pass, counted from the layers.

FLOPs are counted as 2 x multiply-accumulates of the convolutions only (biases, activations,
pooling, normalisation and concatenation are left out; they are < 1% of the total here):

* ``Conv3D``: ``2 * prod(output spatial) * prod(kernel) * c_in * c_out``
* ``Conv3DTranspose``: ``2 * prod(input spatial) * prod(kernel) * c_in * c_out``
  (each input voxel is multiplied by the whole kernel)

A training step is counted as 3x the forward pass (the backward pass computes the gradients of
both the inputs and the weights of every convolution, each as costly as the forward pass).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def conv_flops(model) -> int:
    """Forward-pass FLOPs (2 x MACs) of the convolutions of a built Keras model, per batch item."""
    import keras

    total = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.Conv3DTranspose):
            spatial = layer.input.shape[1:4] if _channels_last() else layer.input.shape[2:5]
            total += 2 * math.prod(spatial) * math.prod(layer.kernel_size) * _in_channels(layer) * layer.filters
        elif isinstance(layer, keras.layers.Conv3D):
            spatial = layer.output.shape[1:4] if _channels_last() else layer.output.shape[2:5]
            total += 2 * math.prod(spatial) * math.prod(layer.kernel_size) * _in_channels(layer) * layer.filters
    return int(total)


def _channels_last() -> bool:
    import keras

    return keras.config.image_data_format() == "channels_last"


def _in_channels(layer) -> int:
    return int(layer.input.shape[-1] if _channels_last() else layer.input.shape[1])


def raw_keras_unet(
    input_shape: Sequence[int], n_labels: int = 3, n_base_filters: int = 32, depth: int = 4,
    learning_rate: float = 1e-5,
):
    """The reference U-Net written out with plain Keras layers (channels_last), compiled.

    Args:
        input_shape: ``(x, y, z, channels)``.
        n_labels: Output channels (sigmoid).
        n_base_filters: Filters of the first convolution.
        depth: Resolution levels.
        learning_rate: Adam learning rate.

    Returns:
        A compiled ``keras.Model`` whose weights line up with ``build_unet_3d``'s.
    """
    import keras
    from keras import layers, ops

    inputs = keras.Input(tuple(input_shape))
    x = inputs
    skips = []
    for level in range(depth):
        filters = n_base_filters * 2**level
        x = layers.Conv3D(filters, 3, padding="same", activation="relu")(x)
        x = layers.Conv3D(2 * filters, 3, padding="same", activation="relu")(x)
        skips.append(x)
        if level < depth - 1:
            x = layers.MaxPooling3D(2)(x)
    for level in range(depth - 2, -1, -1):
        x = layers.Conv3DTranspose(x.shape[-1], 2, strides=2)(x)
        x = layers.Concatenate()([x, skips[level]])
        x = layers.Conv3D(skips[level].shape[-1], 3, padding="same", activation="relu")(x)
        x = layers.Conv3D(skips[level].shape[-1], 3, padding="same", activation="relu")(x)
    x = layers.Conv3D(n_labels, 1)(x)
    outputs = layers.Activation("sigmoid", dtype="float32")(x)
    model = keras.Model(inputs, outputs)

    def dice_loss(y_true, y_pred):
        y_true, y_pred = ops.cast(y_true, "float32"), ops.cast(y_pred, "float32")
        intersection = ops.sum(y_true * y_pred, axis=(1, 2, 3))
        denominator = ops.sum(y_true, axis=(1, 2, 3)) + ops.sum(y_pred, axis=(1, 2, 3))
        return -ops.mean(2.0 * (intersection + 5e-6) / (denominator + 1e-5), axis=-1)

    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=dice_loss)
    return model


def torch_dice_loss(y_pred, y_true):
    """The weighted Dice loss of ``unet3d_keras.metrics`` on ``NCDHW`` tensors (a scalar)."""
    y_pred, y_true = y_pred.float(), y_true.float()
    axes = (2, 3, 4)
    intersection = (y_true * y_pred).sum(axes)
    denominator = y_true.sum(axes) + y_pred.sum(axes)
    return -(2.0 * (intersection + 5e-6) / (denominator + 1e-5)).mean()


def _torch():
    import torch

    return torch


def _conv_block(cin: int, cout: int, kernel: int = 3, stride: int = 1, norm: bool = False, leaky: bool = False):
    """Conv3d + optional instance norm + activation, as ``create_convolution_block`` builds it.

    Keras's "same" padding is symmetric for stride 1; for stride 2 (kernel 3, even sizes) it pads
    0 voxels before and 1 after, which PyTorch's symmetric ``padding`` cannot express, so that
    case gets an explicit ``F.pad`` in front of an unpadded convolution.
    """
    torch = _torch()
    nn = torch.nn
    layers = []
    if stride > 1:
        layers.append(nn.ConstantPad3d((0, 1) * 3, 0.0))
    layers.append(nn.Conv3d(cin, cout, kernel, stride=stride, padding=kernel // 2 if stride == 1 else 0))
    if norm:
        # Keras GroupNormalization(groups=-1): one group per channel, epsilon 1e-3.
        layers.append(nn.GroupNorm(cout, cout, eps=1e-3))
    layers.append(nn.LeakyReLU(0.3) if leaky else nn.ReLU())
    return nn.Sequential(*layers)


def _conv_and_norm(block) -> tuple:
    """The Conv3d and the normalisation (or activation) module of a :func:`_conv_block`."""
    modules = [m for m in block if not isinstance(m, _torch().nn.ConstantPad3d)]
    return modules[0], modules[1]


def TorchUNet(in_channels: int = 4, n_labels: int = 3, n_base_filters: int = 32, depth: int = 4):  # noqa: N802
    """The reference U-Net in PyTorch (deconvolution, ReLU, sigmoid head in float32).

    Returns:
        An ``nn.Module`` mapping ``(batch, channels, x, y, z)`` to ``(batch, n_labels, x, y, z)``.
        ``module.keras_names`` maps each Keras layer name of ``build_unet_3d`` to its module.
    """
    torch = _torch()
    nn = torch.nn

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.pool = nn.MaxPool3d(2)
            self.encoder = nn.ModuleList()
            self.up = nn.ModuleList()
            self.decoder = nn.ModuleList()
            self.keras_names = {}
            channels, widths = in_channels, []
            for level in range(depth):
                filters = n_base_filters * 2**level
                block = nn.Sequential(_conv_block(channels, filters), _conv_block(filters, 2 * filters))
                self.encoder.append(block)
                self.keras_names[f"enc{level}_conv1"] = block[0][0]
                self.keras_names[f"enc{level}_conv2"] = block[1][0]
                channels = 2 * filters
                widths.append(channels)
            for level in range(depth - 2, -1, -1):
                up = nn.ConvTranspose3d(channels, channels, 2, stride=2)
                block = nn.Sequential(
                    _conv_block(channels + widths[level], widths[level]), _conv_block(widths[level], widths[level])
                )
                self.up.append(up)
                self.decoder.append(block)
                self.keras_names[f"dec{level}_upconv"] = up
                self.keras_names[f"dec{level}_conv1"] = block[0][0]
                self.keras_names[f"dec{level}_conv2"] = block[1][0]
                channels = widths[level]
            self.head = nn.Conv3d(channels, n_labels, 1)
            self.keras_names["head"] = self.head

        def forward(self, x):
            skips = []
            for level, block in enumerate(self.encoder):
                x = block(x)
                skips.append(x)
                if level < len(self.encoder) - 1:
                    x = self.pool(x)
            for up, block, skip in zip(self.up, self.decoder, reversed(skips[:-1])):
                x = block(torch.cat([up(x), skip], dim=1))
            return torch.sigmoid(self.head(x).float())

    return UNet()


def TorchIsensee2017(  # noqa: N802
    in_channels: int = 4, n_base_filters: int = 16, depth: int = 5, dropout_rate: float = 0.3,
    n_segmentation_levels: int = 3, n_labels: int = 4,
):
    """The Isensee et al. 2017 network of ``build_isensee2017`` in PyTorch.

    Instance normalisation is ``GroupNorm`` with one group per channel (epsilon 1e-3, as Keras's
    ``GroupNormalization``), LeakyReLU has slope 0.3 (Keras's default), dropout is ``Dropout3d``.

    Returns:
        An ``nn.Module`` with ``keras_names`` as :func:`TorchUNet`.
    """
    torch = _torch()
    nn = torch.nn

    def block(cin, cout, kernel=3, stride=1):
        return _conv_block(cin, cout, kernel, stride=stride, norm=True, leaky=True)

    class Isensee(nn.Module):
        def __init__(self):
            super().__init__()
            self.keras_names = {}
            self.context = nn.ModuleList()
            self.up = nn.ModuleList()
            self.localization = nn.ModuleList()
            self.segmentation = nn.ModuleDict()
            self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
            channels, widths = in_channels, []
            for level in range(depth):
                filters = n_base_filters * 2**level
                widths.append(filters)
                modules = nn.ModuleList([
                    block(channels, filters, stride=1 if level == 0 else 2),
                    block(filters, filters), nn.Dropout3d(dropout_rate), block(filters, filters),
                ])
                self.context.append(modules)
                for suffix, module in (("in", modules[0]), ("conv1", modules[1]), ("conv2", modules[3])):
                    conv, norm = _conv_and_norm(module)
                    self.keras_names[f"ctx{level}_{suffix}"] = conv
                    self.keras_names[f"ctx{level}_{suffix}_in"] = norm
                channels = filters
            for level in range(depth - 2, -1, -1):
                up = block(channels, widths[level])
                local = nn.Sequential(block(2 * widths[level], widths[level]), block(widths[level], widths[level], 1))
                self.up.append(up)
                self.localization.append(local)
                for name, module in ((f"up{level}_conv", up), (f"loc{level}_conv1", local[0]),
                                     (f"loc{level}_conv2", local[1])):
                    conv, norm = _conv_and_norm(module)
                    self.keras_names[name] = conv
                    self.keras_names[f"{name}_in"] = norm
                if level < n_segmentation_levels:
                    self.segmentation[str(level)] = nn.Conv3d(widths[level], n_labels, 1)
                    self.keras_names[f"seg{level}"] = self.segmentation[str(level)]
                channels = widths[level]

        def forward(self, x):
            outputs = []
            for modules in self.context:
                x = modules[0](x)
                x = x + modules[3](modules[2](modules[1](x)))
                outputs.append(x)
            segmentations = {}
            for index, level in enumerate(range(depth - 2, -1, -1)):
                up = self.up[index](self.upsample(x))
                x = self.localization[index](torch.cat([outputs[level], up], dim=1))
                if str(level) in self.segmentation:
                    segmentations[level] = self.segmentation[str(level)](x)
            output = None
            for level in reversed(range(n_segmentation_levels)):
                output = segmentations[level] if output is None else output + segmentations[level]
                if level > 0:
                    output = self.upsample(output)
            return torch.sigmoid(output.float())

    return Isensee()


def copy_keras_weights(keras_model, torch_model) -> int:
    """Load the weights of a Keras model into the matching PyTorch model (by Keras layer name).

    Returns:
        The number of layers copied.
    """
    import keras

    torch = _torch()
    copied = 0
    with torch.no_grad():
        for name, module in torch_model.keras_names.items():
            layer = keras_model.get_layer(name)
            weights = [np.asarray(w) for w in layer.get_weights()]
            if isinstance(layer, keras.layers.GroupNormalization):
                gamma, beta = weights
                module.weight.copy_(torch.from_numpy(gamma))
                module.bias.copy_(torch.from_numpy(beta))
            else:
                # Keras: (kx, ky, kz, c_in, c_out), transposed: (kx, ky, kz, c_out, c_in);
                # PyTorch: (c_out, c_in, kx, ky, kz), transposed: (c_in, c_out, kx, ky, kz).
                kernel, bias = weights
                module.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel.transpose(4, 3, 0, 1, 2))))
                module.bias.copy_(torch.from_numpy(bias))
            copied += 1
    return copied
