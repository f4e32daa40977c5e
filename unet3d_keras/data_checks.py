"""Checks of the subjects written to the HDF5 data file: arguments, headers and truth labels.

Everything that can be checked before the file is created is checked here (the list of files,
ids, names, shapes, and every image header), so that a bad input fails at once with a message
naming the subject and the file, and leaves nothing behind.
"""

from __future__ import annotations

import logging
import numbers
import os
import warnings
from typing import Any, Sequence

import numpy as np

from .checks import require_integer_values
from .errors import DataError
from .normalize import NORMALIZATION_METHODS
from .subject_images import AFFINE_RTOL, check_subject_geometry
from .utils.utils import read_image_header

logger = logging.getLogger(__name__)

__all__ = [
    "subject_name",
    "check_write_arguments",
    "validate_training_files",
    "check_truth_labels",
    "refuse_unexpected_labels",
    "warn_unexpected_labels",
]

PathLike = str | os.PathLike

_TRUTH_RANGE = (0, 255)  # /truth is uint8


def subject_name(subject_ids: Sequence[str] | None, index: int, files: Sequence[PathLike]) -> str:
    """How messages name subject ``index``: its id, else its number and folder."""
    if subject_ids is not None:
        return str(subject_ids[index])
    return f"#{index} ({os.path.dirname(os.path.abspath(os.fspath(files[0])))})"


def check_write_arguments(
    training_data_files: Sequence[Sequence[PathLike]] | None,
    out_file: PathLike,
    image_shape: Sequence[int],
    subject_ids: Sequence[str] | None,
    save_truth: bool,
    modalities: Sequence[str] | None,
    labels: Sequence[int] | None,
    normalize: bool,
    normalization: str,
    normalization_indices: Sequence[int] | None,
) -> tuple[int, list[tuple[str, ...]]]:
    """Checks the arguments of :func:`unet3d_keras.data.write_data_to_file` without reading any image.

    Returns:
        ``(n_channels, files)``: the number of image channels and the files as tuples of strings.

    Raises:
        DataError: no subjects, subjects with different file counts, ids or modality names that
            do not match, normalisation indices out of range, or an output folder that is missing.
        ValueError: a bad ``image_shape``, ``labels`` or ``normalization``.
    """
    if training_data_files is None or len(training_data_files) == 0:
        raise DataError("No subjects to write: the list of training data files is empty")
    files = [tuple(os.fspath(f) for f in set_of_files) for set_of_files in training_data_files]
    n_files = len(files[0])
    for index, set_of_files in enumerate(files):
        if len(set_of_files) != n_files:
            subject = subject_name(subject_ids, index, set_of_files)
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
        subject = subject_name(subject_ids, index, set_of_files)
        shapes, affines = [], []
        for in_file in set_of_files:
            try:
                shape, affine = read_image_header(in_file)
            except DataError as error:
                raise DataError(f"Subject {subject}: {error}") from error
            shapes.append(shape)
            affines.append(affine)
        check_subject_geometry(set_of_files, shapes, affines, subject_id=subject, rtol=affine_rtol)


def check_truth_labels(truth: np.ndarray, subject: str, truth_file: PathLike) -> np.ndarray:
    """Requires a truth of whole numbers that fit the uint8 ``/truth`` array.

    Args:
        truth: ``(x, y, z)``.
        subject: named in the message.
        truth_file: named in the message.

    Returns:
        The label values found, sorted, int64.

    Raises:
        DataError: a non-integer value or dtype, or a value outside 0..255.
    """
    require_integer_values(truth, f"Subject {subject}: {os.fspath(truth_file)}", error=DataError)
    values = np.unique(truth)
    low, high = _TRUTH_RANGE
    outside = values[(values < low) | (values > high)]
    if outside.size:
        raise DataError(
            f"Subject {subject}: {os.fspath(truth_file)} holds label values {outside.astype(np.int64).tolist()} "
            f"outside {low}..{high}, which cannot be stored as uint8"
        )
    return values.astype(np.int64)


def _allowed_labels(labels: Sequence[int], ignore_label: int | None) -> set[int]:
    """``labels`` with the background 0 and, if set, ``ignore_label``."""
    allowed = {int(label) for label in labels} | {0}
    if ignore_label is not None:
        allowed.add(int(ignore_label))
    return allowed


def refuse_unexpected_labels(values: np.ndarray, labels: Sequence[int], ignore_label: int | None, subject: str,
                             truth_file: PathLike) -> None:
    """Raises when a subject's truth holds values outside ``labels``, 0 and ``ignore_label``.

    Args:
        values: the label values found, as from :func:`check_truth_labels`.

    Raises:
        DataError: naming the subject, the file and the unexpected values.
    """
    allowed = _allowed_labels(labels, ignore_label)
    unexpected = [int(v) for v in values if int(v) not in allowed]
    if unexpected:
        raise DataError(
            f"Subject {subject}: {os.fspath(truth_file)} holds label values {unexpected} that are not in "
            f"data.labels {sorted(int(label) for label in labels)} (values found: {[int(v) for v in values]}); "
            "list every label value of the truth in data.labels, or relabel the truth files"
        )


def warn_unexpected_labels(found: dict[str, Any], labels: Sequence[int], ignore_label: int | None = None,
                           stacklevel: int = 2) -> None:
    """One warning for all subjects whose truth holds values outside ``labels`` (0 is always allowed).

    Args:
        found: per subject name, the label values found in its truth.
        labels: the expected label values.
        ignore_label: the value of unannotated voxels, allowed too.
        stacklevel: of the warning, counted from the caller of this function.
    """
    allowed = _allowed_labels(labels, ignore_label)
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
    warnings.warn(message, UserWarning, stacklevel=stacklevel + 1)
