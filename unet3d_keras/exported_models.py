"""Running an exported model (ONNX with ONNX Runtime, SavedModel with TensorFlow) without its .keras file.

An export folder (written by :mod:`unet3d_keras.export`) holds the float32 model and
:data:`METADATA_FILE`, a JSON file of everything prediction needs. :class:`ExportedModel`
reads it and offers the model as a predict function of channels-last batches of windows, the
shape :class:`~unet3d_keras.predictor.Predictor` and the sliding window use.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import DataError

__all__ = ["FORMATS", "METADATA_FILE", "MODEL_FILES", "ExportedModel", "exported_settings", "read_metadata"]

METADATA_FILE = "unet3d_export.json"
FORMATS = ("onnx", "saved_model")
# The model inside an export folder, per format.
MODEL_FILES = {"onnx": "model.onnx", "saved_model": "saved_model"}
REQUIRED_KEYS = ("format", "patch_shape", "n_channels", "n_labels", "data_format", "modalities", "normalization")


class ExportedModel:
    """An exported model and its metadata.

    Attributes:
        directory: The export folder.
        metadata: The parsed :data:`METADATA_FILE`.
        patch_shape: ``(x, y, z)`` the model takes.
        n_channels: Input channels (the modalities, in order).
        predict_fn: ``(n, x, y, z, n_channels)`` -> float32 ``(n, x, y, z, n_labels)`` (NumPy).
    """

    def __init__(self, directory: Path, metadata: dict[str, Any], call: Callable[[np.ndarray], np.ndarray]) -> None:
        self.directory, self.metadata = directory, metadata
        self.patch_shape = tuple(int(s) for s in metadata["patch_shape"])
        self.n_channels = int(metadata["n_channels"])
        channels_last = metadata["data_format"] == "channels_last"

        def predict_fn(batch) -> np.ndarray:
            batch = np.asarray(batch, dtype=np.float32)
            if channels_last:
                return np.asarray(call(batch), dtype=np.float32)
            return np.moveaxis(np.asarray(call(np.ascontiguousarray(np.moveaxis(batch, -1, 1))), np.float32), 1, -1)

        self.predict_fn = predict_fn

    @property
    def attributes(self) -> dict[str, Any]:
        """The normalisation and data attributes, as a data file's (for ``Predictor``)."""
        meta = self.metadata
        attributes = {"normalization": meta["normalization"], "modalities": list(meta["modalities"])}
        for key in ("normalization_mean", "normalization_std", "labels", "image_shape"):
            if meta.get(key) is not None:
                attributes[key] = meta[key]
        return attributes

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "ExportedModel":
        """Read an export folder.

        Raises:
            DataError: the folder, its metadata or its model is missing or unreadable, or the
                runtime its format needs is not installed.
        """
        directory = Path(directory)
        metadata = read_metadata(directory)
        fmt = metadata["format"]
        path = directory / MODEL_FILES[fmt]
        if not path.exists():
            raise DataError(f"{path}: the {fmt} model named by {directory / METADATA_FILE} is missing")
        call = _onnx_call(path) if fmt == "onnx" else _saved_model_call(path)
        return cls(directory, metadata, call)


def exported_settings(metadata: dict[str, Any]) -> dict[str, Any]:
    """The :class:`~unet3d_keras.predictor.Predictor` settings an export recorded (labels, overlap, ...)."""
    keys = ("labels", "overlap", "batch_size", "threshold", "crop", "weighting", "ignore_label", "image_shape")
    return {key: metadata[key] for key in keys if metadata.get(key) is not None}


def read_metadata(directory: Path) -> dict[str, Any]:
    """The checked :data:`METADATA_FILE` of an export folder."""
    path = directory / METADATA_FILE
    if not path.is_file():
        raise DataError(f"{directory}: not an export folder (no {METADATA_FILE}); "
                        f"write one with python scripts/export.py --model model.keras --output {directory}")
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: cannot be read as JSON ({error})") from error
    missing = [key for key in REQUIRED_KEYS if key not in metadata]
    if not isinstance(metadata, dict) or missing:
        raise DataError(f"{path}: missing keys {', '.join(missing)} (expected the metadata of an export)")
    if metadata["format"] not in FORMATS:
        raise DataError(f"{path}: format must be one of {', '.join(FORMATS)}, received {metadata['format']!r}")
    return metadata


def _onnx_call(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    try:
        import onnxruntime  # why: only needed for ONNX exports ([export] extra)
    except ImportError as error:
        raise DataError(f"{path}: running an ONNX export needs onnxruntime (pip install -e \".[export]\")") from error
    try:
        session = onnxruntime.InferenceSession(str(path), providers=onnxruntime.get_available_providers())
    except Exception as error:  # onnxruntime raises its own exception types for broken files
        raise DataError(f"{path}: ONNX Runtime cannot load it ({type(error).__name__}: {error})") from error
    name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {name: batch})[0]


def _saved_model_call(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    import tensorflow as tf  # why: only needed for SavedModel exports

    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as error:  # TensorFlow raises many types for broken SavedModels
        raise DataError(f"{path}: TensorFlow cannot load it as a SavedModel ({type(error).__name__})") from error
    return lambda batch: loaded.serve(tf.constant(batch)).numpy()
