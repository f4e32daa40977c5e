"""Inputs that look valid but are not, one process per run folder, and a first screen of our own lines.

Implausible intensities (a 4x4x4 block of 3e38 in one modality), a damaged chunk of the data file,
a run folder in use by another process (and one left locked by a killed process), and
TensorFlow's native log on stderr. The scripts run in this process through ``main(argv)`` where the
exit status and the error line are what is checked, and as real interpreters where the test is
about processes or stderr.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
import tables
import yaml
from scipy import ndimage

from data_helpers import make_brats_folder
from reliability_helpers import ROOT, SCRIPTS, call_main, error_lines, snapshot

MODALITIES = ("t1", "t1ce", "flair", "t2")
BLOCK = (slice(18, 22), slice(18, 22), slice(18, 22))  # 4x4x4 voxels inside the demo head (40^3)


def run_config(folder: Path) -> Path:
    """A tiny demo run: 4 subjects of 40^3 resampled to 32^3, depth 2, 4 filters, 1 epoch.

    32^3 rather than 16^3: the network's receptive field (about 10 voxels either way) must leave
    most of the volume out of reach of a 4x4x4 block for the clipping test to mean anything."""
    config = {
        "output_dir": "run", "seed": 5,
        "data": {"n_demo_subjects": 4, "demo_shape": [40, 40, 40], "image_shape": [32, 32, 32]},
        "model": {"depth": 2, "n_base_filters": 4},
        "training": {"n_epochs": 1, "batch_size": 1, "validation_batch_size": 1, "mixed_precision": "off",
                     "workers": 0, "early_stopping_patience": None},
        "prediction": {"overlap": 0},
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def train(config: Path, *argv: str) -> tuple[int, str, str]:
    return call_main("train", ["--config", config, "--quiet", *argv])


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """The config of a finished tiny run (its folder is ``<config folder>/run``)."""
    config = run_config(tmp_path_factory.mktemp("guarded"))
    status, _, err = train(config)
    assert status == 0, err[-3000:]
    return config


def demo_subject_files(config: Path, folder: Path, block_value: float | None = None) -> list[str]:
    """The modalities of the run's last demo subject written to ``folder`` as float32, optionally with
    the 4x4x4 block of FLAIR set to ``block_value``."""
    source = sorted((config.parent / "run" / "demo_data").glob("Demo_*"))[-1]
    folder.mkdir(parents=True)
    files = []
    for modality in MODALITIES:
        image = nib.load(source / f"{source.name}_{modality}.nii.gz")
        data = np.asarray(image.dataobj, dtype=np.float32)
        if modality == "flair" and block_value is not None:
            data[BLOCK] = block_value
        nib.save(nib.Nifti1Image(data, image.affine), folder / f"{modality}.nii.gz")
        files.append(str(folder / f"{modality}.nii.gz"))
    return files


# --------------------------------------------------------------------------------------------
# Plausible intensities


def test_robust_bounds_and_clipping_by_hand():
    from unet3d_keras.errors import DataError
    from unet3d_keras.intensity_checks import MAX_ROBUST_Z, check_intensities, plausible_range

    data = np.zeros((9, 9, 9), np.float32)
    data[2:7, 2:7, 2:7] = np.arange(125, dtype=np.float32).reshape(5, 5, 5) + 100  # 100..224
    bounds = plausible_range(data)
    # non-zero voxels 100..224: median 162, absolute deviations 0..62, their median 31
    assert (bounds.median, bounds.robust_sd) == (162.0, pytest.approx(1.4826 * 31))
    assert bounds.high == pytest.approx(162 + MAX_ROBUST_Z * 1.4826 * 31)
    assert check_intensities(data, "x.nii.gz") is data  # plausible: the same array back

    bad = data.copy()
    bad[3, 3, 3], bad[4, 4, 4] = 3e38, -1e9  # the first outside both ways, the second beyond the low bound
    with pytest.raises(DataError, match=r"s1: x.nii.gz: 2 voxels hold implausible intensities \(-1e\+09 to 3e\+38\)"):
        check_intensities(bad, "x.nii.gz", "s1")
    clipped = check_intensities(bad, "x.nii.gz", "s1", clip=True)
    assert clipped.dtype == np.float32
    expected = data.copy()
    expected[3, 3, 3], expected[4, 4, 4] = 224, 100  # the plausible non-zero range of the image
    np.testing.assert_array_equal(clipped, expected)

    mask = (data > 0).astype(np.int16)  # robust SD 0: scaled by the value itself
    assert plausible_range(mask).robust_sd == 1.0
    assert plausible_range(np.zeros((3, 3, 3))) is None


def test_block_of_3e38_is_refused_or_clipped_only_where_it_is(trained: Path, tmp_path: Path):
    """The issue's case: FLAIR of a demo subject with a 4x4x4 block of 3e38, predicted with --input."""
    def predict(name: str, files: list[str], *extra: str) -> tuple[int, str, np.ndarray | None]:
        out = tmp_path / f"{name}_out"
        status, _, err = call_main("predict", ["--config", trained, "--quiet", "--input", *files,
                                               "--output", out, *extra])
        written = sorted(out.glob("*.nii.gz")) if out.exists() else []
        return status, err, np.asarray(nib.load(written[0]).dataobj) if written else None

    demo_subject_files(trained, tmp_path / "clean")
    status, err, clean = predict("clean", [tmp_path / "clean"])  # a subject folder: the subject is "clean"
    assert status == 0, err[-3000:]
    bad = demo_subject_files(trained, tmp_path / "bad", 3e38)
    status, err, refused = predict("bad", [tmp_path / "bad"])
    assert status == 1 and refused is None, err[-3000:]
    [line] = error_lines(err)
    assert line.startswith(f"error: subject bad: {bad[2]}: 64 voxels hold implausible intensities (3e+38 to "
                           "3e+38), more than 10000 robust standard deviations ("), line
    assert line.endswith("or clip such voxels to the image's plausible range with data.clip_outliers: true in the "
                         "config (--clip-outliers for unet3d-densify)"), line

    status, err, clipped = predict("clip", [tmp_path / "bad"], "--set", "data.clip_outliers=true")
    assert status == 0 and "64 voxels hold implausible intensities" in err and "clipped" in err, err[-3000:]
    assert len(np.unique(clean)) >= 3  # a label map that a change of input far from the block would move
    block = np.zeros(clean.shape, bool)
    block[BLOCK] = True
    # The block's values become the image's brightest plausible value: the network sees a bright
    # patch, so the label map may change inside the block and next to it, nowhere else (measured:
    # 3 voxels, all within 2 of the block; 4 allows for the linear resampling to 32^3 and back).
    near = ndimage.binary_dilation(block, iterations=4)
    assert not np.any((clipped != clean) & ~near), np.argwhere((clipped != clean) & ~near)


def test_implausible_stored_value_stops_training_reads(trained: Path, tmp_path: Path):
    from unet3d_keras.data import open_data_file
    from unet3d_keras.errors import DataError
    from unet3d_keras.samples import read_sample

    path = tmp_path / "data.h5"
    path.write_bytes((trained.parent / "run" / "data.h5").read_bytes())
    with tables.open_file(path, "a") as handle:  # PyTables: h5py has no blosc filter to write with
        handle.root.data[1, 2, 5, 5, 5] = 3e38  # z-scores: 3e38 cannot come from the file's statistics
        subject = handle.root.subject_ids[1].decode()
    with open_data_file(path) as data_file:
        read_sample(data_file, (0, 0, 0, 0))
        with pytest.raises(DataError, match=rf"data.h5: subject {subject} \(index 1\): 1 stored voxels hold "
                                            r"implausible normalised values \(3e\+38 to 3e\+38"):
            read_sample(data_file, (1, 0, 0, 0))
        read_sample(data_file, (1, 8, 8, 8), patch_shape=(8, 8, 8))  # a patch that leaves the voxel out


# --------------------------------------------------------------------------------------------
# A damaged chunk of the data file


def zero_inside_chunk(data_file: Path, subject: int) -> None:
    """Overwrite 64 bytes in the middle of the compressed /data chunk of ``subject`` with zeros."""
    with h5py.File(data_file, "r") as handle:
        data = handle["data"]
        assert data.chunks[0] == 1  # one subject per chunk
        info = next(data.id.get_chunk_info(i) for i in range(data.id.get_num_chunks())
                    if data.id.get_chunk_info(i).chunk_offset[0] == subject)
    with open(data_file, "r+b") as stream:
        stream.seek(info.byte_offset + info.size // 3)
        stream.write(b"\0" * 64)


@pytest.mark.slow
def test_damaged_chunk_stops_training_and_prediction_with_the_subject_and_the_remedy(tmp_path: Path):
    config = run_config(tmp_path)
    run = tmp_path / "run"
    status, _, err = train(config)
    assert status == 0, err[-3000:]
    split = yaml.safe_load((run / "training_ids.json").read_text())
    validation = yaml.safe_load((run / "validation_ids.json").read_text())
    zero_inside_chunk(run / "data.h5", split["indices"][0])
    zero_inside_chunk(run / "data.h5", validation["indices"][0])
    kept = {name: value for name, value in snapshot(run).items() if "/backup/" in name or name.endswith(".keras")}

    status, _, err = train(config, "--set", "training.n_epochs=2")  # resume: training reads the samples
    assert status == 2, err[-3000:]
    [line] = error_lines(err)
    assert err.strip().splitlines()[-1] == line
    subjects = {split["subject_ids"][0], validation["subject_ids"][0]}
    assert f"error: {run / 'data.h5'}: subject " in line and any(f"subject {s} (index" in line for s in subjects)
    assert f"delete {run / 'data.h5'} and rerun the same command" in line, line
    assert {n: v for n, v in snapshot(run).items() if n in kept} == kept  # last checkpoint and model intact

    status, _, err = call_main("predict", ["--config", config, "--quiet", "--output", tmp_path / "pred"])
    assert status == 2, err[-3000:]
    assert error_lines(err) == [err.strip().splitlines()[-1]]
    assert f"subject {validation['subject_ids'][0]} (index {validation['indices'][0]}) cannot be read" in err

    (run / "data.h5").unlink()  # the remedy the message gives: the data file is rebuilt, training resumes
    status, out, err = train(config, "--set", "training.n_epochs=2")
    assert status == 0, err[-3000:]
    assert "(2 epochs)" in out
    assert len((run / "training.log").read_text().splitlines()) == 3  # header, epoch 0 (kept), epoch 1


# --------------------------------------------------------------------------------------------
# One process per run folder


HOLDER = """
import sys, time
from unet3d_keras.run_lock import run_folder_lock
with run_folder_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(600)
"""


def hold_lock(folder: Path) -> subprocess.Popen:
    """Another process holding ``folder``'s lock (returns once it holds it)."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE, text=True,
                              cwd=ROOT)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_lock_names_the_holder_and_a_killed_holder_leaves_a_stale_lock(tmp_path: Path, caplog):
    from unet3d_keras.run_lock import LOCK_NAME, RunFolderLocked, lock_holder, run_folder_lock

    folder = tmp_path / "run"
    holder = hold_lock(folder)
    try:
        assert lock_holder(folder) == holder.pid
        with pytest.raises(RunFolderLocked, match=rf"{folder}: this output_dir is in use by process {holder.pid}"):
            with run_folder_lock(folder, "output_dir"):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert lock_holder(folder) == holder.pid  # the killed holder's file stays behind
    with caplog.at_level(logging.INFO, logger="unet3d_keras.run_lock"):
        with run_folder_lock(folder) as lock:
            assert lock_holder(folder) == os.getpid()
            with run_folder_lock(folder):  # taken again by its holder: allowed, and the outer one keeps it
                pass
            assert lock.exists()
    assert f"taking over the lock of process {holder.pid}" in caplog.text
    assert not (folder / LOCK_NAME).exists()


def test_scripts_are_refused_in_a_folder_in_use_and_proceed_once_its_holder_is_killed(trained: Path,
                                                                                       tmp_path: Path):
    run = trained.parent / "run"
    brats = tmp_path / "brats"
    make_brats_folder(str(brats), ["S1"], np.random.default_rng(3), shape=(12, 12, 12), group="")
    preprocess = [sys.executable, str(SCRIPTS["preprocess"]), str(brats), str(run), "--no-bias-correction"]
    holder = hold_lock(run)
    before = snapshot(run)  # the holder's lock file included
    try:
        message = f"{run}: this output_dir is in use by process {holder.pid}"
        status, _, err = train(trained)
        assert status == 2 and error_lines(err) == [f"error: {message} (lock file {run / '.unet3d.lock'}); wait "
                                                    "until it ends, stop it, or choose another folder"], err
        done = subprocess.run(preprocess, capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert done.returncode == 2 and f"{run}: this output folder is in use by process {holder.pid}" in \
            done.stderr, done.stderr
        assert snapshot(run) == before  # nothing written by the refused runs
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    done = subprocess.run(preprocess, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (run / "S1" / "t1.nii.gz").is_file() and not (run / ".unet3d.lock").exists()


# --------------------------------------------------------------------------------------------
# The first screen


NATIVE = ("oneDNN", "cuInit", "cuda", "absl", "cpu_feature_guard", "port.cc")


@pytest.mark.slow
def test_scripts_print_no_tensorflow_native_log(trained: Path, tmp_path: Path):
    """A real interpreter predicts a subject (TensorFlow loads and runs): stderr holds our lines only."""
    demo_subject_files(trained, tmp_path / "s")
    argv = [sys.executable, str(SCRIPTS["predict"]), "--config", str(trained), "--input", str(tmp_path / "s")]
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "UNET3D_TF_LOGS")}
    done = subprocess.run([*argv, "--output", str(tmp_path / "a"), "--quiet"], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not [line for line in done.stderr.splitlines() if any(word in line for word in NATIVE)], done.stderr
    assert (tmp_path / "a" / "s_prediction.nii.gz").is_file()
    shown = subprocess.run([*argv, "--output", str(tmp_path / "b"), "--quiet"], capture_output=True, text=True,
                           cwd=ROOT, env={**env, "UNET3D_TF_LOGS": "1"}, timeout=300)
    assert shown.returncode == 0, shown.stderr[-3000:]
    assert any(word in shown.stderr for word in NATIVE), shown.stderr  # what the filter hides is there


def test_native_log_lines_are_told_from_python_output():
    from unet3d_keras.native_logs import is_native_log_line

    native = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1795915522.070944   18130 port.cc:153] oneDNN custom operations are on.",
        "E0000 00:00:1795915528.927242   18130 cuda_platform.cc:52] failed call to cuInit: INTERNAL",
        "W1127 13:02:11.123456 140 some_file.cc:7] anything",
    ]
    ours = ["error: run.yaml: config file not found", "INFO Writing 4 subjects",
            "/x/y.py:3: UserWarning: something", "I0000 is not a log line without a file:line]"]
    assert [is_native_log_line(line) for line in native + ours] == [True] * 4 + [False] * 4
