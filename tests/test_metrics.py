import keras
import numpy as np
import pytest
from keras import ops

from unet3d_keras.metrics import (
    LabelDiceCoefficient,
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
