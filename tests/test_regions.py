"""Region targets, region outputs back to label maps, and the label convention presets."""

import numpy as np
import pytest

from unet3d_keras.label_conventions import CONVENTIONS, get_convention, restrict_regions
from unet3d_keras.regions import paint_labels, region_targets, regions_to_label_map


def test_region_targets_overlap_and_paint_back_exactly():
    rng = np.random.default_rng(0)
    truth = rng.choice(np.array([0, 1, 2, 3], np.uint8), size=(2, 1, 5, 6, 7))
    regions = list(CONVENTIONS["brats-ssa"].training_regions.values())  # WT {1,2,3}, TC {1,3}, ET {3}
    targets = region_targets(truth, regions)
    assert targets.shape == (2, 3, 5, 6, 7) and targets.dtype == np.int8
    np.testing.assert_array_equal(targets[:, 0], truth[:, 0] > 0)
    np.testing.assert_array_equal(targets[:, 1], (truth[:, 0] == 1) | (truth[:, 0] == 3))
    np.testing.assert_array_equal(targets[:, 2], truth[:, 0] == 3)
    for item in range(2):  # perfect region outputs give the truth back
        np.testing.assert_array_equal(regions_to_label_map(targets[item].astype(np.float32), regions), truth[item, 0])


def test_painting_rules_by_hand():
    # ET -> enhancing (4); TC without ET -> necrotic core (1); WT without TC -> oedema (2).
    probabilities = np.array([[0.9, 0.9, 0.9, 0.2, 0.1],   # WT
                              [0.1, 0.8, 0.7, 0.6, 0.1],   # TC
                              [0.0, 0.1, 0.6, 0.6, 0.9]],  # ET
                             np.float32).reshape(3, 5, 1, 1)
    regions = list(CONVENTIONS["brats2017"].training_regions.values())
    assert paint_labels(regions) == [2, 1, 4]
    assert regions_to_label_map(probabilities, regions).ravel().tolist() == [2, 1, 4, 4, 4]
    assert paint_labels(CONVENTIONS["brats-ped"].training_regions) == [4, 2, 3, 1]


def test_regions_that_cannot_be_painted_are_refused():
    with pytest.raises(ValueError, match=r"region TC \[1, 2, 3\] keeps the label values \[1, 2\]"):
        paint_labels({"WT": (1, 2, 3, 4), "TC": (1, 2, 3), "CC": (3,)})
    with pytest.raises(ValueError, match=r"the label values \[4\] are in no region"):
        paint_labels({"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}, labels=(1, 2, 3, 4))
    with pytest.raises(ValueError, match="2 prediction channels for 3 regions"):
        regions_to_label_map(np.zeros((2, 2, 2, 2)), [(1, 2, 3), (1, 3), (3,)])


def test_presets_follow_the_official_groups():
    glioma = get_convention("brats-gli")
    assert glioma.regions == {"NETC": (1,), "SNFH": (2,), "ET": (3,), "RC": (4,), "TC": (1, 3), "WT": (1, 2, 3)}
    assert get_convention("brats2017").regions == {"WT": (1, 2, 4), "TC": (1, 4), "ET": (4,)}
    assert get_convention("brats-ped").regions["TC"] == (1, 2, 3)
    for convention in CONVENTIONS.values():  # every preset's trained regions paint its labels
        assert sorted(paint_labels(convention.training_regions, convention.labels)) == sorted(convention.labels)
    assert restrict_regions(glioma.regions, (1, 2, 3)) == {"NETC": (1,), "SNFH": (2,), "ET": (3,), "TC": (1, 3),
                                                            "WT": (1, 2, 3)}
    with pytest.raises(ValueError, match="unknown label convention 'brats2030'; expected one of brats2017, "):
        get_convention("brats2030")
