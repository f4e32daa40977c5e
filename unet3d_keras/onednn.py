"""Turning on TensorFlow's oneDNN CPU kernels where TensorFlow leaves them off.

TensorFlow's x86 wheels carry oneDNN kernels but turn them on by default only on CPUs with
the neural-network instructions of newer processors (AVX-512 VNNI or BF16, AMX, AVX-VNNI). On a
CPU with AVX2 only (an AMD EPYC here) they are off, and TensorFlow falls back on its Eigen
kernels, whose 3D-convolution gradients are slow: measured on such a CPU (two threads), a
training step of densify's model took 2.6 to 2.9 times as long with them as with oneDNN's, one of
the model of ``config.yaml`` 3.7 times (``benchmarks/densify_backends.py``,
``benchmarks/onednn_kernels.py``). The programs therefore set ``TF_ENABLE_ONEDNN_OPTS=1`` before
TensorFlow loads, unless the user set the variable (``TF_ENABLE_ONEDNN_OPTS=0`` keeps the Eigen
kernels). On the CPUs where oneDNN is TensorFlow's default this changes nothing.
"""

from __future__ import annotations

import os
import sys

__all__ = ["ONEDNN_VARIABLE", "enable_onednn"]

#: TensorFlow's switch for its oneDNN kernels, read once when TensorFlow loads.
ONEDNN_VARIABLE = "TF_ENABLE_ONEDNN_OPTS"


def enable_onednn() -> bool:
    """Ask TensorFlow for its oneDNN kernels, unless the user chose or TensorFlow already loaded.

    Call it before TensorFlow is imported (the command-line programs do, through
    :mod:`unet3d_keras.cli`); the library itself never changes the environment.

    Returns:
        Whether this call set ``TF_ENABLE_ONEDNN_OPTS`` (False when the user had set it, or when
        TensorFlow was already imported and would no longer read it).
    """
    if ONEDNN_VARIABLE in os.environ or "tensorflow" in sys.modules:
        return False
    os.environ[ONEDNN_VARIABLE] = "1"
    return True
