"""The programs ask TensorFlow for its oneDNN kernels, and leave a user's own choice alone."""

import importlib
import os
import subprocess
import sys

import pytest

from unet3d_keras.onednn import ONEDNN_VARIABLE, enable_onednn

# TensorFlow's own line when its oneDNN kernels are on (printed while its libraries load).
ONEDNN_ON = "oneDNN custom operations are on"


def test_sets_the_variable_before_tensorflow_loads(monkeypatch):
    monkeypatch.delenv(ONEDNN_VARIABLE, raising=False)
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    assert enable_onednn() is True
    assert os.environ[ONEDNN_VARIABLE] == "1"


@pytest.mark.parametrize("value", ["0", "1", ""])
def test_a_users_setting_is_kept(monkeypatch, value):
    monkeypatch.setenv(ONEDNN_VARIABLE, value)
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    assert enable_onednn() is False
    assert os.environ[ONEDNN_VARIABLE] == value


def test_too_late_once_tensorflow_is_loaded(monkeypatch):
    importlib.import_module("tensorflow")  # which read the variable when it loaded

    monkeypatch.delenv(ONEDNN_VARIABLE, raising=False)
    assert enable_onednn() is False
    assert ONEDNN_VARIABLE not in os.environ


def _tensorflow_after_cli(**variables: str) -> tuple[str, str]:
    """The variable as TensorFlow finds it, and TensorFlow's native log, when it loads after the programs'
    shared module in a new interpreter."""
    env = {k: v for k, v in os.environ.items() if k != ONEDNN_VARIABLE}
    env.update(UNET3D_TF_LOGS="1", TF_CPP_MIN_LOG_LEVEL="0", **variables)
    code = f"import os, unet3d_keras.cli; print(os.environ.get('{ONEDNN_VARIABLE}')); import tensorflow"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip(), done.stderr


def test_tensorflow_loads_its_onednn_kernels_under_the_programs():
    # On an AVX2-only CPU the line shows that the variable was read; elsewhere oneDNN is TensorFlow's default.
    value, log = _tensorflow_after_cli()
    assert value == "1"
    assert ONEDNN_ON in log


def test_a_user_can_keep_tensorflows_eigen_kernels():
    value, log = _tensorflow_after_cli(TF_ENABLE_ONEDNN_OPTS="0")
    assert value == "0"
    assert ONEDNN_ON not in log
