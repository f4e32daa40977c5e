"""Training on: a finished run whose training.n_epochs is raised, a new run continuing from an existing
model file (the reference's behaviour when its model file existed), their interplay with resuming and
--overwrite; and brats/predict.py's output names (the reference's {subject}.nii.gz)."""

from __future__ import annotations

import csv
import json
import shutil
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from unet3d_keras.config import ConfigError, load_config
from unet3d_keras.errors import DataError

pytestmark = pytest.mark.slow

TINY = ["seed=5", "data.n_demo_subjects=4", "data.demo_shape=[20, 20, 20]", "data.image_shape=[8, 8, 8]",
        "model.depth=2", "model.n_base_filters=2", "training.batch_size=1", "training.validation_batch_size=1",
        "training.mixed_precision=off", "training.workers=0", "training.early_stopping_patience=null"]


def _config(run: Path, *overrides: str):
    return load_config(None, [f"output_dir={run}", *TINY, *overrides])


def _train(run: Path, *overrides: str, overwrite: bool = False):
    from unet3d_keras.pipeline import train_from_config

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return train_from_config(_config(run, *overrides), overwrite=overwrite, show_progress=False, verbose=0,
                                 evaluate=False)


def _copy_run(source: Path, run: Path) -> None:
    """A copy of a run folder that resumes there (the saved config names its folder)."""
    import yaml

    shutil.copytree(source, run)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    (run / "config.yaml").write_text(yaml.safe_dump({**saved, "output_dir": str(run)}))


def _epochs_logged(run: Path) -> list[str]:
    with open(run / "training.log", newline="") as handle:
        return [row["epoch"] for row in csv.DictReader(handle)]


def _weights(path: Path) -> list[np.ndarray]:
    from unet3d_keras.training import load_old_model

    return [np.asarray(w) for w in load_old_model(path, compile=False).get_weights()]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A run that completed its 2 epochs."""
    run = tmp_path_factory.mktemp("finished") / "run"
    result = _train(run, "training.n_epochs=2")
    assert result.epochs_trained == 2
    return run


def test_raising_n_epochs_trains_the_extra_epochs_like_an_uninterrupted_run(finished, tmp_path):
    run = tmp_path / "run"
    _copy_run(finished, run)
    again = _train(run, "training.n_epochs=2")  # same config: nothing to train
    assert again.epochs_trained == 2 and _epochs_logged(run) == ["0", "1"]
    # Raised: epoch 3 only, from the kept backup of epoch 2 (the continue option does not change that).
    extended = _train(run, "training.n_epochs=3", "training.continue_from_model_file=true")
    assert extended.epochs_trained == 3 and extended.resumed_from == 2
    assert _epochs_logged(run) == ["0", "1", "2"]
    assert json.loads((run / "state.json").read_text()) == {"status": "complete", "epochs": 3}
    straight = tmp_path / "straight"
    _train(straight, "training.n_epochs=3")
    for ours, theirs in zip(_weights(run / "model.keras"), _weights(straight / "model.keras")):
        np.testing.assert_array_equal(ours, theirs)
    with open(run / "training.log") as a, open(straight / "training.log") as b:
        assert a.read() == b.read()


def test_continue_from_model_file_starts_from_its_weights(finished, tmp_path):
    run = tmp_path / "continued"
    run.mkdir()
    shutil.copy(finished / "model.keras", run / "model.keras")
    # A learning rate of 1e-30 moves no weight: the model after one epoch is the model it started from.
    result = _train(run, "training.n_epochs=1", "training.initial_learning_rate=1.0e-30",
                    "training.continue_from_model_file=true")
    assert result.epochs_trained == 1 and result.resumed_from == 0
    for ours, theirs in zip(_weights(run / "model.keras"), _weights(finished / "model.keras")):
        np.testing.assert_allclose(ours, theirs, atol=1e-6)
    fresh = tmp_path / "fresh"
    _train(fresh, "training.n_epochs=1", "training.initial_learning_rate=1.0e-30")
    assert any(not np.allclose(a, b, atol=1e-3)
               for a, b in zip(_weights(fresh / "model.keras"), _weights(finished / "model.keras")))


def test_continue_needs_the_model_file_and_refuses_overwrite(finished, tmp_path):
    with pytest.raises(DataError, match="training.continue_from_model_file is set but there is no model file"):
        _train(tmp_path / "empty", "training.n_epochs=1", "training.continue_from_model_file=true")
    run = tmp_path / "run"
    _copy_run(finished, run)
    before = sorted(p.name for p in run.iterdir())
    with pytest.raises(ConfigError, match="--overwrite deletes training.model_file .* drop one of the two"):
        _train(run, "training.n_epochs=2", "training.continue_from_model_file=true", overwrite=True)
    assert sorted(p.name for p in run.iterdir()) == before  # nothing deleted


def test_a_precision_this_machine_cannot_train_is_refused_before_overwrite_deletes_anything(finished, tmp_path,
                                                                                         monkeypatch):
    import keras

    from unet3d_keras import precision

    monkeypatch.setattr(precision, "cuda_gpu_available", lambda: False)
    run = tmp_path / "run"
    _copy_run(finished, run)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    try:
        with pytest.raises(ValueError, match="training.mixed_precision: float16 trains only on a CUDA GPU under "
                                             "TensorFlow"):
            _train(run, "training.n_epochs=2", "training.mixed_precision=float16", overwrite=True)
    finally:
        keras.config.set_dtype_policy("float32")
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before  # nothing deleted or changed


def test_brats_predict_writes_the_reference_names_on_each_subjects_grid(finished, tmp_path, capsys):
    import yaml

    from brats.predict import main

    config = tmp_path / "run.yaml"
    raw = {"output_dir": str(finished), "seed": 5, "data": {"n_demo_subjects": 4, "demo_shape": [20, 20, 20],
                                                             "image_shape": [8, 8, 8]},
           "model": {"depth": 2, "n_base_filters": 2},
           "training": {"n_epochs": 2, "batch_size": 1, "validation_batch_size": 1, "mixed_precision": "off",
                        "workers": 0, "early_stopping_patience": None}}
    config.write_text(yaml.safe_dump(raw))
    subject = sorted(p for p in (finished / "demo_data").iterdir() if p.is_dir())[0]
    source = nib.load(next(subject.glob("*_t1.nii.gz")))
    out = tmp_path / "out"
    assert main([str(subject), "--config", str(config), "--output", str(out), "--quiet"]) == 0
    assert [p.name for p in out.iterdir()] == [f"{subject.name}.nii.gz"]
    label_map = nib.load(out / f"{subject.name}.nii.gz")
    assert label_map.shape == source.shape and np.allclose(label_map.affine, source.affine)
    assert set(np.unique(np.asarray(label_map.dataobj))) <= {0, 1, 2, 4}

    probabilities = tmp_path / "probabilities"
    assert main([str(subject), "--config", str(config), "--prediction_dir", str(probabilities), "--no_label_map",
                 "--output_basename", "{subject}_probability.nii.gz", "--quiet"]) == 0
    names = sorted(p.name for p in probabilities.iterdir())
    assert names == [f"{i}_{subject.name}_probability.nii.gz" for i in (1, 2, 3)]
    for name in names:
        image = nib.load(probabilities / name)
        values = np.asarray(image.dataobj)
        assert image.shape == source.shape and values.dtype == np.float32 and 0 <= values.min() <= values.max() <= 1

    capsys.readouterr()
    assert main([str(subject), "--config", str(config), "--output", str(tmp_path / "x"),
                 "--output_basename", "prediction.nii.gz"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: --output_basename: output basename 'prediction.nii.gz': must contain {subject} (one file per "
        "subject) and end in .nii or .nii.gz, e.g. '{subject}.nii.gz'")
    assert not (tmp_path / "x").exists()
