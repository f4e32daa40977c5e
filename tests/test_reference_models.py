"""Models written by the reference (Keras 2 HDF5, channels_first) load as the port's channels_last models.

The reference networks are built layer for layer with Keras 2 (``tf_keras``, see
``reference_keras2.py``), given random weights, compiled with the reference's loss and metric names
and saved with ``model.save("....h5")`` as the reference's ``ModelCheckpoint`` did. TensorFlow's CPU
kernels cannot run channels_first convolutions, so the expected predictions come from the same
Keras 2 network built channels_last with the same weights.
"""

import json

import h5py
import keras
import numpy as np
import pytest
import reference_keras2 as ref

from unet3d_keras.commands import convert_model
from unet3d_keras.errors import DataError
from unet3d_keras.instance_normalization import InstanceNormalization
from unet3d_keras.metrics import weighted_dice_coefficient_loss
from unet3d_keras.predictor import Predictor
from unet3d_keras.reference_models import read_reference_model
from unet3d_keras.training import load_old_model

CASES = {
    "unet_upsampling": (ref.reference_unet, (2, 16, 16, 16), dict(depth=3, n_base_filters=4, n_labels=3)),
    "unet_batchnorm_deconvolution": (ref.reference_unet, (2, 16, 16, 16),
                                     dict(depth=2, n_base_filters=4, n_labels=1, batch_normalization=True,
                                          deconvolution=True)),
    "unet_batchnorm_upsampling_softmax": (ref.reference_unet, (1, 8, 16, 24),
                                          dict(depth=3, n_base_filters=6, n_labels=2, batch_normalization=True,
                                               activation_name="softmax")),
    "isensee2017": (ref.reference_isensee2017, (4, 16, 16, 16),
                    dict(depth=4, n_base_filters=4, n_labels=3, n_segmentation_levels=3)),
}
EXPECTED = {  # (network, depth, base filters, labels, input shape, normalisation)
    "unet_upsampling": ("unet", 3, 4, 3, (16, 16, 16, 2), "none"),
    "unet_batchnorm_deconvolution": ("unet", 2, 4, 1, (16, 16, 16, 2), "batch"),
    "unet_batchnorm_upsampling_softmax": ("unet", 3, 6, 2, (8, 16, 24, 1), "batch"),
    "isensee2017": ("isensee2017", 4, 4, 3, (16, 16, 16, 4), "instance"),
}


@pytest.fixture(scope="module")
def reference_files(tmp_path_factory):
    """``{case: (file, input (batch, x, y, z, channels), expected output)}``."""
    folder = tmp_path_factory.mktemp("reference_models")
    files = {}
    for seed, (case, (build, shape, settings)) in enumerate(CASES.items()):
        saved = ref.randomise(build(shape, "channels_first", **settings), seed)
        path = folder / f"{case}.h5"
        saved.save(str(path))
        runnable = build(shape, "channels_last", **settings)
        runnable.set_weights(saved.get_weights())
        inputs = np.random.default_rng(seed).normal(size=(2, *shape)).astype("float32")
        inputs = np.moveaxis(inputs, 1, -1)  # (batch, channels, x, y, z) -> (batch, x, y, z, channels)
        expected = runnable.predict(inputs, verbose=0)
        if settings.get("activation_name") == "softmax":
            # Keras 2's softmax takes the last axis: z under the reference's channels_first, not the labels.
            logits = ref.k2.Model(runnable.input, runnable.layers[-2].output).predict(inputs, verbose=0)
            logits = np.exp(logits - logits.max(axis=-2, keepdims=True))
            expected = logits / logits.sum(axis=-2, keepdims=True)
        files[case] = (path, inputs, expected)
    return files


def assert_not_saturated(output):
    """The comparison means something only if the outputs spread and stay away from 0 and 1."""
    assert output.std() > 0.25 * output.mean() and np.mean((output > 1e-3) & (output < 0.999)) > 0.9


@pytest.mark.parametrize("case", list(CASES))
def test_reference_model_predicts_as_keras2(reference_files, case):
    path, inputs, expected = reference_files[case]
    assert_not_saturated(expected)
    model, architecture = read_reference_model(path)
    got = (architecture.network, architecture.depth, architecture.n_base_filters, architecture.n_labels,
           architecture.input_shape, architecture.normalization)
    assert got == EXPECTED[case]
    assert architecture.data_format == "channels_first"
    assert model.input_shape == (None, *EXPECTED[case][4])
    predicted = model.predict(inputs, verbose=0)
    assert predicted.shape == expected.shape
    assert np.abs(predicted - expected).max() <= 1e-4


def test_load_old_model_reads_reference_files_compiled_with_their_loss_and_metrics(reference_files, tmp_path):
    source, inputs, expected = reference_files["unet_upsampling"]
    path = tmp_path / "unet_model.h5"
    path.write_bytes(source.read_bytes())
    model = load_old_model(path)
    assert model.loss is weighted_dice_coefficient_loss
    metrics = model.get_compile_config()["metrics"]
    assert metrics[0]["config"] == "unet3d_keras>dice_coefficient"
    assert [m["config"]["name"] for m in metrics[1:]] == ["label_0_dice_coef", "label_1_dice_coef",
                                                           "label_2_dice_coef"]
    assert model.optimizer.learning_rate.numpy() == pytest.approx(1e-5)
    assert np.abs(model.predict(inputs, verbose=0) - expected).max() <= 1e-4
    # The Keras 2 compile settings in the form Keras 2.2 wrote them ("Model", "lr", metric names).
    with h5py.File(path, "r+") as file:
        config = json.loads(file.attrs["model_config"])
        config["class_name"] = "Model"
        file.attrs["model_config"] = json.dumps(config).encode()
        file.attrs["training_config"] = json.dumps({
            "optimizer_config": {"class_name": "Adam", "config": {"lr": 5e-4}},
            "loss": "weighted_dice_coefficient_loss", "metrics": ["dice_coefficient", "label_1_dice_coef"]})
        file.attrs["keras_version"] = b"2.2.4"
    model = load_old_model(path)
    assert model.optimizer.learning_rate.numpy() == pytest.approx(5e-4)
    assert np.abs(model.predict(inputs, verbose=0) - expected).max() <= 1e-4


def test_predictor_of_the_programs_takes_a_reference_file(reference_files):
    """``--model`` of the prediction programs goes through ``Predictor.from_files``."""
    path, inputs, expected = reference_files["isensee2017"]
    predictor = Predictor.from_files(path)
    volume = np.moveaxis(inputs[0], -1, 0)  # the predictor takes (channels, x, y, z)
    predicted = predictor.predict_array(volume)
    assert np.abs(predicted - np.moveaxis(expected[0], -1, 0)).max() <= 1e-4


def test_convert_model_command_writes_the_same_model(reference_files, tmp_path, capsys):
    path, inputs, expected = reference_files["isensee2017"]
    output = tmp_path / "model.keras"
    assert convert_model.main([str(path), str(output)]) == 0
    printed = capsys.readouterr().out.splitlines()
    for line in ("network: isensee2017", "depth: 4", "base filters: 4", "labels: 3",
                 "input shape: (16, 16, 16, 4) (x, y, z, channels)", "normalisation: instance"):
        assert line in printed
    converted = load_old_model(output)
    assert any(isinstance(layer, InstanceNormalization) for layer in converted.layers)
    assert np.abs(converted.predict(inputs, verbose=0) - expected).max() <= 1e-4
    # An existing output is kept unless --overwrite is given.
    before = output.read_bytes()
    assert convert_model.main([str(path), str(output)]) == 2
    assert "exists" in capsys.readouterr().err and output.read_bytes() == before
    assert convert_model.main([str(path), str(tmp_path / "model.h5")]) == 2
    assert ".keras" in capsys.readouterr().err
    (tmp_path / "folder.keras").mkdir()
    assert convert_model.main([str(path), str(tmp_path / "folder.keras"), "--overwrite"]) == 2
    assert f"{tmp_path / 'folder.keras'}: a folder of that name is in the way of the output" in capsys.readouterr().err


def test_instance_normalization_matches_keras_contrib_formula():
    rng = np.random.default_rng(3)
    x = rng.normal(2.0, 0.05, (2, 5, 6, 7, 3)).astype("float32")  # small variance: where epsilon matters
    gamma, beta = rng.uniform(0.5, 1.5, 3), rng.normal(size=3)
    layer = InstanceNormalization(axis=-1, epsilon=1e-3)
    layer.build(x.shape)
    layer.set_weights([gamma, beta])
    mean, std = x.mean(axis=(1, 2, 3), keepdims=True), x.std(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(np.asarray(layer(x)), (x - mean) / (std + 1e-3) * gamma + beta, atol=2e-5)
    assert InstanceNormalization.from_config(layer.get_config()).get_config() == layer.get_config()


def _edit_config(path, edit):
    with h5py.File(path, "r+") as file:
        config = json.loads(file.attrs["model_config"])
        edit(config["config"]["layers"])
        file.attrs["model_config"] = json.dumps(config).encode()


def test_unknown_layer_class_is_refused_by_name(reference_files, tmp_path):
    path = tmp_path / "unknown.h5"
    path.write_bytes(reference_files["unet_upsampling"][0].read_bytes())
    _edit_config(path, lambda layers: layers[1].update(class_name="FancyConv3D"))
    with pytest.raises(DataError, match=r"unknown layer class 'FancyConv3D' \(layer 'conv3d"):
        load_old_model(path)


def test_layer_that_differs_from_the_recognised_network_is_named(reference_files, tmp_path):
    path = tmp_path / "changed.h5"
    path.write_bytes(reference_files["unet_upsampling"][0].read_bytes())
    _edit_config(path, lambda layers: layers[1]["config"].update(kernel_size=[5, 5, 5]))
    with pytest.raises(DataError, match=r"recognised as unet .* layer 'conv3d\w*' \(Conv3D\) .*kernel_size"):
        load_old_model(path)


def test_lambda_layer_is_refused_without_running_its_code(tmp_path, monkeypatch):
    inputs = ref.k2.Input((1, 8, 8, 8))
    outputs = ref.k2.layers.Lambda(lambda x: x * 2.0)(
        ref.k2.layers.Conv3D(2, 3, padding="same", data_format="channels_first")(inputs))
    path = tmp_path / "lambda.h5"
    ref.k2.Model(inputs, outputs).save(str(path))
    with h5py.File(path, "r") as file:  # the file really holds marshalled bytecode
        assert "Lambda" in file.attrs["model_config"]

    def refuse(*args, **kwargs):
        raise AssertionError("the model file was handed to Keras's deserialisation")

    # Nothing from the file reaches Keras's loaders (which would unmarshal the Lambda's bytecode).
    for name in ("keras.saving.load_model", "keras.models.model_from_json", "keras.saving.deserialize_keras_object",
                 "keras.src.utils.python_utils.func_load"):
        monkeypatch.setattr(name, refuse)
    with pytest.raises(DataError, match=r"'lambda\w*' is a Lambda layer, which holds Python code; .*never run"):
        load_old_model(path)


def test_non_model_hdf5_files_are_refused_clearly(tmp_path):
    data = tmp_path / "brats_data.h5"
    with h5py.File(data, "w") as file:
        file["data"] = np.zeros((1, 4, 8, 8, 8), "float32")
        file["truth"] = np.zeros((1, 1, 8, 8, 8), "uint8")
    with pytest.raises(DataError, match=r"brats_data.h5: an HDF5 file but not a Keras model file: .*model_config"
                                        r".*data, truth"):
        load_old_model(data)
    weights = tmp_path / "weights.h5"
    inputs = ref.k2.Input((8, 8, 8, 1))
    ref.k2.Model(inputs, ref.k2.layers.Conv3D(1, 1)(inputs)).save_weights(str(weights))
    with pytest.raises(DataError, match=r"weights.h5: holds weights only"):
        load_old_model(weights)
    assert keras.config.image_data_format() == "channels_last"
