"""A ``keras.utils.PyDataset`` of training batches read from the HDF5 data file.

Same sampling and batches as :mod:`unet3d_keras.generator` (a
:class:`~unet3d_keras.sampling.SamplingPlan` per epoch, :func:`~unet3d_keras.samples.load_sample`,
:class:`~unet3d_keras.batches.BatchSettings`), but indexable, so Keras can prefetch batches with
``workers`` threads or processes while the model trains, and reproducible whatever the number of
workers:

* epoch ``e`` is planned (patch offsets, order) with ``numpy.random.default_rng([seed, e])``;
* item ``k`` of epoch ``e`` is augmented with its own generator derived from ``(seed, e, k)``
  (:func:`~unet3d_keras.seeds.item_rng`), so a batch does not depend on which worker made
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

from .batches import BatchSettings
from .sampling import effective_batch_size, steps_per_epoch
from .samples import hdf5_lock, load_sample, open_read_only, truth_reader
from .seeds import item_rng, plan_rng, resolve_seed
from .training_data import TrainingDataSettings

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
        settings: the batch settings, instead of ``batch_size``, ``n_labels``, ``labels`` and
            ``**options``.
        seed: seed of the plans and augmentation; None draws one (logged, see :attr:`seed`).
        initial_epoch: the epoch the first batches belong to (resuming).
        workers, use_multiprocessing, max_queue_size: passed to ``keras.utils.PyDataset``.
        truth_counts: per-subject truth histograms to fill in while planning (for a label check).
        **options: the other fields of :class:`~unet3d_keras.batches.BatchSettings`
            (``patch_shape``, ``patch_overlap``, ``patch_start_offset``, ``skip_blank``,
            ``augmentation``, ``shuffle``, ``data_format``, ``background``, ``ignore_label``).

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
        settings: BatchSettings | None = None,
        seed: int | None = None,
        initial_epoch: int = 0,
        workers: int = 1,
        use_multiprocessing: bool = False,
        max_queue_size: int = 10,
        truth_counts: dict[int, np.ndarray] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(workers=workers, use_multiprocessing=use_multiprocessing, max_queue_size=max_queue_size)
        if settings is not None and (options or (batch_size, n_labels, labels) != (1, 1, None)):
            raise TypeError("pass either settings or batch_size, n_labels, labels and the other BatchSettings fields")
        self.settings = settings or BatchSettings(batch_size, n_labels, labels, **options)
        self.data_file = _path_of(data_file)
        self.seed = resolve_seed(seed)
        self._file = None
        self._file_pid = None
        self._lock = None
        self._lock_pid = None
        self._plan_epoch: int | None = None
        self._plan_items: np.ndarray | None = None

        handle = self._handle()
        try:
            n_subjects = int(handle.root.data.shape[0])
            bad = [int(i) for i in index_list if not 0 <= int(i) < n_subjects]
            if bad:
                raise ValueError(
                    f"subject indices {bad[:10]} are outside the {n_subjects} subjects of {self.data_file}"
                )
            self._planner = self.settings.sampling_plan(index_list, tuple(handle.root.data.shape[-3:]))
            self._truth_counts = truth_counts
            # Epoch 0 fixes the number of items, whatever epoch we start at.
            self._items(0)
            self.n_items = int(self._planner.n_items)
            self.batch_size = effective_batch_size(self.settings.batch_size, self.n_items, "batch_size")
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
                read_truth = truth_reader(self._handle(), self._truth_counts)
                self._plan_items = self._planner.plan(plan_rng(self.seed, epoch), read_truth)
                self._plan_epoch = epoch
            return self._plan_items

    def epoch_items(self, epoch: int | None = None) -> np.ndarray:
        """The samples of an epoch in order: int64 rows ``(subject, x, y, z)`` (patch corner)."""
        epoch = self._epoch if epoch is None else int(epoch)
        if epoch == self._epoch:
            return self._items(epoch).copy()
        with self._mutex():
            return self._planner.plan(plan_rng(self.seed, epoch), truth_reader(self._handle()))

    # -- PyDataset -------------------------------------------------------------------------

    def __len__(self) -> int:
        return steps_per_epoch(self.n_items, self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range for {len(self)} batches")
        epoch = self._epoch
        items = self._items(epoch)
        handle = self._handle()
        start = index * self.batch_size
        samples = [
            load_sample(handle, row, self._planner.patch_shape, self.settings.augmentation,
                        item_rng(self.seed, epoch, position))
            for position, row in enumerate(items[start:start + self.batch_size], start=start)
        ]
        return self.settings.make_batch([x for x, _ in samples], [y for _, y in samples])


def get_training_and_validation_datasets(
    data_file: PathLike | tables.File,
    *args: Any,
    workers: int = 1,
    use_multiprocessing: bool = False,
    max_queue_size: int = 10,
    **kwargs: Any,
) -> tuple[HDF5Dataset, HDF5Dataset | None]:
    """The PyDataset counterpart of :func:`~unet3d_keras.generator.get_training_and_validation_generators`.

    Args:
        data_file: path of the data file (or an open ``tables.File``, for its path).
        *args, **kwargs: the arguments of
            :class:`~unet3d_keras.training_data.TrainingDataSettings` (those of
            ``get_training_and_validation_generators`` after ``data_file``).
        workers, use_multiprocessing, max_queue_size: of the training dataset (the validation
            dataset uses one worker).

    Returns:
        ``(training_dataset, validation_dataset)``; ``len()`` of each is its steps per epoch.
        The validation dataset is None when there are no validation subjects.
    """
    settings = TrainingDataSettings(*args, **kwargs)
    path = _path_of(data_file)
    handle = open_read_only(path)
    try:
        setup = settings.prepare(handle, shuffle_validation=False)
    finally:
        with hdf5_lock():
            handle.close()
    counts: dict[int, np.ndarray] = {}
    training = HDF5Dataset(
        path, setup.training_list, settings=setup.training, seed=setup.seed, workers=workers,
        use_multiprocessing=use_multiprocessing, max_queue_size=max_queue_size, truth_counts=counts,
    )
    validation = None
    if setup.validation_list:
        validation = HDF5Dataset(
            path, setup.validation_list, settings=setup.validation, seed=setup.seed, truth_counts=counts
        )
    setup.check_label_values(training._handle(), counts)
    # The truth histograms were only needed for the label check; do not ship them to workers.
    training._truth_counts = None
    if validation is not None:
        validation._truth_counts = None
    return training, validation
