"""Scoring the held-back voxels while a densify run trains.

:class:`HeldOutMonitor` scores the held-back voxels of :mod:`unet3d_keras.densify_holdout`
after epochs (one window per held-back tile, so an evaluation costs one model call per tile),
shows the per-class IoU in the progress bar and, once the mean foreground IoU has not improved
for ``patience_epochs`` epochs, has :class:`~unet3d_keras.schedule.TimeCosine` decay the
learning rate to zero over ``decay_epochs`` epochs and then stops (with no foreground voxel held
back there is nothing to watch, and it does not stop). It keeps the weights of the
best evaluation made at a decayed learning rate (at most :data:`KEEP_RATE_SHARE` of the
initial one), or the last weights.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Callable, Sequence

import keras
import numpy as np

from .densify_holdout import DensifyOptions, HeldOut, class_scores, foreground_mean
from .schedule import TimeBudget, TimeCosine

logger = logging.getLogger(__name__)

__all__ = ["HeldOutMonitor", "KEEP_RATE_SHARE"]

_EVAL_BATCH = 4
#: Weights are kept only from evaluations at a learning rate at most this share of the initial
#: one. The held-back voxels are few (a few hundred of a thin class), and their score wanders by
#: about 0.02 from epoch to epoch at a high rate: on the one-voxel membranes of
#: examples/thin_shell, the best of all evaluations was an early one (epoch 9 to 12 of some 70),
#: whose weights scored the never-annotated membrane 0.38 against 0.435 for weights kept late.
KEEP_RATE_SHARE = 0.25


class HeldOutMonitor(keras.callbacks.Callback):
    """Scores the held-back voxels after epochs, shows them, keeps the best weights, stops on a plateau.

    Args:
        volume: float32 ``(n_channels, x, y, z)`` normalised (padded) volume.
        index_map: int ``(x, y, z)`` class index of every voxel (held-back ones included).
        held_out: the :class:`HeldOut` voxels.
        n_classes: number of classes.
        patch_shape: the model's window.
        options: patience and the improvement that counts.
        stop_on_plateau: keep the best weights of the decayed learning rate and stop after a
            plateau (time-bounded runs), or only score (fixed-length runs).
        schedule: the :class:`TimeCosine` that decays the learning rate after a plateau (None:
            stop at the plateau).
        budget: a :class:`~unet3d_keras.schedule.TimeBudget` whose step clock skips evaluations
            and whose progress bar shows the scores.
        class_names: names of the classes in the progress bar.
    """

    def __init__(self, volume: np.ndarray, index_map: np.ndarray, held_out: HeldOut, n_classes: int,
                 patch_shape: Sequence[int], options: DensifyOptions, stop_on_plateau: bool,
                 budget: TimeBudget | None = None, class_names: Sequence[str] = (),
                 schedule: TimeCosine | None = None) -> None:
        super().__init__()
        self.schedule = schedule
        self.n_classes = n_classes
        self.options = options
        self.stop_on_plateau = stop_on_plateau
        self.budget = budget
        self.class_names = list(class_names) or [str(c) for c in range(n_classes)]
        patch = np.asarray(patch_shape)
        shape = np.asarray(index_map.shape)
        self.windows: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        order = np.argsort(held_out.groups, axis=None, kind="stable")
        flat_groups = held_out.groups.ravel()[order]
        starts = np.searchsorted(flat_groups, np.arange(held_out.n_groups + 1))
        for group in range(held_out.n_groups):
            flat = order[starts[group]:starts[group + 1]]
            if not len(flat):
                continue
            coords = np.stack(np.unravel_index(flat, index_map.shape), axis=1)
            centre = (coords.min(axis=0) + coords.max(axis=0)) // 2
            corner = np.clip(centre - patch // 2, 0, shape - patch)
            local = coords - corner
            inside = np.all((local >= 0) & (local < patch), axis=1)
            self.windows.append((corner, local[inside], index_map.ravel()[flat[inside]]))
        scored = [classes for _, _, classes in self.windows]
        #: The plateau is measured on the mean foreground IoU: with no foreground voxel held back (a
        #: lesion whose annotated voxels lie in one tile) it would read 0 at every evaluation, a
        #: plateau from the first, so a time-bounded run then trains to its budget instead.
        self.watches_foreground = bool(scored) and bool(np.any(np.concatenate(scored) > 0))
        self.volume = volume
        self.patch = patch
        self.history: list[dict] = []
        self.best_score = -math.inf  # of all evaluations: what a plateau is measured against
        self.best_epoch = 0
        self.kept_score = -math.inf  # of the evaluations at a decayed learning rate
        self.kept_epoch = 0
        self.kept_weights: list | None = None
        self.scored_epoch = 0
        self.every = 1
        self.stopped_on_plateau = False
        #: the first epoch (1-based) of the final decay, 0 before a plateau
        self.decay_start = 0

    def evaluate(self, predict_fn: Callable[[np.ndarray], Any] | None = None) -> dict[str, list]:
        """Per-class scores of the current model on the held-back voxels.

        Args:
            predict_fn: channels-last batch ``(n, x, y, z, C)`` -> ``(n, x, y, z, n_classes)``
                (e.g. a :func:`~unet3d_keras.tta.mirrored` one); None: the model's own.
        """
        predict_fn = predict_fn or self.model.predict_on_batch
        truth, predicted = [], []
        channels = self.volume.shape[0]
        for start in range(0, len(self.windows), _EVAL_BATCH):
            chunk = self.windows[start:start + _EVAL_BATCH]
            batch = np.zeros((_EVAL_BATCH, *self.patch, channels), np.float32)  # one batch shape: one trace
            for i, (corner, _, _) in enumerate(chunk):
                window = tuple(slice(c, c + p) for c, p in zip(corner, self.patch))
                batch[i] = np.moveaxis(self.volume[(slice(None),) + window], 0, -1)
            output = keras.ops.convert_to_numpy(predict_fn(batch)).astype(np.float32)
            for i, (_, local, classes) in enumerate(chunk):
                predicted.append(np.argmax(output[(i, *local.T)], axis=-1))
                truth.append(classes)
        if not truth:
            return class_scores(np.zeros(0, np.int64), np.zeros(0, np.int64), self.n_classes)
        return class_scores(np.concatenate(truth), np.concatenate(predicted), self.n_classes)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        decay_done = bool(self.decay_start) and epoch + 2 - self.decay_start >= self.options.decay_epochs
        if not self.windows or ((epoch + 1) % self.every and not decay_done):
            return
        began = time.monotonic()
        scores, score = self._score(epoch + 1)
        if score > self.best_score + self.options.min_delta:
            self.best_score, self.best_epoch = score, epoch + 1
        if decay_done:
            self.stopped_on_plateau = True
            self.model.stop_training = True
        elif (self.stop_on_plateau and self.watches_foreground and not self.decay_start
              and epoch + 1 - self.best_epoch >= self.options.patience_epochs):
            if self.schedule is not None and self.options.decay_epochs:
                # A plateau at a high learning rate is not the end: in examples/thin_shell, weights
                # trained down to a low rate scored the never-annotated voxels better.
                self.decay_start = epoch + 2
                self.schedule.decay_from(epoch + 1, self.options.decay_epochs)
                logger.info("no gain in %d epochs: decaying the learning rate over %d epochs",
                            self.options.patience_epochs, self.options.decay_epochs)
            else:
                self.stopped_on_plateau = True
                self.model.stop_training = True
        text = " ".join(f"{n}:{'-' if v is None else f'{v:.2f}'}" for n, v in zip(self.class_names, scores["iou"]))
        logger.info("epoch %d: held-back IoU %s (mean foreground %.3f)", epoch + 1, text, score)
        if self.budget is not None:
            self.budget.status = f", held-back IoU {text}"
        spent = time.monotonic() - began
        if self.budget is not None:
            self.budget.last += spent  # an evaluation is not a training step
            epoch_seconds = max(self.budget.longest_step, 1e-3) * self.params.get("steps", 16)
            # Evaluations take at most about a fifth of the training time.
            self.every = max(1, math.ceil(spent / (0.2 * epoch_seconds)))

    def _decayed(self) -> bool:
        if self.schedule is None:
            return True
        rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        return rate <= KEEP_RATE_SHARE * self.schedule.initial + 1e-12

    def _score(self, epoch: int) -> tuple[dict[str, list], float]:
        """Score the current weights as those of ``epoch`` (1-based): the history, and the weights
        to keep if they are the best of the decayed learning rate."""
        scores = self.evaluate()
        score = foreground_mean(scores["iou"])
        self.history.append({"epoch": epoch, "mean_foreground_iou": score, "iou": scores["iou"]})
        self.scored_epoch = epoch
        # A tie goes to the later, more trained weights.
        if self.stop_on_plateau and self._decayed() and score >= self.kept_score:
            self.kept_score, self.kept_epoch = score, epoch
            self.kept_weights = self.model.get_weights()
        return scores, score

    def restore_best(self, epochs: int) -> int:
        """After a time-bounded run of ``epochs`` epochs: score the last weights if the last epoch
        was not scored, then load the weights of the best evaluation at a decayed learning rate
        (the last weights if none was). Returns the epoch whose weights the model now holds."""
        if not self.stop_on_plateau or not self.windows:
            return epochs
        if epochs and self.scored_epoch < epochs:
            self._score(epochs)
        if self.kept_weights is None or self.kept_epoch == epochs:
            return epochs
        self.model.set_weights(self.kept_weights)
        return self.kept_epoch

    def stop_reason(self, budget: TimeBudget) -> str:
        """Why the run that ``budget`` bounded stopped, in words for its summary."""
        plateau = f"no gain on the held-back voxels in {self.options.patience_epochs} epochs"
        if self.stopped_on_plateau:
            return plateau + (f", then {self.options.decay_epochs} epochs of learning-rate decay"
                              if self.decay_start else "")
        if budget.out_of_time and self.decay_start:
            return plateau + ", then the time budget ran out during the learning-rate decay"
        if budget.out_of_time:
            return "time budget spent"
        if budget.steps == 0:  # the deadline came before the first step (the prediction's share is kept)
            return "no time left to train before the prediction"
        return f"{budget.steps} steps done"
