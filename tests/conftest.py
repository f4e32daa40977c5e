"""Shared pytest setup: quiet TensorFlow, the ``slow`` marker, small helpers."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from unet3d_keras.onednn import enable_onednn  # noqa: E402

# The kernels that the programs run on (unet3d_keras.onednn), whatever the CPU: on AVX2-only CPUs
# TensorFlow would otherwise fall back on its slower Eigen kernels.
enable_onednn()


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running test (still run in CI)")


@pytest.fixture
def channels_first():
    """Switch Keras to channels_first for one test and restore the format after."""
    import keras

    previous = keras.config.image_data_format()
    keras.config.set_image_data_format("channels_first")
    try:
        yield
    finally:
        keras.config.set_image_data_format(previous)
