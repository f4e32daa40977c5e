"""Writing subjects' images into the compressed HDF5 store used for training, and opening it.

Arrays (PyTables, blosc level 5, a fletcher32 checksum per chunk):

* ``/data`` float32 ``(N, C, X, Y, Z)`` -- channels first;
* ``/truth`` uint8 ``(N, 1, X, Y, Z)`` (no rows when written with ``save_truth=False``);
* ``/affine`` float32 ``(N, 4, 4)``;
* ``/subject_ids`` (optional) byte strings, UTF-8.

``write_data_to_file`` checks what it can before creating anything, streams one subject at a
time and writes under a temporary name that is renamed into place only once the file is
complete: an interrupted run leaves either no file or the previous complete one. The root
attributes and the checks before use are :mod:`unet3d_keras.hdf5_store`'s; the input checks are
:mod:`unet3d_keras.data_checks`'.
"""

from __future__ import annotations

import errno
import logging
import os
from typing import Any, Iterable, Sequence

import numpy as np
import tables
from tqdm.auto import tqdm

from .data_checks import (
    check_truth_labels,
    check_write_arguments,
    refuse_unexpected_labels,
    subject_name,
    validate_training_files,
    warn_unexpected_labels,
)
from .errors import DataError
from .fileio import atomic_path
from .hdf5_store import (
    check_data_file,
    flush_hdf5_file,
    mark_data_file_complete,
    write_metadata,
    write_normalization_attributes,
)
from .normalize import normalize_data_storage
from .pickle_guard import refuse_pickled_attributes
from .subject_images import read_subject_images

logger = logging.getLogger(__name__)

__all__ = [
    "create_data_file",
    "write_image_data_to_file",
    "add_data_to_storage",
    "write_data_to_file",
    "open_data_file",
    # Re-exported from their own modules for the callers that import them from here.
    "DataError",
    "check_data_file",
    "refuse_pickled_attributes",
]

PathLike = str | os.PathLike

# fletcher32: a checksum per chunk, so bytes damaged after writing fail the read instead of passing
# as wrong voxels (blosc stores incompressible blocks raw: zeroed bytes there decompress "fine").
_FILTERS = dict(complevel=5, complib="blosc", fletcher32=True)


def create_data_file(
    out_file: PathLike, n_channels: int, n_samples: int, image_shape: Sequence[int]
) -> tuple[tables.File, tables.EArray, tables.EArray, tables.EArray]:
    """Creates (overwrites) an HDF5 file with empty, extendable ``data``, ``truth`` and ``affine`` arrays.

    This writes no attributes: a file built by hand with this function is used without metadata
    (with a warning) unless :func:`~unet3d_keras.hdf5_store.mark_data_file_complete` is called.
    ``write_data_to_file`` adds the attributes.

    Args:
        out_file: path of the file.
        n_channels: number of image channels (modalities).
        n_samples: expected number of subjects (sizes the HDF5 chunks).
        image_shape: ``(x, y, z)``.

    Returns:
        ``(hdf5_file, data_storage, truth_storage, affine_storage)``: the open file and arrays of
        shape ``(0, n_channels, x, y, z)`` float32, ``(0, 1, x, y, z)`` uint8 and ``(0, 4, 4)`` float32.
    """
    hdf5_file = tables.open_file(os.fspath(out_file), mode="w")
    try:
        filters = tables.Filters(**_FILTERS)
        image_shape = [int(s) for s in image_shape]
        expectedrows = max(int(n_samples), 1)
        data_storage = hdf5_file.create_earray(
            hdf5_file.root, "data", tables.Float32Atom(), shape=tuple([0, int(n_channels)] + image_shape),
            filters=filters, expectedrows=expectedrows,
        )
        truth_storage = hdf5_file.create_earray(
            hdf5_file.root, "truth", tables.UInt8Atom(), shape=tuple([0, 1] + image_shape),
            filters=filters, expectedrows=expectedrows,
        )
        affine_storage = hdf5_file.create_earray(
            hdf5_file.root, "affine", tables.Float32Atom(), shape=(0, 4, 4),
            filters=filters, expectedrows=expectedrows,
        )
    except BaseException:
        hdf5_file.close()
        raise
    return hdf5_file, data_storage, truth_storage, affine_storage


def add_data_to_storage(
    data_storage: tables.EArray,
    truth_storage: tables.EArray,
    affine_storage: tables.EArray,
    subject_data: Sequence[np.ndarray],
    affine: np.ndarray,
    n_channels: int,
    truth_dtype: Any,
    save_truth: bool = True,
) -> None:
    """Appends one subject.

    Args:
        data_storage, truth_storage, affine_storage: the arrays from ``create_data_file``.
        subject_data: ``n_channels`` arrays of shape ``(x, y, z)``, then the truth if ``save_truth``.
        affine: 4x4 affine of the subject's (resized) images.
        n_channels: number of image channels.
        truth_dtype: dtype the truth is cast to before storing.
        save_truth: append the truth.
    """
    data_storage.append(np.asarray(subject_data[:n_channels], dtype=np.float32)[np.newaxis])
    if save_truth:
        truth_storage.append(np.asarray(subject_data[n_channels], dtype=truth_dtype)[np.newaxis][np.newaxis])
    affine_storage.append(np.asarray(affine, dtype=np.float32)[np.newaxis])


def write_image_data_to_file(
    image_files: Sequence[Sequence[PathLike]],
    data_storage: tables.EArray,
    truth_storage: tables.EArray,
    image_shape: Sequence[int],
    n_channels: int,
    affine_storage: tables.EArray,
    truth_dtype: Any = np.uint8,
    crop: bool = True,
    label_indices: int | Iterable[int] | None = None,
    save_truth: bool = True,
    *,
    subject_ids: Sequence[str] | None = None,
    labels: Sequence[int] | None = None,
    show_progress: bool = False,
    ignore_label: int | None = None,
    strict_labels: bool = False,
    clip_outliers: bool = False,
) -> tuple[tables.EArray, tables.EArray]:
    """Reads, crops, resizes and appends subjects one at a time.

    Args:
        image_files: one tuple of files per subject: the modalities, then the truth (if any).
        data_storage, truth_storage, affine_storage: arrays from ``create_data_file``.
        image_shape: ``(x, y, z)`` the images are resized to.
        n_channels: number of modalities.
        truth_dtype: dtype of the stored truth.
        crop: crop each subject to its foreground first.
        label_indices: indices of label files in each tuple; the last file by default.
        save_truth: store the truth (file at index ``n_channels``).
        subject_ids: named in error messages.
        labels: expected label values; others trigger one warning listing the values found.
        show_progress: show a tqdm bar.
        ignore_label: the value of unannotated voxels (sparse annotation), stored as it is.
        strict_labels: a truth value outside ``labels`` (and 0, ``ignore_label``) is an error,
            raised at the first such subject, instead of a warning.
        clip_outliers: clip implausible intensities with a warning instead of refusing the subject.

    Returns:
        ``(data_storage, truth_storage)``.

    Raises:
        DataError: a subject's files are missing, unreadable or inconsistent (the message names
            the subject and the file).
    """
    found_labels: dict[str, np.ndarray] = {}
    for index, set_of_files in enumerate(
        tqdm(image_files, desc="Writing subjects", unit="subject", disable=not show_progress)
    ):
        _label_indices = len(set_of_files) - 1 if label_indices is None else label_indices
        subject = subject_name(subject_ids, index, set_of_files)
        images = read_subject_images(
            set_of_files, image_shape, label_indices=_label_indices, crop=crop, subject_id=subject,
            clip_outliers=clip_outliers,
        )
        subject_data = [np.asanyarray(image.dataobj) for image in images]
        if save_truth:
            found_labels[subject] = check_truth_labels(subject_data[n_channels], subject, set_of_files[n_channels])
            if strict_labels and labels is not None:
                refuse_unexpected_labels(found_labels[subject], labels, ignore_label, subject,
                                         set_of_files[n_channels])
        add_data_to_storage(
            data_storage, truth_storage, affine_storage, subject_data, images[0].affine, n_channels,
            truth_dtype, save_truth=save_truth,
        )
        del images, subject_data
    if labels is not None:
        warn_unexpected_labels(found_labels, labels, ignore_label, stacklevel=3)
    return data_storage, truth_storage


def write_data_to_file(
    training_data_files: Sequence[Sequence[PathLike]],
    out_file: PathLike,
    image_shape: Sequence[int],
    truth_dtype: Any = np.uint8,
    subject_ids: Sequence[str] | None = None,
    normalize: bool = True,
    crop: bool = True,
    save_truth: bool = True,
    *,
    modalities: Sequence[str] | None = None,
    labels: Sequence[int] | None = None,
    normalization: str = "dataset",
    normalization_indices: Sequence[int] | None = None,
    show_progress: bool = True,
    validate: bool = True,
    ignore_label: int | None = None,
    strict_labels: bool = False,
    clip_outliers: bool = False,
) -> str:
    """Writes a set of subjects to an HDF5 file, atomically.

    Example ``training_data_files``::

        [("sub1/t1.nii.gz", "sub1/t2.nii.gz", "sub1/truth.nii.gz"),
         ("sub2/t1.nii.gz", "sub2/t2.nii.gz", "sub2/truth.nii.gz")]

    Args:
        training_data_files: per subject, the modality files in a fixed order, then the truth
            file (omit it and pass ``save_truth=False`` if there is none).
        out_file: the HDF5 file; its folder must exist. An existing file is replaced only once
            the new one is complete.
        image_shape: ``(x, y, z)`` the images are resized to.
        truth_dtype: dtype of the stored truth (the array is uint8 either way).
        subject_ids: stored in ``/subject_ids`` and used in messages.
        normalize: normalise the intensities.
        crop: crop each subject to the foreground of its images first.
        save_truth: the last file of each tuple is the truth.
        modalities: names of the channels, stored as an attribute.
        labels: the label values expected in the truth (stored; others warn).
        normalization: ``"dataset"`` (per-channel statistics over the subjects) or ``"zscore"``
            (per subject), see :func:`unet3d_keras.normalize.normalize_data_storage`; ``"none"``
            is the same as ``normalize=False``.
        normalization_indices: subjects the dataset statistics come from (e.g. the training
            split); all by default.
        show_progress: show tqdm progress bars.
        validate: check every subject's headers before creating the file.
        ignore_label: the truth value of unannotated voxels (sparse annotation); stored as it
            is and not warned about.
        strict_labels: a truth value outside ``labels`` is an error (nothing is left behind)
            instead of a warning.
        clip_outliers: clip implausible intensities (:mod:`unet3d_keras.intensity_checks`) with a
            warning instead of refusing the subject.

    Returns:
        ``out_file``.

    Raises:
        DataError: empty subject list, missing folder, or a subject whose files are missing,
            unreadable, not 3D, inconsistent in shape or affine, non-finite, or whose truth cannot
            be stored as uint8. Nothing is left behind.
    """
    if normalization == "none":
        normalize = False
    subject_ids = list(subject_ids) if subject_ids else None  # the reference treated [] as "no ids"
    n_channels, files = check_write_arguments(
        training_data_files, out_file, image_shape, subject_ids, save_truth, modalities, labels,
        normalize, normalization, normalization_indices,
    )
    out_file = os.fspath(out_file)
    if validate:
        validate_training_files(files, subject_ids)
    n_samples = len(files)
    with atomic_path(out_file, durable=True) as temp_file:
        logger.info("Writing %d subjects to %s (via %s)", n_samples, out_file, temp_file)
        hdf5_file = None
        try:
            hdf5_file, data_storage, truth_storage, affine_storage = create_data_file(
                temp_file, n_channels=n_channels, n_samples=n_samples, image_shape=image_shape
            )
            write_metadata(
                hdf5_file, image_shape, n_samples, modalities=modalities, labels=labels, subject_ids=subject_ids
            )
            write_image_data_to_file(
                files, data_storage, truth_storage, image_shape, n_channels=n_channels,
                affine_storage=affine_storage, truth_dtype=truth_dtype, crop=crop,
                label_indices=None if save_truth else [], save_truth=save_truth,
                subject_ids=subject_ids, labels=labels, show_progress=show_progress, ignore_label=ignore_label,
                strict_labels=strict_labels, clip_outliers=clip_outliers,
            )
            statistics = None
            if normalize:
                statistics = normalize_data_storage(
                    data_storage, indices=normalization_indices, method=normalization,
                    show_progress=show_progress, return_statistics=True,
                )
            write_normalization_attributes(hdf5_file, statistics)
            hdf5_file.flush()
            mark_data_file_complete(hdf5_file)
            flush_hdf5_file(hdf5_file, out_file)
            hdf5_file.close()
            hdf5_file = None
        except BaseException as error:
            if hdf5_file is not None:
                try:
                    hdf5_file.close()
                except Exception:  # the original error matters more
                    logger.debug("Closing %s failed", temp_file, exc_info=True)
            if isinstance(error, tables.HDF5ExtError):  # a RuntimeError with HDF5's back trace: say what failed
                reason = (str(error).strip().splitlines() or [""])[-1]
                raise OSError(errno.EIO, f"writing the HDF5 file failed, disk full? ({reason})", out_file) from error
            raise
    logger.info("Wrote %s", out_file)
    return out_file


def open_data_file(filename: PathLike, readwrite: str = "r", *, require_complete: bool = True) -> tables.File:
    """Opens a data file with PyTables.

    Args:
        filename: the HDF5 file.
        readwrite: PyTables mode (``"r"``, ``"r+"``, ``"a"``, ``"w"``).
        require_complete: for an existing file opened in a mode other than ``"w"``, run the
            checks of :func:`~unet3d_keras.hdf5_store.check_data_file` first.

    Raises:
        DataError: see :func:`~unet3d_keras.hdf5_store.check_data_file`.
    """
    filename = os.fspath(filename)
    if require_complete and readwrite != "w" and (readwrite != "a" or os.path.exists(filename)):
        check_data_file(filename)
    elif readwrite != "w" and os.path.isfile(filename):
        refuse_pickled_attributes(filename)
    return tables.open_file(filename, readwrite)
