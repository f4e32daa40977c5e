"""Exported models (SavedModel, ONNX) predict as the Keras model; the export and predict commands."""

from __future__ import annotations

import json

import keras
import nibabel as nib
import numpy as np
import pytest

from unet3d_keras.commands import export as export_command
from unet3d_keras.commands import predict as predict_command
from unet3d_keras.demo import write_demo_dataset
from unet3d_keras.export import float32_copy
from unet3d_keras.exported_models import METADATA_FILE, ExportedModel
from unet3d_keras.model import build_unet_3d
from unet3d_keras.predictor import Predictor

SETTINGS = ["--set", "data.normalization=zscore", "--set", "data.image_shape=[16,16,16]",
            "--set", "model.depth=3", "--set", "prediction.overlap=4"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny U-Net (mixed_bfloat16 policy, as trained on a CPU with BF16) saved as .keras."""
    folder = tmp_path_factory.mktemp("export")
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        keras.utils.set_random_seed(0)
        model = build_unet_3d((16, 16, 16, 4), n_labels=3, depth=3, n_base_filters=4, deconvolution=True)
    finally:
        keras.config.set_dtype_policy(previous)
    model.save(folder / "model.keras")
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["saved_model", "onnx"])
def test_exported_model_predicts_the_demo_as_the_keras_model(trained, tmp_path, fmt):
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
        pytest.importorskip("tf2onnx")
    output = tmp_path / "exported"
    status = export_command.main(["--model", str(trained / "model.keras"), "--format", fmt,
                                  "--output", str(output), "--quiet"] + SETTINGS)
    assert status == 0
    metadata = json.loads((output / METADATA_FILE).read_text())
    assert metadata["modalities"] == ["t1", "t1ce", "flair", "t2"] and metadata["labels"] == [1, 2, 4]
    assert metadata["patch_shape"] == [16, 16, 16] and metadata["data_format"] == "channels_last"
    assert metadata["normalization"] == "zscore" and metadata["overlap"] == 4
    assert metadata["format"] == fmt and metadata["unet3d_keras_version"]

    # Probabilities of a volume larger than the window (sliding window), float32 Keras model as reference.
    volume = np.random.default_rng(0).normal(size=(4, 21, 19, 16)).astype(np.float32)
    # The Keras model in float32 (as exported; it was saved in mixed_bfloat16).
    keras_model = float32_copy(keras.saving.load_model(trained / "model.keras", compile=False))
    exported = Predictor.from_files(output)
    assert isinstance(exported.model, ExportedModel) and exported.labels == (1, 2, 4)
    reference = Predictor(keras_model, exported.attributes, labels=(1, 2, 4), overlap=4)
    np.testing.assert_allclose(exported.predict_array(volume), reference.predict_array(volume), atol=1e-4)

    # The demo subject through unet3d-predict --model DIR against the Keras model's label map.
    subject = write_demo_dataset(tmp_path / "demo", n_subjects=1, shape=(20, 18, 16), seed=1,
                                 show_progress=False)[0]
    files = [subject / f"{subject.name}_{m}.nii.gz" for m in ("t1", "t1ce", "flair", "t2")]
    status = predict_command.main(["--model", str(output), "--input", *map(str, files),
                                   "--output", str(tmp_path / "pred"), "--quiet"] + SETTINGS)
    assert status == 0
    written = nib.load(next((tmp_path / "pred").glob("*_prediction.nii.gz"))).get_fdata()
    expected = Predictor(keras_model, exported.attributes, labels=(1, 2, 4), overlap=4,
                         image_shape=(16, 16, 16)).predict_subject(files)
    np.testing.assert_array_equal(written, expected.get_fdata())


def test_export_refuses_a_non_empty_output_and_a_missing_model(trained, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("keep")
    assert export_command.main(["--model", str(trained / "model.keras"), "--format", "saved_model",
                                "--output", str(tmp_path / "out")] + SETTINGS) == 2
    assert "exists and is not an empty folder" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["keep.txt"]
    assert export_command.main(["--model", str(tmp_path / "none.keras"), "--format", "onnx",
                                "--output", str(tmp_path / "new")]) == 2
    assert "none.keras: model file not found" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def test_onnx_without_tf2onnx_says_which_extra_to_install(trained, tmp_path, capsys, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None if name == "tf2onnx"
                        else find_spec(name, *args))
    assert export_command.main(["--model", str(trained / "model.keras"), "--format", "onnx",
                                "--output", str(tmp_path / "out")] + SETTINGS) == 2
    assert 'exporting to ONNX needs tf2onnx and onnx (pip install -e ".[export]")' in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_folder_without_metadata_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not an export folder"):
        ExportedModel.load(tmp_path)
