"""Training and validation batches from the HDF5 data file: validation split, patch sampling,
augmentation, and the reference's endless generators.

The data file (PyTables) holds ``/data`` float32 ``(N, C, x, y, z)``, ``/truth`` uint8
``(N, 1, x, y, z)``, ``/affine`` float32 ``(N, 4, 4)`` and optionally ``/subject_ids``. Samples
stay channels-first while they are read, cut into patches and augmented; :func:`convert_data`,
where batches are formed, is the one place that converts them to the model's data format
(``keras.config.image_data_format()``, channels-last by default).

Which samples an epoch visits is decided by a :class:`SamplingPlan`: every subject (or every
patch of every subject's patch grid) once, blank ones dropped when ``skip_blank``, shuffled. The
step counts returned alongside the generators are the plan's length divided by the batch size,
so one epoch of steps covers every sample or patch exactly once. The same plan drives the
``keras.utils.PyDataset`` in :mod:`unet3d_keras.dataset`.

Differences from the reference (``unet3dlegacy.generator``):

* Randomness (split, patch offsets, shuffling, augmentation) comes from seeded
  ``numpy.random.Generator`` objects, never from ``random``/``np.random`` global state.
* The split is saved as JSON (indices and, when the data file has them, subject ids), written
  atomically; pickle files are read only with ``allow_pickle=True``.
* ``get_number_of_steps(n, batch)`` is ``ceil(n / batch)``; the reference returned ``n`` when
  ``n <= batch``, visiting every sample ``n`` times per epoch.
* Blank samples are dropped when the epoch is planned, and the step count is computed from the
  same plan; the reference counted with one set of random patch offsets, generated with another,
  and counted blank whole volumes that its generator then skipped. A sample that becomes blank
  only through augmentation is kept (batches keep their size).
* With random patch offsets and ``skip_blank`` the number of non-blank patches can change from
  epoch to epoch; every epoch is then trimmed, or topped up with repeats of its own patches, to
  the length of the first epoch, so that ``len()`` and the step count stay fixed.
* A patch is read from the file as the region it covers (plus edge padding where it sticks
  out), not as the whole volume.
* A batch size larger than the number of samples per epoch is clamped, with a warning.
"""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
import threading
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from .augment import AugmentationParams, augment_sample
from .fileio import atomic_path
from .utils.patches import (
    compute_patch_indices,
    get_patch_bounds,
    get_patch_from_3d_data,
    get_random_nd_index,
)

logger = logging.getLogger(__name__)

__all__ = [
    "SplitFileError",
    "SamplingPlan",
    "get_training_and_validation_generators",
    "get_number_of_steps",
    "get_validation_split",
    "split_list",
    "save_split",
    "load_split",
    "data_generator",
    "get_number_of_patches",
    "create_patch_index_list",
    "add_data",
    "get_data_from_file",
    "read_sample",
    "load_sample",
    "convert_data",
    "to_model_format",
    "get_multi_class_labels",
    "check_label_values",
    "resolve_seed",
    "plan_rng",
    "item_rng",
    "split_rng",
    "read_subject_ids",
]

PathLike = str | os.PathLike

SPLIT_FORMAT = "unet3d_keras.split"
SPLIT_VERSION = 1
PICKLE_SUFFIXES = (".pkl", ".pickle", ".pck", ".p")

# Stream tags keep the split and per-item augmentation streams apart from the per-epoch plan
# stream ``default_rng([seed, epoch])`` (SeedSequence treats trailing zeros as absent, so
# ``[seed, 0]``, ``[seed]`` and ``seed`` are the same stream).
_ITEM_STREAM = 1
_SPLIT_STREAM = 2
_TRAINING_STREAM = 3
_VALIDATION_STREAM = 4


class SplitFileError(ValueError):
    """A training/validation split file is unreadable, refused (pickle) or does not fit the data file."""


# --------------------------------------------------------------------------------------------
# Seeds and random streams


def resolve_seed(seed: int | None) -> int:
    """``seed``, or fresh entropy (logged, so that the run can be repeated) when it is None."""
    if seed is not None:
        seed = int(seed)
        if seed < 0:
            raise ValueError(f"seed must be a non-negative integer; received {seed}")
        return seed
    seed = int(np.random.SeedSequence().generate_state(1, np.uint64)[0] >> 1)
    logger.info("No seed given; using seed=%d (pass it to repeat this run)", seed)
    return seed


def plan_rng(seed: int, epoch: int) -> np.random.Generator:
    """The generator that plans epoch ``epoch``: ``default_rng([seed, epoch])``."""
    return np.random.default_rng([int(seed), int(epoch)])


def item_rng(seed: int, epoch: int, item: int) -> np.random.Generator:
    """The generator that augments item ``item`` (position in the epoch) of epoch ``epoch``."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(_ITEM_STREAM, int(epoch), int(item))))


def split_rng(seed: int) -> np.random.Generator:
    """The generator that draws the training/validation split."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(_SPLIT_STREAM,)))


# --------------------------------------------------------------------------------------------
# HDF5 access

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


def _image_shape(data_file) -> tuple[int, int, int]:
    return tuple(int(s) for s in data_file.root.data.shape[-3:])


def _n_subjects(data_file) -> int:
    return int(data_file.root.data.shape[0])


def read_subject_ids(data_file) -> list[str] | None:
    """The ``/subject_ids`` of an open data file as strings, or None when it has none."""
    if "/subject_ids" not in data_file:
        return None
    values = data_file.root.subject_ids[:]
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in np.asarray(values).tolist()]


def _file_name(data_file) -> str:
    return str(getattr(data_file, "filename", data_file))


# --------------------------------------------------------------------------------------------
# Split


def split_list(
    input_list: Sequence[Any],
    split: float = 0.8,
    shuffle_list: bool = True,
    rng: np.random.Generator | int | None = None,
) -> tuple[list[Any], list[Any]]:
    """Splits a list into a first part of ``floor(len * split)`` items and the rest.

    Unlike the reference, ``input_list`` is not shuffled in place.

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
            f"{path} is a pickle file. Loading pickle can execute arbitrary code, so split files are read as "
            f"JSON unless you pass allow_pickle=True (only for a file you trust). To convert it once: "
            f"python -c \"import json, pickle; json.dump([int(i) for i in pickle.load(open('{path}', 'rb'))], "
            f"open('{_json_name(path)}', 'w'))\" and use '{_json_name(path)}'."
        )
    return SplitFileError(
        f"Split files are written as JSON: use a .json name such as '{_json_name(path)}' instead of '{path}' "
        "(pickle is written and read only with allow_pickle=True)."
    )


def _write_atomically(path: PathLike, write: Callable[[Any], None], binary: bool = False) -> None:
    path = os.path.abspath(os.fspath(path))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with atomic_path(path) as temp_path:
        with open(temp_path, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())


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
    if _is_pickle_path(path):
        if not allow_pickle:
            raise _refuse_pickle(path, reading=False)
        _write_atomically(path, lambda stream: pickle.dump(indices, stream, protocol=4), binary=True)
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
    _write_atomically(path, lambda stream: stream.write(text))


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
        with open(path, "rb") as stream:
            content = pickle.load(stream)
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
    n_subjects = _n_subjects(data_file)
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


# --------------------------------------------------------------------------------------------
# Planning an epoch


def _as_shape(value, name: str) -> tuple[int, int, int] | None:
    if value is None:
        return None
    array = np.asarray(value)
    if array.ndim == 0:
        array = np.full(3, array)
    if array.shape != (3,) or np.any(array != np.round(array)):
        raise ValueError(f"{name} must be 3 integers; received {value!r}")
    return tuple(int(v) for v in array)


class SamplingPlan:
    """Decides which samples (subjects, or patches of subjects) an epoch visits, in which order.

    Patch corners come from :func:`compute_patch_indices`; with ``patch_start_offset`` each
    subject's grid starts at a random offset in ``[-offset, 0]`` each epoch. With
    ``skip_blank``, samples whose truth is all zero are dropped. The first plan fixes
    :attr:`n_items`; later plans are trimmed or topped up to it (only needed when random offsets
    change the number of non-blank patches).

    Items are rows ``(subject, x, y, z)`` of an int64 array (the corner is unused for whole
    volumes). The object is small and picklable.

    Args:
        index_list: subjects (indices into the data file).
        image_shape: ``(x, y, z)`` of the stored volumes.
        patch_shape: ``(px, py, pz)``, or None for whole volumes.
        patch_overlap: voxels shared by neighbouring patches.
        patch_start_offset: maximum random start offset ``(ox, oy, oz)``, or None.
        skip_blank: drop samples without any label.
        shuffle: shuffle each epoch.
        ignore_label: with ``skip_blank``, a sample is blank when every voxel is this value
            (nobody annotated it) instead of when it has no label; for softmax training,
            where annotated background is worth learning from.
    """

    def __init__(
        self,
        index_list: Sequence[int],
        image_shape: Sequence[int],
        patch_shape: Sequence[int] | None = None,
        patch_overlap: int | Sequence[int] = 0,
        patch_start_offset: Sequence[int] | None = None,
        skip_blank: bool = True,
        shuffle: bool = True,
        ignore_label: int | None = None,
    ) -> None:
        self.index_list = [int(i) for i in index_list]
        self.image_shape = _as_shape(image_shape, "image_shape")
        self.patch_shape = _as_shape(patch_shape, "patch_shape")
        self.patch_overlap = patch_overlap
        self.patch_start_offset = _as_shape(patch_start_offset, "patch_start_offset") if patch_shape else None
        if self.patch_start_offset is not None and min(self.patch_start_offset) < 0:
            raise ValueError(f"patch_start_offset must not be negative; received {patch_start_offset}")
        if self.patch_start_offset is not None and not any(self.patch_start_offset):
            self.patch_start_offset = None
        self.skip_blank = bool(skip_blank)
        self.shuffle = bool(shuffle)
        self.ignore_label = None if ignore_label is None else int(ignore_label)
        self.n_items: int | None = None
        self._fixed_items: np.ndarray | None = None
        if self.patch_shape is not None:
            compute_patch_indices(self.image_shape, self.patch_shape, patch_overlap)  # validates the overlap
            larger = [a for a in range(3) if self.patch_shape[a] > self.image_shape[a]]
            if larger:
                logger.warning(
                    "patch_shape %s is larger than the image shape %s in axis %s; patches are completed by "
                    "repeating edge voxels", self.patch_shape, self.image_shape, larger,
                )

    @property
    def random_grid(self) -> bool:
        """Whether the patch grid moves from epoch to epoch."""
        return self.patch_start_offset is not None

    def _candidates(self, rng: np.random.Generator) -> np.ndarray:
        if self.patch_shape is None:
            items = np.zeros((len(self.index_list), 4), dtype=np.int64)
            items[:, 0] = self.index_list
            return items
        blocks = []
        fixed = None
        if not self.random_grid:
            fixed = compute_patch_indices(self.image_shape, self.patch_shape, self.patch_overlap)
        for subject in self.index_list:
            if fixed is None:
                start = -np.asarray(get_random_nd_index(self.patch_start_offset, rng), dtype=np.int64)
                corners = compute_patch_indices(self.image_shape, self.patch_shape, self.patch_overlap, start=start)
            else:
                corners = fixed
            block = np.empty((len(corners), 4), dtype=np.int64)
            block[:, 0] = subject
            block[:, 1:] = corners
            blocks.append(block)
        return np.concatenate(blocks) if blocks else np.zeros((0, 4), dtype=np.int64)

    def _drop_blank(self, items: np.ndarray, read_truth: Callable[[int], np.ndarray]) -> np.ndarray:
        keep = np.zeros(len(items), dtype=bool)
        for subject in np.unique(items[:, 0]):
            rows = np.flatnonzero(items[:, 0] == subject)
            truth = read_truth(int(subject))
            if self.ignore_label is not None:
                truth = truth != self.ignore_label
            if self.patch_shape is None:
                keep[rows] = np.any(truth)
                continue
            for row in rows:
                # Edge padding repeats voxels of the clipped region: blank iff that region is.
                low, high = get_patch_bounds(truth.shape, self.patch_shape, items[row, 1:])
                keep[row] = np.any(truth[low[0]:high[0], low[1]:high[1], low[2]:high[2]])
        return items[keep]

    def plan(self, rng: np.random.Generator, read_truth: Callable[[int], np.ndarray] | None = None) -> np.ndarray:
        """The items of one epoch.

        Args:
            rng: draws the patch offsets, the order and any top-up items.
            read_truth: ``subject -> (x, y, z)`` truth; needed with ``skip_blank``.

        Returns:
            int64 ``(n_items, 4)`` rows ``(subject, x, y, z)``.
        """
        if self._fixed_items is not None:
            items = self._fixed_items
        else:
            # A moved grid can miss labels that lie in the strip it leaves uncovered; if that
            # leaves nothing at all (only for tiny labels), draw the offsets again.
            for _ in range(10):
                items = self._candidates(rng)
                if self.skip_blank:
                    if read_truth is None:
                        raise ValueError("skip_blank needs read_truth")
                    items = self._drop_blank(items, read_truth)
                if len(items) or not self.random_grid:
                    break
            if not self.random_grid:
                self._fixed_items = items  # same every epoch: compute (and read the truth) once
        if self.shuffle:
            items = items[rng.permutation(len(items))]
        if self.n_items is None:
            self.n_items = len(items)
        elif len(items) != self.n_items and len(items) > 0:
            logger.debug("Epoch plan has %d items; adjusting to %d", len(items), self.n_items)
            if len(items) > self.n_items:
                items = items[: self.n_items]
            else:
                extra = items[rng.integers(0, len(items), self.n_items - len(items))]
                items = np.concatenate([items, extra])
        return items


def _item_index(row: np.ndarray, patched: bool):
    """A plan row in the reference's index form: ``subject`` or ``(subject, corner)``."""
    return (int(row[0]), np.asarray(row[1:], dtype=np.int64)) if patched else int(row[0])


def _truth_reader(data_file, counts: dict[int, np.ndarray] | None = None) -> Callable[[int], np.ndarray]:
    def read(subject: int) -> np.ndarray:
        with hdf5_lock():
            truth = np.asarray(data_file.root.truth[subject, 0])
        if counts is not None and subject not in counts:
            counts[subject] = np.bincount(truth.ravel().astype(np.int64, copy=False), minlength=256)
        return truth

    return read


def check_label_values(
    data_file,
    index_list: Sequence[int],
    n_labels: int,
    labels: Sequence[int] | None = None,
    counts: dict[int, np.ndarray] | None = None,
    ignore_label: int | None = None,
) -> list[int]:
    """Checks ``labels`` against the truth of the listed subjects; logs warnings.

    Warns about labels that occur in none of the subjects and about label values present in the
    truth that are not among ``labels`` (their voxels become background). Does nothing for
    ``n_labels == 1`` (the target is then ``truth > 0``).

    Args:
        data_file: open PyTables data file.
        index_list: subjects to scan.
        n_labels: number of output labels.
        labels: label values, ``1..n_labels`` when None.
        counts: per-subject value histograms already computed (reused, extended).
        ignore_label: the value of unlabeled voxels, not reported as an unknown label.

    Returns:
        The labels that never occur.
    """
    if n_labels <= 1:
        return []
    values = list(range(1, n_labels + 1)) if labels is None else [int(v) for v in labels[:n_labels]]
    counts = {} if counts is None else counts
    read = _truth_reader(data_file, counts)
    total = np.zeros(256, dtype=np.int64)
    for subject in index_list:
        if int(subject) not in counts:
            read(int(subject))
        histogram = counts[int(subject)]
        total[: len(histogram)] += histogram[:256]
    present = set(np.flatnonzero(total).tolist())
    missing = [v for v in values if v not in present]
    if missing:
        logger.warning(
            "labels %s never occur in the truth of the %d subjects scanned in %s (values present: %s)",
            missing, len(index_list), _file_name(data_file), sorted(present),
        )
    unknown = sorted(present - set(values) - {0, ignore_label})
    if unknown:
        logger.warning(
            "truth values %s in %s are not among labels %s; those voxels are treated as background",
            unknown, _file_name(data_file), values,
        )
    return missing


def _check_labels_argument(n_labels: int, labels: Sequence[int] | None) -> None:
    if int(n_labels) < 1:
        raise ValueError(f"n_labels must be at least 1; received {n_labels}")
    if labels is not None and n_labels > 1 and len(labels) != n_labels:
        raise ValueError(f"labels {tuple(labels)} has {len(labels)} values but n_labels is {n_labels}")


def _check_permute(permute: bool, patch_shape, image_shape) -> None:
    if not permute:
        return
    shape = tuple(patch_shape) if patch_shape else tuple(image_shape)
    if not shape[0] == shape[1] == shape[2]:
        raise ValueError(
            "permute=True needs cubic samples, but patch_shape="
            f"{None if patch_shape is None else tuple(patch_shape)} and the image shape is {tuple(image_shape)}"
        )


def _effective_batch_size(batch_size: int, n_items: int, name: str) -> int:
    if int(batch_size) < 1:
        raise ValueError(f"{name} must be at least 1; received {batch_size}")
    if n_items < 1:
        raise ValueError(f"No samples for {name}: the list of subjects is empty or every sample is blank")
    if batch_size > n_items:
        logger.warning(
            "%s %d is larger than the %d samples per epoch; using batches of %d", name, batch_size, n_items, n_items
        )
        return int(n_items)
    return int(batch_size)


def _resolve_augmentation(
    augment: bool, augment_flip: bool, augment_distortion_factor: float | None, permute: bool,
    augmentation: AugmentationParams | None,
) -> AugmentationParams:
    if augmentation is None:
        return AugmentationParams.from_reference(augment, augment_flip, augment_distortion_factor, permute)
    if permute and not augmentation.permute:
        from dataclasses import replace

        return replace(augmentation, permute=True)
    return augmentation


# --------------------------------------------------------------------------------------------
# Reading and converting samples


def read_sample(
    data_file, row: Sequence[int], patch_shape: Sequence[int] | None = None, with_affine: bool = False
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
    with hdf5_lock():
        if patch_shape is None:
            data = np.asarray(data_file.root.data[subject])
            truth = np.asarray(data_file.root.truth[subject, 0])
        else:
            corner = np.asarray(row[1:4], dtype=np.int64)
            low, high = get_patch_bounds(_image_shape(data_file), patch_shape, corner)
            region = tuple(slice(int(a), int(b)) for a, b in zip(low, high))
            data = np.asarray(data_file.root.data[(subject, slice(None)) + region])
            truth = np.asarray(data_file.root.truth[(subject, 0) + region])
        affine = np.asarray(data_file.root.affine[subject]) if with_affine else None
    if patch_shape is not None:
        local = corner - low
        data = get_patch_from_3d_data(data, patch_shape, local)
        truth = get_patch_from_3d_data(truth, patch_shape, local)
    return data, truth, affine


def load_sample(
    data_file,
    row: Sequence[int],
    patch_shape: Sequence[int] | None = None,
    augmentation: AugmentationParams | None = None,
    rng: np.random.Generator | int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Reads and augments one plan item.

    Returns:
        ``(data, truth)``: float32 ``(C, x, y, z)`` and ``(1, x, y, z)``.
    """
    augmentation = augmentation or AugmentationParams()
    data, truth, affine = read_sample(data_file, row, patch_shape, with_affine=augmentation.enabled)
    if augmentation.enabled:
        data, truth = augment_sample(data, truth, affine, augmentation, rng)
    return np.ascontiguousarray(data, dtype=np.float32), np.ascontiguousarray(truth)[np.newaxis]


def get_data_from_file(data_file, index, patch_shape: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One subject, or one patch of it (reference API).

    Args:
        data_file: open PyTables data file.
        index: subject index, or ``(subject, corner)`` with ``patch_shape``.
        patch_shape: ``(px, py, pz)`` or None.

    Returns:
        ``(data (C, x, y, z), truth (x, y, z))``.
    """
    if patch_shape:
        subject, corner = index
        row = [int(subject)] + [int(c) for c in np.asarray(corner).reshape(-1)[:3]]
        data, truth, _ = read_sample(data_file, row, patch_shape)
    else:
        data, truth, _ = read_sample(data_file, (int(index), 0, 0, 0), None)
    return data, truth


def _image_data_format(data_format: str | None) -> str:
    if data_format is not None:
        if data_format not in ("channels_last", "channels_first"):
            raise ValueError(f"data_format must be 'channels_last' or 'channels_first'; received {data_format!r}")
        return data_format
    try:
        import keras
    except ImportError:  # the data pipeline runs without Keras; Keras' default then
        return "channels_last"
    return keras.config.image_data_format()


def to_model_format(batch: np.ndarray, data_format: str | None = None) -> np.ndarray:
    """Converts a channels-first batch ``(N, C, x, y, z)`` to the model's data format.

    Args:
        batch: ``(N, C, x, y, z)``.
        data_format: ``"channels_last"``/``"channels_first"``; None reads
            ``keras.config.image_data_format()``.

    Returns:
        ``(N, x, y, z, C)`` (C-contiguous) for channels-last, else ``batch`` unchanged.
    """
    if _image_data_format(data_format) == "channels_last":
        return np.ascontiguousarray(np.moveaxis(batch, 1, -1))
    return batch


def get_multi_class_labels(data: np.ndarray, n_labels: int, labels: Sequence[int] | None = None) -> np.ndarray:
    """Turns a label map into one binary channel per label.

    Args:
        data: ``(N, 1, ...)`` label map.
        n_labels: number of output channels.
        labels: the label value of each channel, ``1..n_labels`` when None (e.g. ``(1, 2, 4)``).

    Returns:
        int8 ``(N, n_labels, ...)``.
    """
    data = np.asarray(data)
    values = np.arange(1, n_labels + 1) if labels is None else np.asarray(labels)[:n_labels]
    if len(values) < n_labels:
        raise ValueError(f"labels {tuple(np.asarray(labels).tolist())} has fewer than n_labels={n_labels} values")
    values = values.reshape((1, n_labels) + (1,) * (data.ndim - 2))
    return (data[:, :1] == values).astype(np.int8)


def one_hot_with_ignore(
    data: np.ndarray, labels: Sequence[int], ignore_label: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One-hot targets with a background channel; unlabeled voxels stay all zero.

    Args:
        data: ``(N, 1, ...)`` label map; 0 is background, ``ignore_label`` unlabeled.
        labels: label value of each channel after the background, e.g. ``(1, 2)``.
        ignore_label: value of the voxels nobody annotated (None: every voxel is annotated).

    Returns:
        int8 ``(N, 1 + len(labels), ...)`` one-hot (background first) and the int8
        ``(N, 1, ...)`` mask of the annotated voxels (the one-hot's sum over channels).
        Values other than 0, the labels and ``ignore_label`` count as background.
    """
    data = np.asarray(data)[:, :1]
    values = np.asarray([int(v) for v in labels]).reshape((1, len(labels)) + (1,) * (data.ndim - 2))
    label_channels = data == values
    annotated = np.ones_like(data, dtype=bool) if ignore_label is None else data != ignore_label
    background = annotated & ~np.any(label_channels, axis=1, keepdims=True)
    one_hot = np.concatenate([background, label_channels], axis=1).astype(np.int8)
    return one_hot, annotated.astype(np.int8)


def convert_data(
    x_list: Sequence[np.ndarray],
    y_list: Sequence[np.ndarray],
    n_labels: int = 1,
    labels: Sequence[int] | None = None,
    *,
    data_format: str | None = None,
    background: bool = False,
    ignore_label: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Stacks samples into a batch in the model's data format: the one place that converts.

    Args:
        x_list: samples ``(C, x, y, z)``.
        y_list: truths ``(1, x, y, z)``.
        n_labels: 1 gives a binary target (any label > 0); more gives one channel per label.
        labels: label values for ``n_labels > 1``.
        data_format: see :func:`to_model_format`.
        background: softmax targets: a background channel first, then one per label, and
            voxels equal to ``ignore_label`` all zero (see :func:`one_hot_with_ignore`).
        ignore_label: value of unlabeled voxels, with ``background``.

    Returns:
        float32 ``(x, y)``: ``(N, x, y, z, C)`` and ``(N, x, y, z, n_labels)`` channels-last
        (channels-first: ``(N, C, x, y, z)`` and ``(N, n_labels, x, y, z)``); with
        ``background`` y has ``n_labels + 1`` channels.
    """
    x = np.asarray(x_list, dtype=np.float32)
    y = np.asarray(y_list)
    if background:
        values = list(range(1, n_labels + 1)) if labels is None else list(labels)[:n_labels]
        y = one_hot_with_ignore(y, values, ignore_label)[0]
    elif ignore_label is not None:
        raise ValueError("ignore_label needs background=True: without a background channel an unlabeled "
                         "voxel cannot be told from annotated background")
    elif n_labels == 1:
        y = y > 0
    elif n_labels > 1:
        y = get_multi_class_labels(y, n_labels=n_labels, labels=labels)
    y = y.astype(np.float32)
    return to_model_format(x, data_format), to_model_format(y, data_format)


# --------------------------------------------------------------------------------------------
# The reference's generator functions


def create_patch_index_list(
    index_list: Sequence[int],
    image_shape: Sequence[int],
    patch_shape: Sequence[int],
    patch_overlap: int | Sequence[int],
    patch_start_offset: Sequence[int] | None = None,
    *,
    rng: np.random.Generator | int | None = None,
) -> list[tuple[int, np.ndarray]]:
    """Every patch of every subject, as ``(subject, corner)`` pairs.

    With ``patch_start_offset`` each subject's grid starts at a random offset in
    ``[-offset, 0]`` (drawn from ``rng``).
    """
    plan = SamplingPlan(
        index_list, image_shape, patch_shape, patch_overlap, patch_start_offset, skip_blank=False, shuffle=False
    )
    return [_item_index(row, True) for row in plan.plan(np.random.default_rng(rng))]


def get_number_of_patches(
    data_file,
    index_list: Sequence[int],
    patch_shape: Sequence[int] | None = None,
    patch_overlap: int | Sequence[int] = 0,
    patch_start_offset: Sequence[int] | None = None,
    skip_blank: bool = True,
    *,
    rng: np.random.Generator | int | None = None,
) -> int:
    """Number of samples (patches, or whole volumes) one epoch visits; blank ones excluded
    with ``skip_blank``. With random offsets and ``skip_blank`` this is the count for one draw
    of the offsets (from ``rng``)."""
    plan = SamplingPlan(
        index_list, _image_shape(data_file), patch_shape, patch_overlap, patch_start_offset, skip_blank, shuffle=False
    )
    return len(plan.plan(np.random.default_rng(rng), _truth_reader(data_file)))


def get_number_of_steps(n_samples: int, batch_size: int) -> int:
    """Batches needed to visit ``n_samples`` once: ``ceil(n_samples / batch_size)``.

    (The reference returned ``n_samples`` when ``n_samples <= batch_size``.)
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1; received {batch_size}")
    return int(math.ceil(int(n_samples) / int(batch_size)))


def add_data(
    x_list: list,
    y_list: list,
    data_file,
    index,
    augment: bool = False,
    augment_flip: bool = False,
    augment_distortion_factor: float | None = 0.25,
    patch_shape: Sequence[int] | None = False,
    skip_blank: bool = True,
    permute: bool = False,
    *,
    rng: np.random.Generator | int | None = None,
    augmentation: AugmentationParams | None = None,
) -> bool:
    """Reads (and augments) one sample and appends it to ``x_list``/``y_list`` (reference API).

    Args:
        x_list, y_list: lists the sample ``(C, x, y, z)`` and truth ``(1, x, y, z)`` go to.
        data_file: open PyTables data file.
        index: subject index, or ``(subject, corner)`` with ``patch_shape``.
        augment, augment_flip, augment_distortion_factor, permute: the reference's switches.
        patch_shape: ``(px, py, pz)`` or None/False for whole volumes.
        skip_blank: do not append a sample whose (augmented) truth is all zero.
        rng: random generator or seed for the augmentation.
        augmentation: full augmentation parameters; replaces the reference's switches.

    Returns:
        Whether the sample was appended.

    Raises:
        ValueError: ``permute`` with a sample that is not a cube.
    """
    params = _resolve_augmentation(augment, augment_flip, augment_distortion_factor, permute, augmentation)
    patch_shape = patch_shape or None
    data, truth = get_data_from_file(data_file, index, patch_shape=patch_shape)
    if params.permute and not data.shape[-3] == data.shape[-2] == data.shape[-1]:
        raise ValueError(
            f"permute=True needs cubic samples, but patch_shape={patch_shape} and the image shape is "
            f"{_image_shape(data_file)}"
        )
    if params.enabled:
        subject = index[0] if patch_shape else index
        with hdf5_lock():
            affine = np.asarray(data_file.root.affine[int(subject)])
        data, truth = augment_sample(data, truth, affine, params, np.random.default_rng(rng))
    truth = truth[np.newaxis]
    if skip_blank and not np.any(truth != 0):
        return False
    x_list.append(np.asarray(data, dtype=np.float32))
    y_list.append(truth)
    return True


def _batches(
    data_file,
    plan: SamplingPlan,
    first_items: np.ndarray,
    batch_size: int,
    n_labels: int,
    labels: Sequence[int] | None,
    augmentation: AugmentationParams,
    rng: np.random.Generator,
    data_format: str,
    read_truth: Callable[[int], np.ndarray],
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    items = first_items
    while True:
        for start in range(0, len(items), batch_size):
            x_list, y_list = [], []
            for row in items[start:start + batch_size]:
                x, y = load_sample(data_file, row, plan.patch_shape, augmentation, rng)
                x_list.append(x)
                y_list.append(y)
            yield convert_data(x_list, y_list, n_labels=n_labels, labels=labels, data_format=data_format)
        items = plan.plan(rng, read_truth)


def _make_generator(
    data_file, index_list, batch_size, n_labels, labels, augmentation, patch_shape, patch_overlap,
    patch_start_offset, shuffle, skip_blank, rng, data_format, name, counts=None,
) -> tuple[Iterator[tuple[np.ndarray, np.ndarray]], int]:
    _check_labels_argument(n_labels, labels)
    image_shape = _image_shape(data_file)
    _check_permute(augmentation.permute, patch_shape, image_shape)
    plan = SamplingPlan(index_list, image_shape, patch_shape, patch_overlap, patch_start_offset, skip_blank, shuffle)
    read_truth = _truth_reader(data_file, counts)
    first_items = plan.plan(rng, read_truth)
    batch_size = _effective_batch_size(batch_size, len(first_items), name)
    generator = _batches(
        data_file, plan, first_items, batch_size, n_labels, labels, augmentation, rng,
        _image_data_format(data_format), read_truth,
    )
    return generator, get_number_of_steps(len(first_items), batch_size)


def data_generator(
    data_file,
    index_list: Sequence[int],
    batch_size: int = 1,
    n_labels: int = 1,
    labels: Sequence[int] | None = None,
    augment: bool = False,
    augment_flip: bool = True,
    augment_distortion_factor: float | None = 0.25,
    patch_shape: Sequence[int] | None = None,
    patch_overlap: int | Sequence[int] = 0,
    patch_start_offset: Sequence[int] | None = None,
    shuffle_index_list: bool = True,
    skip_blank: bool = True,
    permute: bool = False,
    *,
    rng: np.random.Generator | int | None = None,
    augmentation: AugmentationParams | None = None,
    data_format: str | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """An endless generator of ``(x, y)`` batches in the model's data format.

    Each pass visits the planned samples once (see :class:`SamplingPlan`) in batches of
    ``batch_size`` (the last one smaller); ``ceil(n_samples / batch_size)`` batches make one
    epoch. Arguments are checked when this function is called, not at the first batch.

    Args:
        data_file: open PyTables data file.
        index_list: subjects to draw from.
        batch_size: samples per batch (clamped, with a warning, to the samples per epoch).
        n_labels, labels: see :func:`convert_data`.
        augment, augment_flip, augment_distortion_factor, permute: the reference's augmentation
            switches; ``augmentation`` replaces them.
        patch_shape: ``(px, py, pz)``, or None for whole volumes.
        patch_overlap: voxels shared by neighbouring patches.
        patch_start_offset: maximum random grid offset per epoch, or None.
        shuffle_index_list: shuffle each epoch.
        skip_blank: leave out samples without labels.
        rng: random generator or seed (patch offsets, order, augmentation).
        augmentation: see :class:`~unet3d_keras.augment.AugmentationParams`.
        data_format: see :func:`to_model_format`.

    Yields:
        float32 ``(x, y)`` batches: ``(n, x, y, z, C)`` and ``(n, x, y, z, n_labels)`` channels-last.
    """
    params = _resolve_augmentation(augment, augment_flip, augment_distortion_factor, permute, augmentation)
    generator, _ = _make_generator(
        data_file, index_list, batch_size, n_labels, labels, params, patch_shape, patch_overlap,
        patch_start_offset, shuffle_index_list, skip_blank, np.random.default_rng(rng), data_format, "batch_size",
    )
    return generator


def get_training_and_validation_generators(
    data_file,
    batch_size: int,
    n_labels: int,
    training_keys_file: PathLike,
    validation_keys_file: PathLike,
    data_split: float = 0.8,
    overwrite: bool = False,
    labels: Sequence[int] | None = None,
    augment: bool = False,
    augment_flip: bool = True,
    augment_distortion_factor: float | None = 0.25,
    patch_shape: Sequence[int] | None = None,
    validation_patch_overlap: int | Sequence[int] = 0,
    training_patch_start_offset: Sequence[int] | None = None,
    validation_batch_size: int | None = None,
    skip_blank: bool = True,
    permute: bool = False,
    *,
    seed: int | None = None,
    augmentation: AugmentationParams | None = None,
    allow_pickle: bool = False,
    data_format: str | None = None,
) -> tuple[Iterator, Iterator | None, int, int]:
    """Training and validation generators and their steps per epoch (reference API).

    Training samples are augmented (``augment``/``augmentation``) and, with
    ``training_patch_start_offset``, cut on a patch grid moved by a random offset each epoch;
    validation samples are neither, and use ``validation_patch_overlap``.

    Args:
        data_file: open PyTables data file (or its path, opened read-only and kept open).
        batch_size: training batch size.
        n_labels: output labels (1: binary target ``truth > 0``).
        training_keys_file, validation_keys_file: JSON split files, see :func:`get_validation_split`.
        data_split: fraction of subjects for training.
        overwrite: draw a new split even if the files exist.
        labels: label values, e.g. ``(1, 2, 4)``; ``len(labels)`` must equal ``n_labels > 1``.
        augment, augment_flip, augment_distortion_factor: the reference's augmentation.
        patch_shape: ``(px, py, pz)``, or None for whole volumes.
        validation_patch_overlap: overlap of validation patches.
        training_patch_start_offset: maximum random offset ``(ox, oy, oz)`` of the training grid.
        validation_batch_size: defaults to ``batch_size``.
        skip_blank: leave out samples without labels.
        permute: random cube symmetries (cubic samples only).
        seed: seeds the split and both generators; None draws one (logged).
        augmentation: full augmentation parameters; replaces ``augment``, ``augment_flip``
            and ``augment_distortion_factor``.
        allow_pickle: allow ``.pkl`` split files (pickle can execute code).
        data_format: model data format; None reads Keras' setting.

    Returns:
        ``(training_generator, validation_generator, n_training_steps, n_validation_steps)``;
        with no validation subjects (``data_split=1``) the validation generator is None and its
        step count 0.

    Raises:
        ValueError: bad arguments (labels, permute with non-cubic samples, no training samples).
        SplitFileError: see :func:`get_validation_split`.
    """
    if isinstance(data_file, (str, os.PathLike)):
        import tables

        from .data import refuse_pickled_attributes

        refuse_pickled_attributes(data_file)  # PyTables would unpickle them on open
        data_file = tables.open_file(os.fspath(data_file), mode="r")
    _check_labels_argument(n_labels, labels)
    params = _resolve_augmentation(augment, augment_flip, augment_distortion_factor, permute, augmentation)
    _check_permute(params.permute, patch_shape, _image_shape(data_file))
    validation_batch_size = validation_batch_size or batch_size
    seed = resolve_seed(seed)
    training_list, validation_list = get_validation_split(
        data_file, training_keys_file, validation_keys_file, data_split=data_split, overwrite=overwrite,
        seed=seed, allow_pickle=allow_pickle,
    )
    if not training_list:
        raise ValueError(f"No training subjects: data_split={data_split} of {_n_subjects(data_file)} subjects")
    counts: dict[int, np.ndarray] = {}  # truth histograms, shared by the blank check and the label check
    training_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_TRAINING_STREAM,)))
    training_generator, n_training_steps = _make_generator(
        data_file, training_list, batch_size, n_labels, labels, params, patch_shape, 0,
        training_patch_start_offset, True, skip_blank, training_rng, data_format, "batch_size", counts,
    )
    logger.info("Number of training steps: %d", n_training_steps)
    validation_generator, n_validation_steps = None, 0
    if validation_list:
        validation_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_VALIDATION_STREAM,)))
        validation_generator, n_validation_steps = _make_generator(
            data_file, validation_list, validation_batch_size, n_labels, labels, AugmentationParams(), patch_shape,
            validation_patch_overlap, None, True, skip_blank, validation_rng, data_format, "validation_batch_size",
            counts,
        )
        logger.info("Number of validation steps: %d", n_validation_steps)
    else:
        logger.warning("No validation subjects (data_split=%s); no validation generator", data_split)
    check_label_values(data_file, list(training_list) + list(validation_list), n_labels, labels, counts)
    return training_generator, validation_generator, n_training_steps, n_validation_steps
