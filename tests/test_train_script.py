"""scripts/train.py end to end on tiny demo data: outputs, resume after SIGKILL, bad input."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
TRAIN = ROOT / "scripts" / "train.py"
PREDICT = ROOT / "scripts" / "predict.py"


def tiny_config(tmp_path, name="run", **sections):
    config = {
        "output_dir": name,
        "seed": 3,
        "data": {"n_demo_subjects": 6, "demo_shape": [24, 24, 24], "image_shape": [16, 16, 16]},
        "model": {"depth": 2, "n_base_filters": 4},
        "training": {"n_epochs": 2, "batch_size": 1, "validation_batch_size": 1, "mixed_precision": "off",
                     "workers": 0},
    }
    for section, values in sections.items():
        config.setdefault(section, {}).update(values)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_train(*args, timeout=600, script=TRAIN):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


def log_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def model_weights(path):
    from unet3d_keras.training import load_old_model

    model = load_old_model(path)
    return [np.asarray(w) for w in model.get_weights()]


def test_train_writes_every_output_and_prints_the_dice_table(tmp_path):
    config = tiny_config(tmp_path)
    done = run_train("--config", config, "--quiet")
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "run"
    for name in ("data.h5", "training_ids.json", "validation_ids.json", "config.yaml", "model.keras",
                 "training.log", "validation_scores.csv", "state.json", "demo_data"):
        assert (run / name).exists(), name
    assert any((run / "tensorboard").rglob("*tfevents*"))
    assert json.loads((run / "state.json").read_text()) == {"status": "complete", "epochs": 2}
    assert len(log_rows(run / "training.log")) == 2
    lines = done.stdout.splitlines()
    header = lines[lines.index("Validation Dice") + 1].split()
    assert header == ["subject", "label_1", "label_2", "label_4", "WT", "TC", "ET"]
    scores = list(csv.DictReader(open(run / "validation_scores.csv")))
    assert scores[-1]["subject"] == "mean" and len(scores) == 1 + 2  # 6 subjects, 0.8 train -> 2 validate
    split = json.loads((run / "validation_ids.json").read_text())
    assert [row["subject"] for row in scores[:-1]] == split["subject_ids"]
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["output_dir"] == str(run) and saved["training"]["n_epochs"] == 2
    # A rerun of a finished run does not train again; it re-evaluates.
    again = run_train("--config", config, "--quiet")
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(log_rows(run / "training.log")) == 2

    # scripts/predict.py writes inputs, truth and prediction per validation subject, with the same scores.
    predicted = run_train("--config", config, "--quiet", script=PREDICT)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    for subject in split["subject_ids"]:
        folder = run / "predictions" / subject
        names = sorted(p.name for p in folder.iterdir())
        assert names == sorted([f"data_{m}.nii.gz" for m in ("t1", "t1ce", "flair", "t2")]
                               + ["truth.nii.gz", f"{subject}_prediction.nii.gz", f"{subject}_prediction.png"])
        import nibabel as nib

        prediction = nib.load(folder / f"{subject}_prediction.nii.gz")
        truth = nib.load(folder / "truth.nii.gz")
        assert prediction.shape == truth.shape == (16, 16, 16)
        np.testing.assert_allclose(prediction.affine, truth.affine)
        assert set(np.unique(np.asarray(prediction.dataobj))) <= {0, 1, 2, 4}
    # --input: raw subjects (no truth needed) get label maps on their own grid; a broken subject is
    # reported and skipped, the others are still written, and the exit status says something failed.
    raw = tmp_path / "raw"
    import shutil

    for subject in split["subject_ids"]:
        shutil.copytree(run / "demo_data" / subject, raw / subject)
        (raw / subject / f"{subject}_seg.nii.gz").unlink()
    broken = split["subject_ids"][0]
    (raw / broken / f"{broken}_flair.nii.gz").write_bytes(b"not a nifti")
    incomplete = "Demo_999"  # a subject missing a modality
    shutil.copytree(run / "demo_data" / broken, raw / incomplete)
    for path in (raw / incomplete).iterdir():
        path.rename(raw / incomplete / path.name.replace(broken, incomplete))
    (raw / incomplete / f"{incomplete}_t2.nii.gz").unlink()
    new = run_train("--config", config, "--quiet", "--input", raw, "--output", tmp_path / "new", script=PREDICT)
    assert new.returncode == 1
    assert f"error: subject {broken}:" in new.stderr and "Traceback" not in new.stderr
    assert f"error: subject {incomplete}: missing modality 't2'" in new.stderr
    good = split["subject_ids"][1]
    written = sorted(p.name for p in (tmp_path / "new").iterdir())
    assert written == [f"{good}_prediction.nii.gz"]
    label_map = nib.load(tmp_path / "new" / written[0])
    source = nib.load(raw / good / f"{good}_t1.nii.gz")
    assert label_map.shape == source.shape == (24, 24, 24)
    np.testing.assert_allclose(label_map.affine, source.affine)
    assert set(np.unique(np.asarray(label_map.dataobj))) <= {0, 1, 2, 4}

    # brats/predict.py does the same for a BraTS folder.
    done_brats = subprocess.run(
        [sys.executable, str(ROOT / "brats" / "predict.py"), str(raw / good), "--config", str(config), "--quiet"],
        capture_output=True, text=True, timeout=600, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert done_brats.returncode == 0, done_brats.stderr[-3000:]
    assert (run / "brats_predictions" / f"{good}.nii.gz").is_file()  # the BraTS submission name

    # A picture per subject, and brats/evaluate.py on the demo run's predictions.
    assert (run / "predictions" / good / f"{good}_prediction.png").read_bytes()[:4] == b"\x89PNG"
    evaluated = subprocess.run(
        [sys.executable, str(ROOT / "brats" / "evaluate.py"), str(run / "predictions"),
         "--training-log", str(run / "training.log")], capture_output=True, text=True, timeout=300)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    brats_rows = list(csv.DictReader(open(run / "predictions" / "brats_scores.csv")))
    assert [r["subject"] for r in brats_rows] == sorted(split["subject_ids"]) + ["mean"]
    assert float(brats_rows[-1]["WT_dice"]) == pytest.approx(float(scores[-1]["WT"]), abs=1e-3)
    for name in ("brats_scores_boxplot.png", "loss_graph.png"):
        assert (run / "predictions" / name).is_file()

    table = predicted.stdout.splitlines()
    mean_line = next(line for line in table if line.startswith("mean")).split()[1:]
    assert [float(v) for v in mean_line] == pytest.approx([float(scores[-1][k]) for k in header[1:]], abs=1e-3)


@pytest.mark.slow  # two trainings, one killed
def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path):
    epochs = 5
    sections = dict(training={"n_epochs": epochs, "early_stopping_patience": None},
                    data={"n_demo_subjects": 10})
    reference = tiny_config(tmp_path, "reference", **sections)
    interrupted = tiny_config(tmp_path, "interrupted", **sections)
    done = run_train("--config", reference, "--quiet")
    assert done.returncode == 0, done.stderr[-3000:]

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    process = subprocess.Popen([sys.executable, str(TRAIN), "--config", str(interrupted), "--quiet"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    log = tmp_path / "interrupted" / "training.log"
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if log.exists() and len(log_rows(log)) >= 2:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "training ended before it could be killed"
    completed = len(log_rows(log))
    assert 2 <= completed < epochs

    resumed = run_train("--config", interrupted, "--quiet")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    rows = log_rows(log)
    assert [int(r["epoch"]) for r in rows] == list(range(epochs))  # resumed at the next epoch, no repeat
    expected = log_rows(tmp_path / "reference" / "training.log")
    assert [r["loss"] for r in rows] == [r["loss"] for r in expected]
    assert [r["val_loss"] for r in rows] == [r["val_loss"] for r in expected]
    for a, b in zip(model_weights(tmp_path / "interrupted" / "model.keras"),
                    model_weights(tmp_path / "reference" / "model.keras")):
        np.testing.assert_array_equal(a, b)


def test_changed_config_refuses_to_resume_and_overwrite_starts_afresh(tmp_path):
    config = tiny_config(tmp_path, training={"n_epochs": 1})
    assert run_train("--config", config, "--quiet").returncode == 0
    done = run_train("--config", config, "--quiet", "--set", "model.n_base_filters=2")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "model.n_base_filters: 4 -> 2" in done.stderr and "--overwrite" in done.stderr
    assert "Traceback" not in done.stderr
    fresh = run_train("--config", config, "--quiet", "--set", "model.n_base_filters=2", "--overwrite")
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["model"]["n_base_filters"] == 2


def test_missing_data_folder_says_what_was_looked_for(tmp_path):
    config = tiny_config(tmp_path, data={"source": "brats", "data_dir": "no_such_folder"})
    done = run_train("--config", config)
    assert done.returncode == 2
    message = done.stderr.strip().splitlines()[-1]
    assert message.startswith("error: data.data_dir: no folder at")
    assert "no_such_folder" in message and "data.source: demo" in message
    assert not (tmp_path / "run" / "data.h5").exists()


def test_bad_config_key_is_one_line(tmp_path):
    config = tiny_config(tmp_path, training={"batchsize": 2})
    done = run_train("--config", config)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: {config}: unknown key 'training.batchsize'; did you mean 'training.batch_size'?"
    ]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("precision", ["off", "bfloat16"])
def test_float32_and_bfloat16_both_train(tmp_path, precision):
    config = tiny_config(tmp_path, training={"mixed_precision": precision, "n_epochs": 3,
                                             "initial_learning_rate": 0.003})
    done = run_train("--config", config, "--quiet")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = log_rows(tmp_path / "run" / "training.log")
    losses = [float(r["loss"]) for r in rows]
    assert all(np.isfinite(losses)) and min(losses[1:]) < losses[0]
    from unet3d_keras.training import load_old_model

    model = load_old_model(tmp_path / "run" / "model.keras")
    expected = "bfloat16" if precision == "bfloat16" else "float32"
    assert model.get_layer("enc0_conv1").compute_dtype == expected
    assert model.get_layer("head_activation").compute_dtype == "float32"
