"""tf.distribute: MirroredStrategy with fit, MultiWorkerMirroredStrategy with the custom step."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from unet3d_keras.distribute import get_strategy, is_chief

WORKER = Path(__file__).with_name("distributed_worker.py")
ROOT = Path(__file__).resolve().parent.parent


def _env(**extra):
    env = {key: value for key, value in os.environ.items() if key != "TF_CONFIG"}
    env.update(KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2", **extra)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_fit_under_mirrored_strategy_on_two_logical_cpus(tmp_path):
    done = subprocess.run([sys.executable, str(WORKER), "mirrored", str(tmp_path)], env=_env(),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "result_0.json").read_text())
    assert result["replicas"] == 2
    losses = result["history"]["loss"]
    assert len(losses) == 2 and all(-1.0 <= v <= 0.0 for v in losses)  # a Dice loss, not summed over replicas


def test_multi_worker_training_ends_with_identical_weights(tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    processes = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        processes.append(subprocess.Popen(
            [sys.executable, str(WORKER), "multi_worker", str(tmp_path)], env=_env(TF_CONFIG=tf_config),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for process in processes:
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr[-3000:]
    first, second = (np.load(tmp_path / f"weights_{i}.npy") for i in range(2))
    np.testing.assert_array_equal(first, second)
    results = [json.loads((tmp_path / f"result_{i}.json").read_text()) for i in range(2)]
    assert [r["replicas"] for r in results] == [2, 2]
    assert [r["chief"] for r in results] == [True, False]
    assert results[0]["history"]["loss"] == results[1]["history"]["loss"]
    assert len(results[0]["history"]["val_loss"]) == 3
    # Only the chief wrote the run's files: the best model and the CSV log with one row per epoch.
    assert (tmp_path / "model.keras").is_file()
    assert len((tmp_path / "training.log").read_text().splitlines()) == 1 + 3
    # Training moved the weights away from the initial ones and lowered the loss.
    assert results[0]["history"]["loss"][-1] < results[0]["history"]["loss"][0]


def test_strategy_settings(monkeypatch):
    assert get_strategy("none") is None
    with pytest.raises(ValueError, match="training.distribution: expected one of none, mirrored, multi_worker"):
        get_strategy("horovod")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="needs the TF_CONFIG environment variable"):
        get_strategy("multi_worker")


@pytest.mark.parametrize("config, chief", [
    (None, True),
    ({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}}, True),
    ({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}, False),
    ({"cluster": {"chief": ["c:0"], "worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}, False),
    ({"cluster": {"chief": ["c:0"], "worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}, True),
])
def test_is_chief(monkeypatch, config, chief):
    if config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", json.dumps(config))
    assert is_chief() is chief


def test_custom_step_resumes_from_the_backup_like_an_uninterrupted_run(tmp_path):
    """fit_multi_worker takes the resumed epoch from ResumableBackup (public attribute), not from the model."""
    import keras
    import tensorflow as tf

    from unet3d_keras.distribute import fit_multi_worker
    from unet3d_keras.training import ResumableBackup

    def build():
        keras.utils.set_random_seed(5)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="relu"), keras.layers.Dense(1)])
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss=keras.losses.mean_squared_error)
        return model

    def batches():
        x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
        while True:
            for start in range(0, 8, 4):
                yield x[start:start + 4], x[start:start + 4].sum(axis=1, keepdims=True)

    def fit(epochs, callbacks):
        return fit_multi_worker(build, tf.distribute.get_strategy(), batches(), batches(), steps_per_epoch=2,
                                validation_steps=1, epochs=epochs, global_batch_size=4, callbacks=callbacks)

    uninterrupted, _ = fit(3, [])
    fit(2, [ResumableBackup(tmp_path / "backup", delete_on_end=False)])
    backup = ResumableBackup(tmp_path / "backup")
    resumed, history = fit(3, [backup])
    assert backup.resumed_epoch == 2 and len(history.history["loss"]) == 1
    for got, expected in zip(resumed.get_weights(), uninterrupted.get_weights()):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
