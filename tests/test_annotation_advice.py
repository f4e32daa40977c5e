import itertools

import numpy as np
import pytest

from unet3d_keras.annotation_advice import MIN_EXPECTED_ERRORS, expected_errors, least_certain_slices, slices_to_check
from unet3d_keras.densify_holdout import annotated_planes


def softmax_volume(shape, n_classes=3, seed=0):
    logits = np.random.default_rng(seed).normal(0, 2, (n_classes, *shape))
    exp = np.exp(logits - logits.max(axis=0))
    return (exp / exp.sum(axis=0)).astype(np.float32)


def test_expected_errors_known_answers():
    # one voxel per column: the class of position 1 wins the first two, loses the last two
    probabilities = np.array([[0.1, 0.3, 0.7, 0.5],
                              [0.9, 0.4, 0.2, 0.1],
                              [0.0, 0.3, 0.1, 0.4]], np.float32).reshape(3, 4, 1, 1)
    np.testing.assert_allclose(expected_errors(probabilities, 1).ravel(), [0.1, 0.6, 0.2, 0.1], atol=1e-6)
    np.testing.assert_allclose(expected_errors(probabilities, 2).ravel(), [0.0, 0.3, 0.1, 0.4], atol=1e-6)


@pytest.mark.parametrize("shape, seed", [((9, 8, 7), 0), ((8, 11, 9), 3)])
def test_least_certain_slices_agree_with_a_voxel_by_voxel_count(shape, seed):
    probabilities = softmax_volume(shape, seed=seed)
    annotated = np.zeros(shape, bool)
    annotated[2] = True                   # an annotated x slice
    annotated[:, 5] = True                # an annotated y slice
    annotated[4:, :3, 1] = True           # a scribble, less than half of its z plane: not an annotated slice
    for position in (1, 2):
        # the same rule, written out voxel by voxel
        totals = [np.zeros(size) for size in shape]
        for voxel in itertools.product(*map(range, shape)):
            if annotated[voxel]:
                continue
            column = probabilities[(slice(None), *voxel)]
            error = 1 - column[position] if np.argmax(column) == position else column[position]
            for axis in range(3):
                totals[axis][voxel[axis]] += error
        totals[0][2] = totals[1][5] = -1  # annotated slices are not offered
        chosen = least_certain_slices(probabilities, position, annotated)
        assert [index for index, _ in chosen] == [int(np.argmax(t)) for t in totals]
        np.testing.assert_allclose([errors for _, errors in chosen], [t.max() for t in totals], rtol=1e-5)
        # the winners passed in, as the command does once for every class, give the same
        winners = np.argmax(probabilities, axis=0)
        assert least_certain_slices(probabilities, position, annotated, winners) == chosen


def test_the_least_certain_slice_is_where_the_model_hesitates_and_annotated_voxels_do_not_count():
    shape = (10, 9, 8)
    probabilities = np.zeros((3, *shape), np.float32)
    probabilities[0] = 1.0                              # sure of the background everywhere ...
    probabilities[:, 6, 3, 2] = [0.2, 0.35, 0.45]       # ... but hesitant in one voxel
    chosen = least_certain_slices(probabilities, 2, np.zeros(shape, bool))
    assert [index for index, _ in chosen] == [6, 3, 2]
    np.testing.assert_allclose([errors for _, errors in chosen], [0.55] * 3, rtol=1e-6)
    # annotated, that voxel counts no more: every sum is 0, and the lowest index of each axis is named
    annotated = np.zeros(shape, bool)
    annotated[6, 3, 2] = True
    assert least_certain_slices(probabilities, 2, annotated) == [(0, 0.0), (0, 0.0), (0, 0.0)]


def test_a_slice_at_least_half_annotated_is_never_named_and_one_less_annotated_can_be():
    shape = (8, 10, 6)
    probabilities = np.zeros((3, *shape), np.float32)
    probabilities[0] = 1.0
    annotated = np.zeros(shape, bool)
    annotated[1, :6] = True                               # x slice 1: 60% annotated, an annotated slice ...
    probabilities[:, 1, 6:] = [[[0.3]], [[0.2]], [[0.5]]]  # ... though its other 40% holds the most errors (12)
    annotated[5, :4] = True                               # x slice 5: 40% annotated, not one ...
    probabilities[:, 5, 4:] = [[[0.5]], [[0.2]], [[0.3]]]  # ... and the next most (10.8)
    chosen = least_certain_slices(probabilities, 2, annotated)
    assert chosen[0][0] == 5
    np.testing.assert_allclose(chosen[0][1], 0.3 * 6 * 6, rtol=1e-5)  # 6 rows of 6 voxels at 0.3
    assert least_certain_slices(probabilities, 2, np.zeros(shape, bool))[0][0] == 1  # unannotated, x 1 wins


def test_an_axis_whose_every_slice_is_half_annotated_names_none_and_a_wrong_shape_is_refused():
    probabilities = softmax_volume((4, 5, 6))
    annotated = np.zeros((4, 5, 6), bool)
    annotated[:2] = True  # half of x: every y and z plane is half annotated, an annotated slice
    chosen = least_certain_slices(probabilities, 1, annotated)
    assert chosen[0][0] in (2, 3) and chosen[1:] == [(None, 0.0), (None, 0.0)]
    with pytest.raises(ValueError, match=r"annotated: expected the shape \(4, 5, 6\) of the probabilities, "
                                         r"received \(4, 5, 5\)"):
        least_certain_slices(probabilities, 1, annotated[:, :, :5])


def test_annotated_planes_are_the_planes_at_least_half_annotated():
    annotated = np.zeros((6, 8, 10), bool)
    annotated[1] = True                # a whole x plane
    annotated[4, :5] = True            # 5 of its 8 rows: 62.5% of an x plane
    annotated[:, 6, :5] = True         # with x plane 1's voxels in it, 35 of 60: 58% of a y plane
    annotated[:, 7, :2] = True         # z planes 0 and 1 reach 23 of 48 (48%): not slices
    planes = annotated_planes(annotated)
    assert [p.tolist() for p in planes] == [[1, 4], [6], []]
    half = np.zeros((4, 6, 3), bool)
    half[:2] = True                    # every y and z plane exactly half annotated: slices
    assert [p.tolist() for p in annotated_planes(half)] == [[0, 1], [0, 1, 2, 3, 4, 5], [0, 1, 2]]
    half[0, 0, 0] = False              # just under half of y plane 0 and z plane 0
    assert [p.tolist() for p in annotated_planes(half)] == [[0, 1], [1, 2, 3, 4, 5], [1, 2]]


def test_slices_to_check_keep_those_with_half_a_voxel_or_more_expected_wrong():
    assert MIN_EXPECTED_ERRORS == 0.5
    assert slices_to_check([(4, 0.5), (0, 0.49), (None, 0.0)]) == [4, None, None]
    assert slices_to_check([(0, 12.0), (7, 3.0), (2, 0.6)]) == [0, 7, 2]
