"""The reference's two networks rebuilt with Keras 2 (``tf_keras``), to write model files as the reference did.

Written from reading ellisdg/3DUnetCNN v0.3 ``legacy/unet3dlegacy/model/unet.py`` and
``isensee2017.py``: the same layers, created in the same order, with Keras 2's automatic names,
and the reference's loss and metric names. ``data_format`` is a parameter so that one network can
be built ``channels_first`` (saved, as the reference saved it) and again ``channels_last`` (run:
TensorFlow's CPU kernels take channels_last only) with the same weights.

keras-contrib cannot be installed; :class:`InstanceNormalization` is a Keras 2 layer with its
class name, configuration keys, weight names and formula.
"""

from __future__ import annotations

import numpy as np
import tf_keras as k2

K = k2.backend


class InstanceNormalization(k2.layers.Layer):
    """keras-contrib's layer: ``(x - mean) / (std + epsilon) * gamma + beta`` per instance and channel."""

    def __init__(self, axis=None, epsilon=1e-3, center=True, scale=True, **kwargs):
        super().__init__(**kwargs)
        self.axis, self.epsilon, self.center, self.scale = axis, epsilon, center, scale

    def build(self, input_shape):
        shape = (1,) if self.axis is None else (input_shape[self.axis],)
        self.gamma = self.add_weight(shape=shape, name="gamma", initializer="ones") if self.scale else None
        self.beta = self.add_weight(shape=shape, name="beta", initializer="zeros") if self.center else None

    def call(self, inputs):
        rank = len(inputs.shape)
        axes = [axis for axis in range(1, rank) if self.axis is None or axis != self.axis % rank]
        mean = K.mean(inputs, axes, keepdims=True)
        normed = (inputs - mean) / (K.std(inputs, axes, keepdims=True) + self.epsilon)
        shape = [1] * rank
        if self.axis is not None:
            shape[self.axis] = inputs.shape[self.axis]
        if self.scale:
            normed = normed * K.reshape(self.gamma, shape)
        if self.center:
            normed = normed + K.reshape(self.beta, shape)
        return normed

    def get_config(self):
        config = {"axis": self.axis, "epsilon": self.epsilon, "center": self.center, "scale": self.scale,
                  "beta_initializer": {"class_name": "Zeros", "config": {}},
                  "gamma_initializer": {"class_name": "Ones", "config": {}}, "beta_regularizer": None,
                  "gamma_regularizer": None, "beta_constraint": None, "gamma_constraint": None}
        return {**super().get_config(), **config}


# The reference's losses and metrics, under the names its model files record.
def dice_coefficient(y_true, y_pred, smooth=1.0):
    intersection = K.sum(K.flatten(y_true) * K.flatten(y_pred))
    return (2.0 * intersection + smooth) / (K.sum(y_true) + K.sum(y_pred) + smooth)


def weighted_dice_coefficient_loss(y_true, y_pred, axis=(-3, -2, -1), smooth=1e-5):
    ratio = (K.sum(y_true * y_pred, axis=axis) + smooth / 2) / (K.sum(y_true, axis=axis) + K.sum(y_pred, axis=axis)
                                                               + smooth)
    return -K.mean(2.0 * ratio)


def label_dice(index):
    def metric(y_true, y_pred):
        return dice_coefficient(y_true[:, index], y_pred[:, index])

    metric.__name__ = f"label_{index}_dice_coef"
    return metric


def _block(x, filters, fmt, batch_normalization=False, instance_normalization=False, kernel=(3, 3, 3),
           strides=(1, 1, 1), leaky=False):
    """unet.py's create_convolution_block (Isensee: LeakyReLU and instance normalisation)."""
    axis = 1 if fmt == "channels_first" else -1
    x = k2.layers.Conv3D(filters, kernel, padding="same", strides=strides, data_format=fmt)(x)
    if batch_normalization:
        x = k2.layers.BatchNormalization(axis=axis)(x)
    elif instance_normalization:
        x = InstanceNormalization(axis=axis)(x)
    return k2.layers.LeakyReLU()(x) if leaky else k2.layers.Activation("relu")(x)


def _channels(tensor, fmt):
    return tensor.shape[1] if fmt == "channels_first" else tensor.shape[-1]


def reference_unet(input_shape, fmt, pool_size=(2, 2, 2), n_labels=1, deconvolution=False, depth=4,
                   n_base_filters=32, batch_normalization=False, activation_name="sigmoid", label_wise=True):
    """unet.py's unet_model_3d; ``input_shape`` is ``(channels, x, y, z)`` whatever ``fmt``."""
    shape = input_shape if fmt == "channels_first" else tuple(input_shape[1:]) + (input_shape[0],)
    inputs = k2.Input(shape)
    current, levels = inputs, []
    for level in range(depth):
        first = _block(current, n_base_filters * 2**level, fmt, batch_normalization)
        second = _block(first, n_base_filters * 2**level * 2, fmt, batch_normalization)
        levels.append(second)
        current = k2.layers.MaxPooling3D(pool_size=pool_size, data_format=fmt)(second) if level < depth - 1 \
            else second
    for level in range(depth - 2, -1, -1):
        if deconvolution:
            up = k2.layers.Conv3DTranspose(_channels(current, fmt), (2, 2, 2), strides=(2, 2, 2),
                                           data_format=fmt)(current)
        else:
            up = k2.layers.UpSampling3D(size=pool_size, data_format=fmt)(current)
        current = k2.layers.concatenate([up, levels[level]], axis=1 if fmt == "channels_first" else -1)
        current = _block(current, _channels(levels[level], fmt), fmt, batch_normalization)
        current = _block(current, _channels(levels[level], fmt), fmt, batch_normalization)
    outputs = k2.layers.Activation(activation_name)(k2.layers.Conv3D(n_labels, (1, 1, 1), data_format=fmt)(current))
    model = k2.Model(inputs, outputs)
    metrics = [dice_coefficient] + ([label_dice(i) for i in range(n_labels)] if label_wise and n_labels > 1 else [])
    model.compile(optimizer=k2.optimizers.Adam(learning_rate=1e-5), loss=weighted_dice_coefficient_loss,
                  metrics=metrics)
    return model


def reference_isensee2017(input_shape, fmt, n_base_filters=16, depth=5, dropout_rate=0.3, n_segmentation_levels=3,
                          n_labels=4, activation_name="sigmoid"):
    """isensee2017.py's isensee2017_model; ``input_shape`` is ``(channels, x, y, z)`` whatever ``fmt``."""
    shape = input_shape if fmt == "channels_first" else tuple(input_shape[1:]) + (input_shape[0],)
    block = dict(fmt=fmt, instance_normalization=True, leaky=True)
    axis = 1 if fmt == "channels_first" else -1
    inputs = k2.Input(shape)
    current, outputs, filters = inputs, [], []
    for level in range(depth):
        filters.append(n_base_filters * 2**level)
        in_conv = _block(current, filters[-1], strides=(1, 1, 1) if level == 0 else (2, 2, 2), **block)
        context = _block(in_conv, filters[-1], **block)
        context = k2.layers.SpatialDropout3D(rate=dropout_rate, data_format=fmt)(context)
        context = _block(context, filters[-1], **block)
        current = k2.layers.Add()([in_conv, context])
        outputs.append(current)
    segmentations = []
    for level in range(depth - 2, -1, -1):
        up = _block(k2.layers.UpSampling3D(size=(2, 2, 2), data_format=fmt)(current), filters[level], **block)
        current = k2.layers.concatenate([outputs[level], up], axis=axis)
        current = _block(current, filters[level], **block)
        current = _block(current, filters[level], kernel=(1, 1, 1), **block)
        if level < n_segmentation_levels:
            segmentations.insert(0, k2.layers.Conv3D(n_labels, (1, 1, 1), data_format=fmt)(current))
    output = None
    for level in reversed(range(n_segmentation_levels)):
        output = segmentations[level] if output is None else k2.layers.Add()([output, segmentations[level]])
        if level > 0:
            output = k2.layers.UpSampling3D(size=(2, 2, 2), data_format=fmt)(output)
    model = k2.Model(inputs, k2.layers.Activation(activation_name)(output))
    model.compile(optimizer=k2.optimizers.Adam(learning_rate=5e-4), loss=weighted_dice_coefficient_loss)
    return model


def randomise(model, seed):
    """Random weights that keep activations in range: He-normal kernels, random biases, normalisation
    scales and offsets, and batch-normalisation moving statistics."""
    rng = np.random.default_rng(seed)
    values = []
    for weight in model.weights:
        name, shape = weight.name.rsplit("/", 1)[-1].split(":")[0], tuple(weight.shape)
        if name == "kernel":
            values.append(rng.normal(0.0, np.sqrt(2.0 / np.prod(shape[:-1])), shape))
        elif name in ("gamma", "moving_variance"):
            values.append(rng.uniform(0.5, 1.5, shape))
        else:  # bias, beta, moving_mean
            values.append(rng.normal(0.0, 0.1, shape))
    model.set_weights([value.astype("float32") for value in values])
    return model
