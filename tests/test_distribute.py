"""Distributed training equals one device: tf.distribute (TensorFlow) and keras.distribution (JAX).

The tiny U-Net trains 4 steps with the same seed, data order and global batch (4) on one device,
under ``mirrored`` over two local devices, and under ``multi_worker`` with two local processes
(``tests/distributed_worker.py``; a backend and its devices are fixed per process, hence the
subprocesses). Tolerances are float32 round-off: the losses of every step agree to ``rtol=1e-4`` and
the final weights to ``atol=1e-4``, ``1e-3`` with batch normalisation (an Adam step at learning rate
1e-2 moves a weight by up to 1e-2, whatever the size of its gradient, so round-off in a tiny gradient
can move a weight by far more than itself). Measured: about 1e-7 without batch normalisation; with it
4e-5 on CPUs with AVX-512, and 2.9e-4 under JAX on one with AVX2 only (11 of 13346 weights above 1e-4).
The losses: within 1e-5 on AVX-512 CPUs; on the AVX2-only one, tf.distribute's two replicas once gave
the last two of 4 steps' losses 4.8e-5 apart (relative) from one device, the first two within 1e-6.
"""

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


def _env(backend="tensorflow", **extra):
    """The test's environment without any cluster or device settings, plus ``extra``."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("TF_CONFIG", "XLA_FLAGS") and not key.startswith("KERAS_DISTRIBUTION_")}
    env.update(KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2", **extra)
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


LOSS = dict(rtol=1e-4, atol=1e-6)  # Adam carries a reduction's round-off into the later steps
WEIGHTS = dict(rtol=0, atol=1e-4)
WEIGHTS_BN = dict(rtol=0, atol=1e-3)  # the batch statistics' sums are reduced in another order


def _run_all(commands, timeout=600):
    """Runs ``(argv, env)`` pairs at the same time; fails with the stderr of any that failed."""
    processes = [subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for argv, env in commands]
    try:
        errors = [(process.communicate(timeout=timeout)[1], process.returncode) for process in processes]
    finally:
        for process in processes:
            process.kill()
    for stderr, code in errors:
        assert code == 0, stderr[-3000:]


def _result(folder, name):
    return json.loads((folder / f"{name}.json").read_text()), np.load(folder / f"{name}.npy")


def _assert_same_training(folder, name, reference="one_device", weights=WEIGHTS):
    (got, got_weights), (expected, expected_weights) = _result(folder, name), _result(folder, reference)
    np.testing.assert_allclose(got["loss"], expected["loss"], **LOSS)
    np.testing.assert_allclose(got["val_loss"], expected["val_loss"], **LOSS)
    np.testing.assert_allclose(got_weights, expected_weights, **weights)
    initial = np.load(folder / f"{reference.replace('one_device', 'initial')}.npy")
    assert np.abs(expected_weights - initial).max() > 1e-3  # training moved the weights
    return got


@pytest.fixture(scope="module")
def local_runs(tmp_path_factory):
    """One-device and two-device (``mirrored``) runs of both backends, their processes run side by side."""
    folders = {backend: tmp_path_factory.mktemp(backend) for backend in ("tensorflow", "jax")}
    two_cpus = "--xla_force_host_platform_device_count=2"
    _run_all([
        # TensorFlow 2.21 allows one MirroredStrategy per process: one process per variant.
        ([sys.executable, str(WORKER), "local", str(folders["tensorflow"]), "plain"], _env("tensorflow")),
        ([sys.executable, str(WORKER), "local", str(folders["tensorflow"]), "bn"], _env("tensorflow")),
        ([sys.executable, str(WORKER), "local", str(folders["jax"]), "plain,bn"],
         _env("jax", XLA_FLAGS=two_cpus)),
    ])
    return folders


@pytest.mark.slow  # three training processes, about 50 s of CPU together
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_mirrored_on_two_devices_trains_like_one_device(local_runs, backend):
    result = _assert_same_training(local_runs[backend], "mirrored")
    for name in ("one_device", "mirrored", "one_device_bn", "mirrored_bn"):
        # The reported validation loss is the model's: Keras's own under tf.distribute was not (docs/distributed.md).
        reported = _result(local_runs[backend], name)[0]
        np.testing.assert_allclose(reported["val_loss"], reported["own_val_loss"], rtol=1e-5, err_msg=name)
    assert result["devices"] == 2 and _result(local_runs[backend], "one_device")[0]["devices"] == 1
    assert result["loss"][-1] < result["loss"][0]  # a Dice loss in [-1, 0] that went down


@pytest.mark.slow  # three training processes, about 50 s of CPU together
def test_batch_norm_under_tf_mirrored_normalises_each_replica_with_its_half_batch(local_runs):
    """tf.distribute: each replica normalises its half batch with the half's statistics.

    Expected difference from one device: the first-step loss is the mean of the losses of the two
    halves, each normalised on its own (computed independently on one device), not the loss of
    the whole batch; the halves differ in brightness, so the two differ by far more than round-off.
    """
    folder = local_runs["tensorflow"]
    mirrored, one_device = _result(folder, "mirrored_bn")[0], _result(folder, "one_device_bn")[0]
    halves = json.loads((folder / "bn_halves.json").read_text())["loss"]
    np.testing.assert_allclose(mirrored["loss"][0], halves, **LOSS)
    assert abs(one_device["loss"][0] - halves) > 1e-3
    assert mirrored["devices"] == 2


@pytest.mark.slow  # three training processes, about 50 s of CPU together
def test_batch_norm_under_jax_data_parallel_equals_one_device(local_runs):
    """keras.distribution: one global program, so batch statistics are those of the global batch."""
    folder = local_runs["jax"]
    _assert_same_training(folder, "mirrored_bn", reference="one_device_bn", weights=WEIGHTS_BN)
    halves = json.loads((folder / "bn_halves.json").read_text())["loss"]
    assert abs(_result(folder, "mirrored_bn")[0]["loss"][0] - halves) > 1e-3  # not per-half statistics


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_multi_worker_with_two_processes_trains_like_one_device(local_runs, backend, tmp_path):
    ports = _free_ports(2)
    commands = []
    for index in range(2):
        if backend == "tensorflow":
            cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
            extra = {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        else:
            extra = {"KERAS_DISTRIBUTION_JOB_ADDRESSES": f"127.0.0.1:{ports[0]}",
                     "KERAS_DISTRIBUTION_NUM_PROCESSES": "2", "KERAS_DISTRIBUTION_PROCESS_ID": str(index)}
        commands.append(([sys.executable, str(WORKER), "multi_worker", str(tmp_path)], _env(backend, **extra)))
    _run_all(commands, timeout=300)
    for name in ("one_device", "initial"):
        for suffix in (".json", ".npy"):
            source = local_runs[backend] / f"{name}{suffix}"
            if source.exists():
                (tmp_path / source.name).write_bytes(source.read_bytes())
    chief = _assert_same_training(tmp_path, "multi_worker_0")
    other = _assert_same_training(tmp_path, "multi_worker_1")
    assert (chief["chief"], other["chief"]) == (True, False)
    assert chief["devices"] == other["devices"] == 2
    np.testing.assert_array_equal(np.load(tmp_path / "multi_worker_0.npy"), np.load(tmp_path / "multi_worker_1.npy"))


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


def test_process_shard_gives_each_process_its_contiguous_part_of_every_global_batch():
    import keras

    from unet3d_keras.distribute_jax import ProcessShard

    class Batches(keras.utils.PyDataset):
        """Batches of 4, 4 and 3 samples; the sample values are their indices."""

        ends = 0

        def __len__(self):
            return 3

        def __getitem__(self, index):
            rows = np.arange(4 * index, min(4 * index + 4, 11))
            return rows.astype("float32"), -rows

        def on_epoch_end(self):
            self.ends += 1

    data = Batches()
    parts = [ProcessShard(data, n_devices=2, n_processes=2, process=p) for p in range(2)]
    assert [len(part) for part in parts] == [3, 3]
    np.testing.assert_array_equal(parts[0][1][0], [4, 5])
    np.testing.assert_array_equal(parts[1][1][1], [-6, -7])
    # The last batch (3 samples) is cut to 2, one per device; a batch smaller than the devices is filled up.
    np.testing.assert_array_equal(np.concatenate([part[2][0] for part in parts]), [8, 9])
    single = ProcessShard(data, n_devices=4)
    np.testing.assert_array_equal(single[2][0], [8, 9, 10, 8])
    parts[0].on_epoch_end()
    assert data.ends == 1


def test_jax_multi_worker_names_the_missing_coordinator_variables(monkeypatch):
    from unet3d_keras.distribute_jax import initialize

    for name in ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES",
                 "KERAS_DISTRIBUTION_PROCESS_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KERAS_DISTRIBUTION_NUM_PROCESSES", "2")
    with pytest.raises(ValueError) as info:
        initialize()
    assert ("missing: KERAS_DISTRIBUTION_JOB_ADDRESSES, KERAS_DISTRIBUTION_PROCESS_ID" in str(info.value))


def _tensorboard_scalars(log_dir: Path) -> dict[str, dict[str, list[float]]]:
    """Per subfolder (train, validation): the number of event files and each scalar's values in step order."""
    import tensorflow as tf

    found = {}
    for folder in sorted(path for path in log_dir.iterdir() if path.is_dir()):
        files = sorted(folder.glob("events.*"))
        scalars: dict[str, list[float]] = {"event files": [len(files)]}
        for event in (event for file in files for event in tf.compat.v1.train.summary_iterator(str(file))):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "scalars":
                    scalars.setdefault(value.tag, []).append(float(tf.make_ndarray(value.tensor)))
        found[folder.name] = scalars
    return found


@pytest.mark.parametrize("builder", ["unet", "isensee2017"])
def test_validation_callback_reports_what_fit_reports_on_one_device(builder, tmp_path):
    """distribute_tf.Validation (mirrored's validation) gives fit's own val_ logs: same batches, losses, metrics;
    and the other callbacks see what they see in fit: TensorBoard writes one event file per folder, the same values."""
    import keras

    from unet3d_keras.distribute_tf import Validation
    from unet3d_keras.model import isensee2017_model, unet_model_3d

    class Batches(keras.utils.PyDataset):
        """Two batches of 2; which two depends on the epoch (on_epoch_end advances it, as HDF5Dataset does)."""

        def __init__(self, seed):
            super().__init__()
            self.epoch = 0
            self.x = np.random.default_rng(seed).random((12, 16, 16, 16, 1), dtype=np.float32)

        def __len__(self):
            return 2

        def __getitem__(self, index):
            start = (self.epoch * 4 + 2 * index) % 12
            x = self.x[start:start + 2]
            return x, np.concatenate([x > 0.6, x < 0.3], axis=-1).astype("float32")

        def on_epoch_end(self):
            self.epoch += 1

    def run(validate_with_callback):
        keras.utils.set_random_seed(3)
        if builder == "unet":
            model = unet_model_3d((16, 16, 16, 1), n_labels=2, depth=2, n_base_filters=4)
        else:
            model = isensee2017_model((16, 16, 16, 1), n_labels=2, n_base_filters=4, depth=3, n_segmentation_levels=2)
        validation = Batches(1)
        log_dir = tmp_path / ("callback" if validate_with_callback else "fit")
        board = keras.callbacks.TensorBoard(str(log_dir), write_graph=False)
        if validate_with_callback:
            history = model.fit(Batches(0), epochs=3, verbose=0, shuffle=False,
                                callbacks=[Validation(validation, [board]), board])
        else:
            history = model.fit(Batches(0), validation_data=validation, epochs=3, verbose=0, shuffle=False,
                                callbacks=[board])
        return history.history, validation.epoch, _tensorboard_scalars(log_dir)

    (expected, expected_epoch, expected_board), (got, got_epoch, got_board) = run(False), run(True)
    assert sorted(got) == sorted(expected) and "val_loss" in got
    assert builder != "unet" or "val_dice_coefficient" in got  # the compiled metrics too
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-6, err_msg=name)
    assert got_epoch == expected_epoch  # the validation batches advanced through the same epochs
    assert sorted(got_board) == ["train", "validation"] == sorted(expected_board)
    for folder, scalars in expected_board.items():
        assert sorted(got_board[folder]) == sorted(scalars) and scalars["event files"] == [1], folder
        assert len(scalars["epoch_loss"]) == 3, folder
        for tag, values in scalars.items():
            np.testing.assert_allclose(got_board[folder][tag], values, rtol=1e-6, err_msg=f"{folder} {tag}")
