"""Reading training samples (whole volumes or patches) from the HDF5 data file.

The data file (PyTables) holds ``/data`` float32 ``(N, C, x, y, z)``, ``/truth`` uint8
``(N, 1, x, y, z)``, ``/affine`` float32 ``(N, 4, 4)`` and optionally ``/subject_ids``. Samples
are read channels-first; a patch is read as the region of the file it covers, edge-padded where
it sticks out of the volume. Every read goes through one process-wide lock (:func:`hdf5_lock`)
because HDF5 is not thread-safe. A damaged chunk or an implausible stored value (beyond 1e4 in a
normalised file, see :mod:`unet3d_keras.intensity_checks`) stops the read with a
:class:`~unet3d_keras.errors.DataError` naming the file and the subject.
"""

from __future__ import annotations

import logging
import os
import threading
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

import numpy as np
import tables

from .augmentation.compose import augment_sample
from .augmentation.params import AugmentationParams
from .errors import DataError
from .intensity_checks import check_normalized_sample
from .pickle_guard import refuse_pickled_attributes
from .utils.patches import get_patch_bounds, get_patch_from_3d_data

logger = logging.getLogger(__name__)

__all__ = [
    "hdf5_lock",
    "open_read_only",
    "image_shape",
    "n_subjects",
    "read_subject_ids",
    "file_name",
    "reading_subject",
    "truth_reader",
    "read_sample",
    "load_sample",
]

PathLike = str | os.PathLike

# HDF5 (and PyTables) are not thread-safe, even across separate handles: every read of the data
# file in this package goes through this lock. It is replaced in a forked child, where a copy
# held by another thread at fork time would never be released.
_HDF5_LOCK = threading.RLock()


def _reset_hdf5_lock() -> None:
    global _HDF5_LOCK
    _HDF5_LOCK = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_hdf5_lock)


def hdf5_lock() -> threading.RLock:
    """The process-wide lock around HDF5 reads."""
    return _HDF5_LOCK


def open_read_only(path: PathLike) -> tables.File:
    """Opens a data file read-only, after refusing pickled attributes (PyTables would unpickle them)."""
    refuse_pickled_attributes(path)
    with hdf5_lock():
        return tables.open_file(os.fspath(path), mode="r")


def image_shape(data_file: tables.File) -> tuple[int, int, int]:
    """``(x, y, z)`` of the stored volumes."""
    return tuple(int(s) for s in data_file.root.data.shape[-3:])


def n_subjects(data_file: tables.File) -> int:
    """Number of subjects in the data file."""
    return int(data_file.root.data.shape[0])


def read_subject_ids(data_file: tables.File) -> list[str] | None:
    """The ``/subject_ids`` of an open data file as strings, or None when it has none."""
    if "/subject_ids" not in data_file:
        return None
    values = data_file.root.subject_ids[:]
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in np.asarray(values).tolist()]


def file_name(data_file) -> str:
    """The file name of an open data file, for messages."""
    return str(getattr(data_file, "filename", data_file))


def _subject_name(data_file: tables.File, subject: int) -> str:
    try:
        ids = read_subject_ids(data_file)
    except tables.HDF5ExtError:  # the ids themselves may sit in the damaged part
        ids = None
    return f"{ids[subject]} (index {subject})" if ids and 0 <= subject < len(ids) else f"index {subject}"


@contextmanager
def reading_subject(data_file: tables.File, subject: int) -> Iterator[None]:
    """Turn an HDF5 read error met while reading one subject into a :class:`DataError`.

    A damaged chunk of a compressed array (bytes overwritten after the file was written) fails
    to decompress; the message names the data file and the subject and says how to rebuild.
    """
    try:
        yield
    except tables.HDF5ExtError as error:
        name = file_name(data_file)
        reason = (str(error).strip().splitlines() or [""])[-1]
        raise DataError(
            f"{name}: subject {_subject_name(data_file, int(subject))} cannot be read: the data file is damaged "
            f"({reason}); delete {name} and rerun the same command to rebuild it from the images (the split, "
            "the model and the last checkpoint are kept)"
        ) from error


def truth_reader(data_file: tables.File, counts: dict[int, np.ndarray] | None = None) -> Callable[[int], np.ndarray]:
    """A function ``subject -> truth (x, y, z)`` reading the whole label map.

    Args:
        data_file: open PyTables data file.
        counts: when given, each subject's histogram of truth values (256 bins) is stored in it
            the first time the subject is read, so a label check can reuse the reads.
    """

    def read(subject: int) -> np.ndarray:
        with hdf5_lock(), reading_subject(data_file, subject):
            truth = np.asarray(data_file.root.truth[subject, 0])
        if counts is not None and subject not in counts:
            counts[subject] = np.bincount(truth.ravel().astype(np.int64, copy=False), minlength=256)
        return truth

    return read


def read_sample(
    data_file: tables.File, row: Sequence[int], patch_shape: Sequence[int] | None = None, with_affine: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Reads one plan item (under the HDF5 lock).

    Args:
        data_file: open PyTables data file.
        row: ``(subject, x, y, z)``; the corner is used only with ``patch_shape``.
        patch_shape: ``(px, py, pz)`` or None for the whole volume.
        with_affine: also read the subject's affine.

    Returns:
        ``(data (C, ...), truth (...) spatial only, affine (4, 4) or None)``.
    """
    subject = int(row[0])
    with hdf5_lock(), reading_subject(data_file, subject):
        if patch_shape is None:
            data = np.asarray(data_file.root.data[subject])
            truth = np.asarray(data_file.root.truth[subject, 0])
        else:
            corner = np.asarray(row[1:4], dtype=np.int64)
            low, high = get_patch_bounds(image_shape(data_file), patch_shape, corner)
            region = tuple(slice(int(a), int(b)) for a, b in zip(low, high))
            data = np.asarray(data_file.root.data[(subject, slice(None)) + region])
            truth = np.asarray(data_file.root.truth[(subject, 0) + region])
        affine = np.asarray(data_file.root.affine[subject]) if with_affine else None
        if getattr(data_file.root._v_attrs, "normalization", "none") in ("dataset", "zscore"):
            check_normalized_sample(data, file_name(data_file), _subject_name(data_file, subject))
    if patch_shape is not None:
        local = corner - low
        data = get_patch_from_3d_data(data, patch_shape, local)
        truth = get_patch_from_3d_data(truth, patch_shape, local)
    return data, truth, affine


def load_sample(
    data_file: tables.File,
    row: Sequence[int],
    patch_shape: Sequence[int] | None = None,
    augmentation: AugmentationParams | None = None,
    rng: np.random.Generator | int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Reads and augments one plan item.

    Args:
        data_file: open PyTables data file.
        row: ``(subject, x, y, z)``; the corner is used only with ``patch_shape``.
        patch_shape: ``(px, py, pz)`` or None for the whole volume.
        augmentation: what to draw and apply (nothing when None).
        rng: random generator or seed of the augmentation.

    Returns:
        ``(data, truth)``: float32 ``(C, x, y, z)`` and ``(1, x, y, z)``.
    """
    augmentation = augmentation or AugmentationParams()
    data, truth, affine = read_sample(data_file, row, patch_shape, with_affine=augmentation.enabled)
    if augmentation.enabled:
        data, truth = augment_sample(data, truth, affine, augmentation, rng)
    return np.ascontiguousarray(data, dtype=np.float32), np.ascontiguousarray(truth)[np.newaxis]
