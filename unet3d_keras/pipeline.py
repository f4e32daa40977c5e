"""A whole training run from a config: data, split, model, fit, validation scores.

``scripts/train.py`` is a thin wrapper around :func:`train_from_config`. The files
of a run are listed in :mod:`unet3d_keras.run_state`. Rerunning after a crash
resumes from the last completed epoch (weights, optimizer state and the data
stream); ``overwrite`` starts afresh. Raising ``training.n_epochs`` on a finished
run trains the extra epochs from the kept backup; ``training.continue_from_model_file``
starts a new run from the weights of an existing ``model_file``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import keras
import numpy as np

from .config import Config, ConfigError, config_from_dict, save_config
from .dataset import HDF5Dataset
from . import distribute
from .distribute import is_chief, worker_backup_dir, worker_path
from .errors import DataError
from .evaluation import write_scores_csv
from .model_from_config import build_model, check_model_matches_config
from .precision import apply_mixed_precision
from .predictor import Predictor
from .preparation import prepare_data
from .run_lock import run_folder_lock
from .run_state import (
    RunPaths,
    best_logged_val_loss,
    check_resumable,
    clear_run,
    is_finished,
    read_state,
    resolved_config_dict,
    saved_n_epochs,
    truncate_log,
    write_state,
)
from .tasks import TrainingTask, resolve_task, task_for_data
from .callbacks import ResumableBackup
from .training import get_callbacks, load_old_model

logger = logging.getLogger(__name__)


def augmentation_params(config: Config):
    """The run's :class:`~unet3d_keras.augmentation.params.AugmentationParams`: ``config.augment``."""
    return config.augment


def make_datasets(config: Config, data_file: Path, training: Sequence[int], validation: Sequence[int],
                  initial_epoch: int = 0, task: TrainingTask | None = None):
    """Training and validation ``PyDataset``s of a run, positioned at ``initial_epoch``."""
    train = config.training
    task = task or resolve_task(config)
    common = dict(n_labels=config.n_labels, labels=config.data.labels, patch_shape=train.patch_shape,
                  skip_blank=train.skip_blank, seed=config.seed, background=task.softmax,
                  ignore_label=config.data.ignore_label if task.softmax else None,
                  regions=None if config.output_regions is None else list(config.output_regions.values()))
    training_set = HDF5Dataset(
        data_file, training, train.batch_size, patch_start_offset=train.training_patch_start_offset,
        augmentation=augmentation_params(config), shuffle=True, initial_epoch=initial_epoch,
        workers=train.workers, **common,
    )
    validation_set = HDF5Dataset(
        data_file, validation, train.validation_batch_size, patch_overlap=train.validation_patch_overlap,
        shuffle=False, **common,
    )
    return training_set, validation_set


@dataclass
class TrainingResult:
    """What :func:`train_from_config` did and measured."""

    paths: RunPaths
    epochs_trained: int
    resumed_from: int
    scores: dict[str, dict[str, float]]


def train_from_config(config: Config, overwrite: bool = False, show_progress: bool = True,
                      verbose: int | str = "auto", evaluate: bool = True) -> TrainingResult:
    """Run a whole training from a config: data, split, model, fit, validation Dice.

    Args:
        config: The validated config.
        overwrite: Delete the run's previous outputs and start afresh.
        show_progress: Progress bars for data preparation and evaluation.
        verbose: Verbosity of ``fit``.
        evaluate: Score the validation subjects with the best model afterwards.

    Returns:
        The run's paths, epochs, resume point and validation scores.

    Raises:
        RunFolderLocked: another process works in the run folder (``output_dir``).
    """
    if config.training.distribution == "multi_worker":  # its workers share the folder by design (TF_CONFIG)
        return _train_from_config(config, overwrite, show_progress, verbose, evaluate)
    with run_folder_lock(config.run_dir, "output_dir"):  # two runs in one folder would mix their files
        return _train_from_config(config, overwrite, show_progress, verbose, evaluate)


def _train_from_config(config: Config, overwrite: bool, show_progress: bool, verbose: int | str,
                       evaluate: bool) -> TrainingResult:
    paths = RunPaths.from_config(config)
    distribute.initialize(config.training.distribution)  # JAX multi_worker: before any JAX computation
    apply_mixed_precision(config.training.mixed_precision)  # before --overwrite clears anything: it can refuse
    chief = is_chief()  # with several workers only the chief writes the run's files
    if overwrite and config.training.continue_from_model_file:
        raise ConfigError(
            f"--overwrite deletes training.model_file ({paths.model_file}), so training cannot continue from it "
            "(training.continue_from_model_file / --continue-training); drop one of the two"
        )
    if overwrite:
        if chief:
            clear_run(paths)
    else:
        check_resumable(config, paths)
    previous_n_epochs = saved_n_epochs(paths)
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(config.seed)
    data_file, training, validation = prepare_data(config, show_progress=show_progress)
    task = task_for_data(config, data_file, training, validation)
    if chief:
        save_config(config_from_dict(resolved_config_dict(config)), paths.config_file)

    # Every worker starts at the same epoch (a non-chief may still see files the chief is clearing).
    state = {} if overwrite else read_state(paths)
    start = 0 if overwrite else ResumableBackup.restored_epoch(paths.backup_dir)
    epochs_trained = int(state.get("epochs", 0))
    if is_finished(state, config.training.n_epochs, previous_n_epochs):
        logger.info("Training of %s is complete (%d epochs); raise training.n_epochs to train on, or rerun with "
                    "--overwrite to train again", paths.run_dir, epochs_trained)
    else:
        start, initial_model = _starting_point(config, paths, state, start)
        if chief:
            write_state(paths, {"status": "training"})
        epochs_trained, last_loss = _fit(config, paths, data_file, training, validation, start, verbose, task,
                                         initial_model)
        if not np.isfinite(last_loss):
            if chief:
                write_state(paths, {"status": "failed", "reason": "loss is NaN", "epochs": epochs_trained})
            raise ValueError(
                f"training stopped at epoch {epochs_trained}: the loss became {last_loss}; the best model so far "
                f"is kept in {paths.model_file}. Lower training.initial_learning_rate (or turn off "
                "training.mixed_precision) and rerun with --overwrite"
            )
        if chief:
            write_state(paths, {"status": "complete", "epochs": epochs_trained})

    scores: dict = {}
    if evaluate and chief:
        model = load_old_model(paths.model_file)
        check_model_matches_config(model, config, paths.model_file)
        predictor = Predictor.from_config(config, model, show_progress=show_progress)
        scores = predictor.score_validation(data_file, validation)
        write_scores_csv(scores, paths.scores_file)
    return TrainingResult(paths=paths, epochs_trained=epochs_trained, resumed_from=start, scores=scores)


def _starting_point(config: Config, paths: RunPaths, state: dict, start: int) -> tuple[int, Path | None]:
    """The epoch training starts at, and the model file whose weights it starts from (None: the
    backup's, or new ones).

    The backup of the last completed epoch wins (an interrupted or a finished run). A finished run
    without one (trained before backups were kept) goes on from its best model; a new run with
    ``training.continue_from_model_file`` starts from ``model_file``'s weights at epoch 0.
    """
    done = int(state.get("epochs", 0))
    if state.get("status") == "complete" and start != done:
        if not paths.model_file.exists():
            raise DataError(f"{paths.model_file}: the finished run's model is missing, so it cannot train on; "
                            "rerun with --overwrite")
        logger.warning("%s has no backup of epoch %d; training on from the best model in %s",
                       paths.run_dir, done, paths.model_file)
        return done, paths.model_file
    if start:
        logger.info("Resuming %s at epoch %d", paths.run_dir, start + 1)
        return start, None
    if config.training.continue_from_model_file:
        if not paths.model_file.exists():
            raise DataError(f"{paths.model_file}: training.continue_from_model_file is set but there is no model "
                            "file to continue from (put the model there, e.g. converted with "
                            "scripts/convert_model.py, or drop the option)")
        logger.info("Continuing from the weights of %s", paths.model_file)
        return 0, paths.model_file
    return 0, None


def _initial_model(config: Config, task: TrainingTask, model_file: Path | None) -> keras.Model:
    """The config's compiled model, with the weights of ``model_file`` when given (a fresh optimizer)."""
    model = build_model(config, task)
    if model_file is not None:
        loaded = load_old_model(model_file, compile=False)
        check_model_matches_config(loaded, config, model_file)
        try:
            model.set_weights(loaded.get_weights())
        except ValueError as error:
            raise ConfigError(f"{model_file}: its weights do not fit the model of the config "
                              f"(model section): {error}") from error
    return model


def _fit(config: Config, paths: RunPaths, data_file: Path, training: Sequence[int], validation: Sequence[int],
         start: int, verbose: int | str, task: TrainingTask,
         initial_model: Path | None = None) -> tuple[int, float]:
    """Train from epoch ``start`` (from ``initial_model``'s weights when given); returns the epochs
    completed in total and the last training loss."""
    train = config.training
    if is_chief():
        truncate_log(paths.log_file, start)
    multi_worker = train.distribution == "multi_worker"
    where = worker_path if multi_worker else str  # only the chief writes the run's files
    # The other workers restore the chief's backup (weights, optimizer, epoch) from a private copy.
    backup_dir = worker_backup_dir(paths.backup_dir) if multi_worker and start else where(paths.backup_dir)
    callbacks = get_callbacks(
        where(paths.model_file), initial_learning_rate=train.initial_learning_rate,
        learning_rate_drop=train.learning_rate_drop, learning_rate_epochs=train.learning_rate_epochs,
        learning_rate_patience=train.learning_rate_patience, logging_file=where(paths.log_file),
        verbosity=0, early_stopping_patience=train.early_stopping_patience,
        tensorboard_dir=where(paths.tensorboard_dir), backup_dir=backup_dir,
        best_val_loss=best_logged_val_loss(paths.log_file) if start else None, keep_backup=True,
    )
    training_set, validation_set = make_datasets(config, data_file, training, validation, start, task)
    try:
        _, history = distribute.fit(
            lambda: _initial_model(config, task, initial_model), train.distribution, training_set, validation_set,
            global_batch_size=train.batch_size, epochs=train.n_epochs, initial_epoch=start, callbacks=callbacks,
            verbose=verbose,
        )
    finally:
        training_set.close()
        validation_set.close()
    return _history_result(start, history)


def _history_result(start: int, history) -> tuple[int, float]:
    losses = history.history.get("loss", [])
    return start + len(losses), float(losses[-1]) if losses else 0.0
