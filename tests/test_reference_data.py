"""Data and split files written by the reference: normalisation stated and applied, pickled splits
converted by subject id without running anything."""

from __future__ import annotations

import json
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest

from reference_data_helpers import write_reference_data_file, write_reference_split
from unet3d_keras.commands.convert_split import main as convert_split_main
from unet3d_keras.errors import DataError
from unet3d_keras.hdf5_store import REFERENCE_NORMALIZATION, check_data_file
from unet3d_keras.inference_io import normalize_like_training
from unet3d_keras.splits import SplitFileError, load_pickled_split, load_split

IDS = ["BraTS20_Training_003", "BraTS20_Training_001", "BraTS20_Training_005", "BraTS20_Training_002",
       "BraTS20_Training_004"]


def _volumes(n: int = 5, shape=(9, 8, 7), seed: int = 0):
    rng = np.random.default_rng(seed)
    volumes = np.zeros((n, 2, *shape), np.float32)
    volumes[:, :, 2:-2, 2:-2, 2:-2] = rng.uniform(50, 150, (n, 2, shape[0] - 4, shape[1] - 4, shape[2] - 4))
    truth = (volumes[:, :1] > 120).astype(np.uint8)[:, 0]
    affines = np.repeat(np.eye(4, dtype=np.float32)[np.newaxis], n, axis=0)
    return volumes, truth, affines


@pytest.fixture()
def reference_file(tmp_path) -> Path:
    path = tmp_path / "brats_data.h5"
    write_reference_data_file(path, *_volumes(), subject_ids=IDS)
    return path


def test_reference_file_states_the_normalisation_it_holds(tmp_path, reference_file):
    with pytest.warns(UserWarning, match="written by the reference code, it holds data normalised by the reference"):
        assert check_data_file(reference_file)["normalization"] == REFERENCE_NORMALIZATION
    raw = tmp_path / "raw.h5"
    write_reference_data_file(raw, *_volumes(), normalize=False)  # write_data_to_file(normalize=False)
    with pytest.warns(UserWarning, match="data that were not normalised"):
        assert check_data_file(raw)["normalization"] == "none"


def test_new_subject_is_normalised_as_the_reference_prediction_did():
    volume = np.random.default_rng(1).uniform(0, 300, (3, 6, 7, 5)).astype(np.float32)
    # The reference's normalize_data_storage over a set of one subject (normalize.py:72-83).
    mean = volume.mean(axis=(1, 2, 3))
    std = volume.std(axis=(1, 2, 3))
    expected = (volume - mean[:, None, None, None]) / std[:, None, None, None]
    result = normalize_like_training(volume, {"normalization": REFERENCE_NORMALIZATION})
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(normalize_like_training(volume, {"normalization": "none"}), volume)
    with pytest.raises(DataError, match="how new subjects are normalised is unknown: give the data file"):
        normalize_like_training(volume, {})


@pytest.mark.slow
def test_reference_data_file_trains_and_predicts_new_subjects(tmp_path):
    from data_helpers import make_brats_folder

    from unet3d_keras.commands.predict import predict_new_subjects
    from unet3d_keras.config import load_config
    from unet3d_keras.pipeline import train_from_config
    from unet3d_keras.predictor import Predictor

    rng = np.random.default_rng(2)
    volumes = np.zeros((6, 4, 8, 8, 8), np.float32)
    volumes[:, :, 1:7, 1:7, 1:7] = rng.uniform(50, 150, (6, 4, 6, 6, 6))
    truth = np.where(volumes[:, 0] > 110, 1, 0) + np.where(volumes[:, 1] > 140, 3, 0)  # labels 1 and 4 (and 3->4)
    truth = np.where(truth == 3, 4, truth).astype(np.uint8)
    truth[:, 4, 4, 4] = 2
    run = tmp_path / "run"
    run.mkdir()
    write_reference_data_file(run / "brats_data.h5", volumes, truth, np.repeat(np.eye(4)[None], 6, 0),
                              subject_ids=[f"s{i}" for i in range(6)])
    config = load_config(None, [f"output_dir={run}", "data.data_file=brats_data.h5", "data.image_shape=[8, 8, 8]",
                                "model.depth=2", "model.n_base_filters=2", "training.n_epochs=1",
                                "training.mixed_precision=off", "training.workers=0", "model.activation=sigmoid"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        result = train_from_config(config, show_progress=False, verbose=0)
    assert result.epochs_trained == 1 and (run / "model.keras").is_file()
    folder = tmp_path / "new"
    make_brats_folder(str(folder), ["new_1"], rng, group="", shape=(10, 11, 9))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        predictor = Predictor.from_files(run / "model.keras", run / "brats_data.h5", config)
        assert predictor.attributes["normalization"] == REFERENCE_NORMALIZATION
        written, failures = predict_new_subjects(config, [folder], run / "model.keras", run / "brats_data.h5",
                                                 tmp_path / "out", show_progress=False)
    assert failures == [] and [p.name for p in written] == ["new_1_prediction.nii.gz"]


def test_convert_split_writes_json_by_subject_id(tmp_path, reference_file, capsys):
    write_reference_split(tmp_path / "training_ids.pkl", [3, 0, 4])
    write_reference_split(tmp_path / "validation_ids.pkl", [1, 2])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        status = convert_split_main([str(tmp_path / "training_ids.pkl"), str(tmp_path / "validation_ids.pkl"),
                                     "--data-file", str(reference_file)])
    assert status == 0
    training = json.loads((tmp_path / "training_ids.json").read_text())
    assert training["indices"] == [3, 0, 4] and training["role"] == "training"
    assert training["subject_ids"] == [IDS[3], IDS[0], IDS[4]]
    validation = json.loads((tmp_path / "validation_ids.json").read_text())
    assert validation["subject_ids"] == [IDS[1], IDS[2]]
    # A data file rebuilt in sorted order: the JSON split still names the same subjects.
    rebuilt = sorted(IDS)
    assert [rebuilt[i] for i in load_split(tmp_path / "training_ids.json", 5, rebuilt)] == training["subject_ids"]
    assert "Wrote" in capsys.readouterr().out
    # Existing JSON files are kept unless --overwrite.
    again = convert_split_main([str(tmp_path / "training_ids.pkl"), str(tmp_path / "validation_ids.pkl"),
                                "--data-file", str(reference_file)])
    assert again == 2 and "already exists; pass --overwrite" in capsys.readouterr().err


class _RunsCode:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("content, message", [
    (lambda marker: [1, _RunsCode(marker)], "refused: the pickle imports or calls Python code"),
    (lambda marker: [np.int64(1)], "refused: the pickle imports or calls Python code"),
    (lambda marker: {"indices": [1]}, "expected a list of subject indices (integers) or ids (strings), found dict"),
    (lambda marker: [1, 2.5], "found list holding ['float', 'int']"),
])
def test_convert_split_refuses_anything_but_plain_lists_without_running_it(tmp_path, reference_file, capsys,
                                                                           content, message):
    marker = tmp_path / "ran"
    with open(tmp_path / "training_ids.pkl", "wb") as handle:
        pickle.dump(content(str(marker)), handle)
    write_reference_split(tmp_path / "validation_ids.pkl", [1, 2])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        status = convert_split_main([str(tmp_path / "training_ids.pkl"), str(tmp_path / "validation_ids.pkl"),
                                     "--data-file", str(reference_file)])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and err[-1].startswith(f"error: {tmp_path / 'training_ids.pkl'}") and message in err[-1]
    assert not marker.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["brats_data.h5", "training_ids.pkl", "validation_ids.pkl"]


def test_convert_split_refuses_an_index_outside_the_data_file(tmp_path, reference_file, capsys):
    write_reference_split(tmp_path / "training_ids.pkl", [0, 1, 2])
    write_reference_split(tmp_path / "validation_ids.pkl", [3, 7])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        status = convert_split_main([str(tmp_path / "training_ids.pkl"), str(tmp_path / "validation_ids.pkl"),
                                     "--data-file", str(reference_file)])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert status == 2
    assert last == (f"error: {tmp_path / 'validation_ids.pkl'}: index 7 falls outside the data file, which holds 5 "
                    "subjects (0..4); is it the data file this split was drawn for?")
    assert not (tmp_path / "training_ids.json").exists()  # nothing is written before everything is checked


def test_pickled_split_is_read_without_running_code_even_when_allowed(tmp_path):
    path = tmp_path / "validation_ids.pkl"
    write_reference_split(path, [2, 0])
    with pytest.raises(SplitFileError, match="scripts/convert_split.py training_ids.pkl validation_ids.pkl"):
        load_split(path, 3)
    assert load_split(path, 3, allow_pickle=True) == [2, 0]
    assert load_pickled_split(path) == [2, 0]
    marker = tmp_path / "ran"
    with open(path, "wb") as handle:
        pickle.dump([_RunsCode(str(marker))], handle)
    with pytest.raises(SplitFileError, match="refused: the pickle imports or calls"):
        load_split(path, 3, allow_pickle=True)
    assert not marker.exists()
    assert os.listdir(tmp_path) == ["validation_ids.pkl"]
