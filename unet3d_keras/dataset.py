"""A ``keras.utils.PyDataset`` of training batches read from the HDF5 data file.

Same sampling as :mod:`unet3d_keras.generator` (a :class:`~unet3d_keras.generator.SamplingPlan`
per epoch, :func:`~unet3d_keras.generator.load_sample`, :func:`~unet3d_keras.generator.convert_data`),
but indexable, so Keras can prefetch batches with ``workers`` threads or processes while the
model trains, and reproducible whatever the number of workers:

* epoch ``e`` is planned (patch offsets, order) with ``numpy.random.default_rng([seed, e])``;
* item ``k`` of epoch ``e`` is augmented with its own generator derived from ``(seed, e, k)``
  (:func:`~unet3d_keras.generator.item_rng`), so a batch does not depend on which worker made
  it or when;
* the epoch advances in :meth:`HDF5Dataset.on_epoch_end`, which Keras calls after each epoch,
  after its workers for that epoch have stopped and before it starts those of the next. Keras 3
  also calls it once when ``fit`` starts, so the ``n``-th epoch of a ``fit`` call (from 0) trains
  on the dataset's epoch ``e0 + n + 1``, ``e0`` being the dataset's epoch before ``fit``; a run
  resumed at epoch ``k`` with ``set_epoch(k)`` (or ``initial_epoch=k``) and
  ``fit(initial_epoch=k)`` therefore sees the same batches as an uninterrupted run.

The dataset holds the file's path, not an open handle: each process opens the file on first use
(a PyTables handle must not cross a fork), and reads go through one process-wide lock because
HDF5 is not thread-safe. Augmentation runs outside the lock.

Keras' ``fit(shuffle=True)`` (its default) additionally shuffles the order in which batches
are requested; the batches themselves are unchanged. Pass ``shuffle=False`` to ``fit`` for a
fully reproducible order.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, Sequence

import keras
import numpy as np
import tables

from .augment import AugmentationParams
from .generator import (
    SamplingPlan,
    _check_labels_argument,
    _check_permute,
    _effective_batch_size,
    _image_data_format,
    _resolve_augmentation,
    _truth_reader,
    check_label_values,
    convert_data,
    get_number_of_steps,
    get_validation_split,
    hdf5_lock,
    item_rng,
    load_sample,
    plan_rng,
    resolve_seed,
)

logger = logging.getLogger(__name__)

__all__ = ["HDF5Dataset", "get_training_and_validation_datasets"]

PathLike = str | os.PathLike


def _path_of(data_file) -> str:
    if isinstance(data_file, tables.File):
        return data_file.filename
    return os.fspath(data_file)


class HDF5Dataset(keras.utils.PyDataset):
    """Batches ``(x, y)`` from an HDF5 data file, in the model's data format.

    Pass ``shuffle=False`` to ``fit``: the dataset already shuffles each epoch
    from its seed, while Keras's batch shuffling draws from global random state
    and makes a resumed run differ from an uninterrupted one.

    Args:
        data_file: path of the data file (an open ``tables.File`` is accepted for its path).
        index_list: subjects (indices into the file) to draw from.
        batch_size: samples per batch; clamped, with a warning, to the samples per epoch.
        n_labels: output labels (1: binary target ``truth > 0``).
        labels: label values for ``n_labels > 1``, e.g. ``(1, 2, 4)``.
        patch_shape: ``(px, py, pz)``, or None for whole volumes.
        patch_overlap: voxels shared by neighbouring patches.
        patch_start_offset: maximum random offset of the patch grid, drawn per subject and epoch.
        skip_blank: leave out samples without labels.
        augmentation: augmentation parameters (none by default).
        shuffle: shuffle the samples each epoch.
        seed: seed of the plans and augmentation; None draws one (logged, see :attr:`seed`).
        data_format: model data format; None reads ``keras.config.image_data_format()`` now.
        initial_epoch: the epoch the first batches belong to (resuming).
        background: softmax targets, background channel first (``n_labels + 1`` channels).
        ignore_label: with ``background``, the value of unlabeled voxels: their target rows are
            all zero (masked out of the loss) and ``skip_blank`` drops samples with no
            annotated voxel rather than samples with no label.
        workers, use_multiprocessing, max_queue_size: passed to ``keras.utils.PyDataset``.

    Raises:
        ValueError: bad arguments, no samples, permute with non-cubic samples.
    """

    def __init__(
        self,
        data_file: PathLike | tables.File,
        index_list: Sequence[int],
        batch_size: int = 1,
        n_labels: int = 1,
        labels: Sequence[int] | None = None,
        *,
        patch_shape: Sequence[int] | None = None,
        patch_overlap: int | Sequence[int] = 0,
        patch_start_offset: Sequence[int] | None = None,
        skip_blank: bool = True,
        augmentation: AugmentationParams | None = None,
        shuffle: bool = True,
        seed: int | None = None,
        data_format: str | None = None,
        initial_epoch: int = 0,
        workers: int = 1,
        use_multiprocessing: bool = False,
        max_queue_size: int = 10,
        background: bool = False,
        ignore_label: int | None = None,
        _truth_counts: dict[int, np.ndarray] | None = None,
    ) -> None:
        super().__init__(workers=workers, use_multiprocessing=use_multiprocessing, max_queue_size=max_queue_size)
        _check_labels_argument(n_labels, labels)
        self.data_file = _path_of(data_file)
        self.n_labels = int(n_labels)
        self.labels = None if labels is None else tuple(int(v) for v in labels)
        self.patch_shape = None if patch_shape is None else tuple(int(s) for s in patch_shape)
        if ignore_label is not None and not background:
            raise ValueError("ignore_label needs background=True (softmax targets with a background channel)")
        self.background = bool(background)
        self.ignore_label = None if ignore_label is None else int(ignore_label)
        self.augmentation = augmentation or AugmentationParams()
        self.seed = resolve_seed(seed)
        self.data_format = _image_data_format(data_format)
        self._file = None
        self._file_pid = None
        self._lock = None
        self._lock_pid = None
        self._plan_epoch: int | None = None
        self._plan_items: np.ndarray | None = None

        handle = self._handle()
        try:
            image_shape = tuple(int(s) for s in handle.root.data.shape[-3:])
            n_subjects = int(handle.root.data.shape[0])
            bad = [int(i) for i in index_list if not 0 <= int(i) < n_subjects]
            if bad:
                raise ValueError(
                    f"subject indices {bad[:10]} are outside the {n_subjects} subjects of {self.data_file}"
                )
            _check_permute(self.augmentation.permute, self.patch_shape, image_shape)
            self._planner = SamplingPlan(
                index_list, image_shape, self.patch_shape, patch_overlap, patch_start_offset, skip_blank, shuffle,
                ignore_label=self.ignore_label,
            )
            self._truth_counts = _truth_counts
            # Epoch 0 fixes the number of items, whatever epoch we start at.
            self._items(0)
            self.n_items = int(self._planner.n_items)
            self.batch_size = _effective_batch_size(batch_size, self.n_items, "batch_size")
            self._epoch = int(initial_epoch)
            self._items(self._epoch)
        except BaseException:
            self.close()
            raise
        logger.info(
            "%s: %d subjects, %d samples per epoch, %d batches of %d", self.data_file, len(self._planner.index_list),
            self.n_items, len(self), self.batch_size,
        )

    # -- process- and thread-safety --------------------------------------------------------

    def _mutex(self) -> threading.RLock:
        # A lock copied by fork may be held by a thread that does not exist in the child.
        if self._lock is None or self._lock_pid != os.getpid():
            self._lock = threading.RLock()
            self._lock_pid = os.getpid()
        return self._lock

    def _handle(self) -> tables.File:
        with self._mutex():
            if self._file is None or self._file_pid != os.getpid():
                with hdf5_lock():
                    self._file = tables.open_file(self.data_file, mode="r")
                self._file_pid = os.getpid()
            return self._file

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_file=None, _file_pid=None, _lock=None, _lock_pid=None)
        return state

    def close(self) -> None:
        """Closes this process's handle of the data file (it is reopened on demand)."""
        with self._mutex():
            if self._file is not None and self._file_pid == os.getpid():
                with hdf5_lock():
                    self._file.close()
            self._file = None

    def __del__(self) -> None:
        # Close only a handle this process opened; a forked copy must leave the parent's alone.
        try:
            if self._file is not None and self._file_pid == os.getpid():
                self._file.close()
        except Exception:  # interpreter shutdown: PyTables may already be gone
            pass

    # -- epochs ----------------------------------------------------------------------------

    @property
    def epoch(self) -> int:
        """The epoch the batches currently belong to."""
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Makes the following batches those of ``epoch``."""
        self._epoch = int(epoch)
        self._items(self._epoch)

    def on_epoch_end(self) -> None:
        """Advances to the next epoch and plans it here, before Keras starts workers for it."""
        self.set_epoch(self._epoch + 1)

    def _items(self, epoch: int) -> np.ndarray:
        with self._mutex():
            if self._plan_epoch != epoch:
                read_truth = _truth_reader(self._handle(), self._truth_counts)
                self._plan_items = self._planner.plan(plan_rng(self.seed, epoch), read_truth)
                self._plan_epoch = epoch
            return self._plan_items

    def epoch_items(self, epoch: int | None = None) -> np.ndarray:
        """The samples of an epoch in order: int64 rows ``(subject, x, y, z)`` (patch corner)."""
        epoch = self._epoch if epoch is None else int(epoch)
        if epoch == self._epoch:
            return self._items(epoch).copy()
        with self._mutex():
            return self._planner.plan(plan_rng(self.seed, epoch), _truth_reader(self._handle()))

    # -- PyDataset -------------------------------------------------------------------------

    def __len__(self) -> int:
        return get_number_of_steps(self.n_items, self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range for {len(self)} batches")
        epoch = self._epoch
        items = self._items(epoch)
        handle = self._handle()
        start = index * self.batch_size
        x_list, y_list = [], []
        for position, row in enumerate(items[start:start + self.batch_size], start=start):
            x, y = load_sample(handle, row, self.patch_shape, self.augmentation, item_rng(self.seed, epoch, position))
            x_list.append(x)
            y_list.append(y)
        return convert_data(x_list, y_list, n_labels=self.n_labels, labels=self.labels, data_format=self.data_format,
                            background=self.background, ignore_label=self.ignore_label)


def get_training_and_validation_datasets(
    data_file: PathLike | tables.File,
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
    augmentation: AugmentationParams | None = None,
    seed: int | None = None,
    workers: int = 1,
    use_multiprocessing: bool = False,
    max_queue_size: int = 10,
    allow_pickle: bool = False,
    data_format: str | None = None,
) -> tuple[HDF5Dataset, HDF5Dataset | None]:
    """The PyDataset counterpart of :func:`~unet3d_keras.generator.get_training_and_validation_generators`.

    Same arguments (see there), plus ``workers``, ``use_multiprocessing`` and ``max_queue_size``
    for the training dataset (the validation dataset uses one worker). The split is drawn with
    ``seed`` and saved (or reused) as JSON.

    Returns:
        ``(training_dataset, validation_dataset)``; ``len()`` of each is its steps per epoch.
        The validation dataset is None when there are no validation subjects.
    """
    path = _path_of(data_file)
    _check_labels_argument(n_labels, labels)
    params = _resolve_augmentation(augment, augment_flip, augment_distortion_factor, permute, augmentation)
    seed = resolve_seed(seed)
    with hdf5_lock():
        handle = tables.open_file(path, mode="r")
    try:
        training_list, validation_list = get_validation_split(
            handle, training_keys_file, validation_keys_file, data_split=data_split, overwrite=overwrite,
            seed=seed, allow_pickle=allow_pickle,
        )
    finally:
        with hdf5_lock():
            handle.close()
    if not training_list:
        raise ValueError(f"No training subjects: data_split={data_split}")
    counts: dict[int, np.ndarray] = {}
    training = HDF5Dataset(
        path, training_list, batch_size, n_labels, labels, patch_shape=patch_shape, patch_overlap=0,
        patch_start_offset=training_patch_start_offset, skip_blank=skip_blank, augmentation=params, shuffle=True,
        seed=seed, data_format=data_format, workers=workers, use_multiprocessing=use_multiprocessing,
        max_queue_size=max_queue_size, _truth_counts=counts,
    )
    validation = None
    if validation_list:
        validation = HDF5Dataset(
            path, validation_list, validation_batch_size or batch_size, n_labels, labels, patch_shape=patch_shape,
            patch_overlap=validation_patch_overlap, skip_blank=skip_blank, shuffle=False, seed=seed,
            data_format=data_format, _truth_counts=counts,
        )
    else:
        logger.warning("No validation subjects (data_split=%s); no validation dataset", data_split)
    check_label_values(training._handle(), list(training_list) + list(validation_list), n_labels, labels, counts)
    # The truth histograms were only needed for the label check; do not ship them to workers.
    training._truth_counts = None
    if validation is not None:
        validation._truth_counts = None
    return training, validation
