"""Schedules for short training runs: a cosine learning-rate decay by epoch or by the time
spent, and a wall-clock budget."""

from __future__ import annotations

import math
import time

import keras
from tqdm.auto import tqdm

__all__ = ["cosine_learning_rate", "TimeBudget", "TimeCosine"]


def cosine_learning_rate(epoch: int, n_epochs: int, initial: float, final_fraction: float = 0.02) -> float:
    """Cosine decay from ``initial`` at epoch 0 to ``final_fraction * initial`` at the last epoch."""
    progress = min(epoch / max(n_epochs - 1, 1), 1.0)
    return float(initial * (final_fraction + (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * progress))))


class TimeBudget(keras.callbacks.Callback):
    """Stops training once the next step would run past a deadline, or after ``max_steps``; records
    the epoch losses.

    Args:
        deadline: ``time.monotonic()`` by which training must have stopped.
        progress: a tqdm bar advanced by one per step, or None; it shows the loss, the time left
            before the deadline (when finite) and ``status``.
        max_steps: stop after this many steps (None: no limit).

    Attributes:
        losses: training loss of each finished epoch.
        status: text shown after the loss and the time left in the progress bar (e.g. validation scores).
        steps: steps trained.
        out_of_time: whether the deadline stopped training.
    """

    def __init__(self, deadline: float, progress: tqdm | None = None, max_steps: int | None = None) -> None:
        super().__init__()
        self.deadline = deadline
        self.progress = progress
        self.max_steps = max_steps
        self.out_of_time = False
        self.status = ""
        self.last = time.monotonic()
        self.longest_step = 0.0
        self.steps = 0
        self.losses: list[float] = []

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.last = time.monotonic()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        now = time.monotonic()
        if self.steps:  # the first step also traces the function
            self.longest_step = max(self.longest_step, now - self.last)
        self.steps += 1
        self.last = now
        if self.progress is not None:
            # The postfix first: update() redraws the bar, so each step is drawn with its own
            # postfix (loss, time left, latest held-back scores) rather than the previous step's.
            if logs and "loss" in logs:
                left = ""
                if math.isfinite(self.deadline):
                    left = f", {tqdm.format_interval(max(0.0, self.deadline - now))} left to train"
                self.progress.set_postfix_str(f"loss={float(logs['loss']):.3f}{left}{self.status}", refresh=False)
            self.progress.update(1)
        if self.max_steps is not None and self.steps >= self.max_steps:
            self.model.stop_training = True
        elif now + 1.5 * self.longest_step > self.deadline:
            self.out_of_time = True
            self.model.stop_training = True

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs and "loss" in logs:
            self.losses.append(float(logs["loss"]))


class TimeCosine(keras.callbacks.Callback):
    """Cosine learning-rate decay over the time budget: the rate at each epoch follows the share
    of the training time spent, so that a run of any budget ends at the low rate.

    Args:
        start: ``time.monotonic()`` of the start of training.
        end: ``time.monotonic()`` by which training stops.
        initial: the initial learning rate.
    """

    def __init__(self, start: float, end: float, initial: float) -> None:
        super().__init__()
        self.start, self.end, self.initial = start, end, initial
        self.decay: tuple[int, int, float] | None = None

    def decay_from(self, epoch: int, n_epochs: int) -> None:
        """From epoch ``epoch`` (0-based) on, decay the current rate to zero over ``n_epochs`` epochs
        (or sooner, if the time budget's own decay is lower)."""
        self.decay = (epoch, n_epochs, float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        share = (time.monotonic() - self.start) / max(self.end - self.start, 1e-9)
        steps = 1000
        rate = cosine_learning_rate(round(min(max(share, 0.0), 1.0) * steps), steps + 1, self.initial)
        if self.decay is not None:
            first, n_epochs, top = self.decay
            progress = min(max((epoch - first + 0.5) / n_epochs, 0.0), 1.0)
            rate = min(rate, top * 0.5 * (1 + math.cos(math.pi * progress)))
        self.model.optimizer.learning_rate.assign(rate)
