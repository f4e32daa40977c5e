"""A multi-worker training run (two local TF_CONFIG workers) writes its files once and resumes after a kill.

Only the chief writes the run's files; when a worker is killed, the job stops (its collectives
cannot complete), and relaunching both workers resumes every one of them at the chief's last
backed-up epoch (the other worker restores a private copy of that backup).
"""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from unet3d_keras.config import load_config
from unet3d_keras.preparation import prepare_data

ROOT = Path(__file__).resolve().parent.parent
RUN = """
import json, sys
from unet3d_keras.config import load_config
from unet3d_keras.pipeline import train_from_config
result = train_from_config(load_config(None, sys.argv[1:]), show_progress=False, verbose=0, evaluate=False)
print("RESULT " + json.dumps({"resumed_from": result.resumed_from, "epochs": result.epochs_trained}))
"""


def _launch(overrides):
    sockets = [socket.socket() for _ in range(2)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    cluster = {"worker": [f"127.0.0.1:{s.getsockname()[1]}" for s in sockets]}
    for s in sockets:
        s.close()
    processes = []
    for index in range(2):
        env = {k: v for k, v in os.environ.items() if k not in ("TF_CONFIG", "XLA_FLAGS")}
        env.update(KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2",
                   TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
                   PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        processes.append(subprocess.Popen([sys.executable, "-c", RUN, *overrides], env=env, text=True,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    return processes


def _results(processes, timeout=300):
    results = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=timeout)
        assert process.returncode == 0, stderr[-3000:]
        results.append(json.loads([line for line in stdout.splitlines() if line.startswith("RESULT ")][-1][7:]))
    return results


def _logged_epochs(log):
    return [int(row["epoch"]) for row in csv.DictReader(open(log, newline=""))]


@pytest.mark.slow
def test_killed_multi_worker_job_resumes_every_worker_at_the_chiefs_backup(tmp_path):
    run = tmp_path / "run"
    overrides = [f"output_dir={run}", "data.n_demo_subjects=6", "data.demo_shape=[12, 12, 12]",
                 "data.image_shape=[8, 8, 8]", "model.depth=2", "model.n_base_filters=2",
                 "training.mixed_precision=off", "training.batch_size=2", "training.n_epochs=6",
                 "training.distribution=multi_worker"]
    prepare_data(load_config(None, overrides), show_progress=False)  # once, before the workers start
    metadata = run / "backup" / "training_metadata.json"
    workers = _launch(overrides)
    deadline = time.monotonic() + 300
    while not metadata.exists() and time.monotonic() < deadline and workers[0].poll() is None:
        time.sleep(0.2)
    workers[1].send_signal(signal.SIGKILL)  # the other worker dies after the chief backed up epoch 1 or later
    for worker in workers:  # the chief cannot finish the next step without it; the scheduler stops the job
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    backed_up = json.loads(metadata.read_text())["epoch"]
    assert 1 <= backed_up < 6

    results = _results(_launch(overrides))
    assert results == [{"resumed_from": backed_up, "epochs": 6}] * 2  # every worker at the same epoch
    assert _logged_epochs(run / "training.log") == list(range(6))  # one row per epoch: the chief's
    state = json.loads((run / "state.json").read_text())
    assert (state["status"], state["epochs"]) == ("complete", 6)
    assert json.loads(metadata.read_text())["epoch"] == 6
    assert (run / "model.keras").is_file()
    # Nothing but the chief's files: no second log, model or temporary file from the other worker.
    names = {path.name for path in run.iterdir()}
    assert not [name for name in names if name.startswith(".") or "worker" in name], names
