"""Training: learning-rate schedule, callbacks, model loading and ``fit``.

The reference's ``fit_generator`` call becomes Keras 3 ``Model.fit`` on a
generator or a ``keras.utils.PyDataset``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import zipfile
from functools import partial
from pathlib import Path

import keras

from . import metrics as _metrics
from .fileio import atomic_path, write_text_atomically

logger = logging.getLogger(__name__)

# Names under which the reference's model files refer to its losses and metrics.
_REFERENCE_OBJECTS = {
    "dice_coefficient": _metrics.dice_coefficient,
    "dice_coefficient_loss": _metrics.dice_coefficient_loss,
    "dice_coef": _metrics.dice_coef,
    "dice_coef_loss": _metrics.dice_coef_loss,
    "weighted_dice_coefficient": _metrics.weighted_dice_coefficient,
    "weighted_dice_coefficient_loss": _metrics.weighted_dice_coefficient_loss,
}


class AtomicModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """``ModelCheckpoint`` that writes to a temporary file and renames it.

    A process killed while saving leaves the previous checkpoint intact
    instead of a truncated file.
    """

    def _save_model(self, epoch, batch, logs):
        filepath = self._get_file_path(epoch, batch, logs)
        if not self._should_save_model(epoch, batch, logs, filepath):
            return
        os.makedirs(os.path.dirname(os.path.abspath(filepath)), exist_ok=True)
        # The extension goes last on the temporary name too: Keras picks the file format from it.
        suffix = ".weights.h5" if filepath.endswith(".weights.h5") else os.path.splitext(filepath)[1]
        with atomic_path(filepath, suffix=suffix) as tmp:
            if self.save_weights_only:
                self.model.save_weights(tmp, overwrite=True)
            else:
                self.model.save(tmp, overwrite=True)
        if self.verbose > 0:
            logger.info("Epoch %d: saved model to %s", epoch + 1, filepath)


class ResumableBackup(keras.callbacks.Callback):
    """Crash-safe ``BackupAndRestore``: resume an interrupted ``fit`` at its last epoch.

    Keras's own callback overwrites its weights file in place and writes the
    epoch beside it, so a process killed while saving can leave a truncated
    file or weights that do not match the epoch. Here each epoch's weights
    (model and optimizer) go to a new file, renamed into place when complete,
    and a small JSON written the same way names the file and the epoch; older
    files are removed only afterwards. A kill at any point leaves a
    consistent pair.

    Args:
        backup_dir: Folder of the backup.
        delete_on_end: Remove the backup when training ends normally.
    """

    METADATA = "training_metadata.json"

    def __init__(self, backup_dir: str | os.PathLike, delete_on_end: bool = True):
        super().__init__()
        self.backup_dir = Path(backup_dir)
        self.delete_on_end = delete_on_end

    @classmethod
    def restored_epoch(cls, backup_dir: str | os.PathLike) -> int:
        """The epoch a backup folder resumes at (0 when there is no backup)."""
        metadata = cls._read_metadata(Path(backup_dir))
        return int(metadata["epoch"]) if metadata else 0

    @classmethod
    def _read_metadata(cls, backup_dir: Path) -> dict | None:
        try:
            metadata = json.loads((backup_dir / cls.METADATA).read_text(encoding="utf-8"))
            if (backup_dir / metadata["weights"]).is_file():
                return metadata
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return None

    def on_train_begin(self, logs=None):
        metadata = self._read_metadata(self.backup_dir)
        if metadata is None:
            return
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(self.backup_dir / metadata["weights"])
        self.model._initial_epoch = int(metadata["epoch"])
        logger.info("Restored the state of epoch %d from %s", metadata["epoch"], self.backup_dir)

    def on_epoch_end(self, epoch, logs=None):
        self.backup_dir.mkdir(parents=True, exist_ok=True)
        name = f"epoch-{epoch + 1:05d}.weights.h5"
        with atomic_path(self.backup_dir / name, suffix=".weights.h5") as tmp:
            self.model.save_weights(tmp, overwrite=True)
        write_text_atomically(self.backup_dir / self.METADATA, json.dumps({"epoch": epoch + 1, "weights": name}))
        for old in self.backup_dir.glob("epoch-*.weights.h5"):
            if old.name != name:
                old.unlink(missing_ok=True)

    def on_train_end(self, logs=None):
        if self.delete_on_end and self.backup_dir.exists():
            shutil.rmtree(self.backup_dir)


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
) -> list[keras.callbacks.Callback]:
    """The reference's callbacks, plus optional TensorBoard and crash recovery.

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
            so that an interrupted ``fit`` resumes at the last completed epoch.
        terminate_on_nan: Stop on a NaN loss (the best model stays on disk).
        best_val_loss: Best validation loss so far (when resuming), so that
            only a better model replaces the saved one.

    Returns:
        The callbacks, in the order the reference creates them.
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
        callbacks.append(ResumableBackup(backup_dir))
    return callbacks


def load_old_model(model_file: str | os.PathLike, compile: bool = True) -> keras.Model:
    """Load a ``.keras`` or Keras-3 ``.h5`` model file in safe mode.

    No ``custom_objects`` are needed: the project's layers, losses and
    metrics are registered serializables, and the reference's loss names are
    mapped here. Safe mode refuses model files that embed Python code.

    Raises:
        FileNotFoundError: ``model_file`` does not exist.
        DataError: the file is not a Keras model, is corrupted, or is refused by safe mode
            (the message names the file).
    """
    from .errors import DataError

    path = Path(model_file)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model file not found")
    if path.suffix not in (".keras", ".h5", ".hdf5"):
        raise DataError(f"{path}: expected a Keras model file ending in .keras or .h5")
    if path.suffix == ".keras" and not zipfile.is_zipfile(path):
        raise DataError(f"{path}: not a .keras model file (that is a zip archive; this file is truncated or "
                        "of another kind)")
    logger.info("Loading pre-trained model from %s", path)
    try:
        return keras.saving.load_model(path, custom_objects=_REFERENCE_OBJECTS, compile=compile, safe_mode=True)
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
    """Train a compiled model with ``fit`` and the reference's callbacks.

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
