"""What a run's model learns: output activation, loss and class weights, from the config and the truth."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from . import data as data_module
from .config import Config, ConfigError
from .errors import DataError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingTask:
    """What a run's model learns, resolved from the config and the training truth.

    Attributes:
        activation: ``sigmoid`` (one output per label) or ``softmax``
            (background first, then one output per label).
        loss: ``dice`` (plain for sigmoid, masked for softmax), ``cross_entropy``
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
    if model.output == "regions" and unannotated:
        raise ConfigError(
            f"model.output: regions (sigmoid outputs) cannot leave out the {unannotated} unannotated voxels "
            f"(value {ignore}) of {data_file or 'the data'}; train sparse annotations with model.output: labels"
        )
    if model.activation == "sigmoid" and unannotated:
        raise ConfigError(
            f"model.activation: sigmoid cannot leave out the {unannotated} unannotated voxels (value {ignore}) "
            f"of {data_file or 'the data'}; set model.activation to softmax or auto to train with the masked loss"
        )
    softmax = model.output != "regions" and (model.activation == "softmax" or (
        model.activation == "auto" and (unannotated > 0 or training.loss in ("cross_entropy", "cross_entropy_dice"))
    ))
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
            # why: losses loads Keras, which choosing a task from the config and the data does not need
            from .losses import balanced_class_weights

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
