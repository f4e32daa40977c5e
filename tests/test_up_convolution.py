"""MatmulConv3DTranspose equals Conv3DTranspose (outputs and gradients) and keeps its weights and files.

Each installed backend runs :func:`compare_with_conv3d_transpose` (the others in a subprocess,
since Keras picks its backend once per process).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from unet3d_keras.model import build_unet_3d
from unet3d_keras.model.up_convolution import (
    MatmulConv3DTranspose, with_matmul_up_convolutions, with_plain_up_convolutions,
)

# (input shape channels-last, filters, kernel = strides)
CASES = [((2, 3, 5, 4, 7), 5, (2, 2, 2)), ((1, 4, 3, 2, 3), 1, (2, 1, 3)), ((2, 2, 2, 2, 1), 3, (3, 3, 3))]


def gradients(layer, x: np.ndarray, cotangent: np.ndarray) -> list[np.ndarray]:
    """d sum(layer(x) * cotangent) / d (x, kernel, bias), with the active backend's autodiff."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x) * cotangent)
        return [np.asarray(g) for g in tape.gradient(loss, [x, layer.kernel.value, layer.bias.value])]
    if backend == "jax":
        import jax

        def loss(values, x):
            return (layer.stateless_call(values, [], x)[0] * cotangent).sum()

        values = [v.value for v in layer.trainable_variables]
        grad_values, grad_x = jax.grad(loss, argnums=(0, 1))(values, x)
        order = {v.path: g for v, g in zip(layer.trainable_variables, grad_values)}
        return [np.asarray(grad_x)] + [np.asarray(order[v.path]) for v in (layer.kernel, layer.bias)]
    import torch

    x = torch.tensor(x, requires_grad=True)
    for variable in layer.trainable_variables:
        variable.value.grad = None
    (layer(x) * torch.tensor(cotangent)).sum().backward()
    return [x.grad.numpy()] + [v.value.grad.detach().numpy() for v in (layer.kernel, layer.bias)]


def compare_with_conv3d_transpose() -> dict:
    """Largest output and gradient difference of the two layers per case (channels_last)."""
    rng = np.random.default_rng(0)
    report = {}
    for index, (shape, filters, kernel) in enumerate(CASES):
        x = rng.normal(size=shape).astype(np.float32)
        plain = keras.layers.Conv3DTranspose(filters, kernel, strides=kernel)
        fast = MatmulConv3DTranspose(filters, kernel, strides=kernel)
        for layer in (plain, fast):
            layer.build(shape)
        fast.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in plain.get_weights()])
        plain.set_weights(fast.get_weights())
        expected, output = (keras.ops.convert_to_numpy(layer(x)) for layer in (plain, fast))
        cotangent = rng.normal(size=expected.shape).astype(np.float32)
        grads = [np.abs(a - b).max() / max(np.abs(a).max(), 1.0)
                 for a, b in zip(gradients(plain, x, cotangent), gradients(fast, x, cotangent))]
        report[str(index)] = {"shape": list(output.shape), "expected_shape": list(expected.shape),
                              "output": float(np.abs(output - expected).max()), "gradients": [float(g) for g in grads]}
    return report


def check_report(report: dict) -> None:
    for case, result in report.items():
        assert result["shape"] == result["expected_shape"], case
        assert result["output"] < 1e-5, (case, result)
        assert max(result["gradients"]) < 1e-5, (case, result)


def test_outputs_and_gradients_equal_conv3d_transpose():
    check_report(compare_with_conv3d_transpose())


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_outputs_and_gradients_equal_conv3d_transpose_on_other_backends(backend):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), str(root / "tests"), env.get("PYTHONPATH")]))
    script = ("import json, keras, test_up_convolution as t; "
              "print('RESULT ' + json.dumps([keras.backend.backend(), t.compare_with_conv3d_transpose()]))")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    name, report = json.loads([line for line in done.stdout.splitlines() if line.startswith("RESULT ")][-1][7:])
    assert name == backend
    check_report(report)


def test_channels_first_equals_channels_last():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 3, 5, 4, 7)).astype(np.float32)
    last = MatmulConv3DTranspose(5, 2, strides=2, data_format="channels_last")
    first = MatmulConv3DTranspose(5, 2, strides=2, data_format="channels_first")
    last.build(x.shape)
    first.build(np.moveaxis(x, -1, 1).shape)
    first.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in last.get_weights()])
    last.set_weights(first.get_weights())
    expected = keras.ops.convert_to_numpy(last(x))
    output = keras.ops.convert_to_numpy(first(np.moveaxis(x, -1, 1)))
    np.testing.assert_allclose(np.moveaxis(output, 1, -1), expected, atol=1e-5)


def test_overlapping_kernel_falls_back_to_the_transposed_convolution():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1, 3, 3, 3, 2)).astype(np.float32)
    plain = keras.layers.Conv3DTranspose(3, 3, strides=2, padding="same")
    fast = MatmulConv3DTranspose(3, 3, strides=2, padding="same")
    for layer in (plain, fast):
        layer.build(x.shape)
    fast.set_weights(plain.get_weights())
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(fast(x)), keras.ops.convert_to_numpy(plain(x)))


def unet():
    return build_unet_3d((16, 16, 16, 2), n_labels=3, depth=3, n_base_filters=4, deconvolution=True)


def test_unet_uses_the_matmul_layer_with_the_transposed_convolutions_variables():
    model = unet()
    layers = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv3DTranspose)]
    assert [type(layer) for layer in layers] == [MatmulConv3DTranspose] * 2
    assert [w.path for w in layers[0].weights] == ["dec1_upconv/kernel", "dec1_upconv/bias"]
    assert tuple(layers[0].kernel.shape) == (2, 2, 2, 32, 32)  # (kx, ky, kz, filters, in_channels)


def test_saved_files_round_trip_and_old_files_load_into_the_new_layer(tmp_path):
    x = np.random.default_rng(3).normal(size=(1, 16, 16, 16, 2)).astype(np.float32)
    model = unet()
    expected = model.predict_on_batch(x)
    model.save(tmp_path / "new.keras")
    loaded = keras.saving.load_model(tmp_path / "new.keras", compile=False)
    assert isinstance(loaded.get_layer("dec0_upconv"), MatmulConv3DTranspose)
    np.testing.assert_array_equal(loaded.predict_on_batch(x), expected)

    # A file written with keras.layers.Conv3DTranspose: its weights load into the new model
    # unchanged, and with_matmul_up_convolutions converts the loaded model.
    old = with_plain_up_convolutions(model)
    old.save(tmp_path / "old.keras")
    old_loaded = keras.saving.load_model(tmp_path / "old.keras", compile=False)
    assert type(old_loaded.get_layer("dec0_upconv")) is keras.layers.Conv3DTranspose
    fresh = unet()
    fresh.load_weights(tmp_path / "old.keras")
    np.testing.assert_allclose(fresh.predict_on_batch(x), expected, atol=1e-6)
    old_loaded.load_weights(tmp_path / "new.keras")  # and new files load into plain models
    np.testing.assert_allclose(old_loaded.predict_on_batch(x), expected, atol=1e-6)
    converted = with_matmul_up_convolutions(old_loaded)
    assert isinstance(converted.get_layer("dec0_upconv"), MatmulConv3DTranspose)
    np.testing.assert_allclose(converted.predict_on_batch(x), old_loaded.predict_on_batch(x), atol=1e-6)
    assert with_matmul_up_convolutions(converted) is converted
