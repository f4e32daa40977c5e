"""A Keras model (or an exported one) as a predict function that stays on the backend's device; its input shape.

:func:`device_predict_fn` maps a channels-last batch of windows (a backend tensor) to the
model's probabilities as a backend tensor, compiled once per backend the way ``predict`` does
(``tf.function`` on TensorFlow, ``jax.jit`` of the stateless call on JAX, ``no_grad`` on
PyTorch), so the sliding window never sends a window batch to the host.
"""

from __future__ import annotations

from typing import Any, Callable

import keras
from keras import ops

from .exported_models import ExportedModel

__all__ = ["device_predict_fn", "model_channels", "model_patch_shape", "model_predict_fn"]


def _compiled_call(model: keras.Model) -> Callable[[Any], Any]:
    """``model(batch, training=False)``, compiled for the active backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf  # why: only the active backend is installed for sure

        return tf.function(lambda batch: model(batch, training=False), reduce_retracing=True)
    if backend == "jax":
        import jax  # why: only the active backend is installed for sure

        @jax.jit
        def call(trainable, non_trainable, batch):
            return model.stateless_call(trainable, non_trainable, batch, training=False)[0]

        # The variables' current values go in at every call: later weight changes are seen.
        return lambda batch: call([v.value for v in model.trainable_variables],
                                  [v.value for v in model.non_trainable_variables], batch)
    if backend == "torch":
        import torch  # why: only the active backend is installed for sure

        def call_without_gradients(batch):
            with torch.no_grad():
                return model(batch, training=False)

        return call_without_gradients
    return lambda batch: model(batch, training=False)


def device_predict_fn(model: keras.Model, channels_last: bool = True) -> Callable[[Any], Any]:
    """The model as a function of channels-last batches, on the backend's device.

    Args:
        model: A Keras model taking ``(n, x, y, z, C)`` (``channels_last``) or ``(n, C, x, y, z)``.
        channels_last: The model's data layout; batches are transposed in and out otherwise.

    Returns:
        ``(n, x, y, z, C)`` tensor or array -> float32 ``(n, x, y, z, L)`` backend tensor.
    """
    call = _compiled_call(model)
    if channels_last:
        return lambda batch: ops.cast(call(ops.convert_to_tensor(batch, "float32")), "float32")
    return lambda batch: ops.transpose(ops.cast(call(ops.transpose(ops.convert_to_tensor(batch, "float32"),
                                                                  (0, 4, 1, 2, 3))), "float32"), (0, 2, 3, 4, 1))


def _channels_last() -> bool:
    return keras.config.image_data_format() == "channels_last"


def model_patch_shape(model: keras.Model | ExportedModel) -> tuple[int | None, int | None, int | None]:
    """Spatial input shape of a model, ``(x, y, z)`` (None where the model takes any size)."""
    if isinstance(model, ExportedModel):
        return model.patch_shape
    shape = tuple(model.input_shape[1:])
    return shape[:3] if _channels_last() else shape[1:]


def model_channels(model: keras.Model | ExportedModel) -> int:
    """Number of input channels of a model."""
    if isinstance(model, ExportedModel):
        return model.n_channels
    shape = tuple(model.input_shape[1:])
    return int(shape[3] if _channels_last() else shape[0])


def model_predict_fn(model: keras.Model | ExportedModel) -> Callable[[Any], Any]:
    """The model as a function of channels-last batches ``(n, x, y, z, C)`` -> float32 ``(n, x, y, z, L)``,
    backend tensors on the device (:func:`~unet3d_keras.predict_functions.device_predict_fn`); an
    exported model's runtime works on the host."""
    if isinstance(model, ExportedModel):
        return model.predict_fn
    return device_predict_fn(model, channels_last=_channels_last())
