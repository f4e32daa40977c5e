"""The HDF5 data file's metadata: root attributes, the completion flag, and the checks before use.

Arrays (PyTables): ``/data`` float32 ``(N, C, X, Y, Z)``, ``/truth`` uint8 ``(N, 1, X, Y, Z)``,
``/affine`` float32 ``(N, 4, 4)`` and, optionally, ``/subject_ids`` (UTF-8 byte strings).

Root attributes, native HDF5 types only (no pickled Python objects): ``SCHEMA_ATTRIBUTE`` (the
schema version), ``modalities``, ``labels``, ``image_shape``, ``n_subjects``, ``normalization``
(method name or ``"none"``), ``normalization_mean``, ``normalization_std``,
``normalization_indices`` and, set last, ``completed``. A file with the schema attribute but
without ``completed`` was interrupted while being written and is refused; a file with no
attributes at all was written by the reference and is used as it is, with a warning that
states the normalisation it holds (:data:`REFERENCE_NORMALIZATION`, or ``"none"``).
"""

from __future__ import annotations

import ctypes
import errno
import functools
import logging
import os
import warnings
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import tables
from tables import hdf5extension

from .errors import DataError
from .pickle_guard import refuse_pickled_attributes

logger = logging.getLogger(__name__)

__all__ = [
    "SCHEMA_VERSION",
    "SCHEMA_ATTRIBUTE",
    "COMPLETED_ATTRIBUTE",
    "REFERENCE_NORMALIZATION",
    "write_metadata",
    "write_normalization_attributes",
    "mark_data_file_complete",
    "flush_hdf5_file",
    "get_data_file_attributes",
    "check_data_file",
]

PathLike = str | os.PathLike

#: Version of the attribute schema written by this project.
SCHEMA_VERSION = 1
#: Root attribute holding ``SCHEMA_VERSION``; its presence marks a file written by this project.
SCHEMA_ATTRIBUTE = "unet3d_keras_schema_version"
#: Root attribute set to ``True`` as the very last write.
COMPLETED_ATTRIBUTE = "completed"
#: ``normalization`` of a file written by the reference's ``write_data_to_file(normalize=True)``:
#: each channel shifted and scaled by the means and standard deviations of the file's subjects
#: (averaged over them), which the file does not store.
REFERENCE_NORMALIZATION = "reference"

_KNOWN_ATTRIBUTES = (
    SCHEMA_ATTRIBUTE, COMPLETED_ATTRIBUTE, "image_shape", "n_subjects", "modalities", "labels",
    "normalization", "normalization_mean", "normalization_std", "normalization_indices",
)


def _as_string_array(values: Iterable[Any]) -> np.ndarray:
    # Fixed-width byte strings are a native HDF5 type; lists and unicode arrays would be pickled.
    encoded = [str(value).encode("utf-8") for value in values]
    return np.array(encoded, dtype=f"S{max([len(e) for e in encoded] + [1])}")


def write_metadata(
    hdf5_file: tables.File,
    image_shape: Sequence[int],
    n_subjects: int,
    modalities: Sequence[str] | None = None,
    labels: Sequence[int] | None = None,
    subject_ids: Sequence[str] | None = None,
) -> None:
    """Writes the schema version, ``completed=False`` and what is known before the subjects, then flushes.

    Args:
        hdf5_file: a file from :func:`unet3d_keras.data.create_data_file`, open for writing.
        image_shape: ``(x, y, z)``.
        n_subjects: the number of subjects that will be appended.
        modalities: names of the ``C`` channels.
        labels: the label values expected in the truth.
        subject_ids: ``N`` ids, stored as the array ``/subject_ids``.
    """
    attrs = hdf5_file.root._v_attrs
    setattr(attrs, SCHEMA_ATTRIBUTE, np.int64(SCHEMA_VERSION))
    setattr(attrs, COMPLETED_ATTRIBUTE, np.bool_(False))
    attrs.image_shape = np.asarray(image_shape, dtype=np.int64)
    attrs.n_subjects = np.int64(n_subjects)
    if modalities is not None:
        attrs.modalities = _as_string_array(modalities)
    if labels is not None:
        attrs.labels = np.asarray(list(labels), dtype=np.int64)
    if subject_ids is not None:
        hdf5_file.create_array(hdf5_file.root, "subject_ids", obj=_as_string_array(subject_ids))
    hdf5_file.flush()


def write_normalization_attributes(hdf5_file: tables.File, statistics: Mapping[str, Any] | None) -> None:
    """Records how ``/data`` was normalised.

    Args:
        hdf5_file: the open data file.
        statistics: from :func:`unet3d_keras.normalize.normalize_data_storage` with
            ``return_statistics=True``: ``method``, ``mean`` and ``std`` (shape ``(C,)`` for
            ``"dataset"``, ``(N, C)`` for ``"zscore"``) and ``indices``; ``None`` for data left as read.
    """
    attrs = hdf5_file.root._v_attrs
    if statistics is None:
        attrs.normalization = "none"
        return
    attrs.normalization = statistics["method"]
    attrs.normalization_mean = np.asarray(statistics["mean"], dtype=np.float64)
    attrs.normalization_std = np.asarray(statistics["std"], dtype=np.float64)
    attrs.normalization_indices = np.asarray(statistics["indices"], dtype=np.int64)


def mark_data_file_complete(hdf5_file: tables.File) -> None:
    """Sets the schema and ``completed`` attributes (for files assembled by hand) and flushes."""
    attrs = hdf5_file.root._v_attrs
    if SCHEMA_ATTRIBUTE not in attrs._f_list("user"):
        setattr(attrs, SCHEMA_ATTRIBUTE, np.int64(SCHEMA_VERSION))
    setattr(attrs, COMPLETED_ATTRIBUTE, np.bool_(True))
    hdf5_file.flush()


@functools.cache
def _h5fflush() -> Any:
    """HDF5's ``H5Fflush`` from the library PyTables uses (None if it cannot be found)."""
    try:
        # dlsym on the extension's handle resolves the symbol in the libhdf5 it links to.
        function = ctypes.CDLL(hdf5extension.__file__).H5Fflush
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int64, ctypes.c_int]
    function.restype = ctypes.c_int
    return function


def flush_hdf5_file(hdf5_file: tables.File, out_file: PathLike) -> None:
    """Flushes ``hdf5_file`` and raises if HDF5 could not write it.

    PyTables ignores the status of ``H5Fflush``/``H5Fclose``: on a full disk the chunks are lost
    silently and the file reads back as zeros with every attribute, ``completed`` included, in
    place. This calls ``H5Fflush`` itself and checks its status.

    Args:
        hdf5_file: the open file.
        out_file: the file named in the error (the final name, not the temporary one).

    Raises:
        OSError: ``ENOSPC``, HDF5 reported a failed write.
    """
    flush = _h5fflush()
    if flush is not None and flush(hdf5_file._get_file_id(), 1) < 0:  # 1: H5F_SCOPE_GLOBAL
        raise OSError(errno.ENOSPC, "HDF5 could not write the file (disk full or I/O error)", os.fspath(out_file))


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


def get_data_file_attributes(hdf5_file: tables.File) -> dict[str, Any]:
    """The project's root attributes of an open data file as plain Python values.

    Returns:
        A dict with the keys present among ``schema_version`` (from ``SCHEMA_ATTRIBUTE``),
        ``completed``, ``image_shape``, ``n_subjects``, ``modalities``, ``labels``,
        ``normalization``, ``normalization_mean``, ``normalization_std``,
        ``normalization_indices``; empty for a file without this project's attributes.
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
        attributes["normalization"] = _reference_file_normalization(hdf5_file)
        held = ("data normalised by the reference (each channel by the mean and standard deviation averaged over "
                "the file's subjects, not stored); new subjects are normalised by their own channel statistics, "
                "as the reference's brats/predict.py did"
                if attributes["normalization"] == REFERENCE_NORMALIZATION else
                "data that were not normalised (no negative value in its first subject); new subjects are not "
                "normalised either")
        warnings.warn(
            f"{filename} has no unet3d_keras attributes: written by the reference code, it holds {held}. It is "
            "used as is, without modality or label metadata and without a completeness check",
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


def _reference_file_normalization(hdf5_file: tables.File) -> str:
    """The normalisation of a file written by the reference: :data:`REFERENCE_NORMALIZATION`
    (``write_data_to_file``'s default), or ``"none"`` for ``normalize=False``.

    Normalised images have negative values (their background lies below the mean); the
    images the reference stored unnormalised (MRI intensities, background 0) have none. One
    subject is read.
    """
    if hdf5_file.root.data.shape[0] == 0:
        return REFERENCE_NORMALIZATION
    return "none" if float(np.min(hdf5_file.root.data[0])) >= 0 else REFERENCE_NORMALIZATION


def check_data_file(filename: PathLike) -> dict[str, Any]:
    """Checks that a data file is complete and has the expected layout; call before training.

    A file with this project's schema attribute but no ``completed`` flag was interrupted while
    being written and is rejected. A file with the arrays and no attributes is accepted with a
    warning.

    Returns:
        The file's attributes, as from :func:`get_data_file_attributes`.

    Raises:
        DataError: the file is missing, cannot be opened as HDF5, holds a pickled attribute, lacks
            an array, or is incomplete.
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
