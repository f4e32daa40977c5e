"""Foreground cropping, reslicing of subject image sets and intensity normalisation.

Reference semantics (``unet3dlegacy.normalize``): the crop box of a subject is the bounding box
(plus one voxel) of the union of the non-zero voxels of all its images, truth included; every
image is cropped to it and resized to the target shape (linear for intensities, nearest for
labels); the stored data are normalised per channel with a dataset mean and standard deviation.

Differences from the reference:

* ``reslice_image_set`` reads each file once (the reference read every file twice) and checks
  that the images of a subject agree in shape and affine and hold finite values.
* ``normalize_data_storage`` streams: it accumulates per-channel statistics subject by subject
  in float64 (the data set is never loaded whole), can take them from a subset of subjects
  (the training indices), and returns them. ``method="dataset"`` uses the pooled standard
  deviation of all voxels of those subjects; the reference averaged the per-subject standard
  deviations, which ignores the spread between subjects (the means agree, since all subjects
  have the same shape). ``method="zscore"`` normalises each volume over its own foreground.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Iterable, Sequence

import nibabel as nib
import numpy as np
from tqdm.auto import tqdm

from .errors import DataError
from .utils.utils import crop_img, crop_img_to, get_affine, new_image, read_image, resize

logger = logging.getLogger(__name__)

__all__ = [
    "find_downsized_info",
    "get_cropping_parameters",
    "reslice_image_set",
    "read_subject_images",
    "check_subject_geometry",
    "get_complete_foreground",
    "get_foreground_from_set_of_files",
    "normalize_data",
    "normalize_data_storage",
    "compute_channel_statistics",
    "NORMALIZATION_METHODS",
]

PathLike = str | os.PathLike

#: Values accepted by ``normalize_data_storage(method=...)``.
NORMALIZATION_METHODS = ("dataset", "zscore")

#: Default relative tolerance when comparing the affines of one subject's images.
AFFINE_RTOL = 1e-3


def _subject_label(subject_id: Any, in_files: Sequence[PathLike]) -> str:
    if subject_id is not None:
        return f"subject {subject_id!s}"
    if in_files:
        return f"subject in {os.path.dirname(os.path.abspath(os.fspath(in_files[0])))}"
    return "subject"


def _foreground(data: np.ndarray, background_value: float, tolerance: float) -> np.ndarray:
    return np.logical_or(data < (background_value - tolerance), data > (background_value + tolerance))


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
        is_foreground = _foreground(np.asanyarray(image.dataobj), background_value, tolerance)
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


def _affines_match(affine: np.ndarray, reference: np.ndarray, rtol: float) -> bool:
    # Absolute slack scaled to the voxel size so that zero entries of rotated affines compare sanely.
    voxel_size = float(np.max(np.linalg.norm(reference[:3, :3], axis=0)))
    return bool(np.allclose(affine, reference, rtol=rtol, atol=rtol * max(voxel_size, 1e-6)))


def check_subject_geometry(
    in_files: Sequence[PathLike],
    shapes: Sequence[Sequence[int]],
    affines: Sequence[np.ndarray],
    subject_id: Any = None,
    rtol: float = AFFINE_RTOL,
) -> None:
    """Checks that the images of one subject are 3D and share shape and affine.

    Args:
        in_files: the subject's files (for messages).
        shapes: shape of each image; trailing singleton axes after the third are ignored.
        affines: 4x4 affine of each image.
        subject_id: named in messages.
        rtol: relative tolerance on affine entries (absolute slack ``rtol`` times the voxel size).

    Raises:
        DataError: naming the subject and the first file that disagrees with the first image.
    """
    label = _subject_label(subject_id, in_files)
    reference_shape = reference_affine = None
    for in_file, shape, affine in zip(in_files, shapes, affines):
        shape = tuple(int(s) for s in shape)
        if len(shape) > 3 and all(s == 1 for s in shape[3:]):
            shape = shape[:3]
        if len(shape) != 3:
            raise DataError(
                f"{label}: {os.fspath(in_file)} has shape {shape}; expected a 3D image"
                + (f" ({int(np.prod(shape[3:]))} volumes along the 4th axis)" if len(shape) > 3 else "")
            )
        affine = np.asarray(affine, dtype=float)
        if reference_shape is None:
            reference_shape, reference_affine, reference_file = shape, affine, in_file
            continue
        if shape != reference_shape:
            raise DataError(
                f"{label}: {os.fspath(in_file)} has shape {shape}, but {os.fspath(reference_file)} "
                f"has shape {reference_shape}; all images of a subject must share one grid"
            )
        if not _affines_match(affine, reference_affine, rtol):
            raise DataError(
                f"{label}: the affine of {os.fspath(in_file)} differs from that of "
                f"{os.fspath(reference_file)} by more than the tolerance (rtol={rtol}):\n"
                f"{np.array2string(affine, precision=4)}\nvs\n{np.array2string(reference_affine, precision=4)}"
            )


def read_subject_images(
    in_files: Sequence[PathLike],
    image_shape: Sequence[int] | None = None,
    label_indices: int | Iterable[int] | None = None,
    crop: bool = False,
    subject_id: Any = None,
    affine_rtol: float = AFFINE_RTOL,
) -> list[nib.Nifti1Image]:
    """Reads, checks, crops and resizes the images of one subject, reading each file once.

    Args:
        in_files: the subject's files (e.g. modalities, then truth).
        image_shape: ``(x, y, z)`` to resize to, or ``None`` to keep the (cropped) shape.
        label_indices: indices of label images (nearest-neighbour interpolation).
        crop: crop all images to the subject's foreground box (union over all files).
        subject_id: named in error messages.
        affine_rtol: tolerance of the affine comparison.

    Returns:
        One image per file, in RAS+ orientation when resized.

    Raises:
        DataError: a file is missing or unreadable, is not 3D, holds NaN or infinite values, or
            disagrees in shape or affine with the subject's first image.
    """
    label = _subject_label(subject_id, in_files)
    if label_indices is None:
        label_set: set[int] = set()
    elif isinstance(label_indices, (int, np.integer)):
        label_set = {int(label_indices)}
    else:
        label_set = {int(i) for i in label_indices}
    images = []
    for index, in_file in enumerate(in_files):
        try:
            image = read_image(in_file, interpolation="nearest" if index in label_set else "linear")
        except DataError as error:
            raise DataError(f"{label}: {error}") from error
        data = np.asanyarray(image.dataobj)
        if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
            n_bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
            raise DataError(f"{label}: {os.fspath(in_file)} contains {n_bad} NaN or infinite voxels")
        images.append(image)
    check_subject_geometry(
        in_files, [image.shape for image in images], [image.affine for image in images], subject_id, affine_rtol
    )
    if crop:
        foreground = np.zeros(images[0].shape, dtype=np.uint8)
        for image in images:
            foreground[_foreground(np.asanyarray(image.dataobj), 0, 0.00001)] = 1
        crop_slices = crop_img(new_image(foreground, images[0].affine), return_slices=True)
        images = [crop_img_to(image, crop_slices, copy=False) for image in images]
    if image_shape:
        images = [
            resize(image, image_shape, interpolation="nearest" if index in label_set else "linear")
            for index, image in enumerate(images)
        ]
    return images


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


def _safe_std(std: np.ndarray, what: str) -> np.ndarray:
    std = np.array(std, dtype=np.float64, copy=True)
    zero = ~(std > 0)
    if np.any(zero):
        logger.warning(
            "%s: standard deviation 0 for channel(s) %s; dividing by 1 instead", what, np.nonzero(zero)[0].tolist()
        )
        std[zero] = 1.0
    return std


def compute_channel_statistics(
    data_storage: Any, indices: Sequence[int] | None = None, show_progress: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and (pooled, population) standard deviation over all voxels of some subjects.

    Streams one subject at a time and one channel at a time in float64, merging the per-subject
    means and centred sums of squares (Chan et al.'s pairwise update, which stays accurate where
    a plain sum of squares would cancel).

    Args:
        data_storage: array-like of shape ``(n_subjects, channels, x, y, z)`` (e.g. a PyTables
            EArray); indexed one subject at a time.
        indices: subjects to use; all by default.
        show_progress: show a tqdm bar.

    Returns:
        ``(mean, std)``, float64 arrays of shape ``(channels,)``.
    """
    n_subjects = int(data_storage.shape[0])
    n_channels = int(data_storage.shape[1])
    indices = list(range(n_subjects)) if indices is None else [int(i) for i in indices]
    if not indices:
        raise DataError("Cannot compute normalisation statistics from an empty list of subjects")
    bad = [i for i in indices if not 0 <= i < n_subjects]
    if bad:
        raise DataError(f"Normalisation indices {bad} are outside 0..{n_subjects - 1}")
    count = np.zeros(n_channels)
    mean = np.zeros(n_channels)
    m2 = np.zeros(n_channels)
    for index in tqdm(indices, desc="Normalisation statistics", unit="subject", disable=not show_progress):
        subject = data_storage[index]
        for channel in range(n_channels):
            values = np.asarray(subject[channel], dtype=np.float64)
            n_b = values.size
            mean_b = values.mean()
            m2_b = np.sum(np.square(values - mean_b))
            n_a = count[channel]
            n = n_a + n_b
            delta = mean_b - mean[channel]
            mean[channel] += delta * n_b / n
            m2[channel] += m2_b + delta * delta * n_a * n_b / n
            count[channel] = n
        del subject
    return mean, np.sqrt(m2 / count)


def normalize_data_storage(
    data_storage: Any,
    indices: Sequence[int] | None = None,
    method: str = "dataset",
    show_progress: bool = False,
    return_statistics: bool = False,
) -> Any:
    """Normalises stored subjects in place; returns ``data_storage`` (or the statistics used).

    ``method="dataset"`` (the reference's method): per-channel mean and standard deviation over
    all voxels of the subjects in ``indices`` (the training subjects, so that validation data
    do not leak into the statistics; all subjects by default), applied to every subject.
    ``method="zscore"``: each subject, channel by channel, is shifted and scaled by the mean and
    standard deviation of its own foreground (voxels where any channel is non-zero); background
    stays 0, and ``indices`` is ignored.

    Like the reference, it returns ``data_storage``; with ``return_statistics=True`` it returns
    the statistics instead, which ``write_data_to_file`` stores as attributes of the HDF5 file.
    The ``"dataset"`` standard deviation is the pooled one over all voxels of the subjects (the
    reference averaged the per-subject standard deviations; the means agree).

    Args:
        data_storage: array-like of shape ``(n_subjects, channels, x, y, z)``, writable per subject.
        indices: subjects to take the ``"dataset"`` statistics from.
        method: one of ``NORMALIZATION_METHODS``.
        show_progress: show tqdm bars.
        return_statistics: return the statistics instead of ``data_storage``.

    Returns:
        ``data_storage``, or with ``return_statistics``: ``{"method": str, "mean": array, "std": array, "indices": array}``: for ``"dataset"`` the
        mean and std have shape ``(channels,)`` and ``indices`` lists the subjects used; for
        ``"zscore"`` they have shape ``(n_subjects, channels)`` and ``indices`` is all subjects.
    """
    if method not in NORMALIZATION_METHODS:
        raise ValueError(f"normalisation method must be one of {NORMALIZATION_METHODS}; got {method!r}")
    n_subjects = int(data_storage.shape[0])
    n_channels = int(data_storage.shape[1])
    if method == "dataset":
        used = list(range(n_subjects)) if indices is None else [int(i) for i in indices]
        mean, std = compute_channel_statistics(data_storage, used, show_progress=show_progress)
        divisor = _safe_std(std, "dataset normalisation")
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
        divisor = _safe_std(stds[index], f"z-score normalisation of subject {index}")
        for channel in range(n_channels):
            data[channel][mask] = (data[channel][mask] - means[index, channel]) / divisor[channel]
        data_storage[index] = data
    statistics = {"method": method, "mean": means, "std": stds, "indices": np.arange(n_subjects, dtype=np.int64)}
    return statistics if return_statistics else data_storage
