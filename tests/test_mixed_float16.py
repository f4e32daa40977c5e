"""Both networks, the losses and the sliding window build and run under the mixed_float16 policy (GPU's).

Run on the CPU: float16 is slow there, but every op must accept it; the global policy is restored.
TensorFlow's CPU has no float16 MaxPool3D kernel (its GPU and XLA have), so the steps run through
XLA (``jit_compile=True``) as they would on a GPU.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from unet3d_keras.losses import MaskedSegmentationLoss, weighted_cross_entropy_dice_loss
from unet3d_keras.metrics import weighted_dice_coefficient_loss
from unet3d_keras.model import isensee2017_model, unet_model_3d
from unet3d_keras.sliding_window import sliding_window_inference
from unet3d_keras.tta import mirrored


def jit_predict(model):
    """The model's forward pass through XLA (compiled on the active backend)."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.function(lambda batch: model(batch, training=False), jit_compile=True)
    return lambda batch: model(batch, training=False)


@pytest.fixture
def mixed_float16():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


@pytest.mark.slow  # XLA compiles both networks' float16 steps on the CPU (about a minute on 2 cores)
def test_models_losses_and_sliding_window_run_in_mixed_float16(mixed_float16):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 16, 16, 16, 2)).astype(np.float32)
    y = (rng.random((2, 16, 16, 16, 3)) > 0.7).astype(np.float32)
    models = [
        unet_model_3d((16, 16, 16, 2), n_labels=3, depth=3, n_base_filters=4, deconvolution=True,
                      initial_learning_rate=1e-2),
        isensee2017_model((16, 16, 16, 2), n_base_filters=2, depth=3, n_segmentation_levels=2, n_labels=3,
                          initial_learning_rate=1e-2),
    ]
    for model in models:
        assert model.get_layer("dec0_upconv" if model.name == "unet3d" else model.layers[1].name) \
            .compute_dtype == "float16"
        assert model.output.dtype == "float32"  # the head's activation stays float32
        model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=model.loss, jit_compile=True)
        before = [w.copy() for w in model.get_weights()]
        loss = model.train_on_batch(x, y)
        assert np.all(np.isfinite(loss))
        assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    predict = jit_predict(models[0])
    probabilities = keras.ops.cast(predict(x), "float16")
    for loss_fn in (weighted_dice_coefficient_loss, weighted_cross_entropy_dice_loss):
        value = keras.ops.convert_to_numpy(loss_fn(keras.ops.convert_to_tensor(y), probabilities))
        assert np.all(np.isfinite(value))
    masked = MaskedSegmentationLoss()
    assert np.isfinite(float(keras.ops.convert_to_numpy(masked(np.argmax(y, -1)[..., None], predict(x)))))
    # The on-device sliding window over a volume larger than the window, with float16 inside the model.
    volume = rng.normal(size=(2, 21, 18, 16)).astype(np.float32)
    result = sliding_window_inference(mirrored(predict), volume, (16, 16, 16), 4, 2, "gaussian")
    assert result.dtype == np.float32 and result.shape == (3, 21, 18, 16)
    assert np.all((result >= 0) & (result <= 1))
