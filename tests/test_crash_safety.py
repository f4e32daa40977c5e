"""SIGKILL at a random moment of each long operation: every file is the old or the new complete version.

Each test runs a script as the user does, kills it (SIGKILL, no clean-up possible) after a
random delay drawn over the length of an uninterrupted run, then checks every file the
operation writes -- HDF5 data file, split, checkpoints, resolved config, predictions, CSVs,
pictures -- and reruns the same command, which must finish the job: same outputs as an
uninterrupted run, no temporary file left.

By default each test kills once (a new random moment on every run of the suite). For the
reliability figures: ``UNET3D_KILL_REPEAT=20 python -m pytest tests/test_crash_safety.py``
(``UNET3D_KILL_SEED`` picks the random moments, reported in each failure).
"""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from data_helpers import make_brats_folder
from reliability_helpers import (
    SCRIPTS,
    call_main,
    check_all_complete,
    check_complete,
    snapshot,
    temporaries,
)

REPEAT = int(os.environ.get("UNET3D_KILL_REPEAT", "1"))
SEED = int(os.environ.get("UNET3D_KILL_SEED", str(random.SystemRandom().randrange(10**6))))
ROOT = Path(__file__).resolve().parent.parent

iterations = pytest.mark.parametrize("iteration", range(REPEAT))
pytestmark = pytest.mark.slow


def moment(name: str, iteration: int, longest: float, shortest: float = 0.3) -> float:
    """The random delay of one kill, reproducible from ``UNET3D_KILL_SEED``."""
    return random.Random(f"{SEED}-{name}-{iteration}").uniform(min(shortest, longest), longest)


def _keras_loaded(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/maps") as maps:
            return "tensorflow" in maps.read()
    except OSError:
        return False


@dataclass
class Watched:
    killed: bool
    loaded: float  # seconds until TensorFlow was mapped (0 when the script does not wait for it)
    seconds: float  # until the process ended or was killed
    returncode: int


def watch(script: str, argv: list, kill_after: float | None = None, after_keras: bool = False,
          name: str = "") -> Watched:
    """Run ``script``; with ``kill_after``, SIGKILL its process group that long after it started --
    or, with ``after_keras``, after it finished loading TensorFlow (before that it writes nothing,
    and how long the import takes depends on the machine's load far more than the work does)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    start = time.monotonic()
    process = subprocess.Popen([sys.executable, str(SCRIPTS[script]), *map(str, argv)], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    loaded = None if after_keras else 0.0
    killed = False
    while process.poll() is None:
        now = time.monotonic() - start
        if loaded is None and _keras_loaded(process.pid):
            loaded = now
        if kill_after is not None and loaded is not None and now >= loaded + kill_after:
            os.killpg(process.pid, signal.SIGKILL)
            killed = True
            break
        time.sleep(0.01)
    _, err = process.communicate(timeout=120)
    result = Watched(killed, loaded if loaded is not None else 0.0, time.monotonic() - start, process.returncode)
    if kill_after is not None:
        log_kill(name or script, kill_after, killed, result.seconds)
    elif result.returncode != 0:
        raise AssertionError(err.decode(errors="replace")[-3000:])
    return result


def log_kill(operation: str, delay: float, killed: bool, seconds: float) -> None:
    """With ``UNET3D_KILL_LOG=path``, record where each kill landed (JSON lines), for the report."""
    target = os.environ.get("UNET3D_KILL_LOG")
    if target:
        with open(target, "a", encoding="utf-8") as stream:
            stream.write(json.dumps({"operation": operation, "delay": round(delay, 3), "killed": killed,
                                     "seconds": round(seconds, 3)}) + "\n")


def timed_run(script: str, argv: list) -> float:
    """Run to completion (it must succeed); returns the wall time in seconds."""
    return watch(script, argv).seconds


def timed_call(script: str, argv: list) -> float:
    """:func:`call_main` that must succeed; returns its wall time (no interpreter start-up)."""
    start = time.monotonic()
    status, _, err = call_main(script, argv)
    assert status == 0, err[-3000:]
    return time.monotonic() - start


def relative(files: dict[str, tuple], root: Path) -> dict[str, tuple]:
    return {os.path.relpath(path, root): value for path, value in files.items()}


def assert_old_or_new(folder: Path, old: dict, new: dict, context: str) -> None:
    """Every file of ``folder`` (temporaries aside) is byte for byte its old or its new version."""
    for name, value in relative(snapshot(folder), folder).items():
        if any(part.startswith(".") and ".tmp-" in part for part in Path(name).parts):
            continue
        assert value in (old.get(name), new.get(name)), f"{context}: {name} is neither the old nor the new version"


# --------------------------------------------------------------------------------------------
# Training: demo data, HDF5 file, split, resolved config, checkpoints, log, state, scores


def train_config(folder: Path, name: str = "run") -> Path:
    config = {
        "output_dir": name, "seed": 5,
        "data": {"n_demo_subjects": 4, "demo_shape": [20, 20, 20], "image_shape": [16, 16, 16]},
        "model": {"depth": 2, "n_base_filters": 4},
        "training": {"n_epochs": 2, "batch_size": 1, "validation_batch_size": 1, "mixed_precision": "off",
                     "workers": 0, "early_stopping_patience": None},
        "prediction": {"overlap": 0},
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@dataclass
class Trained:
    folder: Path
    run: Path
    config: Path
    seconds: float  # of work, after loading Keras


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Trained:
    """An uninterrupted reference run (its wall time sizes the kill window)."""
    folder = tmp_path_factory.mktemp("reference")
    config = train_config(folder)
    run = watch("train", ["--config", config, "--quiet"], after_keras=True)
    return Trained(folder, folder / "run", config, run.seconds - run.loaded)


def _rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def _skip_tensorboard(path: Path) -> bool:
    return "tensorboard" in path.parts  # append-only event records; TensorBoard skips a torn last record


@iterations
def test_train_killed_anywhere_resumes_to_the_uninterrupted_run(trained: Trained, tmp_path: Path, iteration: int):
    config = train_config(tmp_path)
    run = tmp_path / "run"
    delay = moment("train", iteration, trained.seconds, shortest=0)
    killed = watch("train", ["--config", config, "--quiet"], kill_after=delay, after_keras=True).killed
    context = f"killed={killed} after {delay:.2f} s (UNET3D_KILL_SEED={SEED}, iteration {iteration})"
    if run.exists():
        check_all_complete(run, skip=_skip_tensorboard)

    timed_run("train", ["--config", config, "--quiet"])
    assert not temporaries(run), context
    assert check_all_complete(run, skip=_skip_tensorboard) > 0
    ours, theirs = relative(snapshot(run), run), relative(snapshot(trained.run), trained.run)
    not_tb = [name for name in theirs if not name.startswith("tensorboard")]
    assert sorted(n for n in ours if not n.startswith("tensorboard")) == sorted(not_tb), context
    for name in ("training.log", "validation_scores.csv", "state.json", "training_ids.json",
                 "validation_ids.json"):
        assert ours[name] == theirs[name], f"{context}: {name} differs from the uninterrupted run"
    for name in not_tb:
        if name.startswith("demo_data"):
            assert ours[name] == theirs[name], f"{context}: {name}"
    saved = yaml.safe_load((run / "config.yaml").read_text())
    reference = yaml.safe_load((trained.run / "config.yaml").read_text())
    assert {**saved, "output_dir": None} == {**reference, "output_dir": None}, context
    from unet3d_keras.data import open_data_file
    from unet3d_keras.training import load_old_model

    with open_data_file(run / "data.h5") as a, open_data_file(trained.run / "data.h5") as b:
        for node in ("data", "truth", "affine", "subject_ids"):
            np.testing.assert_array_equal(a.get_node(f"/{node}")[:], b.get_node(f"/{node}")[:], err_msg=context)
    for x, y in zip(load_old_model(run / "model.keras").get_weights(),
                    load_old_model(trained.run / "model.keras").get_weights()):
        np.testing.assert_array_equal(x, y, err_msg=context)


# --------------------------------------------------------------------------------------------
# The HDF5 writer alone (most kills land inside it)


_WRITER = """
import json, sys
from unet3d_keras.data import write_data_to_file
files, out_file = json.load(open(sys.argv[1]))
write_data_to_file(files, out_file, (12, 12, 12), show_progress=False)
"""


def _hdf5_arrays(path: Path) -> dict[str, np.ndarray]:
    from unet3d_keras.data import open_data_file

    with open_data_file(path) as handle:
        return {node: handle.get_node(f"/{node}")[:] for node in ("data", "truth", "affine")}


@iterations
def test_hdf5_writer_killed_anywhere_keeps_the_old_or_the_new_file(trained: Trained, tmp_path: Path,
                                                                  iteration: int):
    from unet3d_keras.data import write_data_to_file

    subjects = sorted(p for p in (trained.run / "demo_data").iterdir() if p.is_dir())
    files = [[str(s / f"{s.name}_{m}.nii.gz") for m in ("t1", "t1ce", "flair", "t2", "seg")] for s in subjects]
    files = files * 3  # 15 subjects: a longer write
    write_data_to_file(files[:2], tmp_path / "old.h5", (12, 12, 12), show_progress=False)
    write_data_to_file(files, tmp_path / "new.h5", (12, 12, 12), show_progress=False)
    old, new = _hdf5_arrays(tmp_path / "old.h5"), _hdf5_arrays(tmp_path / "new.h5")
    (tmp_path / "out").mkdir()
    target = tmp_path / "out" / "data.h5"
    shutil.copy(tmp_path / "old.h5", target)
    arguments = tmp_path / "arguments.json"
    arguments.write_text(json.dumps([files, str(target)]))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    command = [sys.executable, "-c", _WRITER, str(arguments)]
    start = time.monotonic()
    subprocess.run(command, env=env, check=True, capture_output=True)
    longest = time.monotonic() - start
    shutil.copy(tmp_path / "old.h5", target)

    delay = moment("hdf5", iteration, longest)
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        process.wait(timeout=delay)
        killed = False
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        killed = True
    log_kill("hdf5", delay, killed, delay)
    context = f"killed after {delay:.2f} s (UNET3D_KILL_SEED={SEED}, iteration {iteration})"
    check_complete(target)
    found = _hdf5_arrays(target)
    assert any(all(np.array_equal(found[k], version[k]) for k in found) for version in (old, new)), context

    subprocess.run(command, env=env, check=True, capture_output=True)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["data.h5"], context
    found = _hdf5_arrays(target)
    assert all(np.array_equal(found[k], new[k]) for k in found), context


# --------------------------------------------------------------------------------------------
# Prediction: label maps, inputs, truth and pictures per subject


@dataclass
class Predicted:
    folder: Path
    model_b: Path
    raw: Path  # new subjects (no truth) for --input
    old: dict  # mode -> {relative path: (size, sha1)} with the reference model
    new: dict  # mode -> same with model B
    seconds: dict  # mode -> wall time with model B after loading Keras


def _predict_argv(trained: Trained, mode: str, model: Path, output: Path, raw: Path) -> list:
    argv = ["--config", trained.config, "--quiet", "--model", model, "--output", output]
    return argv + (["--input", raw] if mode == "input" else [])


@pytest.fixture(scope="module")
def predicted(trained: Trained, tmp_path_factory) -> Predicted:
    """Predictions of every mode with the reference model (old) and a second model (new)."""
    from unet3d_keras.training import load_old_model

    folder = tmp_path_factory.mktemp("predicted")
    model = load_old_model(trained.run / "model.keras")
    rng = np.random.default_rng(0)
    model.set_weights([w * 1.05 + rng.normal(0, 0.05, w.shape).astype(w.dtype) for w in model.get_weights()])
    model_b = folder / "model_b.keras"
    model.save(model_b)
    raw = folder / "raw"
    for subject in sorted((trained.run / "demo_data").iterdir()):
        if subject.is_dir():
            shutil.copytree(subject, raw / subject.name, ignore=shutil.ignore_patterns("*_seg.nii.gz"))
    old, new, seconds = {}, {}, {}
    for mode in ("validation", "input"):
        timed_call("predict", _predict_argv(trained, mode, trained.run / "model.keras", folder / f"old-{mode}", raw))
        old[mode] = relative(snapshot(folder / f"old-{mode}"), folder / f"old-{mode}")
        run = watch("predict", _predict_argv(trained, mode, model_b, folder / f"new-{mode}", raw), after_keras=True)
        seconds[mode] = run.seconds - run.loaded
        new[mode] = relative(snapshot(folder / f"new-{mode}"), folder / f"new-{mode}")
        assert set(old[mode]) == set(new[mode]) and old[mode] != new[mode]
    return Predicted(folder, model_b, raw, old, new, seconds)


@pytest.mark.parametrize("mode", ["validation", "input"])
@iterations
def test_predict_killed_anywhere_leaves_old_or_new_files(trained: Trained, predicted: Predicted, tmp_path: Path,
                                                         mode: str, iteration: int):
    output = tmp_path / "out"
    shutil.copytree(predicted.folder / f"old-{mode}", output)
    argv = _predict_argv(trained, mode, predicted.model_b, output, predicted.raw)
    delay = moment(f"predict-{mode}", iteration, predicted.seconds[mode], shortest=0)
    killed = watch("predict", argv, kill_after=delay, after_keras=True, name=f"predict-{mode}").killed
    context = f"killed={killed} after {delay:.2f} s (UNET3D_KILL_SEED={SEED}, iteration {iteration})"
    assert_old_or_new(output, predicted.old[mode], predicted.new[mode], context)
    check_all_complete(output)

    timed_run("predict", argv)
    assert not temporaries(output), context
    assert relative(snapshot(output), output) == predicted.new[mode], context


# --------------------------------------------------------------------------------------------
# Evaluation: CSV, box plot, loss graph


@iterations
def test_evaluate_killed_anywhere_leaves_old_or_new_files(trained: Trained, predicted: Predicted,
                                                          tmp_path: Path, iteration: int):
    def argv(predictions: Path, output: Path) -> list:
        return [predictions, "--output", output, "--training-log", trained.run / "training.log"]

    old, new = tmp_path / "old", tmp_path / "new"
    assert call_main("evaluate", argv(predicted.folder / "old-validation", old))[0] == 0
    seconds = timed_run("evaluate", argv(predicted.folder / "new-validation", new))
    old_files, new_files = relative(snapshot(old), old), relative(snapshot(new), new)
    assert set(old_files) == set(new_files) and old_files != new_files
    output = tmp_path / "out"
    shutil.copytree(old, output)
    delay = moment("evaluate", iteration, seconds)
    killed = watch("evaluate", argv(predicted.folder / "new-validation", output), kill_after=delay).killed
    context = f"killed={killed} after {delay:.2f} s (UNET3D_KILL_SEED={SEED}, iteration {iteration})"
    assert_old_or_new(output, old_files, new_files, context)
    check_all_complete(output)

    timed_run("evaluate", argv(predicted.folder / "new-validation", output))
    assert not temporaries(output), context
    assert relative(snapshot(output), output) == new_files, context


# --------------------------------------------------------------------------------------------
# Densify: one label map written at the end of a time-bounded training


@iterations
def test_densify_killed_anywhere_leaves_the_old_or_a_complete_new_label_map(trained: Trained, tmp_path: Path,
                                                                           iteration: int):
    subject = sorted(p for p in (trained.run / "demo_data").iterdir() if p.is_dir())[0]
    truth = nib.load(subject / f"{subject.name}_seg.nii.gz")
    sparse = np.full(truth.shape, 255, np.uint8)
    sparse[10] = np.asarray(truth.dataobj)[10]
    nib.save(nib.Nifti1Image(sparse, truth.affine), tmp_path / "sparse.nii.gz")
    output = tmp_path / "dense.nii.gz"

    def argv(seed: int) -> list:
        return ["--image", subject / f"{subject.name}_t1.nii.gz", "--labels", tmp_path / "sparse.nii.gz",
                "--output", output, "--steps", "2", "--seed", seed, "--quiet",
                "--set", "model.depth=2", "--set", "model.n_base_filters=2", "--set", "training.batch_size=1",
                "--set", "training.mixed_precision=off"]

    assert call_main("densify", argv(1))[0] == 0
    old = output.read_bytes()
    reference = watch("densify", argv(2), after_keras=True)
    output.write_bytes(old)
    delay = moment("densify", iteration, reference.seconds - reference.loaded, shortest=0)
    killed = watch("densify", argv(2), kill_after=delay, after_keras=True).killed
    context = f"killed={killed} after {delay:.2f} s (UNET3D_KILL_SEED={SEED}, iteration {iteration})"
    check_complete(output)  # the old map, or a complete new one (the two runs differ in seed)
    check_complete(tmp_path / "dense_scores.png")  # likewise the picture of the first run or a new one
    labels = np.asarray(nib.load(output).dataobj)
    assert labels.shape == truth.shape and set(np.unique(labels)) <= {0, 1, 2, 4}, context

    timed_run("densify", argv(2))
    check_complete(output)
    check_complete(tmp_path / "dense_scores.png")
    assert not temporaries(tmp_path), context
    np.testing.assert_allclose(nib.load(output).affine, truth.affine)


# --------------------------------------------------------------------------------------------
# BraTS preprocessing: one folder per subject, swapped in when complete


@iterations
def test_preprocess_killed_anywhere_leaves_complete_subject_folders(tmp_path: Path, iteration: int):
    make_brats_folder(str(tmp_path / "brats"), [f"S{i}" for i in range(5)], np.random.default_rng(3),
                      shape=(24, 24, 24), group="")
    old, new, output = tmp_path / "old", tmp_path / "new", tmp_path / "out"
    from brats.preprocess import main

    assert main([str(tmp_path / "brats"), str(old), "--no-bias-correction", "--quiet"]) == 0
    argv = [tmp_path / "brats", output, "--overwrite", "--shrink-factor", "2", "--iterations", "10", "10",
            "--quiet"]
    seconds = timed_run("preprocess", [tmp_path / "brats", new, *argv[2:]])
    old_files, new_files = relative(snapshot(old), old), relative(snapshot(new), new)
    shutil.copytree(old, output)
    delay = moment("preprocess", iteration, seconds)
    killed = watch("preprocess", argv, kill_after=delay).killed
    context = f"killed={killed} after {delay:.2f} s (UNET3D_KILL_SEED={SEED}, iteration {iteration})"
    check_all_complete(output)
    for folder in sorted(p for p in output.iterdir() if not p.name.startswith(".")):
        files = {f"{folder.name}/{name}": value for name, value in relative(snapshot(folder), folder).items()}
        versions = [{k: v for k, v in version.items() if k.startswith(f"{folder.name}/")}
                    for version in (old_files, new_files)]
        assert files in versions, f"{context}: {folder.name} is neither the old nor the new subject folder"

    timed_run("preprocess", argv)
    assert not temporaries(output), context
    assert relative(snapshot(output), output) == new_files, context
