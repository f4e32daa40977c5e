"""Training/validation splits of the subjects of a data file: drawn from a seed, saved as JSON,
reused and checked against the data file.

A split file lists subject indices and, when the data file has ``/subject_ids``, the subjects'
ids, so that a data file rebuilt in another order still fits. Pickle split files (the
reference's) are read and written only with ``allow_pickle=True``, and read even then with a
reader that runs nothing and accepts lists of integers and strings only
(:func:`load_pickled_split`); ``unet3d-convert-split`` turns them into JSON by subject id once.
"""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
from typing import Any, Sequence

import numpy as np

from .errors import DataError
from .fileio import atomic_path, write_text_atomically
from .pickle_guard import load_plain_pickle
from .samples import n_subjects as count_subjects
from .samples import read_subject_ids
from .seeds import resolve_seed, split_rng

logger = logging.getLogger(__name__)

__all__ = ["SplitFileError", "split_list", "save_split", "load_split", "load_pickled_split", "get_validation_split"]

PathLike = str | os.PathLike

SPLIT_FORMAT = "unet3d_keras.split"
SPLIT_VERSION = 1
PICKLE_SUFFIXES = (".pkl", ".pickle", ".pck", ".p")


class SplitFileError(ValueError):
    """A training/validation split file is unreadable, refused (pickle) or does not fit the data file."""


def split_list(
    input_list: Sequence[Any],
    split: float = 0.8,
    shuffle_list: bool = True,
    rng: np.random.Generator | int | None = None,
) -> tuple[list[Any], list[Any]]:
    """Splits a list into a first part of ``floor(len * split)`` items and the rest.

    Args:
        input_list: items to split.
        split: fraction in the first part, in [0, 1].
        shuffle_list: shuffle (with ``rng``) before splitting.
        rng: random generator or seed.

    Returns:
        ``(training, validation)`` lists.
    """
    if not 0 <= split <= 1:
        raise ValueError(f"split must be between 0 and 1; received {split}")
    items = list(input_list)
    if shuffle_list:
        order = np.random.default_rng(rng).permutation(len(items))
        items = [items[i] for i in order]
    # The epsilon keeps e.g. 100 * 0.29 = 28.999999999999996 from losing a subject.
    n_training = int(math.floor(len(items) * split + 1e-9))
    return items[:n_training], items[n_training:]


def _is_pickle_path(path: PathLike) -> bool:
    return os.path.splitext(os.fspath(path))[1].lower() in PICKLE_SUFFIXES


def _json_name(path: PathLike) -> str:
    return os.path.splitext(os.fspath(path))[0] + ".json"


def _refuse_pickle(path: PathLike, reading: bool) -> SplitFileError:
    path = os.fspath(path)
    if reading:
        return SplitFileError(
            f"{path} is a pickle file; split files are read as JSON. Convert the reference's pair once, by "
            f"subject id, with the data file its indices refer to: python scripts/convert_split.py "
            f"training_ids.pkl validation_ids.pkl --data-file brats_data.h5 (nothing in them is run), and use "
            f"'{_json_name(path)}'; or pass allow_pickle=True from Python"
        )
    return SplitFileError(
        f"Split files are written as JSON: use a .json name such as '{_json_name(path)}' instead of '{path}' "
        "(pickle is written and read only with allow_pickle=True)."
    )


def load_pickled_split(path: PathLike) -> list[int | str]:
    """The list of subject indices (or ids) in a split pickle, such as the reference's ``training_ids.pkl``.

    Nothing in the file is run (:func:`~unet3d_keras.pickle_guard.load_plain_pickle`).

    Raises:
        SplitFileError: naming the file: not a pickle, one that imports or calls, or one that holds
            anything but a list (or tuple) of integers and strings.
    """
    try:
        content = load_plain_pickle(path)
    except DataError as error:
        raise SplitFileError(str(error)) from None
    if not isinstance(content, (list, tuple)) or not all(
            isinstance(item, str) or (isinstance(item, int) and not isinstance(item, bool)) for item in content):
        raise SplitFileError(f"{os.fspath(path)}: expected a list of subject indices (integers) or ids (strings), "
                             f"found {type(content).__name__}"
                             + (f" holding {sorted({type(i).__name__ for i in content})}"
                                if isinstance(content, (list, tuple)) else ""))
    return list(content)


def _write_pickle(path: PathLike, indices: list[int]) -> None:
    with atomic_path(path, durable=True) as temp_path:
        with open(temp_path, "wb") as stream:
            pickle.dump(indices, stream, protocol=4)


def save_split(
    path: PathLike,
    indices: Sequence[int],
    subject_ids: Sequence[str] | None = None,
    *,
    seed: int | None = None,
    data_split: float | None = None,
    n_subjects: int | None = None,
    role: str | None = None,
    allow_pickle: bool = False,
) -> None:
    """Writes one part of a split atomically (temporary file, then ``os.replace``).

    JSON: ``{"format", "version", "role", "seed", "data_split", "n_subjects", "indices",
    "subject_ids"}``; ``subject_ids`` lists the ids of ``indices`` in the same order. A pickle
    path (``.pkl``) writes the reference's pickled list of indices, and only with
    ``allow_pickle=True``.

    Raises:
        SplitFileError: a pickle path without ``allow_pickle``.
    """
    indices = [int(i) for i in indices]
    if _is_pickle_path(path) and not allow_pickle:
        raise _refuse_pickle(path, reading=False)
    path = os.path.abspath(os.fspath(path))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if _is_pickle_path(path):
        _write_pickle(path, indices)
        return
    content: dict[str, Any] = {"format": SPLIT_FORMAT, "version": SPLIT_VERSION}
    for key, value in (("role", role), ("seed", seed), ("data_split", data_split), ("n_subjects", n_subjects)):
        if value is not None:
            content[key] = value
    content["indices"] = indices
    if subject_ids is not None:
        content["subject_ids"] = [str(subject_ids[i]) for i in indices]
    # One key per line, lists on one line: readable and diff-friendly.
    text = "{\n" + ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in content.items()) + "\n}\n"
    write_text_atomically(path, text, fsync=True)


def load_split(
    path: PathLike,
    n_subjects: int | None = None,
    subject_ids: Sequence[str] | None = None,
    *,
    allow_pickle: bool = False,
) -> list[int]:
    """Reads one part of a split and checks it against the data file.

    Accepts this package's JSON, a plain JSON list of indices (e.g. a converted pickle) and,
    with ``allow_pickle=True`` only, the reference's pickled list.

    Args:
        path: the split file.
        n_subjects: number of subjects in the data file (indices must be below it).
        subject_ids: the data file's ``/subject_ids``; when both the file and the data have ids,
            subjects are found by id, so a data file rebuilt in another order still fits.
        allow_pickle: allow reading a pickle file (can execute code: trusted files only).

    Returns:
        Subject indices into the data file.

    Raises:
        SplitFileError: unreadable file, refused pickle, unknown ids or out-of-range indices;
            the message names the file.
    """
    path = os.fspath(path)
    file_ids = None
    if _is_pickle_path(path):
        if not allow_pickle:
            raise _refuse_pickle(path, reading=True)
        logger.warning("Loading pickled split %s (allow_pickle=True)", path)
        content = load_pickled_split(path)
    else:
        try:
            with open(path, encoding="utf-8") as stream:
                content = json.load(stream)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise SplitFileError(
                f"Cannot read split file {path} ({type(error).__name__}: {error}); delete it or pass overwrite=True "
                "to create a new split"
            ) from error
    if isinstance(content, dict):
        if "indices" not in content and "subject_ids" not in content:
            raise SplitFileError(f"Split file {path} has neither 'indices' nor 'subject_ids'")
        indices = content.get("indices")
        file_ids = content.get("subject_ids")
    else:
        indices = content
    if file_ids is not None and subject_ids is not None:
        positions = {str(subject_id): i for i, subject_id in enumerate(subject_ids)}
        missing = [subject_id for subject_id in file_ids if str(subject_id) not in positions]
        if missing:
            raise SplitFileError(
                f"Split file {path} lists subjects {missing[:10]}{' ...' if len(missing) > 10 else ''} that are not "
                "in the data file; delete the split files or pass overwrite=True to create a new split"
            )
        by_id = [positions[str(subject_id)] for subject_id in file_ids]
        if indices is not None and list(indices) != by_id:
            logger.info("Split file %s: subject order differs from the data file; using the subject ids", path)
        return by_id
    if indices is None:
        raise SplitFileError(f"Split file {path} has subject ids but the data file has none; it has no 'indices'")
    try:
        values = [int(i) for i in indices]
        if any(v != i for v, i in zip(values, indices)):
            raise TypeError
    except (TypeError, ValueError) as error:
        raise SplitFileError(f"Split file {path} must hold a list of integer subject indices") from error
    if n_subjects is not None:
        bad = [i for i in values if not 0 <= i < n_subjects]
        if bad:
            raise SplitFileError(
                f"Split file {path} lists subject indices {bad[:10]} but the data file holds only {n_subjects} "
                f"subjects (0..{n_subjects - 1}); delete the split files or pass overwrite=True to create a new split"
            )
    return values


def get_validation_split(
    data_file,
    training_file: PathLike,
    validation_file: PathLike,
    data_split: float = 0.8,
    overwrite: bool = False,
    *,
    seed: int | None = None,
    allow_pickle: bool = False,
) -> tuple[list[int], list[int]]:
    """Splits the subjects into training and validation, or reuses the saved split.

    The split is drawn with ``seed`` and saved as JSON in ``training_file`` and
    ``validation_file`` (see :func:`save_split`); later runs reuse it unless ``overwrite``.

    Args:
        data_file: open PyTables data file.
        training_file, validation_file: ``.json`` paths (``.pkl`` needs ``allow_pickle``).
        data_split: fraction of subjects used for training.
        overwrite: draw and save a new split even if the files exist.
        seed: seed of the split; None draws one (logged and saved in the files).
        allow_pickle: allow reading (and writing) pickle split files.

    Returns:
        ``(training_indices, validation_indices)``.

    Raises:
        SplitFileError: see :func:`load_split`; ``.pkl`` names without ``allow_pickle``.
    """
    n_subjects = count_subjects(data_file)
    subject_ids = read_subject_ids(data_file)
    paths = (training_file, validation_file)
    exists = [os.path.exists(os.fspath(p)) for p in paths]
    reuse = not overwrite and all(exists)
    if not allow_pickle:
        for path in paths:
            if _is_pickle_path(path):
                raise _refuse_pickle(path, reading=reuse)
    if reuse:
        logger.info("Loading previous validation split from %s and %s", *map(os.fspath, paths))
        training = load_split(training_file, n_subjects, subject_ids, allow_pickle=allow_pickle)
        validation = load_split(validation_file, n_subjects, subject_ids, allow_pickle=allow_pickle)
        shared = sorted(set(training) & set(validation))
        if shared:
            logger.warning(
                "Split files %s and %s share %d subjects (%s); validation scores will be optimistic",
                os.fspath(training_file), os.fspath(validation_file), len(shared), shared[:10],
            )
        return training, validation
    if not overwrite and any(exists):
        present = [os.fspath(p) for p, e in zip(paths, exists) if e]
        logger.warning("Only %s of the two split files exists; creating a new split", present)
    seed = resolve_seed(seed)
    logger.info("Creating validation split (data_split=%s, seed=%d) of %d subjects", data_split, seed, n_subjects)
    training, validation = split_list(list(range(n_subjects)), split=data_split, rng=split_rng(seed))
    common = dict(
        subject_ids=subject_ids, seed=seed, data_split=data_split, n_subjects=n_subjects, allow_pickle=allow_pickle
    )
    # Validation first: the training file's presence marks a complete pair for a later run.
    save_split(validation_file, validation, role="validation", **common)
    save_split(training_file, training, role="training", **common)
    return training, validation
