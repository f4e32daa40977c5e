"""The training schedules: the cosine rates, the step and time limits, and what the progress bar shows."""

import io
import math
import re
import time

import keras
import numpy as np
import pytest
from tqdm import tqdm

from unet3d_keras.schedule import TimeBudget, cosine_learning_rate

STEPS_PER_EPOCH = 4


def test_cosine_learning_rate_known_values():
    assert cosine_learning_rate(0, 11, 1e-3) == pytest.approx(1e-3)
    assert cosine_learning_rate(5, 11, 1e-3) == pytest.approx(1e-3 * (0.02 + 0.98 * 0.5))
    assert cosine_learning_rate(10, 11, 1e-3) == pytest.approx(2e-5)
    assert cosine_learning_rate(99, 11, 1e-3) == pytest.approx(2e-5)  # past the end: the final rate
    assert cosine_learning_rate(3, 1, 0.5) == pytest.approx(0.5 * 0.02)


class _Scores(keras.callbacks.Callback):
    """Stands in for densify's held-back monitor: new status text for the bar after each epoch."""

    def __init__(self, budget: TimeBudget) -> None:
        super().__init__()
        self.budget = budget

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.budget.status = f", held-back IoU epoch{epoch + 1}"


def _fit(budget: TimeBudget, *others: keras.callbacks.Callback, epochs: int = 3,
         seconds: float | None = None) -> keras.Model:
    """Fit a tiny model with ``budget``; ``seconds``: its deadline, counted from just before ``fit``."""
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x = np.linspace(-1, 1, 3 * STEPS_PER_EPOCH * 2, dtype="float32").reshape(-1, 3)
    if seconds is not None:
        budget.deadline = time.monotonic() + seconds
    model.fit(x, x[:, :1], batch_size=2, epochs=epochs, verbose=0, callbacks=[budget, *others])
    return model


def _frames(stream: io.StringIO) -> list[str]:
    return [frame for frame in stream.getvalue().split("\r") if frame.strip()]


def test_each_step_shows_its_own_loss_and_the_latest_scores():
    stream = io.StringIO()
    bar = tqdm(total=3 * STEPS_PER_EPOCH, file=stream, mininterval=0, miniters=1, ascii=True)
    budget = TimeBudget(math.inf, progress=bar)
    _fit(budget, _Scores(budget))
    bar.close()

    frames = _frames(stream)
    for step in range(1, 3 * STEPS_PER_EPOCH + 1):
        shown = [frame for frame in frames if f" {step}/{3 * STEPS_PER_EPOCH} " in frame]
        assert shown, f"step {step} was never drawn"
        assert "loss=" in shown[0], shown[0]
        epoch = (step - 1) // STEPS_PER_EPOCH
        if epoch:  # from the first step after an evaluation on, the bar shows that evaluation's scores
            assert f"held-back IoU epoch{epoch}" in shown[0], shown[0]
        else:
            assert "held-back" not in shown[0], shown[0]
    assert "left to train" not in stream.getvalue()  # no deadline, no time left to show


def test_a_timed_run_shows_the_time_left_to_train():
    stream = io.StringIO()
    bar = tqdm(total=None, file=stream, mininterval=0, miniters=1, ascii=True)
    budget = TimeBudget(math.inf, progress=bar)
    _fit(budget, epochs=1, seconds=125.0)
    bar.close()

    shown = [re.search(r"loss=[0-9.]+, (\d+):(\d\d) left to train", frame) for frame in _frames(stream)]
    seconds = [60 * int(match[1]) + int(match[2]) for match in shown if match]
    assert len(seconds) >= STEPS_PER_EPOCH  # each step's frame, and close() draws the last again
    assert seconds == sorted(seconds, reverse=True)
    assert 100 <= seconds[-1] <= seconds[0] <= 125


def test_max_steps_stops_within_an_epoch():
    budget = TimeBudget(math.inf, max_steps=STEPS_PER_EPOCH + 2)
    _fit(budget, epochs=5)
    assert budget.steps == STEPS_PER_EPOCH + 2
    assert not budget.out_of_time
    assert len(budget.losses) == 2


def test_a_passed_deadline_stops_after_one_step():
    budget = TimeBudget(time.monotonic() - 1.0)
    _fit(budget, epochs=5)
    assert budget.steps == 1
    assert budget.out_of_time
