"""A whole training run from a config: data, split, model, fit, validation scores.

``scripts/train.py`` is a thin wrapper around :func:`train_from_config`. The files
of a run are listed in :mod:`unet3d_keras.run_state`. Rerunning after a crash
resumes from the last completed epoch (weights, optimizer state and the data
stream); ``overwrite`` starts afresh.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import keras
import numpy as np

from .config import Config, config_from_dict, save_config
from .dataset import HDF5Dataset
from .distribute import fit_multi_worker, get_strategy, worker_path
from .evaluation import score_report, write_scores_csv  # noqa: F401 (score_report: its home was here)
from .model_from_config import build_model, check_model_matches_config
from .precision import apply_mixed_precision
from .predictor import evaluate_validation
from .preparation import prepare_data
from .run_state import (
    RunPaths,
    best_logged_val_loss,
    check_resumable,
    clear_run,
    read_state,
    resolved_config_dict,
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
    """
    paths = RunPaths.from_config(config)
    if overwrite:
        clear_run(paths)
    else:
        check_resumable(config, paths)
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(config.seed)
    apply_mixed_precision(config.training.mixed_precision)
    data_file, training, validation = prepare_data(config, show_progress=show_progress)
    task = task_for_data(config, data_file, training, validation)
    save_config(config_from_dict(resolved_config_dict(config)), paths.config_file)

    state = read_state(paths)
    start = ResumableBackup.restored_epoch(paths.backup_dir)
    epochs_trained = int(state.get("epochs", 0))
    if state.get("status") == "complete":
        logger.info("Training of %s is complete (%d epochs); rerun with --overwrite to train again",
                    paths.run_dir, epochs_trained)
    else:
        if start:
            logger.info("Resuming %s at epoch %d", paths.run_dir, start + 1)
        write_state(paths, {"status": "training"})
        epochs_trained, last_loss = _fit(config, paths, data_file, training, validation, start, verbose, task)
        if not np.isfinite(last_loss):
            write_state(paths, {"status": "failed", "reason": "loss is NaN", "epochs": epochs_trained})
            raise ValueError(
                f"training stopped at epoch {epochs_trained}: the loss became {last_loss}; the best model so far "
                f"is kept in {paths.model_file}. Lower training.initial_learning_rate (or turn off "
                "training.mixed_precision) and rerun with --overwrite"
            )
        write_state(paths, {"status": "complete", "epochs": epochs_trained})

    scores: dict = {}
    if evaluate:
        model = load_old_model(paths.model_file)
        check_model_matches_config(model, config, paths.model_file)
        scores = evaluate_validation(config, model, data_file, validation, show_progress=show_progress)
        write_scores_csv(scores, paths.scores_file)
    return TrainingResult(paths=paths, epochs_trained=epochs_trained, resumed_from=start, scores=scores)


def _fit(config: Config, paths: RunPaths, data_file: Path, training: Sequence[int], validation: Sequence[int],
         start: int, verbose: int | str, task: TrainingTask) -> tuple[int, float]:
    """Train from epoch ``start``; returns the epochs completed in total and the last training loss."""
    train = config.training
    truncate_log(paths.log_file, start)
    multi_worker = train.distribution == "multi_worker"
    where = worker_path if multi_worker else str  # only the chief writes the run's files
    callbacks = get_callbacks(
        where(paths.model_file), initial_learning_rate=train.initial_learning_rate,
        learning_rate_drop=train.learning_rate_drop, learning_rate_epochs=train.learning_rate_epochs,
        learning_rate_patience=train.learning_rate_patience, logging_file=where(paths.log_file),
        verbosity=0, early_stopping_patience=train.early_stopping_patience,
        tensorboard_dir=where(paths.tensorboard_dir), backup_dir=where(paths.backup_dir),
        best_val_loss=best_logged_val_loss(paths.log_file) if start else None,
    )
    if multi_worker:
        training_set, validation_set = make_datasets(config, data_file, training, validation, 0, task)
        _, history = fit_multi_worker(
            lambda: build_model(config, task), get_strategy("multi_worker"), training_set, validation_set,
            steps_per_epoch=len(training_set), validation_steps=len(validation_set), epochs=train.n_epochs,
            global_batch_size=train.batch_size, callbacks=callbacks,
        )
        return _history_result(start, history)
    training_set, validation_set = make_datasets(config, data_file, training, validation, start, task)
    if train.distribution == "mirrored":
        with get_strategy("mirrored").scope():
            model = build_model(config, task)
    else:
        model = build_model(config, task)
    try:
        # shuffle=False: the dataset shuffles each epoch from the seed; Keras's own batch shuffling
        # draws from global random state, which a resumed process does not share.
        history = model.fit(training_set, epochs=train.n_epochs, validation_data=validation_set,
                            callbacks=callbacks, verbose=verbose, shuffle=False, initial_epoch=start)
    finally:
        training_set.close()
        validation_set.close()
    return _history_result(start, history)


def _history_result(start: int, history) -> tuple[int, float]:
    losses = history.history.get("loss", [])
    return start + len(losses), float(losses[-1]) if losses else 0.0
