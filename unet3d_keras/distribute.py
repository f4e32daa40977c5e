"""Training on several devices or machines (``training.distribution``), for each Keras backend.

Which engine does the work:

* TensorFlow (:mod:`unet3d_keras.distribute_tf`): ``mirrored`` is ``tf.distribute.MirroredStrategy``
  with Keras's ``fit``, validated on a one-device copy of the model; ``multi_worker`` is
  ``tf.distribute.MultiWorkerMirroredStrategy`` from ``TF_CONFIG`` with a custom ``strategy.run``
  step (Keras 3's ``fit`` fails under that strategy, keras-team/keras#20585).
* JAX (:mod:`unet3d_keras.distribute_jax`): ``keras.distribution.DataParallel`` with Keras's ``fit``
  (``jax.jit`` over a device mesh); ``multi_worker`` joins the processes with
  ``keras.distribution.initialize()`` from the ``KERAS_DISTRIBUTION_*`` variables.
* PyTorch: none (``training.distribution`` must be ``none``).

This module chooses between them, says which process is the chief (the one that writes the run's
files) and gives the other workers throw-away paths. ``training.batch_size`` is always the global
batch, split across the devices. See docs/distributed.md for launch recipes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from typing import Callable

import keras

from . import distribute_jax, distribute_tf
from .distribute_tf import fit_multi_worker

logger = logging.getLogger(__name__)

__all__ = ["DISTRIBUTIONS", "check_distribution", "fit", "fit_multi_worker", "get_strategy", "initialize",
           "is_chief", "worker_backup_dir", "worker_path"]

DISTRIBUTIONS = ("none", "mirrored", "multi_worker")
BACKENDS = ("tensorflow", "jax")


def check_distribution(distribution: str) -> None:
    """Raises ValueError for an unknown setting, or one the active Keras backend cannot run."""
    if distribution not in DISTRIBUTIONS:
        raise ValueError(
            f"training.distribution: expected one of {', '.join(DISTRIBUTIONS)}, received {distribution!r}"
        )
    backend = keras.backend.backend()
    if distribution != "none" and backend not in BACKENDS:
        raise ValueError(
            f"training.distribution {distribution} needs the TensorFlow or JAX backend (KERAS_BACKEND); "
            f"the active Keras backend is {backend!r}"
        )


def get_strategy(distribution: str, devices: list[str] | None = None):
    """The tf.distribute strategy for a ``training.distribution`` setting (TensorFlow backend).

    Args:
        distribution: ``none``, ``mirrored`` or ``multi_worker``.
        devices: Devices for ``mirrored`` (all local GPUs, else the CPU, when None).

    Returns:
        A strategy, or None for ``none``.
    """
    check_distribution(distribution)
    return distribute_tf.get_strategy(distribution, devices)


def initialize(distribution: str) -> None:
    """Joins the processes of a JAX ``multi_worker`` run; call it before any other work.

    TensorFlow needs nothing here: its strategy reads ``TF_CONFIG`` when created.
    """
    check_distribution(distribution)
    if distribution == "multi_worker" and keras.backend.backend() == "jax":
        distribute_jax.initialize()


def is_chief() -> bool:
    """True on the process that writes the run's files.

    That is the ``chief`` task of ``TF_CONFIG`` (else its worker 0), JAX process 0, or the only process.
    """
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = config.get("task") or {}
    if task:
        if "chief" in (config.get("cluster") or {}):
            return task.get("type") == "chief"
        return task.get("type") == "worker" and int(task.get("index", 0)) == 0
    if keras.backend.backend() == "jax":
        return distribute_jax.process_index() == 0
    return True


def worker_path(path: str | os.PathLike) -> str:
    """``path`` on the chief; a throw-away path on other workers (they must not overwrite it)."""
    if is_chief():
        return str(path)
    folder = tempfile.mkdtemp(prefix="unet3d_keras_worker_")
    return os.path.join(folder, os.path.basename(str(path)))


def worker_backup_dir(backup_dir: str | os.PathLike) -> str:
    """The backup folder on the chief; on other workers a throw-away copy of it.

    Every worker must restore the same state (weights, optimizer, epoch) when a run resumes, but
    only the chief writes the backup; so the others restore from and write to a private copy.
    """
    if is_chief():
        return str(backup_dir)
    copy = worker_path(backup_dir)
    if os.path.isdir(backup_dir):
        shutil.copytree(backup_dir, copy)
    return copy


def fit(
    model_fn: Callable[[], keras.Model],
    distribution: str,
    training: keras.utils.PyDataset,
    validation: keras.utils.PyDataset,
    global_batch_size: int,
    epochs: int,
    initial_epoch: int = 0,
    callbacks: list[keras.callbacks.Callback] | None = None,
    verbose: int | str = "auto",
    devices: list[str] | None = None,
) -> tuple[keras.Model, keras.callbacks.History]:
    """Build the model and train it under ``distribution`` with the active backend's engine.

    Args:
        model_fn: Builds and compiles the model; called inside the engine's scope.
        distribution: ``none``, ``mirrored`` or ``multi_worker``.
        training: Global training batches positioned at ``initial_epoch`` (every worker the same).
        validation: Global validation batches.
        global_batch_size: Samples per step over all devices (``training.batch_size``).
        epochs: Last epoch (exclusive).
        initial_epoch: First epoch (the resumed one), on every worker.
        callbacks: Keras callbacks.
        verbose: Verbosity of ``fit``.
        devices: Devices of ``mirrored`` (TensorFlow: all GPUs, else the CPU; JAX: all devices; when None).

    Returns:
        ``(model, history)``.
    """
    check_distribution(distribution)
    # shuffle=False: the dataset shuffles each epoch from the seed; Keras's own batch shuffling
    # draws from global random state, which a resumed process does not share.
    options = dict(epochs=epochs, initial_epoch=initial_epoch, callbacks=callbacks, verbose=verbose, shuffle=False)
    if distribution == "none":
        model = model_fn()
        return model, model.fit(training, validation_data=validation, **options)
    if keras.backend.backend() == "jax":
        return distribute_jax.fit_data_parallel(model_fn, distribution, training, validation, global_batch_size,
                                                devices=devices, **options)
    if distribution == "mirrored":
        return distribute_tf.fit_mirrored(model_fn, devices, training, validation, **options)
    return fit_multi_worker(
        model_fn, get_strategy("multi_worker"), training, validation, steps_per_epoch=len(training),
        validation_steps=len(validation), epochs=epochs, global_batch_size=global_batch_size, callbacks=callbacks,
        initial_epoch=initial_epoch,
    )
