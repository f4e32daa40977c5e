"""Foreground cropping, reslicing of subject image sets and intensity normalisation.

The crop box of a subject is the bounding box (plus one voxel) of the union of the non-zero
voxels of all its images, truth included; every image is cropped to it and resized to the target
shape (linear for intensities, nearest for labels); the stored data are normalised per channel,
with statistics over a set of subjects (``"dataset"``) or over each volume's own foreground
(``"zscore"``).
"""

from __future__ import annotations

import logging
import os
from typing import Any, Iterable, Sequence

import nibabel as nib
import numpy as np
from tqdm.auto import tqdm

from .channel_statistics import compute_channel_statistics, safe_std
from .errors import DataError
from .subject_images import foreground_mask, read_subject_images
from .utils.utils import crop_img, crop_img_to, get_affine, new_image, read_image, resize

logger = logging.getLogger(__name__)

__all__ = [
    "find_downsized_info",
    "get_cropping_parameters",
    "reslice_image_set",
    "get_complete_foreground",
    "get_foreground_from_set_of_files",
    "normalize_data",
    "normalize_data_storage",
    "NORMALIZATION_METHODS",
]

PathLike = str | os.PathLike

#: Values accepted by ``normalize_data_storage(method=...)``.
NORMALIZATION_METHODS = ("dataset", "zscore")

def get_foreground_from_set_of_files(
    set_of_files: Sequence[PathLike],
    background_value: float = 0,
    tolerance: float = 0.00001,
    return_image: bool = False,
) -> np.ndarray | nib.Nifti1Image:
    """Union of the foreground of a subject's images.

    Args:
        set_of_files: image files of one subject (modalities and truth), all of one shape.
        background_value: value of background voxels.
        tolerance: voxels within ``tolerance`` of ``background_value`` are background.
        return_image: return a nibabel image (affine of the last file) instead of an array.

    Returns:
        uint8 array of shape ``(x, y, z)``, 1 where any image is foreground, or that array as an image.
    """
    foreground = None
    image = None
    for image_file in set_of_files:
        image = read_image(image_file)
        is_foreground = foreground_mask(np.asanyarray(image.dataobj), background_value, tolerance)
        if foreground is None:
            foreground = np.zeros(is_foreground.shape, dtype=np.uint8)
        elif foreground.shape != is_foreground.shape:
            raise DataError(
                f"{os.fspath(image_file)} has shape {is_foreground.shape}, but the previous images of "
                f"this subject have shape {foreground.shape}"
            )
        foreground[is_foreground] = 1
    if foreground is None:
        raise DataError("get_foreground_from_set_of_files needs at least one file")
    if return_image:
        return new_image(foreground, image.affine)
    return foreground


def get_complete_foreground(training_data_files: Sequence[Sequence[PathLike]]) -> nib.Nifti1Image:
    """Union of the foregrounds of several subjects (all of one shape).

    Returns:
        uint8 image of shape ``(x, y, z)`` with the affine of the first subject's last file.
    """
    if not training_data_files:
        raise DataError("get_complete_foreground needs at least one subject")
    foreground = None
    for set_of_files in training_data_files:
        subject_foreground = get_foreground_from_set_of_files(set_of_files)
        if foreground is None:
            foreground = subject_foreground
        else:
            if subject_foreground.shape != foreground.shape:
                raise DataError(
                    f"Subject with files {list(map(os.fspath, set_of_files))} has shape "
                    f"{subject_foreground.shape}; earlier subjects have {foreground.shape}"
                )
            foreground[subject_foreground > 0] = 1
    return new_image(foreground, get_affine(training_data_files[0][-1]))


def get_cropping_parameters(in_files: Sequence[Sequence[PathLike]]) -> list[slice]:
    """Crop box around the foreground of one or more subjects.

    Args:
        in_files: a list of subjects, each a sequence of image files.

    Returns:
        One slice per spatial axis (bounding box plus one voxel of margin).
    """
    if len(in_files) > 1:
        foreground = get_complete_foreground(in_files)
    else:
        foreground = get_foreground_from_set_of_files(in_files[0], return_image=True)
    return crop_img(foreground, return_slices=True, copy=True)


def find_downsized_info(
    training_data_files: Sequence[Sequence[PathLike]], input_shape: Sequence[int]
) -> tuple[list[slice], np.ndarray, nib.Nifti1Header]:
    """Crop box of the union foreground of all subjects and the geometry after resizing it.

    Returns:
        ``(crop_slices, affine, header)`` of the cropped foreground resized to ``input_shape``.
    """
    foreground = get_complete_foreground(training_data_files)
    crop_slices = crop_img(foreground, return_slices=True, copy=True)
    cropped = crop_img_to(foreground, crop_slices, copy=True)
    final_image = resize(cropped, new_shape=input_shape, interpolation="nearest")
    return crop_slices, final_image.affine, final_image.header


def reslice_image_set(
    in_files: Sequence[PathLike],
    image_shape: Sequence[int],
    out_files: Sequence[PathLike] | None = None,
    label_indices: int | Iterable[int] | None = None,
    crop: bool = False,
) -> list[nib.Nifti1Image] | list[str]:
    """Crops (optionally) and resizes the images of one subject.

    Args:
        in_files: the subject's files.
        image_shape: ``(x, y, z)`` of the output.
        out_files: if given, the images are written there and their absolute paths returned.
        label_indices: indices of label images in ``in_files`` (nearest interpolation).
        crop: crop to the foreground of all the subject's images first.

    Returns:
        The resliced images, or the absolute paths of ``out_files``.
    """
    images = read_subject_images(in_files, image_shape, label_indices=label_indices, crop=crop)
    if out_files:
        for image, out_file in zip(images, out_files):
            image.to_filename(os.fspath(out_file))
        return [os.path.abspath(os.fspath(out_file)) for out_file in out_files]
    return images


def normalize_data(data: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Subtracts ``mean`` and divides by ``std`` per channel, in place.

    Args:
        data: float array of shape ``(channels, x, y, z)``.
        mean, std: arrays of shape ``(channels,)``.

    Returns:
        ``data``.
    """
    mean = np.asarray(mean)
    std = np.asarray(std)
    data -= mean[:, np.newaxis, np.newaxis, np.newaxis]
    data /= std[:, np.newaxis, np.newaxis, np.newaxis]
    return data


def normalize_data_storage(
    data_storage: Any,
    indices: Sequence[int] | None = None,
    method: str = "dataset",
    show_progress: bool = False,
    return_statistics: bool = False,
) -> Any:
    """Normalises stored subjects in place; returns ``data_storage`` (or the statistics used).

    ``method="dataset"``: per-channel mean and (pooled) standard deviation over
    all voxels of the subjects in ``indices`` (the training subjects, so that validation data
    do not leak into the statistics; all subjects by default), applied to every subject.
    ``method="zscore"``: each subject, channel by channel, is shifted and scaled by the mean and
    standard deviation of its own foreground (voxels where any channel is non-zero); background
    stays 0, and ``indices`` is ignored.

    With ``return_statistics=True`` it returns the statistics instead of ``data_storage``;
    ``write_data_to_file`` stores them as attributes of the HDF5 file.

    Args:
        data_storage: array-like of shape ``(n_subjects, channels, x, y, z)``, writable per subject.
        indices: subjects to take the ``"dataset"`` statistics from.
        method: one of ``NORMALIZATION_METHODS``.
        show_progress: show tqdm bars.
        return_statistics: return the statistics instead of ``data_storage``.

    Returns:
        ``data_storage``, or with ``return_statistics``: ``{"method": str, "mean": array,
        "std": array, "indices": array}``: for ``"dataset"`` the mean and std have shape ``(channels,)``
        and ``indices`` lists the subjects used; for
        ``"zscore"`` they have shape ``(n_subjects, channels)`` and ``indices`` is all subjects.
    """
    if method not in NORMALIZATION_METHODS:
        raise ValueError(f"normalisation method must be one of {NORMALIZATION_METHODS}; got {method!r}")
    n_subjects = int(data_storage.shape[0])
    n_channels = int(data_storage.shape[1])
    if method == "dataset":
        used = list(range(n_subjects)) if indices is None else [int(i) for i in indices]
        mean, std = compute_channel_statistics(data_storage, used, show_progress=show_progress)
        divisor = safe_std(std, "dataset normalisation")
        for index in tqdm(range(n_subjects), desc="Normalising", unit="subject", disable=not show_progress):
            data_storage[index] = normalize_data(np.asarray(data_storage[index], dtype=np.float32), mean, divisor)
        statistics = {"method": method, "mean": mean, "std": std, "indices": np.asarray(used, dtype=np.int64)}
        return statistics if return_statistics else data_storage

    means = np.zeros((n_subjects, n_channels))
    stds = np.ones((n_subjects, n_channels))
    for index in tqdm(range(n_subjects), desc="Normalising", unit="subject", disable=not show_progress):
        data = np.asarray(data_storage[index], dtype=np.float32)
        mask = np.any(data != 0, axis=0)
        if not mask.any():
            logger.warning("Subject %d has no foreground; z-score normalisation skipped", index)
            continue
        for channel in range(n_channels):
            values = data[channel][mask].astype(np.float64)
            means[index, channel] = values.mean()
            stds[index, channel] = values.std()
        divisor = safe_std(stds[index], f"z-score normalisation of subject {index}")
        for channel in range(n_channels):
            data[channel][mask] = (data[channel][mask] - means[index, channel]) / divisor[channel]
        data_storage[index] = data
    statistics = {"method": method, "mean": means, "std": stds, "indices": np.arange(n_subjects, dtype=np.int64)}
    return statistics if return_statistics else data_storage
