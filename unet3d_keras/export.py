"""Exporting a trained model for deployment: a float32 SavedModel or ONNX file plus its prediction metadata.

:func:`export_model` writes an export folder that :class:`~unet3d_keras.exported_models.ExportedModel`
(and ``unet3d-predict --model DIR``) runs without Keras model code: the model in float32 whatever
policy it was trained in (Keras's ONNX export needs a float32 policy), through Keras 3's
``model.export``, and :data:`~unet3d_keras.exported_models.METADATA_FILE` with the modalities in
order, the normalisation statistics, labels, patch shape, overlap, data layout and the project's
version. The folder is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import keras

from . import __version__
from .errors import DataError
from .exported_models import FORMATS, METADATA_FILE, MODEL_FILES
from .fileio import temporary_path

logger = logging.getLogger(__name__)

__all__ = ["export_model", "float32_copy", "export_metadata"]

# Keras's name of each export format.
KERAS_FORMATS = {"onnx": "onnx", "saved_model": "tf_saved_model"}


def float32_copy(model: keras.Model) -> keras.Model:
    """The model with every layer in the float32 policy (same weights); the model itself if it is already."""
    if all(layer.dtype_policy.name == "float32" for layer in model.layers):
        return model

    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        return layer.__class__.from_config({**layer.get_config(), "dtype": "float32"})

    copy = keras.models.clone_model(model, clone_function=clone)
    for layer in model.layers:
        copy.get_layer(layer.name).set_weights(layer.get_weights())
    return copy


def export_metadata(model: keras.Model, fmt: str, attributes: dict | None = None,
                    settings: dict | None = None) -> dict[str, Any]:
    """The JSON metadata of an export.

    Args:
        model: The (float32) model; its input shape gives patch shape and channels.
        fmt: ``onnx`` or ``saved_model``.
        attributes: The training data file's attributes (modalities, normalisation, labels, image shape).
        settings: Prediction settings to record (``modalities``, ``labels``, ``overlap``, ``batch_size``,
            ``threshold``, ``image_shape``, ``crop``, ``weighting``); they override ``attributes``.
    """
    data_format = keras.config.image_data_format()
    for layer in model.layers:  # the first layer that states its data format is the model's
        if "data_format" in layer.get_config():
            data_format = layer.get_config()["data_format"]
            break
    shape = tuple(model.input_shape[1:])
    spatial, channels = (shape[:3], shape[3]) if data_format == "channels_last" else (shape[1:], shape[0])
    attributes, settings = dict(attributes or {}), dict(settings or {})
    n_labels = model.output_shape[-1] if data_format == "channels_last" else model.output_shape[1]
    return {
        "format": fmt, "model_file": MODEL_FILES[fmt], "unet3d_keras_version": __version__,
        "keras_version": keras.__version__, "data_format": data_format,
        "patch_shape": [None if s is None else int(s) for s in spatial], "n_channels": int(channels),
        "n_labels": int(n_labels),
        "modalities": list(settings.get("modalities") or attributes.get("modalities") or []),
        "normalization": attributes.get("normalization", "none"),
        "normalization_mean": _plain(attributes.get("normalization_mean")),
        "normalization_std": _plain(attributes.get("normalization_std")),
        "labels": _plain(settings.get("labels", attributes.get("labels"))),
        "image_shape": _plain(settings.get("image_shape", attributes.get("image_shape"))),
        **{key: _plain(settings[key]) for key in ("overlap", "batch_size", "threshold", "crop", "weighting",
                                                  "ignore_label") if key in settings},
    }


def _plain(value):
    """JSON-ready: arrays and tuples as lists of Python numbers."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if hasattr(value, "tolist"):
        return value.tolist()
    return [_plain(v) for v in value]


def export_model(model: keras.Model, output: str | os.PathLike, fmt: str, attributes: dict | None = None,
                 settings: dict | None = None) -> Path:
    """Write an export folder: the float32 model in ``fmt`` and :data:`METADATA_FILE`.

    Args:
        model: A trained Keras model (any dtype policy).
        output: The folder to create; it must not exist or be empty.
        fmt: ``onnx`` (needs tf2onnx, the ``[export]`` extra) or ``saved_model``.
        attributes, settings: See :func:`export_metadata`.

    Returns:
        ``output``.

    Raises:
        ValueError: unknown format; DataError: ``output`` is a file or a non-empty folder.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, received {fmt!r}")
    output = Path(output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise DataError(f"{output}: exists and is not an empty folder; choose a new output folder")
    if fmt == "onnx":
        _require_tf2onnx()
    model = float32_copy(model)
    # Keras exports only models that have run once (a clone has not).
    model(keras.ops.zeros((1,) + tuple(16 if s is None else s for s in model.input_shape[1:])))
    metadata = export_metadata(model, fmt, attributes, settings)
    tmp = temporary_path(output)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        model.export(str(tmp / MODEL_FILES[fmt]), format=KERAS_FORMATS[fmt], verbose=False)
        (tmp / METADATA_FILE).write_text(json.dumps(metadata, indent=1), encoding="utf-8")
        if output.exists():
            output.rmdir()  # empty, checked above
        os.replace(tmp, output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("Exported %s to %s", fmt, output)
    return output


def _require_tf2onnx() -> None:
    # Only ONNX exports need it (the [export] extra); find_spec checks without importing it.
    if importlib.util.find_spec("tf2onnx") is None:
        raise DataError("exporting to ONNX needs tf2onnx and onnx (pip install -e \".[export]\")")
