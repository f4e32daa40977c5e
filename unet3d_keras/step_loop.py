"""Training one step at a time from a batch source, without tf.data.

``model.fit`` on a ``keras.utils.PyDataset`` reads it through a tf.data generator iterator under
TensorFlow. Dropping such an iterator while its prefetch thread is inside the generator waits about 5 s
for that thread: at the epoch boundaries of a dataset of one epoch (9 times in 4 runs of 6 epochs,
``benchmarks/densify_epoch_stalls.py``), and for an endless dataset whenever the garbage collector reached
its iterator (one collection took 25.9 s in the test suite). Timed densify runs overshot their budget.
Here the next batch is made in a thread of our own while the model trains on the current one, and the
loop drives the same Keras callbacks as ``fit``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

import keras
import numpy as np

__all__ = ["fit_steps"]


def fit_steps(
    model: keras.Model,
    batch: Callable[[int], tuple[np.ndarray, np.ndarray]],
    epochs: int,
    steps_per_epoch: int,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> None:
    """Train a compiled model on ``batch(0)``, ``batch(1)``, ... as ``model.fit`` would, without verbosity.

    The logs of a step and of an epoch hold the mean of the epoch's step losses and metrics so far (as
    ``fit``'s do); ``model.stop_training`` set by a callback ends training after that step or epoch.

    Args:
        model: a compiled Keras model.
        batch: the ``i``-th batch, ``(x, y)`` arrays of the model's input and output shapes.
        epochs: at most this many epochs.
        steps_per_epoch: steps of each epoch.
        callbacks: Keras callbacks, called as ``fit`` calls them (``params`` holds ``epochs`` and ``steps``).
    """
    hooks = keras.callbacks.CallbackList(list(callbacks), model=model, epochs=epochs, steps=steps_per_epoch,
                                         verbose=0)
    model.stop_training = False
    hooks.on_train_begin()
    epoch_logs: dict[str, float] = {}
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="next-batch") as pool:
        upcoming = pool.submit(batch, 0)
        for epoch in range(epochs):
            hooks.on_epoch_begin(epoch)
            step_logs: list[dict[str, float]] = []
            for step in range(steps_per_epoch):
                hooks.on_train_batch_begin(step)
                x, y = upcoming.result()
                # made while the model trains on this one
                upcoming = pool.submit(batch, epoch * steps_per_epoch + step + 1)
                step_logs.append(model.train_on_batch(x, y, return_dict=True))
                hooks.on_train_batch_end(step, _mean(step_logs))  # fit's are running means over the epoch too
                if model.stop_training:
                    break
            epoch_logs = _mean(step_logs)
            hooks.on_epoch_end(epoch, epoch_logs)
            if model.stop_training:
                break
    hooks.on_train_end(epoch_logs)


def _mean(step_logs: list[dict[str, float]]) -> dict[str, float]:
    return {key: float(np.mean([logs[key] for logs in step_logs])) for key in step_logs[0]}
