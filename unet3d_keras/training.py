"""Training: the learning-rate schedule, the callbacks of a run, model loading and ``fit``.

``train_model`` runs Keras ``Model.fit`` on an endless generator or a
``keras.utils.PyDataset``. The crash-safe callbacks themselves live in
:mod:`unet3d_keras.callbacks`.
"""

from __future__ import annotations

import logging
import math
import os
import zipfile
from functools import partial
from pathlib import Path

import keras

from .callbacks import AtomicModelCheckpoint, ResumableBackup
from .errors import DataError
from .reference_files import hdf5_keras_major_version
from .reference_models import REFERENCE_OBJECTS, load_reference_model

__all__ = [
    "AtomicModelCheckpoint",
    "ResumableBackup",
    "get_callbacks",
    "load_old_model",
    "step_decay",
    "train_model",
]

logger = logging.getLogger(__name__)


def step_decay(epoch: int, initial_lrate: float, drop: float, epochs_drop: int) -> float:
    """Learning rate ``initial_lrate * drop ** floor((1 + epoch) / epochs_drop)``."""
    return initial_lrate * math.pow(drop, math.floor((1 + epoch) / float(epochs_drop)))


def get_callbacks(
    model_file: str | os.PathLike,
    initial_learning_rate: float = 0.0001,
    learning_rate_drop: float = 0.5,
    learning_rate_epochs: int | None = None,
    learning_rate_patience: int = 50,
    logging_file: str | os.PathLike = "training.log",
    verbosity: int = 1,
    early_stopping_patience: int | None = None,
    tensorboard_dir: str | os.PathLike | None = None,
    backup_dir: str | os.PathLike | None = None,
    terminate_on_nan: bool = True,
    best_val_loss: float | None = None,
    keep_backup: bool = False,
) -> list[keras.callbacks.Callback]:
    """Best-model checkpoint, CSV log, learning-rate schedule and early stopping, plus options.

    The optional callbacks stop on a NaN loss, write TensorBoard logs and keep
    a crash-safe backup.

    Args:
        model_file: Where the best model (lowest ``val_loss``) is saved.
        initial_learning_rate: Start of the step decay.
        learning_rate_drop: Factor of each drop.
        learning_rate_epochs: Step decay every this many epochs; ``None``
            uses ReduceLROnPlateau with ``learning_rate_patience``.
        learning_rate_patience: Plateau length before a drop.
        logging_file: CSV log, appended to.
        verbosity: Verbosity of the schedule and early-stopping callbacks.
        early_stopping_patience: Stop after this many epochs without
            improvement; ``None`` never stops early.
        tensorboard_dir: Write TensorBoard logs there when given.
        backup_dir: Keep a crash-safe backup there (:class:`ResumableBackup`)
            so that an interrupted ``fit`` resumes at the last completed epoch
            (pass ``initial_epoch=ResumableBackup.restored_epoch(backup_dir)``
            to ``fit``).
        terminate_on_nan: Stop on a NaN loss (the best model stays on disk).
        best_val_loss: Best validation loss so far (when resuming), so that
            only a better model replaces the saved one.
        keep_backup: Keep the backup when training ends, so that more epochs
            can follow later exactly as if the run had not stopped.

    Returns:
        The callbacks: checkpoint, CSV log, schedule, early stopping, then the options.
    """
    callbacks: list[keras.callbacks.Callback] = [
        AtomicModelCheckpoint(str(model_file), save_best_only=True, initial_value_threshold=best_val_loss),
        keras.callbacks.CSVLogger(str(logging_file), append=True),
    ]
    if learning_rate_epochs:
        callbacks.append(
            keras.callbacks.LearningRateScheduler(
                partial(
                    step_decay,
                    initial_lrate=initial_learning_rate,
                    drop=learning_rate_drop,
                    epochs_drop=learning_rate_epochs,
                )
            )
        )
    else:
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                factor=learning_rate_drop, patience=learning_rate_patience, verbose=verbosity
            )
        )
    if early_stopping_patience:
        callbacks.append(keras.callbacks.EarlyStopping(verbose=verbosity, patience=early_stopping_patience))
    if terminate_on_nan:
        callbacks.append(keras.callbacks.TerminateOnNaN())
    if tensorboard_dir is not None:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(tensorboard_dir)))
    if backup_dir is not None:
        callbacks.append(ResumableBackup(backup_dir, delete_on_end=not keep_backup))
    return callbacks


def load_old_model(model_file: str | os.PathLike, compile: bool = True) -> keras.Model:
    """Load a ``.keras`` or ``.h5`` model file: the port's, or a Keras 2 one written by the reference.

    No ``custom_objects`` are needed: the project's layers, losses and
    metrics are registered serializables, and the reference's loss names are
    mapped here. Safe mode refuses model files that embed Python code. A Keras 2
    HDF5 file (the reference's ``channels_first`` U-Net or Isensee 2017 model) is
    read as data and rebuilt as the port's ``channels_last`` model with the same
    weights (:mod:`unet3d_keras.reference_models`).

    Raises:
        FileNotFoundError: ``model_file`` does not exist.
        DataError: the file is not a Keras model, is corrupted, or is refused by safe mode
            (the message names the file).
    """
    path = Path(model_file)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model file not found")
    if path.suffix not in (".keras", ".h5", ".hdf5"):
        raise DataError(f"{path}: expected a Keras model file ending in .keras or .h5")
    if path.suffix == ".keras" and not zipfile.is_zipfile(path):
        raise DataError(f"{path}: not a .keras model file (that is a zip archive; this file is truncated or "
                        "of another kind)")
    logger.info("Loading pre-trained model from %s", path)
    if path.suffix in (".h5", ".hdf5") and (hdf5_keras_major_version(path) or 3) < 3:
        return load_reference_model(path, compile=compile)
    try:
        return keras.saving.load_model(path, custom_objects=REFERENCE_OBJECTS, compile=compile, safe_mode=True)
    except Exception as error:
        # Keras's own messages omit the file (h5py), blame a missing file for a corrupted one,
        # or suggest turning safe mode off; say what is wrong with which file instead.
        text = " ".join(str(error).split())
        if "safe_mode" in text or "arbitrary code" in text:
            raise DataError(
                f"{path}: refused: the model file holds Python code (e.g. a Lambda layer), which is not run when "
                "loading; rebuild the model without it, or load it yourself with safe_mode=False only if you "
                "trust its source"
            ) from error
        expected = "a Keras 3 model file (.keras, or .h5 written by Keras)"
        raise DataError(f"{path}: cannot be loaded as {expected}: {type(error).__name__}: {text[:300]}") from error


def train_model(
    model: keras.Model,
    model_file: str | os.PathLike,
    training_generator,
    validation_generator,
    steps_per_epoch: int,
    validation_steps: int,
    initial_learning_rate: float = 0.001,
    learning_rate_drop: float = 0.5,
    learning_rate_epochs: int | None = None,
    n_epochs: int = 500,
    learning_rate_patience: int = 20,
    early_stopping_patience: int | None = None,
    logging_file: str | os.PathLike = "training.log",
    callbacks: list | None = None,
    initial_epoch: int = 0,
    verbose: int | str = "auto",
) -> keras.callbacks.History:
    """Train a compiled model with ``fit`` and the callbacks of :func:`get_callbacks`.

    Args:
        model: Compiled model.
        model_file: Where the best model is saved.
        training_generator: Endless generator or ``PyDataset`` of
            ``(inputs, targets)`` batches in the model's data format.
        validation_generator: Same for validation.
        steps_per_epoch: Training batches per epoch.
        validation_steps: Validation batches per epoch.
        callbacks: Extra callbacks appended to :func:`get_callbacks`'s.
        initial_epoch: Epoch to start from (resuming).

    Returns:
        The ``History`` of ``fit``.
    """
    all_callbacks = get_callbacks(
        model_file,
        initial_learning_rate=initial_learning_rate,
        learning_rate_drop=learning_rate_drop,
        learning_rate_epochs=learning_rate_epochs,
        learning_rate_patience=learning_rate_patience,
        logging_file=logging_file,
        early_stopping_patience=early_stopping_patience,
    ) + list(callbacks or [])
    return model.fit(
        training_generator,
        steps_per_epoch=steps_per_epoch,
        epochs=n_epochs,
        validation_data=validation_generator,
        validation_steps=validation_steps,
        callbacks=all_callbacks,
        initial_epoch=initial_epoch,
        verbose=verbose,
        shuffle=False,  # a PyDataset shuffles itself, reproducibly; Keras would reorder its batches
    )
