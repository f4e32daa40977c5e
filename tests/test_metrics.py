import keras
import numpy as np
import pytest
from keras import ops

from unet3d_keras import losses
from unet3d_keras import metrics as metrics_module
from unet3d_keras.metrics import (
    LabelDiceCoefficient,
    MaskedLabelDiceCoefficient,
    dice_coef,
    dice_coefficient,
    dice_coefficient_loss,
    get_label_dice_coefficient_function,
    label_wise_dice_coefficient,
    weighted_dice_coefficient,
    weighted_dice_coefficient_loss,
)


def _labels_channels_last():
    """The reference's three-label 5x5x5 case, moved to channels_last (x, y, z, labels)."""
    data = np.zeros((3, 5, 5, 5), dtype="float32")
    data[0, 0:1] = 1
    data[1, 0:2] = 1
    data[2, 1:4] = 1
    return np.moveaxis(data, 0, -1)


def _value(tensor):
    return float(ops.convert_to_numpy(tensor))


def test_blanking_one_label_costs_a_third():
    data = _labels_channels_last()
    max_dice = _value(weighted_dice_coefficient(data, data))
    assert max_dice == pytest.approx(1.0, abs=1e-6)
    for index in range(3):
        blanked = data.copy()
        blanked[..., index] = 0
        assert _value(weighted_dice_coefficient(data, blanked)) == pytest.approx(2 * max_dice / 3, abs=1e-5)


def test_empty_prediction_scores_zero():
    data = _labels_channels_last()
    assert _value(weighted_dice_coefficient(data, np.zeros_like(data))) == pytest.approx(0.0, abs=1e-5)


def test_empty_label_scores_one():
    data = _labels_channels_last()
    data[..., 0] = 0
    assert _value(weighted_dice_coefficient(data, data)) == 1.0


def test_weighted_dice_on_batched_tensors_averages_items():
    data = _labels_channels_last()
    batch_true = np.stack([data, data])
    batch_pred = np.stack([data, np.zeros_like(data)])
    assert _value(weighted_dice_coefficient(batch_true, batch_pred)) == pytest.approx(0.5, abs=1e-5)
    # The loss is per batch item; its mean is the reference's scalar loss.
    loss = ops.convert_to_numpy(weighted_dice_coefficient_loss(batch_true, batch_pred))
    np.testing.assert_allclose(loss, [-1.0, 0.0], atol=1e-5)


def test_weighted_dice_channels_first_axis(channels_first):
    data = np.moveaxis(_labels_channels_last(), -1, 0)
    blanked = data.copy()
    blanked[1] = 0
    assert _value(weighted_dice_coefficient(data, blanked)) == pytest.approx(2 / 3, abs=1e-5)


def test_dice_coefficient_known_overlap():
    y_true = np.zeros((1, 4, 4, 4, 1), dtype="float32")
    y_pred = np.zeros_like(y_true)
    y_true[0, :2] = 1  # 32 voxels
    y_pred[0, 1:3] = 1  # 32 voxels, 16 shared
    expected = (2 * 16 + 1) / (32 + 32 + 1)
    assert _value(dice_coefficient(y_true, y_pred)) == pytest.approx(expected, rel=1e-6)
    assert _value(dice_coefficient_loss(y_true, y_pred)) == pytest.approx(-expected, rel=1e-6)
    assert dice_coef is dice_coefficient


def test_label_wise_dice_selects_the_label_channel():
    data = _labels_channels_last()[np.newaxis]
    prediction = data.copy()
    prediction[..., 2] = 0
    assert _value(label_wise_dice_coefficient(data, prediction, 0)) == pytest.approx(1.0)
    label_2 = get_label_dice_coefficient_function(2)
    assert label_2.__name__ == "label_2_dice_coef"
    assert _value(label_2(data, prediction)) == pytest.approx(1 / (data[..., 2].sum() + 1), rel=1e-6)


def test_label_dice_metric_config_round_trip():
    metric = LabelDiceCoefficient(1)
    assert metric.name == "label_1_dice_coef"
    clone = LabelDiceCoefficient.from_config(metric.get_config())
    assert clone.label_index == 1 and clone.name == metric.name
    data = _labels_channels_last()[np.newaxis]
    clone.update_state(data, data)
    assert float(clone.result()) == pytest.approx(1.0)


def test_metrics_compute_in_float32_for_bfloat16_predictions():
    data = _labels_channels_last()[np.newaxis]
    prediction = ops.cast(data, "bfloat16")
    result = weighted_dice_coefficient(data, prediction)
    assert keras.backend.standardize_dtype(result.dtype) == "float32"


# Configs as the two metric classes serialised them before they became one class with `masked`.
OLD_MASKED_CONFIG = {
    "module": "unet3d_keras.metrics", "class_name": "MaskedLabelDiceCoefficient",
    "config": {"label_index": 1, "name": "label_1_dice_coef", "dtype": "float32"},
    "registered_name": "unet3d_keras>MaskedLabelDiceCoefficient",
}
OLD_PLAIN_CONFIG = {
    "module": "unet3d_keras.metrics", "class_name": "LabelDiceCoefficient",
    "config": {"label_index": 2, "name": "label_2_dice_coef", "dtype": "float32"},
    "registered_name": "unet3d_keras>LabelDiceCoefficient",
}


def _sparse_truth_and_prediction():
    """Truth with background first and an unlabeled (all-zero) row; a prediction that is wrong there."""
    truth = np.eye(3, dtype="float32")[np.array([[0, 1, 2, 2], [1, 1, 0, 2]])].reshape(1, 2, 2, 2, 3)
    truth[0, 0, 0, 0] = 0  # unlabeled voxel
    prediction = truth.copy()
    prediction[0, 0, 0, 0] = [0, 0, 1]  # predicted label 1 (channel 2) where nothing is annotated
    return truth, prediction


def test_old_metric_class_names_still_deserialise():
    masked = keras.saving.deserialize_keras_object(OLD_MASKED_CONFIG)
    assert isinstance(masked, LabelDiceCoefficient) and masked.masked and masked.label_index == 1
    plain = keras.saving.deserialize_keras_object(OLD_PLAIN_CONFIG)
    assert type(plain) is LabelDiceCoefficient and not plain.masked and plain.label_index == 2
    assert keras.saving.serialize_keras_object(plain) == OLD_PLAIN_CONFIG  # unchanged file format


def test_masked_metric_counts_annotated_voxels_only():
    truth, prediction = _sparse_truth_and_prediction()
    masked = LabelDiceCoefficient(1, masked=True)
    masked.update_state(truth, prediction)
    assert float(masked.result()) == pytest.approx(1.0)  # the unlabeled voxel does not count
    plain = LabelDiceCoefficient(2)  # same channel, every voxel counts
    plain.update_state(truth, prediction)
    assert float(plain.result()) < 1.0
    alias = MaskedLabelDiceCoefficient(1)
    alias.update_state(truth, prediction)
    assert float(alias.result()) == float(masked.result())
    clone = LabelDiceCoefficient.from_config(masked.get_config())
    assert clone.masked and clone.label_index == 1


def test_model_saved_with_the_old_masked_metric_name_loads(tmp_path):
    from unet3d_keras.model import build_unet_3d

    truth, _ = _sparse_truth_and_prediction()
    model = build_unet_3d((2, 2, 2, 1), n_labels=3, depth=1, n_base_filters=2, activation_name="softmax")
    model.compile(optimizer="adam", loss=losses.MaskedSegmentationLoss(), metrics=[MaskedLabelDiceCoefficient(0)])
    x = np.ones((1, 2, 2, 2, 1), "float32")
    expected = model.evaluate(x, truth, verbose=0, return_dict=True)
    model.save(tmp_path / "masked.keras")
    loaded = keras.models.load_model(tmp_path / "masked.keras")
    assert loaded.evaluate(x, truth, verbose=0, return_dict=True) == pytest.approx(expected)


def test_losses_stay_importable_from_metrics():
    for name in losses.__all__:
        assert getattr(metrics_module, name) is getattr(losses, name)
