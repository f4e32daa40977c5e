"""Models trained with the reference (Keras 2 HDF5 files) rebuilt as the port's ``channels_last`` models.

The file is read as data (:mod:`unet3d_keras.reference_files`); the architecture is recognised
from its layers (network, depth, base filters, labels, input shape, normalisation, activation);
the port's builders (:mod:`unet3d_keras.model`) build the same network ``channels_last``; the two
graphs are then matched layer for layer from the output back to the input, every setting that
changes the result is compared, and the weights are copied. Conv3D and Conv3DTranspose kernels
are ``(kx, ky, kz, in, out)`` / ``(kx, ky, kz, out, in)`` in both data formats and normalisation
weights are per channel, so no weight is transposed: only the inputs change from
``(batch, channels, x, y, z)`` to ``(batch, x, y, z, channels)``. keras-contrib's
``InstanceNormalization`` becomes :class:`~unet3d_keras.instance_normalization.InstanceNormalization`,
which computes what keras-contrib computed.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras

from . import metrics as _metrics
from .errors import DataError
from .instance_normalization import InstanceNormalization
from .model import build_isensee2017, build_unet_3d
from .reference_files import ReferenceGraph, ReferenceLayer, functional_graph, read_reference_graph, \
    read_reference_weights

__all__ = ["REFERENCE_OBJECTS", "ReferenceArchitecture", "load_reference_model", "read_reference_model",
           "recognise_architecture"]

logger = logging.getLogger(__name__)

# Names under which the reference's model files refer to its losses and metrics.
REFERENCE_OBJECTS = {
    "dice_coefficient": _metrics.dice_coefficient,
    "dice_coefficient_loss": _metrics.dice_coefficient_loss,
    "dice_coef": _metrics.dice_coef,
    "dice_coef_loss": _metrics.dice_coef_loss,
    "weighted_dice_coefficient": _metrics.weighted_dice_coefficient,
    "weighted_dice_coefficient_loss": _metrics.weighted_dice_coefficient_loss,
}

# The port's Keras class for each reference class, and the settings that must agree.
_PORT_CLASSES = {
    "InputLayer": (keras.layers.InputLayer, ()),
    "Conv3D": (keras.layers.Conv3D, ("filters", "kernel_size", "strides", "padding", "dilation_rate", "use_bias",
                                     "activation")),
    "Conv3DTranspose": (keras.layers.Conv3DTranspose, ("filters", "kernel_size", "strides", "padding",
                                                       "output_padding", "use_bias", "activation")),
    "BatchNormalization": (keras.layers.BatchNormalization, ("epsilon", "center", "scale")),
    "InstanceNormalization": (keras.layers.GroupNormalization, ()),  # replaced below, settings copied
    "Activation": (keras.layers.Activation, ("activation",)),
    "LeakyReLU": (keras.layers.LeakyReLU, ("alpha",)),
    "MaxPooling3D": (keras.layers.MaxPooling3D, ("pool_size", "strides", "padding")),
    "UpSampling3D": (keras.layers.UpSampling3D, ("size",)),
    "Concatenate": (keras.layers.Concatenate, ()),
    "Add": (keras.layers.Add, ()),
    "SpatialDropout3D": (keras.layers.SpatialDropout3D, ("rate",)),
}
_TRIPLES = {"kernel_size", "strides", "dilation_rate", "pool_size", "size"}
_DEFAULTS = {"dilation_rate": 1, "use_bias": True, "activation": "linear", "padding": "valid", "output_padding": None,
             "epsilon": 1e-3, "center": True, "scale": True, "alpha": 0.3, "size": 2}


@dataclass(frozen=True)
class ReferenceArchitecture:
    """What a reference model file holds.

    Attributes:
        network: ``"unet"`` (``unet_model_3d``) or ``"isensee2017"``.
        input_shape: ``(x, y, z, channels)`` (channels_last; sizes may be None).
        depth: Resolution levels.
        n_base_filters: Filters of the first convolution.
        n_labels: Output channels.
        normalization: ``"none"``, ``"batch"`` or ``"instance"``.
        activation_name: Final activation.
        deconvolution: U-Net: transposed convolutions instead of up-sampling.
        pool_size: U-Net: max-pooling factor.
        dropout_rate: Isensee 2017: spatial dropout of the context modules.
        n_segmentation_levels: Isensee 2017: segmentation outputs summed.
        data_format: The file's data format (the reference wrote ``channels_first``).
        keras_version: The Keras version that wrote the file.
    """

    network: str
    input_shape: tuple
    depth: int
    n_base_filters: int
    n_labels: int
    normalization: str
    activation_name: str
    deconvolution: bool = False
    pool_size: tuple = (2, 2, 2)
    dropout_rate: float = 0.3
    n_segmentation_levels: int = 3
    data_format: str = "channels_first"
    keras_version: str = "unknown"

    def describe(self) -> list[str]:
        """``"key: value"`` lines, as ``unet3d-convert-model`` prints them."""
        lines = [f"network: {self.network}", f"depth: {self.depth}", f"base filters: {self.n_base_filters}",
                 f"labels: {self.n_labels}", f"input shape: {self.input_shape} (x, y, z, channels)",
                 f"normalisation: {self.normalization}", f"activation: {self.activation_name}"]
        if self.network == "unet":
            lines += [f"up-convolution: {'deconvolution' if self.deconvolution else 'up-sampling'}",
                      f"pool size: {self.pool_size}"]
        else:
            lines += [f"segmentation levels: {self.n_segmentation_levels}", f"dropout rate: {self.dropout_rate}"]
        return lines + [f"written by: Keras {self.keras_version}, {self.data_format}"]


def _normalised(key: str, value: Any) -> Any:
    """A setting in one comparable form: triples as tuples, names in lower case."""
    if key in _TRIPLES:
        return tuple(value) if isinstance(value, (list, tuple)) else (value,) * 3
    if isinstance(value, list):
        return tuple(value)
    return value.lower() if isinstance(value, str) else value


def _setting(config: dict, key: str) -> Any:
    if key == "alpha":  # Keras 3 calls LeakyReLU's slope negative_slope
        value = config.get("alpha", config.get("negative_slope", 0.3))
        return round(float(value), 6)
    return _normalised(key, config.get(key, _DEFAULTS.get(key)))


def _axis(config: dict) -> int | None:
    axis = config.get("axis", -1)
    axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
    return axis % 5 if isinstance(axis, int) else None


def _data_format(graph: ReferenceGraph) -> str:
    formats = {layer.config.get("data_format") for layer in graph.layers.values()
               if layer.class_name in ("Conv3D", "Conv3DTranspose")}
    if len(formats) != 1 or formats - {"channels_first", "channels_last"}:
        raise DataError(f"{graph.path}: the convolutions' data formats are {sorted(map(str, formats))}; "
                        "expected one of channels_first (the reference) or channels_last")
    return formats.pop()


def _first(graph: ReferenceGraph, class_name: str) -> ReferenceLayer | None:
    return next((layer for layer in graph.layers.values() if layer.class_name == class_name), None)


def recognise_architecture(graph: ReferenceGraph) -> ReferenceArchitecture:
    """The reference network, and its settings, that a file's layers describe.

    Raises:
        DataError: the layers describe neither of the reference's networks.
    """
    data_format = _data_format(graph)
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise DataError(f"{graph.path}: {len(graph.inputs)} inputs and {len(graph.outputs)} outputs; the "
                        "reference's networks have one of each")
    config = graph.layers[graph.inputs[0]].config
    shape = config.get("batch_input_shape", config.get("batch_shape"))
    if not isinstance(shape, list) or len(shape) != 5:
        raise DataError(f"{graph.path}: the input shape {shape!r} is not (batch, channels, x, y, z)")
    input_shape = tuple(shape[2:] + shape[1:2]) if data_format == "channels_first" else tuple(shape[1:])
    output = graph.layers[graph.outputs[0]]
    if output.class_name != "Activation":
        raise DataError(f"{graph.path}: the output layer {output.name!r} is a {output.class_name}; the reference's "
                        "networks end with an Activation")
    head = output
    while head.class_name != "Conv3D" and head.inbound:  # back through the summation of segmentation layers
        head = graph.layers[head.inbound[0]]
    first = next((layer for layer in graph.layers.values()
                  if layer.class_name == "Conv3D" and layer.inbound == graph.inputs), None)
    if head.class_name != "Conv3D" or first is None:
        raise DataError(f"{graph.path}: no convolution after the input or before the output activation")
    counts: dict[str, int] = {}
    for layer in graph.layers.values():
        counts[layer.class_name] = counts.get(layer.class_name, 0) + 1
    normalization = "batch" if counts.get("BatchNormalization") else "instance" if counts.get(
        "InstanceNormalization") else "none"
    common = dict(input_shape=input_shape, n_base_filters=int(first.config.get("filters", 0)),
                  n_labels=int(head.config.get("filters", 0)), normalization=normalization,
                  activation_name=str(output.config.get("activation")), data_format=data_format,
                  keras_version=graph.keras_version)
    if counts.get("Add"):
        strided = [layer for layer in graph.layers.values() if layer.class_name == "Conv3D"
                   and max(_normalised("strides", layer.config.get("strides", 1))) > 1]
        depth = len(strided) + 1
        dropout = _first(graph, "SpatialDropout3D")
        # 3 convolutions per level down, 3 per level up; the rest are segmentation layers.
        return ReferenceArchitecture(
            "isensee2017", depth=depth, n_segmentation_levels=counts.get("Conv3D", 0) - (6 * depth - 3),
            dropout_rate=float(dropout.config.get("rate", 0.3)) if dropout else 0.3, **common)
    pooling = _first(graph, "MaxPooling3D")
    return ReferenceArchitecture(
        "unet", depth=counts.get("MaxPooling3D", 0) + 1, deconvolution=bool(counts.get("Conv3DTranspose")),
        pool_size=_normalised("pool_size", pooling.config.get("pool_size", 2)) if pooling else (2, 2, 2), **common)


def _build(architecture: ReferenceArchitecture) -> keras.Model:
    """The port's uncompiled model of ``architecture`` (channels_last, GroupNormalization for now)."""
    a = architecture
    if a.network == "isensee2017":
        return build_isensee2017(a.input_shape, n_base_filters=a.n_base_filters, depth=a.depth,
                                 dropout_rate=a.dropout_rate, n_segmentation_levels=a.n_segmentation_levels,
                                 n_labels=a.n_labels, activation_name=a.activation_name, data_format="channels_last")
    return build_unet_3d(a.input_shape, pool_size=a.pool_size, n_labels=a.n_labels, deconvolution=a.deconvolution,
                         depth=a.depth, n_base_filters=a.n_base_filters,
                         batch_normalization=a.normalization == "batch", activation_name=a.activation_name,
                         instance_normalization=a.normalization == "instance", data_format="channels_last")


def _compare(reference: ReferenceLayer, port: keras.layers.Layer, channel: int) -> str:
    """Why ``port`` does not compute what ``reference`` computed ("" when it does)."""
    port_class, keys = _PORT_CLASSES[reference.class_name]
    if not isinstance(port, port_class):
        return f"a {type(port).__name__} in the port"
    port_config = port.get_config()
    for key in keys:
        ours = _setting(port_config, key)
        theirs = _setting(reference.config, key)
        if ours != theirs:
            return f"{key} {theirs!r}, the port's {ours!r}"
    data_format = reference.config.get("data_format")
    if data_format is not None and data_format != ("channels_first" if channel == 1 else "channels_last"):
        return f"data_format {data_format!r} differs from the convolutions'"
    if reference.class_name in ("BatchNormalization", "InstanceNormalization", "Concatenate"):
        if _axis(reference.config) != channel:
            return f"axis {reference.config.get('axis')!r} is not the channel axis {channel}"
    return ""


def _pair_layers(graph: ReferenceGraph, model: keras.Model, architecture: ReferenceArchitecture) -> dict[str, str]:
    """``{reference layer: port layer}``, matched from the output back along the inputs in order.

    Raises:
        DataError: the graphs differ (naming the first layer that does).
    """
    port_config = {"class_name": "Functional", "config": model.get_config()}
    port_layers, _, port_outputs = functional_graph(port_config, model.name)
    channel = 1 if architecture.data_format == "channels_first" else 4
    pairs: dict[str, str] = {}
    stack = list(zip(graph.outputs, port_outputs))
    while stack:
        name, port_name = stack.pop()
        reference = graph.layers[name]
        if pairs.get(name, port_name) != port_name:
            problem = f"it feeds the port's {pairs[name]!r} and {port_name!r}"
        elif name in pairs:
            continue
        elif port_name in pairs.values():
            problem = "the port's layer is matched twice"
        else:
            problem = _compare(reference, model.get_layer(port_name), channel)
            inbound = port_layers[port_name].inbound
            if not problem and len(inbound) != len(reference.inbound):
                problem = f"{len(reference.inbound)} inputs, the port's {len(inbound)}"
        if problem:
            raise DataError(
                f"{graph.path}: recognised as {architecture.network} ({', '.join(architecture.describe()[1:6])}), "
                f"but layer {name!r} ({reference.class_name}) does not match the port's {port_name!r}: {problem}")
        pairs[name] = port_name
        stack.extend(zip(reference.inbound, inbound))
    unmatched = [name for name in graph.layers if name not in pairs]
    if unmatched or len(pairs) != len(model.layers):
        raise DataError(f"{graph.path}: recognised as {architecture.network}, but the layers differ in number "
                        f"({len(graph.layers)} in the file, {len(model.layers)} in the port; unmatched: "
                        f"{unmatched[:3]})")
    return pairs


def _with_reference_layers(model: keras.Model, graph: ReferenceGraph, pairs: dict[str, str],
                           architecture: ReferenceArchitecture) -> keras.Model:
    """``model`` computing what the file's model computed where the builders' layers differ.

    GroupNormalization becomes keras-contrib's formula with the file's settings; a
    ``channels_first`` softmax output, which Keras 2 normalised over the last axis (z, not the
    labels), keeps doing so.
    """
    settings = {port: graph.layers[name].config for name, port in pairs.items()
                if graph.layers[name].class_name == "InstanceNormalization"}
    output = pairs[graph.outputs[0]]
    z_softmax = architecture.activation_name == "softmax" and architecture.data_format == "channels_first"
    if z_softmax:
        logger.warning("%s: the reference's channels_first softmax output normalises over the z axis, not over "
                       "the labels (Keras 2's softmax axis -1); the converted model computes the same", graph.path)
    if not settings and not z_softmax:
        return model

    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        if layer.name in settings:
            config = settings[layer.name]
            return InstanceNormalization(axis=-1, epsilon=float(config.get("epsilon", 1e-3)),
                                         center=bool(config.get("center", True)),
                                         scale=bool(config.get("scale", True)), name=layer.name)
        if z_softmax and layer.name == output:
            return keras.layers.Softmax(axis=-2, dtype="float32", name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    return keras.models.clone_model(model, clone_function=clone)


def _copy_weights(graph: ReferenceGraph, model: keras.Model, pairs: dict[str, str]) -> None:
    for name, port_name in pairs.items():
        layer = model.get_layer(port_name)
        stored = read_reference_weights(graph.path, name) if layer.weights else {}
        wanted = [variable.name for variable in layer.weights]
        if sorted(wanted) != sorted(stored):
            raise DataError(f"{graph.path}: layer {name!r} stores weights {sorted(stored)}, expected {sorted(wanted)}")
        for variable in layer.weights:
            if tuple(stored[variable.name].shape) != tuple(variable.shape):
                raise DataError(f"{graph.path}: weight {variable.name!r} of layer {name!r} has shape "
                                f"{stored[variable.name].shape}, expected {tuple(variable.shape)}")
        layer.set_weights([stored[variable.name] for variable in layer.weights])


def _names(entry: Any) -> list:
    """Names of the losses or metrics in a ``training_config`` entry (strings, serialised objects, lists)."""
    if isinstance(entry, list):
        return [name for item in entry for name in _names(item)]
    if isinstance(entry, dict):
        config = entry.get("config")
        if isinstance(config, dict):
            return [config.get("name") or config.get("fn")]
        return [config if isinstance(config, str) else entry.get("class_name")]
    return [entry]


def _compile(model: keras.Model, graph: ReferenceGraph) -> None:
    """Compile as the file was: its loss and metrics by name, its optimizer's class and learning rate."""
    training = graph.training_config or {}
    loss_name = (_names(training.get("loss")) or [None])[0]
    loss = REFERENCE_OBJECTS.get(loss_name)
    if loss is None and loss_name is not None:
        try:
            loss = keras.losses.get(str(loss_name))  # built-in losses only; nothing is imported by name
        except (ValueError, TypeError) as error:
            raise DataError(f"{graph.path}: the model was compiled with the loss {loss_name!r}, which the port does "
                            "not know; load it with compile=False (unet3d-convert-model --no-compile)") from error
    metrics: list = []
    for metric in _names(training.get("metrics") or []):
        label = str(metric).removeprefix("label_").removesuffix("_dice_coef")
        if metric in REFERENCE_OBJECTS:
            metrics.append(REFERENCE_OBJECTS[metric])
        elif label.isdigit() and str(metric).startswith("label_"):
            metrics.append(_metrics.LabelDiceCoefficient(int(label)))
        else:
            logger.warning("%s: metric %r is not known to the port and is left out", graph.path, metric)
    optimizer_config = training.get("optimizer_config") or {}
    name = str(optimizer_config.get("class_name", "Adam")).removeprefix("Custom>")
    if name not in ("Adam", "SGD", "RMSprop", "Adamax", "Nadam", "Adagrad", "Adadelta"):
        logger.warning("%s: optimizer %r replaced by Adam", graph.path, name)
        name = "Adam"
    settings = optimizer_config.get("config") or {}
    rate = settings.get("learning_rate", settings.get("lr"))
    rate = float(rate) if isinstance(rate, (int, float)) else 1e-3  # a schedule's state is not carried over
    model.compile(optimizer=getattr(keras.optimizers, name)(learning_rate=rate), loss=loss, metrics=metrics)


def read_reference_model(path: str | os.PathLike, compile: bool = True) -> tuple[keras.Model, ReferenceArchitecture]:
    """Rebuild a Keras 2 model file written by the reference as the port's ``channels_last`` model.

    Args:
        path: A ``.h5`` file written by the reference (``model.save`` / ``ModelCheckpoint``).
        compile: Compile with the file's loss, metrics, optimizer and learning rate (the
            optimizer's state is not carried over).

    Returns:
        ``(model, architecture)``: the model maps ``(batch, x, y, z, channels)`` to
        ``(batch, x, y, z, n_labels)``.

    Raises:
        DataError: the file is not one of the reference's networks, refers to code or to an
            unknown layer class, or its weights do not fit (the message names the file and the layer).
    """
    graph = read_reference_graph(path)
    architecture = recognise_architecture(graph)
    try:
        model = _build(architecture)
    except ValueError as error:
        raise DataError(f"{graph.path}: recognised as {architecture.network} but cannot be rebuilt: {error}") from error
    pairs = _pair_layers(graph, model, architecture)
    model = _with_reference_layers(model, graph, pairs, architecture)
    _copy_weights(graph, model, pairs)
    if compile:
        _compile(model, graph)
    logger.info("Converted reference model %s: %s", graph.path, "; ".join(architecture.describe()))
    return model, architecture


def load_reference_model(path: str | os.PathLike, compile: bool = True) -> keras.Model:
    """The model of :func:`read_reference_model` alone."""
    return read_reference_model(Path(path), compile=compile)[0]
