"""JAX's engine for ``training.distribution``: Keras's distribution API (``keras.distribution``).

``mirrored`` trains with ``keras.distribution.DataParallel`` over the devices of this process:
the weights are replicated, each global batch is sharded along its first axis, and ``jax.jit``
(GSPMD) compiles one program for the device mesh in which XLA inserts the gradient all-reduce.
``multi_worker`` first calls ``keras.distribution.initialize()``, which reads the coordinator from
``KERAS_DISTRIBUTION_JOB_ADDRESSES``, ``KERAS_DISTRIBUTION_NUM_PROCESSES`` and
``KERAS_DISTRIBUTION_PROCESS_ID`` and starts ``jax.distributed``; ``DataParallel`` then spans the
devices of every process. Keras's ``fit`` does the training in both cases.

The glue here: every process reads the same global batches (same seed) and feeds Keras its own
contiguous slice (:class:`ProcessShard`), because Keras shards only ``tf.data`` pipelines across
processes itself; and a batch whose size is not a multiple of the device count (the last of an
epoch) is cut down to one (or filled up by repeating samples, when smaller than the device count),
because a sharded array needs equal shards.

Since the program is one global computation, batch statistics (batch normalisation) are those of
the global batch and random masks (dropout) those one device would draw: equal to one device up to
float32 round-off.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable

import keras
import numpy as np

logger = logging.getLogger(__name__)

COORDINATOR_VARIABLES = (
    "KERAS_DISTRIBUTION_JOB_ADDRESSES",
    "KERAS_DISTRIBUTION_NUM_PROCESSES",
    "KERAS_DISTRIBUTION_PROCESS_ID",
)


def initialize() -> None:
    """Joins the processes of a ``multi_worker`` run (once per process, before any JAX computation).

    Raises:
        ValueError: the coordinator variables are missing or incomplete.
    """
    import jax  # why: only the JAX backend has it

    if jax.distributed.is_initialized():
        return
    missing = [name for name in COORDINATOR_VARIABLES if not os.environ.get(name)]
    if missing:
        raise ValueError(
            "training.distribution multi_worker under the JAX backend needs the environment variables "
            f"{', '.join(COORDINATOR_VARIABLES)} (missing: {', '.join(missing)}), e.g. "
            "KERAS_DISTRIBUTION_JOB_ADDRESSES=host0:1234 KERAS_DISTRIBUTION_NUM_PROCESSES=2 "
            "KERAS_DISTRIBUTION_PROCESS_ID=0 on the first process"
        )
    keras.distribution.initialize()
    logger.info("Process %d of %d joined; devices: %s", jax.process_index(), jax.process_count(),
                keras.distribution.list_devices())


def process_index() -> int:
    """This process's index in a ``multi_worker`` run (0 when alone)."""
    import jax  # why: only the JAX backend has it

    return jax.process_index() if jax.distributed.is_initialized() else 0


class ProcessShard(keras.utils.PyDataset):
    """This process's slice of every global batch of a ``PyDataset``.

    Batch ``i`` is ``dataset[i]`` cut to a multiple of ``n_devices`` (or filled up to
    ``n_devices`` by repeating its samples when smaller), then split into ``n_processes``
    contiguous parts; this process gets part ``process``. Epoch hooks are passed on.

    Args:
        dataset: Global batches ``(x, y)``.
        n_devices: Devices over all processes.
        n_processes: Processes of the run.
        process: This process's index.
    """

    def __init__(self, dataset: keras.utils.PyDataset, n_devices: int, n_processes: int = 1, process: int = 0):
        super().__init__(workers=dataset.workers, use_multiprocessing=dataset.use_multiprocessing,
                         max_queue_size=dataset.max_queue_size)
        self.dataset = dataset
        self.n_devices = int(n_devices)
        self.n_processes = int(n_processes)
        self.process = int(process)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        batch = self.dataset[index]
        size = len(batch[0])
        usable = max(size - size % self.n_devices, self.n_devices)
        if usable != size:
            logger.warning("Batch %d has %d samples; training on %d so that the %d devices get equal shares",
                           index, size, usable, self.n_devices)
        part = usable // self.n_processes
        rows = np.arange(self.process * part, (self.process + 1) * part) % size
        return tuple(np.asarray(array)[rows] for array in batch)

    def on_epoch_begin(self) -> None:
        self.dataset.on_epoch_begin()

    def on_epoch_end(self) -> None:
        self.dataset.on_epoch_end()


def fit_data_parallel(
    model_fn: Callable[[], keras.Model],
    distribution: str,
    training: keras.utils.PyDataset,
    validation: keras.utils.PyDataset,
    global_batch_size: int,
    devices: list[str] | None = None,
    **fit_options,
) -> tuple[keras.Model, keras.callbacks.History]:
    """Build and ``fit`` a model under ``keras.distribution.DataParallel``.

    Args:
        model_fn: Builds and compiles the model; called inside the distribution's scope.
        distribution: ``mirrored`` (this process's devices) or ``multi_worker``
            (every process's devices; :func:`initialize` is called first).
        training: Global training batches; every process must produce the same ones.
        validation: Global validation batches, likewise.
        global_batch_size: Samples per training step over all devices.
        devices: Devices of ``mirrored`` (``keras.distribution.list_devices()`` when None).
        **fit_options: Passed to ``fit`` (epochs, initial_epoch, callbacks, verbose, shuffle).

    Returns:
        ``(model, history)``.
    """
    import jax  # why: only the JAX backend has it

    if distribution == "multi_worker":
        initialize()
    if distribution == "multi_worker" or not devices:
        devices = keras.distribution.list_devices()
    if global_batch_size % len(devices):
        raise ValueError(
            f"training.batch_size {global_batch_size} must be a multiple of the {len(devices)} devices of "
            "training.distribution under the JAX backend (each device gets an equal share of the global batch)"
        )
    # Our own per-process slices: Keras's automatic sharding takes only tf.data pipelines.
    data_parallel = keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False)
    n_processes, process = jax.process_count(), jax.process_index()
    logger.info("DataParallel over %d devices in %d processes", len(devices), n_processes)
    with data_parallel.scope():
        model = model_fn()
        history = model.fit(ProcessShard(training, len(devices), n_processes, process),
                            validation_data=ProcessShard(validation, len(devices), n_processes, process),
                            **fit_options)
    return model, history
