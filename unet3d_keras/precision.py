"""Choosing the mixed-precision policy for the machine at hand.

bfloat16 halves the cost of 3D convolutions on CPUs with AVX512-BF16 or AMX
(about 2x faster training here); float16 is the fast choice on CUDA GPUs.
The models keep their output activation in float32 and the losses cast to
float32, so only the convolutions run in low precision. Setting the policy is
a global Keras setting: scripts call :func:`apply_mixed_precision` at start-up,
library code never does.
"""

from __future__ import annotations

import logging

import keras

from .cpu import cpu_supports_bfloat16

logger = logging.getLogger(__name__)

SETTINGS = ("auto", "off", "bfloat16", "float16")


def cuda_gpu_available() -> bool:
    """True when the active Keras backend sees a CUDA GPU."""
    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf  # why: only the active backend is installed for sure

            return bool(tf.config.list_physical_devices("GPU"))
        if backend == "jax":
            import jax  # why: only the active backend is installed for sure

            return any(device.platform == "gpu" for device in jax.devices())
        if backend == "torch":
            import torch  # why: only the active backend is installed for sure

            return torch.cuda.is_available()
    except Exception:  # a broken GPU runtime means: no usable GPU
        logger.debug("GPU detection failed", exc_info=True)
    return False


def _uses_gpu(gpu: bool | None) -> bool:
    """``gpu``, or whether a CUDA GPU is detected when it is None."""
    return gpu if gpu is not None else cuda_gpu_available()


def _has_native_bfloat16(bf16_cpu: bool | None) -> bool:
    """``bf16_cpu``, or whether the CPU has AVX512-BF16/AMX when it is None."""
    return bf16_cpu if bf16_cpu is not None else cpu_supports_bfloat16()


def resolve_mixed_precision(setting: str, gpu: bool | None = None, bf16_cpu: bool | None = None) -> str:
    """The Keras dtype policy name for a ``training.mixed_precision`` setting.

    Args:
        setting: ``auto``, ``off``, ``bfloat16`` or ``float16``.
        gpu: Whether a CUDA GPU is used (detected when None).
        bf16_cpu: Whether the CPU has AVX512-BF16/AMX (detected when None).

    Returns:
        ``"float32"``, ``"mixed_bfloat16"`` or ``"mixed_float16"``.
    """
    if setting not in SETTINGS:
        raise ValueError(f"training.mixed_precision: expected one of {', '.join(SETTINGS)}, received {setting!r}")
    if setting == "off":
        return "float32"
    if setting == "bfloat16":
        return "mixed_bfloat16"
    if setting == "float16":
        return "mixed_float16"
    if _uses_gpu(gpu):
        return "mixed_float16"
    if _has_native_bfloat16(bf16_cpu):
        return "mixed_bfloat16"
    return "float32"


def unsupported_precision(setting: str, gpu: bool | None = None, backend: str | None = None) -> str | None:
    """Why ``setting`` cannot train on this machine, else None.

    Args:
        setting: a ``training.mixed_precision`` setting.
        gpu: Whether a CUDA GPU is used (detected when None).
        backend: The Keras backend (the active one when None).
    """
    backend = backend or keras.backend.backend()
    if setting != "float16" or backend != "tensorflow" or _uses_gpu(gpu):
        return None
    return ("training.mixed_precision: float16 trains only on a CUDA GPU under TensorFlow (on its CPU the U-Net's "
            "MaxPool3D has no float16 kernel); use auto (bfloat16 on CPUs with AVX512-BF16/AMX, float32 otherwise) "
            "or off")


def slow_precision_warning(setting: str, gpu: bool | None = None, bf16_cpu: bool | None = None) -> str | None:
    """A warning when ``setting`` asks for bfloat16 on a CPU that only emulates it, else None.

    Args:
        setting: a ``training.mixed_precision`` setting.
        gpu: Whether a CUDA GPU is used (detected when None).
        bf16_cpu: Whether the CPU has AVX512-BF16/AMX (detected when None).
    """
    if setting != "bfloat16" or _uses_gpu(gpu) or _has_native_bfloat16(bf16_cpu):
        return None
    # Measured on an AVX2-only CPU: densify's training step took 16.4 s in bfloat16 against 2.0 s in float32.
    return ("training.mixed_precision: bfloat16 without AVX512-BF16 or AMX is emulated, about 8 times slower than "
            "float32 for densify's model on one such CPU; 'auto' chooses float32 here")


def apply_mixed_precision(setting: str) -> str:
    """Set the global Keras dtype policy for ``setting`` (call from scripts only).

    Returns:
        The policy name that was set.

    Raises:
        ValueError: float16 under TensorFlow without a CUDA GPU (see :func:`unsupported_precision`).
    """
    gpu = cuda_gpu_available()  # once, for the three questions below
    policy = resolve_mixed_precision(setting, gpu=gpu)
    problem = unsupported_precision(setting, gpu=gpu)
    if problem:
        raise ValueError(problem)
    slow = slow_precision_warning(setting, gpu=gpu)
    if slow:
        logger.warning(slow)
    keras.config.set_dtype_policy(policy)
    logger.info("Mixed precision %r: dtype policy %s", setting, policy)
    return policy
