import math

import numpy as np
import pytest

from unet3d_keras.evaluation import dice_score, format_score_table, mean_scores, segmentation_scores


def test_dice_known_overlap_and_empty_cases():
    a = np.zeros((4, 4, 4), bool)
    b = np.zeros_like(a)
    a[:2] = True  # 32 voxels
    b[1:3] = True  # 32 voxels, 16 shared
    assert dice_score(a, b) == pytest.approx(0.5)
    assert dice_score(np.zeros_like(a), np.zeros_like(a)) == 1.0
    assert dice_score(a, np.zeros_like(a)) == 0.0
    with pytest.raises(ValueError, match=r"truth shape \(4, 4, 4\) and prediction shape \(4, 4\) differ"):
        dice_score(a, b[0])


def test_brats_regions_from_label_maps():
    truth = np.zeros((5, 5, 5), np.uint8)
    truth[0] = 1
    truth[1] = 2
    truth[2] = 4
    prediction = truth.copy()
    prediction[2] = 1  # enhancing predicted as necrosis: ET lost, TC and WT intact
    scores = segmentation_scores(truth, prediction, labels=(1, 2, 4))
    assert scores["WT"] == 1.0 and scores["TC"] == 1.0 and scores["ET"] == 0.0
    assert scores["label_2"] == 1.0
    assert scores["label_1"] == pytest.approx(2 * 25 / (25 + 50))
    assert set(segmentation_scores(truth, prediction, labels=(1, 2))) == {"label_1", "label_2"}


def test_table_and_means_ignore_nan():
    rows = {"a": {"WT": 1.0, "ET": math.nan}, "bb": {"WT": 0.5, "ET": 0.25}}
    assert mean_scores(rows) == {"WT": 0.75, "ET": 0.25}
    table = format_score_table(rows).splitlines()
    assert table[0].split() == ["subject", "WT", "ET"]
    assert table[-1].split() == ["mean", "0.750", "0.250"]


def test_hausdorff_95_and_sensitivity_known_answers():
    from unet3d_keras.evaluation import hausdorff_95, sensitivity

    a = np.zeros((20, 20, 20), bool)
    a[5:10, 5:10, 5:10] = True
    b = np.zeros_like(a)
    b[7:12, 5:10, 5:10] = True  # the same cube moved 2 voxels along x
    assert hausdorff_95(a, b) == pytest.approx(2.0)
    assert hausdorff_95(a, b, spacing=(2.0, 1.0, 1.0)) == pytest.approx(4.0)  # 2 voxels of 2 mm
    assert hausdorff_95(a, a) == 0.0
    assert math.isnan(hausdorff_95(a, np.zeros_like(a)))
    assert sensitivity(a, b) == pytest.approx(3 / 5)
    assert math.isnan(sensitivity(np.zeros_like(a), b))
