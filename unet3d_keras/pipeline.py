"""A whole run from a config: data, split, model, training, validation scores.

``scripts/train.py`` is a thin wrapper around :func:`train_from_config`. Every
file of a run lives in the config's ``output_dir``:

    demo_data/            synthetic subjects (when data.source is demo)
    data.h5               preprocessed subjects (data.data_file)
    training_ids.json     the split (split.training_file, split.validation_file)
    validation_ids.json
    config.yaml           the resolved config of the run
    model.keras           the best model so far (training.model_file)
    training.log          per-epoch CSV (training.log_file)
    backup/               state of the last completed epoch, for resuming
    tensorboard/          TensorBoard logs
    state.json            whether training finished
    validation_scores.csv Dice per validation subject, with a mean row

Rerunning after a crash resumes from the last completed epoch (weights,
optimizer state and the data stream); ``overwrite`` starts afresh.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import keras
import numpy as np
import yaml

from . import data as data_module
from .config import Config, ConfigError, config_from_dict, save_config
from .demo import write_demo_dataset
from .errors import DataError
from .evaluation import format_score_table, segmentation_scores
from .evaluation import write_scores_csv  # noqa: F401 (its home was here)
from .fileio import write_text_atomically
from .generator import get_validation_split, save_split, split_list, split_rng
from .subjects import find_subjects

logger = logging.getLogger(__name__)

# Keys that may change between a run and its resume without breaking it.
RESUMABLE_CHANGES = (
    "prediction.",
    "training.n_epochs",
    "training.early_stopping_patience",
    "training.mixed_precision",
    "training.distribution",
)
STATE_FILE = "state.json"
CONFIG_FILE = "config.yaml"
SCORES_FILE = "validation_scores.csv"
BACKUP_DIR = "backup"
TENSORBOARD_DIR = "tensorboard"
DEMO_DIR = "demo_data"


@dataclass
class RunPaths:
    """The files of a run, all inside ``config.run_dir``."""

    run_dir: Path
    data_file: Path
    training_file: Path
    validation_file: Path
    model_file: Path
    log_file: Path
    backup_dir: Path
    tensorboard_dir: Path
    state_file: Path
    config_file: Path
    scores_file: Path

    @classmethod
    def from_config(cls, config: Config) -> "RunPaths":
        run = config.run_dir
        return cls(
            run_dir=run,
            data_file=config.run_path(config.data.data_file),
            training_file=config.run_path(config.split.training_file),
            validation_file=config.run_path(config.split.validation_file),
            model_file=config.run_path(config.training.model_file),
            log_file=config.run_path(config.training.log_file),
            backup_dir=run / BACKUP_DIR,
            tensorboard_dir=run / TENSORBOARD_DIR,
            state_file=run / STATE_FILE,
            config_file=run / CONFIG_FILE,
            scores_file=run / SCORES_FILE,
        )

    def outputs(self) -> list[Path]:
        """Everything a run writes (but not its inputs, such as the demo subjects)."""
        return [self.data_file, self.training_file, self.validation_file, self.model_file, self.log_file,
                self.backup_dir, self.tensorboard_dir, self.state_file, self.config_file, self.scores_file]


def discover_subjects(config: Config, show_progress: bool = True) -> tuple[list[str], list[tuple[str, ...]]]:
    """Subject ids and file tuples (training modalities, then the truth) of the configured data.

    The demo subjects are generated into ``<output_dir>/demo_data`` on first use.
    """
    data = config.data
    if data.source == "demo":
        folder = config.run_dir / DEMO_DIR
        write_demo_dataset(folder, n_subjects=data.n_demo_subjects, shape=data.demo_shape, seed=config.seed,
                           show_progress=show_progress)
        return find_subjects(folder, modalities=data.training_modalities, layout="brats")
    folder = config.input_path(data.data_dir)
    if not folder.is_dir():
        raise DataError(
            f"data.data_dir: no folder at {folder} (looked for {data.source} subjects there); "
            "point data.data_dir at your subjects, or set data.source: demo to train on the embedded demo data"
        )
    # A BraTS folder converted by brats/preprocess.py has the generic layout: "auto" finds both.
    layout = "auto" if data.source == "brats" else "generic"
    return find_subjects(folder, modalities=data.training_modalities, layout=layout, truth_name=data.truth_name)


def prepare_data(config: Config, show_progress: bool = True) -> tuple[Path, list[int], list[int]]:
    """Make (or reuse) the split and the HDF5 data file of a run.

    The split is drawn first, so that the normalisation statistics come from
    the training subjects only.

    Returns:
        ``(data_file, training_indices, validation_indices)``.
    """
    paths = RunPaths.from_config(config)
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    if not paths.data_file.exists():
        subject_ids, files = discover_subjects(config, show_progress=show_progress)
        if len(files) < 2:
            raise DataError(f"at least 2 subjects are needed to train and validate, found {len(files)}")
        training, validation = split_list(list(range(len(files))), split=config.split.data_split,
                                          rng=split_rng(config.seed))
        if not training or not validation:
            raise ConfigError(
                f"split.data_split {config.split.data_split} leaves no "
                f"{'training' if not training else 'validation'} subject among {len(files)}"
            )
        common = dict(subject_ids=subject_ids, seed=config.seed, data_split=config.split.data_split,
                      n_subjects=len(files))
        try:
            save_split(paths.validation_file, validation, role="validation", **common)
            save_split(paths.training_file, training, role="training", **common)
            data_module.write_data_to_file(
                files, paths.data_file, image_shape=config.data.image_shape, subject_ids=subject_ids,
                crop=config.data.crop, modalities=config.data.training_modalities, labels=config.data.labels,
                normalization=config.data.normalization, normalization_indices=training,
                show_progress=show_progress, ignore_label=config.data.ignore_label, strict_labels=True,
            )
        except BaseException:
            # The split was drawn for this data file; a failed conversion leaves neither behind.
            for path in (paths.training_file, paths.validation_file):
                path.unlink(missing_ok=True)
            raise
    attributes = data_module.check_data_file(paths.data_file)
    _check_data_matches_config(config, paths.data_file, attributes)
    with data_module.open_data_file(paths.data_file) as data_file:
        training, validation = get_validation_split(
            data_file, paths.training_file, paths.validation_file, data_split=config.split.data_split,
            seed=config.seed,
        )
    return paths.data_file, training, validation


def _check_data_matches_config(config: Config, path: Path, attributes: dict) -> None:
    """A data file written for another image shape or channel set cannot train this config."""
    with data_module.open_data_file(path) as data_file:
        shape = tuple(int(s) for s in data_file.root.data.shape[1:])
    expected = (config.n_channels, *config.data.image_shape)
    if shape != expected:
        raise DataError(
            f"{path} holds subjects of shape {shape} (channels, x, y, z) but the config asks for {expected} "
            "(data.training_modalities, data.image_shape); rerun with --overwrite to rebuild it"
        )


@dataclass(frozen=True)
class TrainingTask:
    """What a run's model learns, resolved from the config and the training truth.

    Attributes:
        activation: ``sigmoid`` (one output per label, the reference) or ``softmax``
            (background first, then one output per label).
        loss: ``dice`` (the reference's for sigmoid, masked for softmax), ``cross_entropy``
            or ``cross_entropy_dice``.
        class_weights: cross-entropy weight per class, background first (None: all 1).
        unannotated: truth voxels equal to ``data.ignore_label`` in the run's subjects.
    """

    activation: str = "sigmoid"
    loss: str = "dice"
    class_weights: tuple[float, ...] | None = None
    unannotated: int = 0

    @property
    def softmax(self) -> bool:
        return self.activation == "softmax"


def truth_histograms(data_file_path: str | os.PathLike, indices: Sequence[int]) -> np.ndarray:
    """Voxel count of every truth value 0..255 of each listed subject, ``(len(indices), 256)`` int64."""
    histograms = np.zeros((len(indices), 256), dtype=np.int64)
    with data_module.open_data_file(data_file_path) as data_file:
        for row, index in enumerate(indices):
            truth = np.asarray(data_file.root.truth[int(index), 0])
            histograms[row] = np.bincount(truth.ravel().astype(np.int64, copy=False), minlength=256)[:256]
    return histograms


def resolve_task(config: Config, training_histogram: np.ndarray | None = None, unannotated: int = 0,
                 data_file: str | os.PathLike | None = None) -> TrainingTask:
    """Choose the activation, loss and class weights of a run.

    Args:
        config: The run's config.
        training_histogram: ``(256,)`` voxel count of each truth value over the training
            subjects (needed for ``class_weights: balanced``; without it the weights are 1).
        unannotated: number of ``data.ignore_label`` voxels in the run's truth; any makes
            ``activation: auto`` a softmax with the masked loss.
        data_file: named in the error message.

    Raises:
        ConfigError: ``model.activation: sigmoid`` with unannotated voxels in the data.
    """
    model, training = config.model, config.training
    ignore = config.data.ignore_label
    if model.activation == "sigmoid" and unannotated:
        raise ConfigError(
            f"model.activation: sigmoid cannot leave out the {unannotated} unannotated voxels (value {ignore}) "
            f"of {data_file or 'the data'}; set model.activation to softmax or auto to train with the masked loss"
        )
    softmax = model.activation == "softmax" or (
        model.activation == "auto" and (unannotated > 0 or training.loss in ("cross_entropy", "cross_entropy_dice"))
    )
    if not softmax:
        return TrainingTask("sigmoid", "dice", None, 0)
    loss = "cross_entropy_dice" if training.loss == "auto" else training.loss
    weights = training.class_weights
    if weights == "balanced":
        weights = None
        if training_histogram is not None and loss != "dice":
            labels = list(config.data.labels)
            label_counts = [int(training_histogram[v]) for v in labels]
            annotated = int(training_histogram.sum()) - int(training_histogram[ignore])
            from .metrics import balanced_class_weights

            weights = tuple(balanced_class_weights([annotated - sum(label_counts), *label_counts]))
    return TrainingTask("softmax", loss, None if weights is None else tuple(float(w) for w in weights), unannotated)


def task_for_data(config: Config, data_file: str | os.PathLike, training: Sequence[int],
                  validation: Sequence[int]) -> TrainingTask:
    """:func:`resolve_task` from the truth stored in a run's data file."""
    histograms = truth_histograms(data_file, list(training) + list(validation))
    unannotated = int(histograms[:, config.data.ignore_label].sum())
    annotated = histograms.sum(axis=1) - histograms[:, config.data.ignore_label]
    if unannotated and not annotated.any():
        raise DataError(f"{data_file}: no subject has an annotated voxel (every truth voxel is "
                        f"data.ignore_label {config.data.ignore_label})")
    task = resolve_task(config, histograms[: len(training)].sum(axis=0), unannotated, data_file)
    if task.softmax:
        logger.info("Training a softmax output with the %s loss (class weights %s; %d unannotated voxels)",
                    task.loss, task.class_weights, unannotated)
    return task


def _loss_and_metrics(config: Config, task: TrainingTask):
    from .metrics import MaskedLabelDiceCoefficient, MaskedSegmentationLoss

    loss = MaskedSegmentationLoss(task.class_weights, cross_entropy=task.loss != "dice",
                                  dice=task.loss != "cross_entropy")
    metrics = []
    if config.model.include_label_wise_dice_coefficients:
        metrics = [MaskedLabelDiceCoefficient(index) for index in range(config.n_labels)]
    return loss, metrics


def build_model(config: Config, task: TrainingTask | None = None) -> keras.Model:
    """The compiled model chosen in ``config.model``, for ``task`` (resolved without data when None)."""
    from .model import isensee2017_model, unet_model_3d

    task = task or resolve_task(config)
    n_outputs = config.n_labels + 1 if task.softmax else config.n_labels
    extra = {}
    if task.softmax:
        loss, metrics = _loss_and_metrics(config, task)
        extra = dict(loss=loss, metrics=metrics)
    model = config.model
    input_shape = tuple(config.spatial_input_shape) + (config.n_channels,)
    if keras.config.image_data_format() == "channels_first":
        input_shape = (config.n_channels,) + tuple(config.spatial_input_shape)
    if model.name == "isensee2017":
        return isensee2017_model(
            input_shape=input_shape, n_base_filters=model.n_base_filters, depth=model.depth,
            dropout_rate=model.dropout_rate, n_segmentation_levels=model.n_segmentation_levels,
            n_labels=n_outputs, initial_learning_rate=config.training.initial_learning_rate,
            activation_name=task.activation, **({"loss_function": extra["loss"]} if extra else {}),
        )
    return unet_model_3d(
        input_shape=input_shape, pool_size=model.pool_size, n_labels=n_outputs,
        initial_learning_rate=config.training.initial_learning_rate, deconvolution=model.deconvolution,
        depth=model.depth, n_base_filters=model.n_base_filters,
        include_label_wise_dice_coefficients=model.include_label_wise_dice_coefficients and not task.softmax,
        batch_normalization=model.batch_normalization, activation_name=task.activation,
        instance_normalization=model.instance_normalization, **extra,
    )


def check_model_matches_config(model: keras.Model, config: Config, model_file: str | os.PathLike) -> None:
    """Raise if a loaded model's input or output does not fit the config."""
    expected_in = (*config.spatial_input_shape, config.n_channels)
    # A softmax model has a background output first.
    expected_out = {"sigmoid": [config.n_labels], "softmax": [config.n_labels + 1]}.get(
        config.model.activation, [config.n_labels, config.n_labels + 1])
    got_in = tuple(model.input_shape[1:])
    got_out = model.output_shape[-1]
    if keras.config.image_data_format() == "channels_first":
        got_in = (*got_in[1:], got_in[0])
        got_out = model.output_shape[1]
    spatial_ok = all(g is None or g == e for g, e in zip(got_in[:3], expected_in[:3]))
    if not spatial_ok or got_in[3] != expected_in[3] or got_out not in expected_out:
        raise ConfigError(
            f"{model_file}: the model takes input {got_in} (x, y, z, channels) and gives {got_out} outputs, "
            f"but the config needs input {expected_in} and {' or '.join(map(str, expected_out))} outputs"
        )


def config_differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """``key: old -> new`` for every key whose value differs between two config mappings."""
    changes = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changes += config_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            changes.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return changes


def check_resumable(config: Config, paths: RunPaths) -> None:
    """Refuse to continue a run whose saved config differs in a way that breaks it."""
    if not paths.config_file.exists():
        return
    saved = yaml.safe_load(paths.config_file.read_text(encoding="utf-8")) or {}
    changes = [
        change for change in config_differences(saved, resolved_config_dict(config))
        if not change.startswith(RESUMABLE_CHANGES)
    ]
    if changes:
        raise ConfigError(
            f"{paths.run_dir} holds a run made with a different config ({'; '.join(changes)}); "
            "restore those values to resume it, or rerun with --overwrite to start afresh"
        )


def clear_run(paths: RunPaths) -> None:
    """Remove the outputs of a previous run (its inputs, e.g. the demo subjects, stay)."""
    for path in paths.outputs():
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def read_state(paths: RunPaths) -> dict:
    if not paths.state_file.exists():
        return {}
    try:
        return json.loads(paths.state_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def write_json_atomically(path: Path, content: dict) -> None:
    write_text_atomically(path, json.dumps(content, indent=1))


def truncate_log(log_file: Path, epoch: int) -> None:
    """Drop the CSV log rows of epochs ``>= epoch`` (an epoch logged, then killed before its backup)."""
    if not log_file.exists():
        return
    with open(log_file, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        return
    kept = [rows[0]] + [row for row in rows[1:] if row and row[0].isdigit() and int(row[0]) < epoch]
    if len(kept) == len(rows):
        return
    buffer = io.StringIO()
    csv.writer(buffer).writerows(kept)
    write_text_atomically(log_file, buffer.getvalue())


def evaluate_validation(
    config: Config,
    model: keras.Model,
    data_file_path: str | os.PathLike,
    indices: Sequence[int],
    show_progress: bool = True,
) -> dict[str, dict[str, float]]:
    """Dice per label (and BraTS region) of each validation subject, predicted whole.

    Returns:
        ``{subject_id: {score: value}}``.
    """
    from tqdm.auto import tqdm

    from .generator import read_subject_ids
    from .prediction import get_prediction_labels, predict_volume

    rows = {}
    with data_module.open_data_file(data_file_path) as data_file:
        ids = read_subject_ids(data_file)
        for index in tqdm(indices, desc="validation subjects", disable=not show_progress):
            volume = data_file.root.data[index]
            truth = data_file.root.truth[index, 0]
            prediction = predict_volume(model, volume, overlap=config.prediction.overlap,
                                        batch_size=config.prediction.batch_size, permute=config.prediction.permute)
            labels = get_prediction_labels(prediction[np.newaxis], threshold=config.prediction.threshold,
                                           labels=config.data.labels)[0]
            subject = ids[index] if ids else f"subject_{index}"
            rows[subject] = segmentation_scores(truth, labels, config.data.labels,
                                                ignore_label=config.data.ignore_label)
    return rows


def score_report(rows: dict[str, dict[str, float]]) -> str:
    """The table printed after training: per-subject and mean Dice."""
    return "Validation Dice\n" + format_score_table(rows)


def resolved_config_dict(config: Config) -> dict:
    """The config as saved with a run: paths made absolute, so the file stands alone."""
    raw = config.to_dict()
    raw["output_dir"] = str(config.run_dir)
    if config.data.data_dir is not None:
        raw["data"]["data_dir"] = str(config.input_path(config.data.data_dir))
    return raw


def augmentation_params(config: Config):
    """The augmentation of ``config.augment`` as :class:`~unet3d_keras.augment.AugmentationParams`."""
    from .augment import AugmentationParams

    augment = config.augment
    return AugmentationParams(
        flip=augment.flip, permute=augment.permute, scale_deviation=augment.distortion_factor,
        elastic=augment.elastic, elastic_sigma=augment.elastic_sigma,
        elastic_grid_spacing=augment.elastic_grid_spacing, rotation_degrees=augment.rotation_degrees,
        intensity_scale=augment.intensity_scale, intensity_shift=augment.intensity_shift,
        gamma_range=augment.gamma_range,
    )


def make_datasets(config: Config, data_file: Path, training: Sequence[int], validation: Sequence[int],
                  initial_epoch: int = 0, task: TrainingTask | None = None):
    """Training and validation ``PyDataset``s of a run, positioned at ``initial_epoch``."""
    from .dataset import HDF5Dataset

    train = config.training
    task = task or resolve_task(config)
    common = dict(n_labels=config.n_labels, labels=config.data.labels, patch_shape=train.patch_shape,
                  skip_blank=train.skip_blank, seed=config.seed, background=task.softmax,
                  ignore_label=config.data.ignore_label if task.softmax else None)
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


def best_logged_val_loss(log_file: Path) -> float | None:
    """Lowest ``val_loss`` in a training CSV log (None when there is none)."""
    try:
        with open(log_file, newline="", encoding="utf-8") as handle:
            values = [float(row["val_loss"]) for row in csv.DictReader(handle) if row.get("val_loss")]
    except (OSError, ValueError, KeyError):
        return None
    values = [v for v in values if np.isfinite(v)]
    return min(values) if values else None


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
    from .precision import apply_mixed_precision
    from .training import get_callbacks, load_old_model

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
    from .training import ResumableBackup

    start = ResumableBackup.restored_epoch(paths.backup_dir)
    epochs_trained = int(state.get("epochs", 0))
    if state.get("status") == "complete":
        logger.info("Training of %s is complete (%d epochs); rerun with --overwrite to train again",
                    paths.run_dir, epochs_trained)
    else:
        if start:
            logger.info("Resuming %s at epoch %d", paths.run_dir, start + 1)
        write_json_atomically(paths.state_file, {"status": "training"})
        epochs_trained, last_loss = _fit(config, paths, data_file, training, validation, start, verbose,
                                         get_callbacks, task)
        if not np.isfinite(last_loss):
            write_json_atomically(paths.state_file, {"status": "failed", "reason": "loss is NaN",
                                                     "epochs": epochs_trained})
            raise ValueError(
                f"training stopped at epoch {epochs_trained}: the loss became {last_loss}; the best model so far "
                f"is kept in {paths.model_file}. Lower training.initial_learning_rate (or turn off "
                "training.mixed_precision) and rerun with --overwrite"
            )
        write_json_atomically(paths.state_file, {"status": "complete", "epochs": epochs_trained})

    scores: dict = {}
    if evaluate:
        model = load_old_model(paths.model_file)
        check_model_matches_config(model, config, paths.model_file)
        scores = evaluate_validation(config, model, data_file, validation, show_progress=show_progress)
        write_scores_csv(scores, paths.scores_file)
    return TrainingResult(paths=paths, epochs_trained=epochs_trained, resumed_from=start, scores=scores)


def _fit(config, paths, data_file, training, validation, start, verbose, get_callbacks, task) -> int:
    """Train from epoch ``start``; returns the epochs completed in total and the last training loss."""
    train = config.training
    truncate_log(paths.log_file, start)
    multi_worker = train.distribution == "multi_worker"
    if multi_worker:
        from .distribute import worker_path as where  # only the chief writes the run's files
    else:
        where = str
    callbacks = get_callbacks(
        where(paths.model_file), initial_learning_rate=train.initial_learning_rate,
        learning_rate_drop=train.learning_rate_drop, learning_rate_epochs=train.learning_rate_epochs,
        learning_rate_patience=train.learning_rate_patience, logging_file=where(paths.log_file),
        verbosity=0, early_stopping_patience=train.early_stopping_patience,
        tensorboard_dir=where(paths.tensorboard_dir), backup_dir=where(paths.backup_dir),
        best_val_loss=best_logged_val_loss(paths.log_file) if start else None,
    )
    if multi_worker:
        from .distribute import fit_multi_worker, get_strategy

        training_set, validation_set = make_datasets(config, data_file, training, validation, 0, task)
        _, history = fit_multi_worker(
            lambda: build_model(config, task), get_strategy("multi_worker"), training_set, validation_set,
            steps_per_epoch=len(training_set), validation_steps=len(validation_set), epochs=train.n_epochs,
            global_batch_size=train.batch_size, callbacks=callbacks,
        )
        return _history_result(start, history)
    training_set, validation_set = make_datasets(config, data_file, training, validation, start, task)
    if train.distribution == "mirrored":
        from .distribute import get_strategy

        with get_strategy("mirrored").scope():
            model = build_model(config, task)
    else:
        model = build_model(config, task)
    try:
        # shuffle=False: the dataset shuffles each epoch from the seed; Keras's own batch shuffling
        # draws from global random state, which a resumed process does not share.
        history = model.fit(training_set, epochs=train.n_epochs, validation_data=validation_set,
                            callbacks=callbacks, verbose=verbose, shuffle=False)
    finally:
        training_set.close()
        validation_set.close()
    return _history_result(start, history)


def _history_result(start: int, history) -> tuple[int, float]:
    losses = history.history.get("loss", [])
    return start + len(losses), float(losses[-1]) if losses else 0.0


def input_subjects(
    paths: Sequence[str | os.PathLike], modalities: Sequence[str]
) -> tuple[list[tuple[str, tuple[str, ...]]], list[tuple[str, str]]]:
    """``(subject id, modality files)`` for prediction inputs, and the subjects that cannot be used.

    ``paths`` is either one subject's modality files (in ``modalities``
    order), a subject folder (``{modality}.nii.gz`` or BraTS naming), or a
    folder of subject folders (BraTS or generic layout). In a folder of
    subjects, a subject missing a modality is reported and the others kept.

    Returns:
        ``(subjects, [(subject, error message), ...])``.
    """
    paths = [Path(p) for p in paths]
    if paths and all(p.is_file() for p in paths):
        if len(paths) != len(modalities):
            raise DataError(f"--input: {len(paths)} files given for the {len(modalities)} modalities "
                            f"{list(modalities)} (one file per modality, in that order)")
        return [(paths[0].name.split(".")[0], tuple(str(p) for p in paths))], []
    if len(paths) != 1 or not paths[0].is_dir():
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            raise DataError(f"--input: {missing[0]}: no such file or folder")
        raise DataError(f"--input: {[str(p) for p in paths]}: expected one subject's image files or one folder")
    folder = paths[0]
    if all((folder / f"{m}.nii.gz").is_file() for m in modalities):  # one subject, generic naming
        return [(folder.name, tuple(str(folder / f"{m}.nii.gz") for m in modalities))], []
    try:
        ids, files = find_subjects(folder, modalities=modalities, include_truth=False, layout="auto")
        return list(zip(ids, files)), []
    except DataError:
        pass
    # Some subject is incomplete: look at each folder of images on its own.
    subjects, failures = [], []
    for root, dirs, names in sorted(os.walk(folder)):
        dirs.sort()
        if not any(n.endswith((".nii", ".nii.gz")) for n in names):
            continue
        try:
            if all(os.path.isfile(os.path.join(root, f"{m}.nii.gz")) for m in modalities):
                subjects.append((os.path.basename(root),
                                 tuple(os.path.join(root, f"{m}.nii.gz") for m in modalities)))
                continue
            ids, files = find_subjects(root, modalities=modalities, include_truth=False, layout="brats")
            subjects += [(i, f) for i, f in zip(ids, files) if os.path.dirname(f[0]) == root]
        except DataError as error:
            failures.append((os.path.basename(root), " ".join(str(error).split())))
    if not subjects and not failures:
        raise DataError(f"--input: no subjects with modalities {list(modalities)} found in {folder}")
    return subjects, failures


def predict_new_subjects(
    config: Config,
    inputs: Sequence[str | os.PathLike],
    model_file: str | os.PathLike,
    data_file: str | os.PathLike,
    output: str | os.PathLike,
    show_progress: bool = True,
) -> tuple[list[Path], list[tuple[str, str]]]:
    """Segment new subjects (no truth) as in training and write ``<output>/<subject>_prediction.nii.gz``.

    A subject that fails (missing or broken file, wrong channels) is skipped
    and reported; the others are still written.

    Returns:
        ``(files written, [(subject, error message), ...])``.
    """
    from tqdm.auto import tqdm

    from .cli import USER_ERRORS, one_line
    from .prediction import predict_subject_files, save_image_atomically
    from .training import load_old_model

    subjects, failures = input_subjects(inputs, config.data.training_modalities)
    attributes = data_module.check_data_file(data_file)
    model = load_old_model(model_file, compile=False)
    check_model_matches_config(model, config, model_file)
    output = Path(output)
    pred = config.prediction
    written = []
    for subject, files in tqdm(subjects, desc="subjects", unit="subject", disable=not show_progress):
        try:
            image = predict_subject_files(
                model, files, config.data.image_shape, attributes, config.data.labels, crop=config.data.crop,
                threshold=pred.threshold, overlap=pred.overlap, batch_size=pred.batch_size, permute=pred.permute,
                subject_id=subject,
            )
        except USER_ERRORS as error:
            failures.append((subject, one_line(error)))
            continue
        # A write error (full disk, read-only folder) would fail every subject: it stops the run.
        path = output / f"{subject}_prediction.nii.gz"
        output.mkdir(parents=True, exist_ok=True)  # here: a run where every subject fails leaves nothing
        save_image_atomically(image, path)
        written.append(path)
    return written, failures
