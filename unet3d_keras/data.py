"""Writing subjects' images into the compressed HDF5 store used for training.

Layout (PyTables, the reference's, unchanged so files written by either code open in both):

* ``/data`` float32 ``(N, C, X, Y, Z)`` -- channels first;
* ``/truth`` uint8 ``(N, 1, X, Y, Z)`` (no rows when written with ``save_truth=False``);
* ``/affine`` float32 ``(N, 4, 4)``;
* ``/subject_ids`` (optional) byte strings, UTF-8.

All arrays use blosc compression, level 5. New metadata live in attributes of the root node,
written with native HDF5 types only (no pickled Python objects): ``SCHEMA_ATTRIBUTE`` (the
schema version), ``modalities``, ``labels``, ``image_shape``, ``n_subjects``,
``normalization`` (method name or ``"none"``), ``normalization_mean``, ``normalization_std``,
``normalization_indices`` and, set last, ``completed``.

``write_data_to_file`` validates what it can before creating anything, streams one subject at a
time, writes under a temporary name in the output folder and renames the file into place only
when it is complete: an interrupted run leaves either no file or the previous complete one.
``check_data_file``/``open_data_file`` reject a file of this schema without the ``completed``
flag and accept the reference's files (no attributes at all) with a warning.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import logging
import numbers
import os
import pickletools
import warnings
from typing import Any, Iterable, Sequence

import numpy as np
import tables
from tqdm.auto import tqdm

from .errors import DataError
from .normalize import (
    AFFINE_RTOL,
    NORMALIZATION_METHODS,
    check_subject_geometry,
    normalize_data_storage,
    read_subject_images,
)
from .utils.utils import read_image_header

logger = logging.getLogger(__name__)

__all__ = [
    "DataError",
    "SCHEMA_VERSION",
    "SCHEMA_ATTRIBUTE",
    "COMPLETED_ATTRIBUTE",
    "create_data_file",
    "write_image_data_to_file",
    "add_data_to_storage",
    "write_data_to_file",
    "open_data_file",
    "check_data_file",
    "get_data_file_attributes",
    "mark_data_file_complete",
    "validate_training_files",
    "temporary_path",
    "refuse_pickled_attributes",
]

PathLike = str | os.PathLike

#: Version of the attribute schema written by this module.
SCHEMA_VERSION = 1
#: Root attribute holding ``SCHEMA_VERSION``; its presence marks a file written by this project.
SCHEMA_ATTRIBUTE = "unet3d_keras_schema_version"
#: Root attribute set to ``True`` as the very last write.
COMPLETED_ATTRIBUTE = "completed"

_FILTERS = dict(complevel=5, complib="blosc")
_TRUTH_RANGE = (0, 255)  # /truth is uint8


def create_data_file(
    out_file: PathLike, n_channels: int, n_samples: int, image_shape: Sequence[int]
) -> tuple[tables.File, tables.EArray, tables.EArray, tables.EArray]:
    """Creates (overwrites) an HDF5 file with empty, extendable ``data``, ``truth`` and ``affine`` arrays.

    This writes no attributes: a file built by hand with this function is treated like a file
    written by the reference. ``write_data_to_file`` adds the attributes.

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


def _subject_name(subject_ids: Sequence[str] | None, index: int, files: Sequence[PathLike]) -> str:
    if subject_ids is not None:
        return str(subject_ids[index])
    return f"#{index} ({os.path.dirname(os.path.abspath(os.fspath(files[0])))})"


def _check_truth(truth: np.ndarray, subject: str, truth_file: PathLike) -> np.ndarray:
    """Truth must hold integers that fit uint8. Returns the label values found."""
    if truth.dtype.kind == "f":
        if not np.all(truth == np.round(truth)):
            raise DataError(f"Subject {subject}: {os.fspath(truth_file)} holds non-integer label values")
    elif truth.dtype.kind not in "iub":
        raise DataError(f"Subject {subject}: {os.fspath(truth_file)} has unsupported dtype {truth.dtype}")
    values = np.unique(truth)
    low, high = _TRUTH_RANGE
    outside = values[(values < low) | (values > high)]
    if outside.size:
        raise DataError(
            f"Subject {subject}: {os.fspath(truth_file)} holds label values {outside.astype(np.int64).tolist()} "
            f"outside {low}..{high}, which cannot be stored as uint8"
        )
    return values.astype(np.int64)


def _warn_unexpected_labels(found: dict[str, np.ndarray], labels: Sequence[int],
                            ignore_label: int | None = None) -> None:
    """One warning for all subjects whose truth holds values outside ``labels`` (0 is always allowed)."""
    allowed = {int(label) for label in labels} | {0}
    if ignore_label is not None:
        allowed.add(int(ignore_label))
    unexpected = {subject: [int(v) for v in values if int(v) not in allowed] for subject, values in found.items()}
    unexpected = {subject: values for subject, values in unexpected.items() if values}
    if not unexpected:
        return
    all_found = sorted({int(v) for values in found.values() for v in values})
    all_unexpected = sorted({v for values in unexpected.values() for v in values})
    listed = "; ".join(f"{subject}: {values}" for subject, values in list(unexpected.items())[:10])
    more = f"; and {len(unexpected) - 10} more" if len(unexpected) > 10 else ""
    message = (
        f"Truth label values {all_unexpected} are not in the configured labels {sorted(allowed - {0})} "
        f"(values found: {all_found}); in {len(unexpected)} subject(s): {listed}{more}"
    )
    logger.warning(message)
    warnings.warn(message, UserWarning, stacklevel=4)


def _refuse_unexpected_labels(values: np.ndarray, labels: Sequence[int], ignore_label: int | None, subject: str,
                              truth_file: PathLike) -> None:
    """Raise when a subject's truth holds values outside ``labels``, 0 and ``ignore_label``."""
    allowed = {int(label) for label in labels} | {0} | ({int(ignore_label)} if ignore_label is not None else set())
    unexpected = [int(v) for v in values if int(v) not in allowed]
    if unexpected:
        raise DataError(
            f"Subject {subject}: {os.fspath(truth_file)} holds label values {unexpected} that are not in "
            f"data.labels {sorted(int(label) for label in labels)} (values found: {[int(v) for v in values]}); "
            "list every label value of the truth in data.labels, or relabel the truth files"
        )


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
        subject = _subject_name(subject_ids, index, set_of_files)
        images = read_subject_images(
            set_of_files, image_shape, label_indices=_label_indices, crop=crop, subject_id=subject
        )
        subject_data = [np.asanyarray(image.dataobj) for image in images]
        if save_truth:
            found_labels[subject] = _check_truth(subject_data[n_channels], subject, set_of_files[n_channels])
            if strict_labels and labels is not None:
                _refuse_unexpected_labels(found_labels[subject], labels, ignore_label, subject,
                                          set_of_files[n_channels])
        add_data_to_storage(
            data_storage, truth_storage, affine_storage, subject_data, images[0].affine, n_channels,
            truth_dtype, save_truth=save_truth,
        )
        del images, subject_data
    if labels is not None:
        _warn_unexpected_labels(found_labels, labels, ignore_label)
    return data_storage, truth_storage


def temporary_path(out_file: PathLike) -> str:
    """Name under which ``out_file`` is written before being renamed: ``.{name}.tmp-{pid}`` beside it."""
    out_file = os.path.abspath(os.fspath(out_file))
    folder, name = os.path.split(out_file)
    return os.path.join(folder, f".{name}.tmp-{os.getpid()}")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temporary_files(out_file: PathLike) -> list[str]:
    """Delete the temporary files of writers of ``out_file`` that were killed.

    A ``.{name}.tmp-{pid}`` file whose process no longer runs can never be
    completed; one whose process still runs is left alone.

    Returns:
        The paths removed.
    """
    folder, name = os.path.split(os.path.abspath(os.fspath(out_file)))
    prefix = f".{name}.tmp-"
    removed = []
    for entry in os.listdir(folder) if os.path.isdir(folder) else []:
        pid = entry[len(prefix):]
        if entry.startswith(prefix) and pid.isdigit() and not _process_alive(int(pid)):
            path = os.path.join(folder, entry)
            os.remove(path)
            removed.append(path)
            logger.info("Removed %s, left by an interrupted writer", path)
    return removed


def validate_training_files(
    training_data_files: Sequence[Sequence[PathLike]],
    subject_ids: Sequence[str] | None = None,
    affine_rtol: float = AFFINE_RTOL,
) -> None:
    """Checks every subject from file headers only: files exist and are readable, images are
    3D, and each subject's images share shape and affine.

    Raises:
        DataError: naming the subject and the file.
    """
    for index, set_of_files in enumerate(training_data_files):
        subject = _subject_name(subject_ids, index, set_of_files)
        shapes, affines = [], []
        for in_file in set_of_files:
            try:
                shape, affine = read_image_header(in_file)
            except DataError as error:
                raise DataError(f"Subject {subject}: {error}") from error
            shapes.append(shape)
            affines.append(affine)
        check_subject_geometry(set_of_files, shapes, affines, subject_id=subject, rtol=affine_rtol)


def _as_string_array(values: Iterable[Any]) -> np.ndarray:
    # Fixed-width byte strings are a native HDF5 type; lists and unicode arrays would be pickled.
    encoded = [str(value).encode("utf-8") for value in values]
    return np.array(encoded, dtype=f"S{max([len(e) for e in encoded] + [1])}")


def _validate_arguments(
    training_data_files, out_file, image_shape, subject_ids, save_truth, modalities, labels,
    normalize, normalization, normalization_indices,
) -> tuple[int, list[tuple[str, ...]]]:
    if training_data_files is None or len(training_data_files) == 0:
        raise DataError("No subjects to write: the list of training data files is empty")
    files = [tuple(os.fspath(f) for f in set_of_files) for set_of_files in training_data_files]
    n_files = len(files[0])
    for index, set_of_files in enumerate(files):
        if len(set_of_files) != n_files:
            subject = _subject_name(subject_ids, index, set_of_files)
            raise DataError(
                f"Subject {subject} has {len(set_of_files)} files but the first subject has {n_files}: "
                f"{list(set_of_files)}"
            )
    n_channels = n_files - 1 if save_truth else n_files
    if n_channels < 1:
        raise DataError(
            f"Each subject needs at least one image{' plus the truth file' if save_truth else ''}; "
            f"got {n_files} file(s)"
        )
    if len(tuple(image_shape)) != 3 or any(int(s) < 1 for s in image_shape):
        raise ValueError(f"image_shape must be three positive integers; got {tuple(image_shape)}")
    if subject_ids is not None:
        if len(subject_ids) != len(files):
            raise DataError(f"{len(subject_ids)} subject ids for {len(files)} subjects")
        if len(set(map(str, subject_ids))) != len(subject_ids):
            raise DataError("Subject ids are not unique")
    if modalities is not None and len(modalities) != n_channels:
        raise DataError(f"{len(modalities)} modality names {list(modalities)} for {n_channels} image channels")
    if labels is not None:
        bad = [label for label in labels if not isinstance(label, numbers.Integral) or not 0 <= label <= 255]
        if bad:
            raise ValueError(f"labels must be integers in 0..255; got {bad}")
    if normalize:
        if normalization not in NORMALIZATION_METHODS:
            raise ValueError(f"normalization must be one of {NORMALIZATION_METHODS}; got {normalization!r}")
        if normalization_indices is not None:
            indices = [int(i) for i in normalization_indices]
            if not indices:
                raise DataError("normalization_indices is empty")
            bad = [i for i in indices if not 0 <= i < len(files)]
            if bad:
                raise DataError(f"normalization_indices {bad} are outside 0..{len(files) - 1}")
    folder = os.path.dirname(os.path.abspath(os.fspath(out_file)))
    if not os.path.isdir(folder):
        raise DataError(f"Cannot write {os.fspath(out_file)}: the folder {folder} does not exist")
    if os.path.isdir(os.fspath(out_file)):
        raise DataError(f"Cannot write {os.fspath(out_file)}: it is a folder")
    return n_channels, files


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
        normalization: ``"dataset"`` (the reference's) or ``"zscore"``, see
            :func:`unet3d_keras.normalize.normalize_data_storage`; ``"none"`` is the same as
            ``normalize=False``.
        normalization_indices: subjects the dataset statistics come from (e.g. the training
            split); all by default.
        show_progress: show tqdm progress bars.
        validate: check every subject's headers before creating the file.
        ignore_label: the truth value of unannotated voxels (sparse annotation); stored as it
            is and not warned about.
        strict_labels: a truth value outside ``labels`` is an error (nothing is left behind)
            instead of a warning.

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
    n_channels, files = _validate_arguments(
        training_data_files, out_file, image_shape, subject_ids, save_truth, modalities, labels,
        normalize, normalization, normalization_indices,
    )
    out_file = os.fspath(out_file)
    if validate:
        validate_training_files(files, subject_ids)
    n_samples = len(files)
    remove_stale_temporary_files(out_file)
    temp_file = temporary_path(out_file)
    logger.info("Writing %d subjects to %s (via %s)", n_samples, out_file, temp_file)
    hdf5_file = None
    try:
        hdf5_file, data_storage, truth_storage, affine_storage = create_data_file(
            temp_file, n_channels=n_channels, n_samples=n_samples, image_shape=image_shape
        )
        attrs = hdf5_file.root._v_attrs
        setattr(attrs, SCHEMA_ATTRIBUTE, np.int64(SCHEMA_VERSION))
        setattr(attrs, COMPLETED_ATTRIBUTE, np.bool_(False))
        attrs.image_shape = np.asarray(image_shape, dtype=np.int64)
        attrs.n_subjects = np.int64(n_samples)
        if modalities is not None:
            attrs.modalities = _as_string_array(modalities)
        if labels is not None:
            attrs.labels = np.asarray(list(labels), dtype=np.int64)
        if subject_ids is not None:
            hdf5_file.create_array(hdf5_file.root, "subject_ids", obj=_as_string_array(subject_ids))
        hdf5_file.flush()

        write_image_data_to_file(
            files, data_storage, truth_storage, image_shape, n_channels=n_channels,
            affine_storage=affine_storage, truth_dtype=truth_dtype, crop=crop,
            label_indices=None if save_truth else [], save_truth=save_truth,
            subject_ids=subject_ids, labels=labels, show_progress=show_progress, ignore_label=ignore_label,
            strict_labels=strict_labels,
        )
        if normalize:
            statistics = normalize_data_storage(
                data_storage, indices=normalization_indices, method=normalization, show_progress=show_progress,
                return_statistics=True,
            )
            attrs.normalization = statistics["method"]
            attrs.normalization_mean = np.asarray(statistics["mean"], dtype=np.float64)
            attrs.normalization_std = np.asarray(statistics["std"], dtype=np.float64)
            attrs.normalization_indices = np.asarray(statistics["indices"], dtype=np.int64)
        else:
            attrs.normalization = "none"
        hdf5_file.flush()
        mark_data_file_complete(hdf5_file)
        _check_hdf5_flush(hdf5_file, out_file)
        hdf5_file.close()
        hdf5_file = None
        _fsync(temp_file)
        os.replace(temp_file, out_file)
        _fsync_folder(os.path.dirname(os.path.abspath(out_file)))
    except BaseException as error:
        if hdf5_file is not None:
            try:
                hdf5_file.close()
            except Exception:  # the original error matters more
                logger.debug("Closing %s failed", temp_file, exc_info=True)
        if os.path.exists(temp_file):
            os.remove(temp_file)
        if isinstance(error, tables.HDF5ExtError):  # a RuntimeError with HDF5's back trace: say what failed
            reason = (str(error).strip().splitlines() or [""])[-1]
            raise OSError(errno.EIO, f"writing the HDF5 file failed, disk full? ({reason})", out_file) from error
        raise
    logger.info("Wrote %s", out_file)
    return out_file


@functools.cache
def _h5fflush() -> Any:
    """HDF5's ``H5Fflush`` from the library PyTables uses (None if it cannot be found)."""
    try:
        import tables.hdf5extension

        # dlsym on the extension's handle resolves the symbol in the libhdf5 it links to.
        function = ctypes.CDLL(tables.hdf5extension.__file__).H5Fflush
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int64, ctypes.c_int]
    function.restype = ctypes.c_int
    return function


def _check_hdf5_flush(hdf5_file: tables.File, out_file: PathLike) -> None:
    """Flush ``hdf5_file`` and raise if HDF5 could not write it.

    PyTables ignores the status of ``H5Fflush``/``H5Fclose``: on a full disk the
    chunks are lost silently and the file reads back as zeros with every
    attribute, ``completed`` included, in place.
    """
    flush = _h5fflush()
    if flush is not None and flush(hdf5_file._get_file_id(), 1) < 0:  # 1: H5F_SCOPE_GLOBAL
        raise OSError(errno.ENOSPC, "HDF5 could not write the file (disk full or I/O error)", os.fspath(out_file))


def _fsync(path: str) -> None:
    # So that a crash of the machine right after the rename cannot leave a renamed but empty file.
    with open(path, "rb") as opened:
        os.fsync(opened.fileno())


def _fsync_folder(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def mark_data_file_complete(hdf5_file: tables.File) -> None:
    """Sets the schema and ``completed`` attributes (for files assembled by hand) and flushes."""
    attrs = hdf5_file.root._v_attrs
    if SCHEMA_ATTRIBUTE not in attrs._f_list("user"):
        setattr(attrs, SCHEMA_ATTRIBUTE, np.int64(SCHEMA_VERSION))
    setattr(attrs, COMPLETED_ATTRIBUTE, np.bool_(True))
    hdf5_file.flush()


def _decode(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "S":
            return [v.decode("utf-8") for v in value.tolist()]
        return value.tolist()
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    return value


_KNOWN_ATTRIBUTES = (
    SCHEMA_ATTRIBUTE, COMPLETED_ATTRIBUTE, "image_shape", "n_subjects", "modalities", "labels",
    "normalization", "normalization_mean", "normalization_std", "normalization_indices",
)


def get_data_file_attributes(hdf5_file: tables.File) -> dict[str, Any]:
    """The project's root attributes of an open data file as plain Python values.

    Returns:
        A dict with the keys present among ``schema_version`` (from ``SCHEMA_ATTRIBUTE``),
        ``completed``, ``image_shape``, ``n_subjects``, ``modalities``, ``labels``,
        ``normalization``, ``normalization_mean``, ``normalization_std``,
        ``normalization_indices``; empty for a file written by the reference.
    """
    attrs = hdf5_file.root._v_attrs
    present = set(attrs._f_list("user"))
    result = {}
    for name in _KNOWN_ATTRIBUTES:
        if name in present:
            key = "schema_version" if name == SCHEMA_ATTRIBUTE else name
            result[key] = _decode(getattr(attrs, name))
    if "completed" in result:
        result["completed"] = bool(result["completed"])
    return result


def _rebuild_hint(filename: str) -> str:
    return f"Delete {filename} and rebuild it (rerun the data conversion, e.g. with overwrite enabled)."


def _check_open_file(hdf5_file: tables.File, filename: str) -> dict[str, Any]:
    attributes = get_data_file_attributes(hdf5_file)
    for name, ndim in (("data", 5), ("truth", 5), ("affine", 3)):
        if f"/{name}" not in hdf5_file:
            raise DataError(f"{filename} is not a unet3d data file: it has no /{name} array. {_rebuild_hint(filename)}")
        found = hdf5_file.get_node(f"/{name}").ndim
        if found != ndim:
            raise DataError(f"{filename}: /{name} has {found} dimensions, expected {ndim}. {_rebuild_hint(filename)}")
    n_data = hdf5_file.root.data.shape[0]
    if "schema_version" not in attributes:
        warnings.warn(
            f"{filename} has no unet3d_keras attributes (written by the reference code?); it is used as is, "
            "without modality, label or normalisation metadata and without a completeness check",
            UserWarning, stacklevel=3,
        )
        return attributes
    if not attributes.get("completed", False):
        raise DataError(
            f"{filename} is incomplete: it was being written when the writer stopped (no '{COMPLETED_ATTRIBUTE}' "
            f"flag). {_rebuild_hint(filename)}"
        )
    if attributes["schema_version"] > SCHEMA_VERSION:
        raise DataError(
            f"{filename} has schema version {attributes['schema_version']}, newer than this code's "
            f"{SCHEMA_VERSION}; upgrade unet3d_keras or rebuild the file"
        )
    expected = attributes.get("n_subjects")
    if expected is not None and expected != n_data:
        raise DataError(f"{filename} holds {n_data} subjects but says {expected}. {_rebuild_hint(filename)}")
    return attributes


# Pickle opcodes that import or call: a pickle without any of them only builds plain data.
_UNSAFE_PICKLE_OPCODES = frozenset({
    "GLOBAL", "STACK_GLOBAL", "REDUCE", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "BUILD", "EXT1", "EXT2", "EXT4",
    "PERSID", "BINPERSID",
})


def _unsafe_pickle(value: Any) -> bool:
    """Whether PyTables would unpickle ``value`` (a string ending in ".") into something that runs code."""
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogateescape")
    if not isinstance(value, bytes) or not value.endswith(b".") or value in (b"0", b"0."):
        return False
    try:
        for opcode, _, _ in pickletools.genops(value):
            if opcode.name in _UNSAFE_PICKLE_OPCODES:
                return True
    except Exception:  # not a pickle (or a broken one): what was read up to here decides
        return False
    return False


def refuse_pickled_attributes(filename: PathLike) -> None:
    """Refuse an HDF5 file with a pickled object in any attribute, before PyTables opens it.

    PyTables unpickles such attributes as soon as a node's attributes are
    touched -- opening the file is enough for the root group -- and unpickling
    can run arbitrary code. This project never writes one; the check reads the
    raw values with h5py, which never unpickles.

    Raises:
        DataError: naming the file, the node and the attribute.
    """
    import h5py

    filename = os.fspath(filename)
    try:
        handle = h5py.File(filename, "r")
    except Exception:  # not HDF5: PyTables' own open reports it
        return
    found: list[str] = []

    def visit(name: str, node: Any) -> None:
        for key in node.attrs:
            try:
                value = node.attrs[key]
            except Exception:  # a type h5py cannot read is not a pickle PyTables would load either
                continue
            if isinstance(value, np.ndarray) and value.shape == ():
                value = value[()]
            if isinstance(value, np.bytes_):
                value = bytes(value)
            if _unsafe_pickle(value):
                found.append(f"attribute '{key}' of /{name}")

    with handle:
        visit("", handle)
        handle.visititems(visit)
    if found:
        raise DataError(
            f"{filename}: refused: {found[0]} holds a pickled Python object, which could run code when read "
            "(this project never writes one); rebuild the file from the images"
        )


def check_data_file(filename: PathLike) -> dict[str, Any]:
    """Checks that a data file is complete and has the expected layout; call before training.

    A file with this project's schema attribute but no ``completed`` flag was interrupted while
    being written and is rejected. A file with the reference's layout and no attributes is
    accepted with a warning.

    Returns:
        The file's attributes, as from :func:`get_data_file_attributes`.

    Raises:
        DataError: the file is missing, cannot be opened as HDF5, lacks an array, or is incomplete.
    """
    filename = os.fspath(filename)
    if not os.path.isfile(filename):
        raise DataError(f"Data file not found: {filename}")
    refuse_pickled_attributes(filename)
    try:
        hdf5_file = tables.open_file(filename, mode="r")
    except Exception as error:
        # HDF5 errors carry a long C back trace; its last line says what went wrong.
        reason = (str(error).strip().splitlines() or [""])[-1]
        raise DataError(
            f"{filename} cannot be opened as HDF5 ({type(error).__name__}: {reason}). {_rebuild_hint(filename)}"
        ) from error
    try:
        return _check_open_file(hdf5_file, filename)
    finally:
        hdf5_file.close()


def open_data_file(filename: PathLike, readwrite: str = "r", *, require_complete: bool = True) -> tables.File:
    """Opens a data file with PyTables.

    Args:
        filename: the HDF5 file.
        readwrite: PyTables mode (``"r"``, ``"r+"``, ``"a"``, ``"w"``).
        require_complete: for an existing file opened in a mode other than ``"w"``, run the
            checks of :func:`check_data_file` first (the reference did no check).

    Raises:
        DataError: see :func:`check_data_file`.
    """
    filename = os.fspath(filename)
    if require_complete and readwrite != "w" and (readwrite != "a" or os.path.exists(filename)):
        check_data_file(filename)
    elif readwrite != "w" and os.path.isfile(filename):
        refuse_pickled_attributes(filename)
    return tables.open_file(filename, readwrite)
