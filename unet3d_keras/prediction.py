"""Prediction with the reference's functions: whole volumes, windows, permutations, validation cases.

Each function is a thin call of :class:`~unet3d_keras.predictor.Predictor`, which holds the one
prediction path (window loop in :mod:`unet3d_keras.sliding_window`, test-time augmentation in
:mod:`unet3d_keras.tta`); label maps and images come from :mod:`unet3d_keras.label_maps`.
Volumes are channels-first, ``(n_channels, x, y, z)``.
"""

from __future__ import annotations

import os
from typing import Sequence

import keras
import nibabel as nib
import numpy as np

from .splits import load_split
from .label_maps import get_prediction_labels, multi_class_prediction, prediction_to_image
from .predictor import Predictor

__all__ = [
    "get_prediction_labels", "get_test_indices", "multi_class_prediction", "patch_wise_prediction", "predict",
    "predict_and_get_image", "predict_from_data_file", "predict_from_data_file_and_get_image",
    "predict_from_data_file_and_write_image", "predict_with_permutations", "prediction_to_image",
    "run_validation_case", "run_validation_cases",
]


def patch_wise_prediction(
    model: keras.Model,
    data: np.ndarray,
    overlap: int = 0,
    batch_size: int = 1,
    permute: bool = False,
    weighting: str = "uniform",
    mirror: bool = False,
    show_progress: bool = False,
) -> np.ndarray:
    """Predict a volume with windows of the model's input size (reference API).

    Any ``batch_size`` works: the last batch is short.

    Args:
        model: Keras model with a fixed spatial input size.
        data: ``(1, n_channels, x, y, z)`` as in the reference, or ``(n_channels, x, y, z)``.
        overlap: Voxels shared by neighbouring windows.
        batch_size: Windows per model call.
        permute: Average over the 48 cube permutations of the volume (cubic windows only).
        weighting: ``uniform`` or ``gaussian`` blending of overlaps.
        mirror: Average over the 8 mirrorings of each window.
        show_progress: Progress bar over windows (over permutations with ``permute``).

    Returns:
        float32 ``(n_labels, x, y, z)``.
    """
    data = np.asarray(data)
    volume = data[0] if data.ndim == 5 else data
    return Predictor(model, overlap=overlap, batch_size=batch_size, permute=permute, weighting=weighting,
                     mirror=mirror, show_progress=show_progress).predict_windows(volume)


def predict(model: keras.Model, data: np.ndarray, permute: bool = False) -> np.ndarray:
    """Predict a channels-first batch ``(n, n_channels, x, y, z)`` -> ``(n, n_labels, x, y, z)``.

    With ``permute`` each item is averaged over the 48 cube permutations.
    """
    return Predictor(model, permute=permute).predict_batch(data)


def predict_with_permutations(model: keras.Model, data: np.ndarray) -> np.ndarray:
    """Average prediction of one channels-first item ``(n_channels, x, y, z)`` over the 48 cube permutations."""
    return Predictor(model, permute=True).predict_batch(np.asarray(data)[np.newaxis])[0]


def get_test_indices(testing_file: str | os.PathLike, allow_pickle: bool = False) -> list[int]:
    """Indices of a split file: JSON, or a ``.pkl`` file only with ``allow_pickle`` (it can execute code)."""
    return load_split(testing_file, allow_pickle=allow_pickle)


def predict_from_data_file(model: keras.Model, open_data_file, index: int) -> np.ndarray:
    """Probabilities ``(n_labels, x, y, z)`` of subject ``index`` of an open data file."""
    return Predictor(model).predict_array(np.asarray(open_data_file.root.data[index]))


def predict_and_get_image(model: keras.Model, data: np.ndarray, affine: np.ndarray) -> nib.Nifti1Image:
    """Image of the first output channel of a channels-first batch ``(1, n_channels, x, y, z)``."""
    return nib.Nifti1Image(predict(model, data)[0, 0], affine)


def predict_from_data_file_and_get_image(model: keras.Model, open_data_file, index: int) -> nib.Nifti1Image:
    """Image of the first output channel of subject ``index`` of an open data file, with its affine."""
    return nib.Nifti1Image(predict_from_data_file(model, open_data_file, index)[0],
                           np.asarray(open_data_file.root.affine[index]))


def predict_from_data_file_and_write_image(model: keras.Model, open_data_file, index: int,
                                           out_file: str | os.PathLike) -> None:
    """Write :func:`predict_from_data_file_and_get_image` to ``out_file``."""
    predict_from_data_file_and_get_image(model, open_data_file, index).to_filename(str(out_file))


def run_validation_case(
    data_index: int,
    output_dir: str | os.PathLike,
    model: keras.Model,
    data_file,
    training_modalities: Sequence[str],
    output_label_map: bool = False,
    threshold: float = 0.5,
    labels: Sequence[int] | None = None,
    overlap: int = 16,
    permute: bool = False,
    test: bool = False,
    output_basename: str = "prediction.nii.gz",
    batch_size: int = 1,
    weighting: str = "uniform",
    mirror: bool = False,
    picture: bool = False,
) -> list[str]:
    """Predict one subject of an open HDF5 data file and write NIfTI files (reference API).

    See :meth:`Predictor.predict_case <unet3d_keras.predictor.Predictor.predict_case>`; every
    file is written to a temporary name and renamed.

    Returns:
        The paths written.
    """
    predictor = Predictor(model, labels=labels, overlap=overlap, batch_size=batch_size, permute=permute,
                          weighting=weighting, mirror=mirror, threshold=threshold)
    return predictor.predict_case(data_file, data_index, output_dir, training_modalities,
                                  output_label_map=output_label_map, test=test, output_basename=output_basename,
                                  picture=picture)[0]


def run_validation_cases(
    validation_keys_file: str | os.PathLike,
    model_file: str | os.PathLike,
    training_modalities: Sequence[str],
    labels: Sequence[int] | None,
    hdf5_file: str | os.PathLike,
    output_label_map: bool = False,
    output_dir: str | os.PathLike = ".",
    threshold: float = 0.5,
    overlap: int = 16,
    permute: bool = False,
    output_basename: str = "{subject}_prediction.nii.gz",
    test: bool = False,
    batch_size: int = 1,
    weighting: str = "uniform",
    mirror: bool = False,
    show_progress: bool = True,
    allow_pickle: bool = False,
    picture: bool = False,
) -> list[str]:
    """Predict the validation subjects of a data file and write NIfTI files (reference API).

    The split file is JSON (a ``.pkl`` file is read only with ``allow_pickle=True``). Each
    subject gets a folder ``output_dir/<subject id>`` (``validation_case_<index>`` without
    ids); ``output_dir`` gets the prediction settings (``prediction_settings.json``).

    Returns:
        The paths written.
    """
    predictor = Predictor.from_files(model_file, labels=labels, overlap=overlap, batch_size=batch_size,
                                     permute=permute, weighting=weighting, mirror=mirror, threshold=threshold,
                                     show_progress=show_progress)
    return predictor.predict_validation(
        hdf5_file, validation_keys_file, output_dir, training_modalities, output_label_map=output_label_map,
        test=test, output_basename=output_basename, picture=picture, allow_pickle=allow_pickle)[0]
