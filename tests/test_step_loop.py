"""densify's step loop trains as ``model.fit`` does and drives the same callbacks."""

import keras
import numpy as np

from unet3d_keras.step_loop import fit_steps


def _model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.05), "mse", metrics=["mae"])
    return model


def _batch(index):
    rng = np.random.default_rng(index)
    x = rng.normal(size=(4, 3)).astype(np.float32)
    return x, (x @ np.array([[1.0], [-2.0], [0.5]], np.float32) + 0.3).astype(np.float32)


class Record(keras.callbacks.Callback):
    def __init__(self, stop_after=None):
        super().__init__()
        self.calls, self.epoch_logs, self.stop_after, self.steps = [], [], stop_after, 0

    def on_train_begin(self, logs=None):
        self.calls.append(("train_begin", dict(self.params)))

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(("epoch_begin", epoch))

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        if self.steps == self.stop_after:
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_logs.append(dict(logs))

    def on_train_end(self, logs=None):
        self.calls.append(("train_end", None))


def test_the_weights_and_epoch_logs_are_those_of_fit_on_the_same_batches():
    looped, fitted = _model(), _model()
    record = Record()
    fit_steps(looped, _batch, epochs=3, steps_per_epoch=5, callbacks=[record])

    class OneEpoch(keras.utils.PyDataset):  # batches 5e to 5e + 4 in epoch e
        def __init__(self):
            super().__init__()
            self.epoch = 0  # fit reads a batch to learn the shapes, then moves this on once before epoch 0

        def __len__(self):
            return 5

        def on_epoch_end(self):
            self.epoch += 1

        def __getitem__(self, index):
            return _batch(5 * max(self.epoch - 1, 0) + index)

    history = fitted.fit(OneEpoch(), epochs=3, shuffle=False, verbose=0)
    for a, b in zip(looped.get_weights(), fitted.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for key in ("loss", "mae"):
        np.testing.assert_allclose([logs[key] for logs in record.epoch_logs], history.history[key], rtol=1e-5)
    assert record.calls[0] == ("train_begin", {"verbose": 0, "epochs": 3, "steps": 5})
    assert record.calls[1:] == [("epoch_begin", 0), ("epoch_begin", 1), ("epoch_begin", 2), ("train_end", None)]


def test_stop_training_ends_the_run_after_the_step_that_set_it():
    model = _model()
    asked = []

    def batch(index):
        asked.append(index)
        return _batch(index)

    record = Record(stop_after=7)
    fit_steps(model, batch, epochs=10, steps_per_epoch=5, callbacks=[record])
    assert record.steps == 7 and len(record.epoch_logs) == 2  # the second epoch ended early, then no other
    assert record.calls[-1] == ("train_end", None)
    assert asked[:8] == list(range(8))  # in order, at most one made ahead of the step trained
    # the epoch logs average that epoch's steps only: the second is the mean of steps 6 and 7
    losses = []
    check = _model()
    for index in range(7):
        losses.append(check.train_on_batch(*_batch(index), return_dict=True)["loss"])
    np.testing.assert_allclose(record.epoch_logs[1]["loss"], np.mean(losses[5:7]), rtol=1e-5)
