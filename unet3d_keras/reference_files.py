"""Read a Keras 2 HDF5 model file, as the reference's ``ModelCheckpoint`` wrote it, as plain data.

Such a file holds the model's architecture as JSON (attribute ``model_config``), the compile
settings as JSON (``training_config``), the writer's ``keras_version`` and ``backend``, and the
weights under ``model_weights/<layer>/.../<weight>:0``. Here the JSON is parsed with
``json.loads`` and the weights are read with ``h5py``: nothing from the file is deserialised into
Python objects or executed. Layers outside the few classes the reference's networks use are
refused by name, and layers that carry Python code (``Lambda``) are refused before anything else.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import h5py
import numpy as np

from .errors import DataError

__all__ = [
    "REFERENCE_LAYER_CLASSES",
    "ReferenceGraph",
    "ReferenceLayer",
    "functional_graph",
    "hdf5_keras_major_version",
    "read_reference_graph",
    "read_reference_weights",
]

# Every layer class of the reference's U-Net (unet.py) and Isensee 2017 network (isensee2017.py).
REFERENCE_LAYER_CLASSES = frozenset({
    "InputLayer", "Conv3D", "Conv3DTranspose", "BatchNormalization", "InstanceNormalization", "Activation",
    "LeakyReLU", "MaxPooling3D", "UpSampling3D", "Concatenate", "Add", "SpatialDropout3D",
})
# Layers whose configuration holds Python code (marshalled bytecode or a function name to import).
_CODE_LAYERS = frozenset({"Lambda", "TFOpLambda", "SlicingOpLambda"})


@dataclass(frozen=True)
class ReferenceLayer:
    """One layer of the file's model: its name, Keras class name, configuration and input layers."""

    name: str
    class_name: str
    config: dict
    inbound: tuple[str, ...]


@dataclass(frozen=True)
class ReferenceGraph:
    """The model of a Keras 2 file as data.

    Attributes:
        path: The file.
        layers: ``{name: layer}`` in the file's order.
        inputs: Names of the input layers.
        outputs: Names of the output layers.
        training_config: The parsed ``training_config`` (loss, metrics, optimizer), or None.
        keras_version: The writer's Keras version ("2.2.4", ...).
    """

    path: Path
    layers: dict[str, ReferenceLayer]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    training_config: dict | None
    keras_version: str


def _text(value: Any) -> str:
    """An HDF5 string attribute as ``str`` (h5py returns ``bytes`` for files written by old h5py)."""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def hdf5_keras_major_version(path: str | os.PathLike) -> int | None:
    """The major version of the Keras that wrote an HDF5 model file.

    Returns:
        The major version (2 for the reference's files, 3 for Keras 3 ``.h5`` files), or None when
        ``path`` is not an HDF5 file at all.

    Raises:
        DataError: an HDF5 file that holds no model (a data file, or weights only).
    """
    path = Path(path)
    if not h5py.is_hdf5(path):
        return None
    try:
        with h5py.File(path, "r") as file:
            attributes = dict(file.attrs)
            nodes = sorted(file.keys())
    except OSError as error:
        raise DataError(f"{path}: cannot be read as HDF5: {error}") from error
    if "model_config" not in attributes:
        if "layer_names" in attributes or "model_weights" in nodes:
            raise DataError(f"{path}: holds weights only (written by save_weights), not a model; build the same "
                            "model and call model.load_weights on it, or use the file written by model.save")
        shown = ", ".join(nodes[:6]) or "none"
        raise DataError(f"{path}: an HDF5 file but not a Keras model file: it has no 'model_config' attribute "
                        f"(top-level nodes: {shown}); expected a model saved with model.save(...)")
    version = _text(attributes.get("keras_version", ""))
    try:
        return int(version.split(".")[0])
    except ValueError:
        return 2  # Keras 2.0 already wrote the version; a file without one comes from a Keras of that era


def _layer_names(value: Any) -> Iterator[str]:
    """The layer names referred to by an ``inbound_nodes``, ``input_layers`` or ``output_layers`` entry.

    Keras 2 writes ``[name, node_index, tensor_index, kwargs]`` lists; Keras 3 writes tensors as
    ``{"class_name": "__keras_tensor__", "config": {"keras_history": [name, ...]}}``.
    """
    if isinstance(value, dict):
        history = value.get("config", {}).get("keras_history") if value.get("class_name") == "__keras_tensor__" \
            else None
        if history:
            yield history[0]
            return
        for item in value.values():
            yield from _layer_names(item)
    elif isinstance(value, (list, tuple)):  # tuples: a configuration not round-tripped through JSON
        if len(value) >= 3 and isinstance(value[0], str) and isinstance(value[1], int):
            yield value[0]
            return
        for item in value:
            yield from _layer_names(item)


def functional_graph(model_config: Any, where: str) -> tuple[dict[str, ReferenceLayer], tuple, tuple]:
    """``(layers, inputs, outputs)`` of a functional model's configuration (Keras 2 or 3 JSON, parsed).

    Raises:
        DataError: not a functional model, a layer without a name, or a layer used twice.
    """
    kind = model_config.get("class_name") if isinstance(model_config, dict) else None
    if kind not in ("Model", "Functional"):
        raise DataError(f"{where}: expected a functional model (class 'Model' or 'Functional') as the reference "
                        f"saved, found {kind!r}")
    config = model_config.get("config") or {}
    entries = config.get("layers")
    if not isinstance(entries, list) or not entries:
        raise DataError(f"{where}: the model configuration lists no layers")
    layers: dict[str, ReferenceLayer] = {}
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise DataError(f"{where}: a layer entry without a name in the model configuration: {str(entry)[:80]}")
        nodes = entry.get("inbound_nodes") or []
        if len(nodes) > 1:
            raise DataError(f"{where}: layer {entry['name']!r} is applied {len(nodes)} times; the reference's "
                            "networks apply each layer once")
        class_name = str(entry.get("class_name", "")).removeprefix("Custom>")
        layers[entry["name"]] = ReferenceLayer(entry["name"], class_name, dict(entry.get("config") or {}),
                                               tuple(_layer_names(nodes)))
    inputs, outputs = tuple(_layer_names(config.get("input_layers"))), tuple(_layer_names(config.get("output_layers")))
    unknown = [name for name in (*inputs, *outputs) if name not in layers]
    for layer in layers.values():
        unknown += [name for name in layer.inbound if name not in layers]
    if unknown or not inputs or not outputs:
        raise DataError(f"{where}: the model configuration refers to layers it does not define: {unknown[:3]}"
                        if unknown else f"{where}: the model configuration names no input or no output layer")
    return layers, inputs, outputs


def read_reference_graph(path: str | os.PathLike) -> ReferenceGraph:
    """Parse the architecture and compile settings of a Keras 2 HDF5 model file, as data.

    Raises:
        DataError: invalid JSON, a layer holding code (``Lambda``), or a layer class the
            reference's networks do not use (the message names the class and the layer).
    """
    path = Path(path)
    with h5py.File(path, "r") as file:
        model_text = _text(file.attrs["model_config"])
        training_text = file.attrs.get("training_config")
        keras_version = _text(file.attrs.get("keras_version", "unknown"))
    try:
        model_config = json.loads(model_text)
        training_config = json.loads(_text(training_text)) if training_text is not None else None
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: the model description (JSON attribute) is malformed: {error}") from error
    layers, inputs, outputs = functional_graph(model_config, str(path))
    for layer in layers.values():
        if layer.class_name in _CODE_LAYERS:
            raise DataError(f"{path}: layer {layer.name!r} is a {layer.class_name} layer, which holds Python code; "
                            "code from a model file is never run, so this model cannot be loaded")
    for layer in layers.values():
        if layer.class_name not in REFERENCE_LAYER_CLASSES:
            raise DataError(f"{path}: unknown layer class {layer.class_name!r} (layer {layer.name!r}); a reference "
                            f"model uses only {', '.join(sorted(REFERENCE_LAYER_CLASSES))}")
    if training_config is not None and not isinstance(training_config, dict):
        training_config = None
    return ReferenceGraph(path, layers, inputs, outputs, training_config, keras_version)


def read_reference_weights(path: str | os.PathLike, layer_name: str) -> dict[str, np.ndarray]:
    """The weights of one layer of a Keras 2 model file, by short name (``kernel``, ``bias``, ``gamma``, ...).

    Raises:
        DataError: the file has no ``model_weights`` group or no group for this layer.
    """
    with h5py.File(path, "r") as file:
        if "model_weights" not in file:
            raise DataError(f"{path}: no 'model_weights' group: the model was saved without its weights")
        weights = file["model_weights"]
        if layer_name not in weights:
            raise DataError(f"{path}: no weights stored for layer {layer_name!r} under model_weights/")
        group = weights[layer_name]
        names = [_text(name) for name in group.attrs.get("weight_names", [])]
        # "conv3d_1/kernel:0" -> "kernel"
        return {name.rsplit("/", 1)[-1].split(":")[0]: np.asarray(group[name]) for name in names}
