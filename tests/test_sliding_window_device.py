"""The on-device sliding window gives today's NumPy loop's results (uniform, Gaussian, mirrored TTA).

The NumPy loop is the benchmark's baseline (``benchmarks/numpy_sliding_window.py``, the loop the
project used before), loaded from its file.
"""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import keras
import numpy as np
import pytest

from unet3d_keras.predict_functions import device_predict_fn
from unet3d_keras.predictor import Predictor
from unet3d_keras.sliding_window import overlap_add, sliding_window_inference

BASELINE = Path(__file__).resolve().parent.parent / "benchmarks" / "numpy_sliding_window.py"


def numpy_loop():
    spec = importlib.util.spec_from_file_location("numpy_sliding_window", BASELINE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.numpy_sliding_window_inference


def window_model(window, n_channels=2, n_labels=3):
    """A small random convolutional model: output depends on position and content of each window."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input(tuple(window) + (n_channels,))
    hidden = keras.layers.Conv3D(4, 3, padding="same", activation="relu")(inputs)
    outputs = keras.layers.Conv3D(n_labels, 3, padding="same", activation="sigmoid")(hidden)
    return keras.Model(inputs, outputs)


def numpy_mirrored(predict_fn):
    """The mirrored TTA written in NumPy: mean over the 8 flips of the spatial axes."""
    def predict(batch):
        batch = np.asarray(batch)
        outputs = [np.flip(predict_fn(np.flip(batch, axes)), axes)
                   for n in range(4) for axes in itertools.combinations((1, 2, 3), n)]
        return np.mean(outputs, axis=0)
    return predict


@pytest.mark.parametrize("shape, overlap, batch_size, weighting", [
    ((2, 21, 18, 13), 3, 1, "uniform"),
    ((2, 21, 18, 13), 3, 3, "gaussian"),
    ((2, 8, 17, 9), 0, 2, "uniform"),
    ((2, 30, 9, 16), 5, 4, "gaussian"),
])
def test_device_loop_equals_the_numpy_loop(shape, overlap, batch_size, weighting):
    window = (8, 8, 8)
    model = window_model(window)
    volume = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    numpy_fn = lambda batch: np.asarray(model.predict_on_batch(np.asarray(batch)), np.float32)  # noqa: E731
    expected = numpy_loop()(numpy_fn, volume, window, overlap, batch_size, weighting)
    result = sliding_window_inference(device_predict_fn(model), volume, window, overlap, batch_size, weighting)
    assert result.dtype == np.float32 and result.shape == expected.shape == (3,) + shape[1:]
    np.testing.assert_allclose(result, expected, atol=1e-5, rtol=0)


def test_predictor_with_mirrored_tta_equals_the_numpy_loop():
    window = (8, 8, 8)
    model = window_model(window)
    volume = np.random.default_rng(1).normal(size=(2, 13, 10, 11)).astype(np.float32)
    numpy_fn = numpy_mirrored(lambda batch: np.asarray(model.predict_on_batch(batch), np.float32))
    expected = numpy_loop()(numpy_fn, volume, window, 2, 2, "gaussian")
    result = Predictor(model, overlap=2, batch_size=2, weighting="gaussian", mirror=True).predict_windows(volume)
    np.testing.assert_allclose(result, expected, atol=1e-5, rtol=0)


def test_overlap_add_sums_parts_at_their_offsets():
    rng = np.random.default_rng(2)
    parts = [(0, rng.normal(size=(2, 4))), (3, rng.normal(size=(2, 4))), (9, rng.normal(size=(2, 2)))]
    expected = np.zeros((2, 12))
    for offset, part in parts:
        expected[:, offset:offset + part.shape[1]] += part
    result = overlap_add([(o, keras.ops.convert_to_tensor(p, "float32")) for o, p in parts], axis=1, length=12)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(result), expected, atol=1e-6)  # voxels 7, 8 stay 0


def test_windows_out_of_x_order_are_refused(monkeypatch):
    from unet3d_keras import sliding_window

    grid = sliding_window.window_grid
    monkeypatch.setattr(sliding_window, "window_grid", lambda *args: (grid(*args)[0][::-1],) + grid(*args)[1:])
    with pytest.raises(ValueError, match="ascending x order"):
        sliding_window_inference(lambda batch: batch, np.zeros((1, 10, 4, 4), np.float32), (4, 4, 4), 0)


def test_a_volume_already_on_the_device_gives_the_same_result():
    model = window_model((8, 8, 8))
    volume = np.random.default_rng(3).normal(size=(2, 11, 9, 10)).astype(np.float32)
    predict = device_predict_fn(model)
    expected = sliding_window_inference(predict, volume, (8, 8, 8), 2, 2, "gaussian")
    result = sliding_window_inference(predict, keras.ops.convert_to_tensor(volume), (8, 8, 8), 2, 2, "gaussian")
    np.testing.assert_allclose(result, expected, atol=1e-6, rtol=0)
