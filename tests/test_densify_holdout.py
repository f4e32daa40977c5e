"""Densify's held-back voxels: the split, the per-class scores, class weights, the stopping rules."""

import errno
import json
import math

import numpy as np
import pytest

from unet3d_keras.densify_holdout import (DensifyOptions, annotated_planes, chosen_weighting, class_scores,
                                          class_weights_for, hold_out, low_classes, prior_output_bias,
                                          tile_sides)
from unet3d_keras.losses import balanced_class_weights
from unet3d_keras.sparse import make_sparse_annotation

UNANNOTATED = -1


def index_map_of(shape=(40, 36, 28), slices=(2, 2, 2)):
    dense = np.zeros(shape, np.uint8)
    dense[8:30, 6:30, 5:22] = 1
    dense[12:26, 10:24, 9:18] = 2
    sparse = make_sparse_annotation(dense, slices)
    return np.where(sparse == 255, UNANNOTATED, sparse.astype(np.int32)), dense


def test_hold_out_takes_whole_tiles_of_each_annotated_slice_with_the_seed():
    index_map, _ = index_map_of()
    held = hold_out(index_map, 0.25, 4, np.random.default_rng(3))
    annotated = index_map != UNANNOTATED
    assert held.mask.any() and not np.any(held.mask & ~annotated)
    np.testing.assert_array_equal(held.mask, held.groups >= 0)
    # Every annotated slice loses some of its voxels, about a quarter of them in all.
    for axis in range(3):
        for index in np.flatnonzero(annotated.mean(axis=tuple(a for a in range(3) if a != axis)) >= 0.5):
            plane = np.take(held.mask, index, axis=axis)
            assert 0 < plane.sum() < np.take(annotated, index, axis=axis).sum()
    assert 0.15 < held.mask.sum() / annotated.sum() < 0.35
    # A tile is a 4 x 4 square of one plane: each group spans at most 4 voxels along two axes and 1 along the third.
    for group in range(held.n_groups):
        extent = np.ptp(np.argwhere(held.groups == group), axis=0) + 1
        assert sorted(extent)[0] == 1 and max(extent) <= 4
    np.testing.assert_array_equal(held.mask, hold_out(index_map, 0.25, 4, np.random.default_rng(3)).mask)
    assert not np.array_equal(held.mask, hold_out(index_map, 0.25, 4, np.random.default_rng(4)).mask)
    assert not hold_out(index_map, 0.0, 4, np.random.default_rng(3)).mask.any()


@pytest.mark.parametrize("layout", ["every other z slice", "two z slices side by side", "every voxel"])
def test_hold_out_takes_no_one_voxel_sheets_where_annotated_planes_lie_side_by_side(layout):
    """Every other z slice annotated makes every x and y plane half annotated: tiles of those planes would be
    sheets one voxel thick between training voxels of the same z slice. Up to a tile's side of planes side by
    side are tiled together; more are held back in cubic blocks."""
    shape = (24, 20, 16)
    labels = (np.indices(shape).sum(axis=0) // 5 % 3).astype(np.int32)
    index_map = np.full(shape, UNANNOTATED, np.int32)
    where = {"every other z slice": np.s_[:, :, ::2],
             "two z slices side by side": np.s_[:, :, 7:9],  # across the border of two cubic blocks (z 4-7, 8-11)
             "every voxel": np.s_[:]}[layout]
    index_map[where] = labels[where]
    annotated = index_map != UNANNOTATED
    held = hold_out(index_map, 0.2, 4, np.random.default_rng(0))
    assert held.mask.any()
    training = annotated & ~held.mask
    for group in range(held.n_groups):
        voxels = np.argwhere(held.groups == group)
        extent = np.ptp(voxels, axis=0) + 1
        # a 4 x 4 tile of one z slice, of both slices side by side, or a 4 x 4 x 4 block
        assert tuple(extent) == (4, 4, {"every other z slice": 1, "two z slices side by side": 2}.get(layout, 4))
        # inside its own z slice, a voxel of a tile has training voxels beside it only on the tile's edges
        x, y, z = voxels.T
        inner = np.isin(x % 4, (1, 2)) & np.isin(y % 4, (1, 2))
        for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            assert not training[np.clip(x[inner] + dx, 0, shape[0] - 1), np.clip(y[inner] + dy, 0, shape[1] - 1),
                                z[inner]].any()
        if layout == "two z slices side by side":  # nor the other slice of the pair
            assert not training[x, y, 15 - z].any()


def test_hold_out_leaves_every_class_some_training_voxels():
    index_map = np.full((12, 12, 12), UNANNOTATED, np.int32)
    index_map[6] = 0
    index_map[6, 2, 2] = 1  # one voxel of class 1: never held back
    for seed in range(20):
        held = hold_out(index_map, 0.9, 2, np.random.default_rng(seed))
        assert not held.mask[6, 2, 2] and held.mask.any()


def test_hold_out_holds_back_a_tile_of_a_small_class_that_no_drawn_tile_holds():
    """A lesion a few tiles wide, missed by the 10% of tiles drawn, still gets a tile held back (the largest
    that holds at most a third of its voxels), so that the run can score it; one tile wide, it trains whole."""
    index_map = np.full((32, 32, 16), UNANNOTATED, np.int32)
    index_map[:, :, 8] = 0
    index_map[4:10, 4:8, 8] = 1  # 16 voxels in the tile of side 4 (1, 1), 8 in (2, 1)
    index_map[4:8, 8, 8] = 1  # and 4 in (1, 2): 28 in all; (1, 1) holds over a third
    index_map[20:23, 20:23, 8] = 2  # 9 voxels, all in tile (5, 5)
    lesion = index_map == 1
    topped_up = 0
    for seed in range(40):
        held = hold_out(index_map, 0.1, 4, np.random.default_rng(seed))
        np.testing.assert_array_equal(held.groups, hold_out(index_map, 0.1, 4, np.random.default_rng(seed)).groups)
        assert np.any(held.mask & lesion) and np.any(~held.mask & lesion)
        assert not np.any(held.mask & (index_map == 2))  # its one tile must teach it
        held_tiles = {(x // 4, y // 4) for x, y in np.argwhere((held.mask & lesion)[:, :, 8])}
        if held_tiles == {(2, 1)}:
            topped_up += 1
            block = held.groups[8:12, 4:8, 8]  # the whole tile, background too, is one held-back group
            assert len(np.unique(block)) == 1 and block[0, 0] >= 0
    # 6 or 7 of the plane's 64 tiles are drawn: they miss the lesion's 3 tiles in about 70% of the seeds
    assert topped_up > 20
    assert not hold_out(index_map, 0.0, 4, np.random.default_rng(0)).mask.any()


def test_class_scores_known_answer():
    truth = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    predicted = np.array([0, 0, 1, 1, 2, 2, 2, 0])
    scores = class_scores(truth, predicted, 4)
    # class 0: tp 2, fp 1, fn 1; class 1: tp 1, fp 1, fn 1; class 2: tp 2, fp 1, fn 1; class 3 absent.
    assert scores["iou"] == pytest.approx([0.5, 1 / 3, 0.5, None])
    assert scores["dice"] == pytest.approx([2 / 3, 0.5, 2 / 3, None])
    assert scores["voxels"] == [3, 2, 3, 0]
    # A class with no voxel in truth scores None even where it is predicted: the wrong voxels
    # already count against the classes they belong to (here class 2's recall).
    scores = class_scores(np.array([0, 0, 1, 1, 2]), np.array([0, 0, 1, 1, 3]), 4)
    assert scores["iou"] == pytest.approx([1.0, 1.0, 0.0, None])
    assert scores["dice"] == pytest.approx([1.0, 1.0, 0.0, None])


def test_low_classes_rule():
    assert low_classes([0.99, 0.85, 0.30]) == [2]  # 0.30 < 0.5 * median(0.99, 0.85)
    assert low_classes([0.99, 0.85, 0.50]) == []
    assert low_classes([0.99, None, 0.2, 0.9]) == [2]
    assert low_classes([0.9]) == []


def test_class_weights_for():
    counts = [900, 90, 10]
    assert class_weights_for(counts, "none") is None
    assert class_weights_for(counts, "balanced") == pytest.approx(balanced_class_weights(counts))
    weights = np.asarray(class_weights_for(counts, "sqrt"))
    np.testing.assert_allclose(weights / weights[0], np.sqrt([1, 10, 90]))
    assert np.dot(weights, counts) == pytest.approx(sum(counts))  # mean weight 1 over the voxels
    # auto: square-root weights once a class holds under 2% of the voxels, none at 2% or more
    assert chosen_weighting([900, 70, 30], "auto") == "none" and class_weights_for([900, 70, 30], "auto") is None
    rare = [980, 21, 19]
    assert chosen_weighting(rare, "auto") == "sqrt"
    assert class_weights_for(rare, "auto") == pytest.approx(class_weights_for(rare, "sqrt"))
    assert chosen_weighting([980, 20], "auto") == "none"
    assert [chosen_weighting(rare, w) for w in ("none", "sqrt", "balanced")] == ["none", "sqrt", "balanced"]
    with pytest.raises(ValueError, match="class_weighting"):
        DensifyOptions(class_weighting="inverse")
    with pytest.raises(ValueError, match="holdout"):
        DensifyOptions(holdout=1.0)
    with pytest.raises(ValueError, match="window_weighting: expected one of"):
        DensifyOptions(window_weighting="triangular")


def test_prior_output_bias_is_the_log_of_each_class_share():
    bias = prior_output_bias([900, 90, 10])
    assert bias.dtype == np.float32
    np.testing.assert_allclose(bias, np.log([0.9, 0.09, 0.01]), rtol=1e-6)
    softmax = np.exp(bias) / np.exp(bias).sum()  # what the untrained model's last layer starts from
    np.testing.assert_allclose(softmax, [0.9, 0.09, 0.01], rtol=1e-6)
    # a class without training voxels counts as one: a finite bias
    np.testing.assert_allclose(prior_output_bias([999, 0]), np.log([0.999, 0.001]), rtol=1e-6)
    with pytest.raises(ValueError, match="output_bias: expected one of .'zero', 'prior'.. received 'ones'"):
        DensifyOptions(output_bias="ones")


def test_the_densify_command_defaults_are_densify_options_defaults():
    from unet3d_keras.commands.densify import densify_options, parse_args

    args = parse_args(["--image", "image.nii.gz", "--labels", "sparse.nii.gz", "--output", "dense.nii.gz"])
    assert densify_options(args) == DensifyOptions()
    assert args.window_weighting == "gaussian"
    # No class weights unless a class is rare: measured in docs/sparse_annotation.md (thin shell, MNI152, lesion).
    assert args.class_weights == "auto" and class_weights_for([900, 70, 30], args.class_weights) is None
    assert class_weights_for([990, 9, 1], args.class_weights) == pytest.approx(class_weights_for([990, 9, 1], "sqrt"))


def test_the_densify_help_names_the_share_that_makes_a_class_rare(capsys):
    from unet3d_keras.commands.densify import parse_args

    with pytest.raises(SystemExit) as done:
        parse_args(["--help"])
    assert done.value.code == 0
    assert "or auto: sqrt when a class holds under 2% of the training voxels, else none" in " ".join(
        capsys.readouterr().out.split())


@pytest.mark.parametrize("weighting, advice", [("none", ", or try --class-weights sqrt"),
                                               ("sqrt", ", or try --class-weights balanced"), ("balanced", ""),
                                               ("set", "")])
@pytest.mark.parametrize("plateaued, remedy", [
    (False, "annotate more of it or train longer"),
    (True, "annotate more of it (the held-back score had stopped improving: a longer run would not help)")])
def test_the_low_class_warning_suggests_the_next_weighting(weighting, advice, plateaued, remedy, capsys):
    from argparse import Namespace
    from types import SimpleNamespace

    from unet3d_keras.annotation_advice import least_sure_slices
    from unet3d_keras.commands.densify import report_scores

    fitted = SimpleNamespace(steps=10, epochs=1, kept_epoch=1, stop_reason="10 steps done", train_seconds=1.0,
                             plateaued=plateaued, held_out_voxels=30, config=SimpleNamespace(seed=42),
                             class_weight_values=(1.0, 2.0, 3.0),
                             score_history=[], mirror=True, window_weighting="gaussian", class_weighting=weighting,
                             scores={"iou": [0.99, 0.85, 0.2], "dice": [0.99, 0.9, 0.33], "voxels": [10, 10, 10]})
    args = Namespace(holdout=0.1, class_weights=weighting, sampling="class_first", output_bias="zero")
    probabilities = np.zeros((3, 6, 5, 4), np.float32)
    probabilities[0] = 1.0
    probabilities[:, 3, 2, :] = [[0.3], [0.2], [0.5]]  # class 4 wins these 4 voxels, half sure: 0.5 errors each
    probabilities[:, :, 4, 1] = [[0.3], [0.6], [0.1]]  # class 1 wins these: 0.4 errors each for it, 0.1 for class 4
    annotated = np.zeros((6, 5, 4), bool)
    annotated[0] = True  # an annotated x slice: its voxels do not count, and it is never named
    report = report_scores(fitted, [0, 1, 4], args, least_sure_slices(probabilities, [0, 1, 4], annotated))
    assert report["low_classes"] == [4] and report["class_weights"] == weighting
    assert report["class_weight_values"] == (1.0, 2.0, 3.0)
    out = capsys.readouterr().out
    assert ("warning: class 4 scores IoU 0.200 on the held-back voxels, below half the median of the other "
            "classes: " + remedy + advice + "\n  where the model is least sure of class 4, to check and annotate "
            "next: slices x 3, y 2, z 1 (voxel indices from 0; the model itself expects about 2, 2 and 1 of their "
            "unannotated voxels to be wrong about class 4)\n") in out
    assert "least sure of class 1" not in out  # only a class warned about is advised on; the JSON holds them all
    assert report["next_slices"]["4"] == {"x": {"index": 3, "expected_errors": 2.1},
                                          "y": {"index": 2, "expected_errors": 2.0},
                                          "z": {"index": 1, "expected_errors": 1.0}}
    assert report["next_slices"]["1"] == {"x": {"index": 3, "expected_errors": 1.2},
                                          "y": {"index": 4, "expected_errors": 2.0},
                                          "z": {"index": 1, "expected_errors": 2.2}}
    assert set(report["next_slices"]) == {"1", "4"}


def test_a_class_with_no_held_back_voxel_is_reported_as_such(capsys):
    from argparse import Namespace
    from types import SimpleNamespace

    from unet3d_keras.commands.densify import report_scores

    fitted = SimpleNamespace(steps=10, epochs=1, kept_epoch=1, stop_reason="10 steps done", train_seconds=1.0,
                             plateaued=False, held_out_voxels=30, config=SimpleNamespace(seed=42),
                             class_weight_values=None,
                             score_history=[], mirror=True, window_weighting="gaussian", class_weighting="none",
                             scores={"iou": [0.99, None], "dice": [0.99, None], "voxels": [30, 0]})
    report = report_scores(fitted, [0, 3], Namespace(holdout=0.1, class_weights="none", sampling="class_first",
                                                     output_bias="zero"), {})
    assert report["scores"]["3"] == {"iou": None, "dice": None, "voxels": 0} and report["low_classes"] == []
    assert capsys.readouterr().out == ("held-back annotated voxels: class, voxels, IoU, Dice\n  0: 30, 0.990, 0.990\n"
                                       "  3: 0, -, - (none held back: its voxels lie in too few tiles to spare one)\n")


def test_the_picture_shows_the_classes_warned_about_else_the_least_sure():
    from unet3d_keras.annotation_advice import MAX_CLASSES_DRAWN, classes_to_check

    classes = [0, 1, 4, 6]
    next_slices = {1: [(3, 5.0), (None, 0.0), (1, 2.5)], 4: [(0, 4.0), (2, 3.0), (7, 0.4)],
                   6: [(5, 1.0), (6, 1.0), (2, 1.0)]}
    assert classes_to_check(classes, [0, 6], next_slices) == ([(3, "6", [5, 6, 2])], [])  # never the first class
    # in label order; z of class 4 holds under half a voxel expected wrong: not worth checking
    assert classes_to_check(classes, [4, 1], next_slices) == ([(1, "1", [3, None, 1]), (2, "4", [0, 2, None])], [])
    # 7.5 expected errors, 4: 7.0 (0.4 left out)
    assert classes_to_check(classes, [0], next_slices) == ([(1, "1", [3, None, 1])], [])
    next_slices[4] = [(0, 4.0), (2, 3.0), (7, 0.5)]
    assert classes_to_check(classes, [0], next_slices)[0][0][1] == "1"  # equal sums, 7.5: the lower label value
    next_slices[4] = [(0, 4.0), (2, 3.0), (7, 1.0)]
    assert classes_to_check(classes, [0], next_slices) == ([(2, "4", [0, 2, 7])], [])
    # a class with no slice worth checking is never shown, even when warned about
    next_slices[6] = [(None, 0.0), (3, 0.2), (4, 0.0)]
    assert classes_to_check(classes, [6], next_slices) == ([(2, "4", [0, 2, 7])], [])
    next_slices[1] = next_slices[4] = next_slices[6]
    assert classes_to_check(classes, [6], next_slices) == ([], [])
    assert classes_to_check([0], [0], {}) == ([], [])
    # the unrounded expected errors decide, as in the printed line: 0.46 is under half a voxel
    assert classes_to_check([0, 1], [1], {1: [(2, 0.46), (3, 0.0), (None, 0.0)]}) == ([], [])

    # at most MAX_CLASSES_DRAWN of the classes warned about: those with the most expected errors
    many = list(range(1, MAX_CLASSES_DRAWN + 3))
    errors = {c: c % 4 + 2.0 for c in many}
    kept = sorted(sorted(many, key=lambda c: (-errors[c], c))[:MAX_CLASSES_DRAWN])
    shown, left_out = classes_to_check([0, *many], many, {c: [(c, float(c % 4)), (0, 1.0), (0, 1.0)] for c in many})
    assert [int(name) for _, name, _ in shown] == kept and left_out == [c for c in many if c not in kept]


def test_the_slices_to_check_next_read_as_a_user_reads_them():
    from unet3d_keras.annotation_advice import slice_list

    assert slice_list([(31, 140.5), (20, 119.6), (25, 90.0)], 2) == (
        "slices x 31, y 20, z 25 (voxel indices from 0; the model itself expects about 141, 120 and 90 of their "
        "unannotated voxels to be wrong about class 2)")
    # an axis whose every slice is at least half annotated, or with less than half a voxel expected wrong, is left out
    assert slice_list([(None, 0.0), (7, 3.2), (4, 0.4)], 5) == (
        "slice y 7 (voxel indices from 0; the model itself expects about 3 of the unannotated voxels to be wrong "
        "about class 5)")
    assert slice_list([(None, 0.0)] * 3, 1) == "none: every slice is at least half annotated"
    assert slice_list([(None, 0.0), (0, 0.0), (3, 0.2)], 1) == (
        "none: the model expects no error about it in the slices not yet annotated")


def test_the_densify_defaults_are_read_only_and_copied_by_each_run():
    from unet3d_keras.densify import DENSIFY_DEFAULTS, densify_config

    with pytest.raises(TypeError):
        DENSIFY_DEFAULTS["model"]["depth"] = 4
    config = densify_config([0, 1], (40, 40, 40), 1, 255, ["model.depth=2"], 0)
    assert config.model.depth == 2 and DENSIFY_DEFAULTS["model"]["depth"] == 3
    assert list(config.training.patch_shape) == [32, 32, 32]


@pytest.mark.parametrize("kwargs, message", [
    ({"ignore_label": 300}, r"ignore_label: expected a value between 1 and 255 \(0 is background\), received 300"),
    ({"ignore_label": 0}, r"ignore_label: expected a value between 1 and 255 \(0 is background\), received 0"),
    ({"steps": 0}, "steps: expected a positive number of steps, received 0"),
    ({"ignore_label": 2.5}, "ignore_label: expected a whole number, received 2.5"),
    ({"overrides": ["model.depth=5"]}, r"--set model.depth: 5 halves the window 4 times, which needs sides that are "
     r"multiples of 16, more than the volume's largest side \(9\); use at most 4"),
])
def test_fit_sparse_refuses_bad_arguments_before_training(kwargs, message):
    from unet3d_keras.config import ConfigError
    from unet3d_keras.densify import fit_sparse
    from unet3d_keras.errors import DataError

    sparse = np.full((8, 9, 7), 255, np.uint8)
    sparse[0], sparse[1] = 0, 1
    with pytest.raises((DataError, ConfigError), match=message):
        fit_sparse(np.zeros((8, 9, 7), np.float32), sparse, **kwargs)


def test_fit_sparse_takes_whole_float_labels_and_refuses_fractions():
    from unet3d_keras.densify import fit_sparse
    from unet3d_keras.errors import DataError

    sparse = np.full((8, 8, 8), 255.0)
    sparse[0], sparse[1] = 0.0, 1.5
    with pytest.raises(DataError, match="the label map holds non-integer label values"):
        fit_sparse(np.zeros((8, 8, 8), np.float32), sparse, steps=1)
    sparse[1] = 1.0
    fitted = fit_sparse(np.arange(512, dtype=np.float32).reshape(8, 8, 8), sparse, 255.0, TINY, steps=1,
                        show_progress=False)
    assert fitted.classes == (0, 1) and fitted.steps == 1


# --------------------------------------------------------------------------------------------
# Training: fixed steps, plateau, budget (tiny model)

TINY = ["model.n_base_filters=2", "model.depth=2", "training.patch_shape=[16,16,16]", "training.batch_size=2",
        "training.mixed_precision=off"]


@pytest.fixture(scope="module")
def case():
    image_shape = (24, 20, 18)
    rng = np.random.default_rng(0)
    dense = np.zeros(image_shape, np.uint8)
    dense[5:19, 4:16, 4:14] = 1
    dense[8:16, 7:13, 7:11] = 2
    image = (dense + rng.normal(0, 0.3, image_shape)).astype(np.float32)
    return image, make_sparse_annotation(dense, (3, 3, 3))


def test_the_prior_output_bias_starts_the_head_at_the_training_voxels_shares(case):
    from unet3d_keras.densify import fit_sparse
    from unet3d_keras.errors import DataError

    image, sparse = case
    still = [*TINY, "training.initial_learning_rate=1.0e-9"]  # one step that moves no weight visibly
    counts = np.bincount(sparse[sparse != 255], minlength=3)  # classes 0, 1, 2; nothing held back
    for output_bias, expected in (("prior", np.log(counts / counts.sum())), ("zero", np.zeros(3))):
        fitted = fit_sparse(image, sparse, 255, still, steps=1, seed=0, show_progress=False,
                            options=DensifyOptions(holdout=0, output_bias=output_bias))
        np.testing.assert_allclose(np.asarray(fitted.model.get_layer("head").bias), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(DataError, match="--output-bias prior: the model 'isensee2017' has no layer 'head'"):
        fit_sparse(image, sparse, 255, [*TINY, "model.name=isensee2017", "model.n_segmentation_levels=1"], steps=1,
                   show_progress=False, options=DensifyOptions(output_bias="prior"))


def test_steps_give_a_fixed_reproducible_run_with_held_back_scores(case):
    from unet3d_keras.densify import densify, fit_sparse

    image, sparse = case
    options = DensifyOptions(holdout=0.2, class_weighting="balanced")
    first = densify(image, sparse, 255, TINY, steps=21, seed=5, show_progress=False, options=options)
    again = densify(image, sparse, 255, TINY, steps=21, seed=5, show_progress=False, options=options)
    fitted = first.fitted
    assert fitted.steps == 21 and fitted.stop_reason == "21 steps done" and not fitted.plateaued
    np.testing.assert_array_equal(first.probabilities, again.probabilities)
    assert fitted.scores == again.fitted.scores
    assert fitted.held_out_voxels > 0 and sum(fitted.scores["voxels"]) == fitted.held_out_voxels
    # Evaluated after the first epoch (16 steps), then as often as costs about a fifth of the training time,
    # and at the end; the last weights are kept.
    assert fitted.score_history[0]["epoch"] == 1 and fitted.kept_epoch == fitted.epochs == 2
    # The class weights come from the training voxels' counts.
    index = np.where(sparse == 255, UNANNOTATED, sparse.astype(np.int32))
    held = hold_out(index, 0.2, 4, np.random.default_rng(5)).mask  # 4: a quarter of the shortest side
    np.testing.assert_array_equal(fitted.held_out_mask, held)  # the voxels the scores count, in the image's shape
    counts = np.bincount(index[(index != UNANNOTATED) & ~held], minlength=3)
    assert fitted.config.training.class_weights == pytest.approx(tuple(balanced_class_weights(counts)), rel=1e-5)
    # --set training.class_weights wins over the option.
    manual = fit_sparse(image, sparse, 255, [*TINY, "training.class_weights=[1,2,3]"], steps=1, seed=5,
                        show_progress=False, options=options)
    assert manual.config.training.class_weights == (1.0, 2.0, 3.0) and manual.class_weighting == "set"
    assert manual.class_weight_values == (1.0, 2.0, 3.0)
    assert first.fitted.class_weighting == "balanced"
    assert first.fitted.class_weight_values == pytest.approx(tuple(balanced_class_weights(counts)), rel=1e-5)
    # the config's own "balanced" counts the training voxels only, as the option does (not the held-back ones,
    # which change these weights by more than the tolerance), and is reported as the weights it resolved to
    configured = fit_sparse(image, sparse, 255, [*TINY, "training.class_weights=balanced"], steps=1, seed=5,
                            show_progress=False, options=options)
    every = np.bincount(index[index != UNANNOTATED], minlength=3)
    assert balanced_class_weights(every) != pytest.approx(balanced_class_weights(counts), rel=1e-3)
    assert configured.class_weighting == "set"
    assert configured.class_weight_values == pytest.approx(tuple(balanced_class_weights(counts)), rel=1e-5)


def test_partial_slices_are_held_back_as_slices_in_a_volume_that_is_padded():
    from unet3d_keras.densify import fit_sparse

    # 23 x 19 x 17 is padded to 24 x 20 x 18 (depth 2): x planes 4 and 6, annotated on 10 of their 19 rows, are
    # annotated slices of the volume (53% of a plane) but not of the padded one (47%).
    rng = np.random.default_rng(3)
    dense = rng.integers(0, 3, (23, 19, 17)).astype(np.uint8)
    sparse = np.full(dense.shape, 255, np.uint8)
    sparse[[4, 6], :10] = dense[[4, 6], :10]
    index = np.where(sparse == 255, UNANNOTATED, sparse.astype(np.int32))
    assert [len(p) for p in annotated_planes(index != UNANNOTATED)] == [2, 0, 0]
    fitted = fit_sparse(dense.astype(np.float32), sparse, 255, TINY, steps=1, seed=7, show_progress=False,
                        options=DensifyOptions(holdout=0.2))
    held = hold_out(index, 0.2, 4, np.random.default_rng(7)).mask  # 4: a quarter of the shortest side
    np.testing.assert_array_equal(fitted.held_out_mask, held)
    # Each slice's own share of tiles, drawn apart: cubes of 4 voxels would hold back the same rows of both.
    assert held[4].any() and held[6].any() and not np.array_equal(held[4], held[6])


def test_a_thin_stack_of_sections_is_held_back_in_tiles_as_wide_as_its_planes_allow():
    from unet3d_keras.densify import fit_sparse

    dense = np.zeros((40, 36, 8), np.uint8)
    dense[10:30, 8:28] = 1
    dense[16:22, 14:20] = 2
    sparse = make_sparse_annotation(dense, (0, 0, 2))  # 2 of the 8 sections
    image = (dense + np.random.default_rng(0).normal(0, 0.3, dense.shape)).astype(np.float32)
    fitted = fit_sparse(image, sparse, 255, TINY, steps=1, seed=3, show_progress=False,
                        options=DensifyOptions(holdout=0.2))
    index = np.where(sparse == 255, UNANNOTATED, sparse.astype(np.int32))
    # z, under a quarter of x, is left out of the cubes' bound (16 x 16 x 8 window, cut to the stack)
    np.testing.assert_array_equal(fitted.held_out_mask, hold_out(index, 0.2, [8, 8, 2], np.random.default_rng(3)).mask)
    planes = annotated_planes(index != UNANNOTATED)[2]
    assert len(planes) == 2 and fitted.held_out_mask[:, :, planes].any()
    for z in planes:  # whole 8 x 8 tiles of each section (a quarter of the shortest side made them 2 x 2)
        tiles = fitted.held_out_mask[:40, :32, z].reshape(5, 8, 4, 8)
        assert np.all(tiles.all(axis=(1, 3)) == tiles.any(axis=(1, 3)))


@pytest.mark.parametrize("patch, shape, sides", [
    ((32, 32, 32), (64, 64, 48), [12, 12, 12]),  # cubes, a quarter of the shortest side
    ((32, 32, 32), (99, 117, 95), [16, 16, 16]),  # cubes, half the window
    ((16, 16, 16), (24, 20, 18), [4, 4, 4]),
    ((8, 8, 8), (8, 8, 8), [2, 2, 2]),  # at least 2
    ((32, 32, 12), (216, 256, 10), [16, 16, 2]),  # a stack of thin sections: z has its own side
    ((32, 32, 24), (256, 256, 24), [16, 16, 6]),
    ((12, 32, 32), (10, 216, 256), [2, 16, 16]),
])
def test_tile_sides_are_cubes_except_along_the_short_axis_of_a_stack(patch, shape, sides):
    assert tile_sides(patch, shape) == sides


def test_a_plateau_stops_a_timed_run(case):
    from unet3d_keras.densify import fit_sparse

    image, sparse = case
    import time

    # min_delta 2: no evaluation after the first counts as a gain; no final decay. Without mirroring the
    # final scores are the last evaluation's.
    options = DensifyOptions(holdout=0.2, patience_epochs=2, decay_epochs=0, min_delta=2.0, mirror=False)
    fitted = fit_sparse(image, sparse, 255, TINY, deadline=time.monotonic() + 120, seed=1, show_progress=False,
                        options=options)
    assert fitted.stop_reason == "no gain on the held-back voxels in 2 epochs" and fitted.plateaued
    # Evaluations are spaced to cost at most about a fifth of the training time: it stops at the first one
    # at least 2 epochs after the best.
    assert fitted.epochs == fitted.score_history[-1]["epoch"] >= 3 and len(fitted.score_history) >= 2
    assert fitted.score_history[-2]["epoch"] < 3
    # Its learning rate never decayed (120 s budget): no evaluation qualifies, the last weights stay.
    assert fitted.kept_epoch == fitted.epochs and fitted.scores["iou"] == fitted.score_history[-1]["iou"]


def test_a_plateau_decays_the_learning_rate_before_stopping(case):
    import time

    import keras

    from unet3d_keras.densify import fit_sparse

    image, sparse = case
    options = DensifyOptions(holdout=0.2, patience_epochs=2, decay_epochs=3, min_delta=2.0, mirror=False)
    fitted = fit_sparse(image, sparse, 255, TINY, deadline=time.monotonic() + 120, seed=1, show_progress=False,
                        options=options)
    assert fitted.stop_reason == "no gain on the held-back voxels in 2 epochs, then 3 epochs of learning-rate decay"
    assert fitted.plateaued
    plateau = next(row["epoch"] for row in fitted.score_history if row["epoch"] >= 3)
    # Three more epochs, the last one scored; the rate of the last is the cosine's at 2.5/3 of the decay.
    assert fitted.epochs == plateau + 3 == fitted.score_history[-1]["epoch"]
    last_rate = float(keras.ops.convert_to_numpy(fitted.model.optimizer.learning_rate))  # the last epoch's
    initial = fitted.config.training.initial_learning_rate
    assert last_rate < initial * 0.5 * (1 + math.cos(math.pi * 2.5 / 3)) + 1e-9
    assert fitted.kept_epoch == fitted.epochs and fitted.scores["iou"] == fitted.score_history[-1]["iou"]


def test_the_kept_weights_are_the_best_at_a_decayed_learning_rate():
    import keras

    from unet3d_keras.densify_monitor import KEEP_RATE_SHARE, HeldOutMonitor
    from unet3d_keras.schedule import TimeCosine

    index_map, _ = index_map_of()
    held_out = hold_out(index_map, 0.3, 8, np.random.default_rng(0), UNANNOTATED)
    volume = np.zeros((1, *index_map.shape), np.float32)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse")
    schedule = TimeCosine(0.0, 1.0, initial=1.0)
    monitor = HeldOutMonitor(volume, index_map, held_out, 3, (16, 16, 16), DensifyOptions(patience_epochs=100),
                             stop_on_plateau=True, schedule=schedule)
    monitor.set_model(model)
    monitor.set_params({"steps": 16})
    # (learning rate, foreground IoU of classes 1 and 2): the best score of all comes at the high rate.
    epochs = [(1.0, 0.9), (KEEP_RATE_SHARE, 0.5), (0.1, 0.6), (0.1, 0.6), (0.01, 0.55), (0.0, 0.58)]
    for epoch, (rate, iou) in enumerate(epochs[:-1]):
        model.optimizer.learning_rate.assign(rate)
        model.set_weights([np.full((1, 1), epoch + 1.0, np.float32), np.zeros(1, np.float32)])
        monitor.evaluate = lambda iou=iou: {"iou": [1.0, iou, iou], "dice": [1.0, iou, iou], "voxels": [1, 1, 1]}
        monitor.on_epoch_end(epoch)
    # The last epoch is not scored during training: restore_best scores it, then keeps epoch 4 (a tie
    # with epoch 3 at 0.6 goes to the later weights).
    model.optimizer.learning_rate.assign(epochs[-1][0])
    model.set_weights([np.full((1, 1), 6.0, np.float32), np.zeros(1, np.float32)])
    monitor.evaluate = lambda: {"iou": [1.0, 0.58, 0.58], "dice": [1.0, 0.58, 0.58], "voxels": [1, 1, 1]}
    assert monitor.restore_best(6) == 4
    assert model.get_weights()[0][0, 0] == 4.0
    assert [row["epoch"] for row in monitor.history] == [1, 2, 3, 4, 5, 6]
    assert monitor.best_epoch == 1  # the plateau is still measured against the best of all


def test_no_plateau_is_waited_for_when_no_foreground_voxel_is_held_back():
    import keras

    from unet3d_keras.densify_monitor import HeldOutMonitor

    # A lesion crossing one annotated slice only, inside one tile: none of its voxels can be held back, and
    # the plateau of the mean foreground IoU would read 0 at every evaluation (a plateau from the first).
    dense = np.zeros((64, 64, 48), np.uint8)
    dense[44:51, 20:27, 20:27] = 1
    sparse = make_sparse_annotation(dense, (2, 2, 2))
    lesion_only = np.where(sparse == 255, UNANNOTATED, sparse.astype(np.int32))
    both = index_map_of()[0]
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    options = DensifyOptions(patience_epochs=2, decay_epochs=0)
    stopped = {}
    for name, index_map, n_classes in (("lesion only", lesion_only, 2), ("both", both, 3)):
        held_out = hold_out(index_map, 0.1, 16, np.random.default_rng(3), UNANNOTATED)
        assert held_out.mask.any() and (name == "both") == bool(np.any(index_map[held_out.mask] > 0))
        monitor = HeldOutMonitor(np.zeros((1, *index_map.shape), np.float32), index_map, held_out, n_classes,
                                 (16, 16, 16), options, stop_on_plateau=True)
        monitor.set_model(model)
        monitor.set_params({"steps": 16})
        model.stop_training = False
        # the scores never change: only a scored foreground class makes that a plateau
        monitor.evaluate = lambda n=n_classes: {"iou": [0.9] + [None if n == 2 else 0.5] * (n - 1),
                                                "dice": [0.9] * n, "voxels": [1] * n}
        for epoch in range(6):
            monitor.on_epoch_end(epoch)
            if model.stop_training:
                break
        stopped[name] = (model.stop_training, monitor.stopped_on_plateau, epoch + 1)
    assert stopped == {"lesion only": (False, False, 6), "both": (True, True, 3)}


def test_a_timed_run_with_no_foreground_voxel_held_back_says_it_trains_to_its_budget(caplog):
    import time

    from unet3d_keras.densify import fit_sparse

    dense = np.zeros((24, 20, 18), np.uint8)
    dense[12:15, 8:11, 3:6] = 1  # crosses the annotated slice z = 4 only, inside one 4 x 4 tile
    sparse = make_sparse_annotation(dense, (2, 2, 2))
    image = (dense + np.random.default_rng(0).normal(0, 0.3, dense.shape)).astype(np.float32)
    with caplog.at_level("WARNING", logger="unet3d_keras.densify"):
        fitted = fit_sparse(image, sparse, 255, TINY, deadline=time.monotonic() + 15, seed=1, show_progress=False,
                            options=DensifyOptions(patience_epochs=1, decay_epochs=0, mirror=False))
    assert fitted.scores["voxels"][1] == 0 and fitted.scores["iou"][1] is None
    assert fitted.stop_reason == "time budget spent" and not fitted.plateaued
    assert "no voxel of a foreground class is held back" in caplog.text
    assert "training runs to the time budget" in caplog.text


def test_a_timed_run_uses_its_budget(case):
    from unet3d_keras.densify import MIRROR_SHARE_MAX, PREDICTION_MARGIN, PREDICTION_SLACK_SECONDS, densify

    image, sparse = case
    budget = 12
    result = densify(image, sparse, 255, TINY, max_seconds=budget, seed=1, show_progress=False,
                     options=DensifyOptions(patience_epochs=10**6))
    assert result.fitted.stop_reason == "time budget spent" and not result.fitted.plateaued
    times = (f"{result.total_seconds:.1f} s in all: {result.fitted.steps} steps in {result.epochs} epochs, "
             f"{result.train_seconds:.1f} s from training's start to the last held-back score")
    # Training stops before the deadline by the margin kept for the mirrored prediction, whose estimate
    # is at most MIRROR_SHARE_MAX of the budget (else mirroring is dropped): at the earliest 5.1 of 12 s.
    earliest = budget - PREDICTION_MARGIN * MIRROR_SHARE_MAX * budget - PREDICTION_SLACK_SECONDS
    assert earliest < result.total_seconds <= budget, times


def test_a_timed_run_keeps_time_for_the_windows_that_its_prediction_predicts(case, caplog, monkeypatch):
    import dataclasses
    import logging
    import re
    import time

    import unet3d_keras.predictor as predictor_module
    from unet3d_keras.densify import fit_sparse, predict_classes

    image, sparse = case  # (24, 20, 18) in 16^3 windows with an overlap of 8: 3 x 3 x 3 windows
    with caplog.at_level(logging.INFO, logger="unet3d_keras.densify"):
        fitted = fit_sparse(image, sparse, 255, TINY, deadline=time.monotonic() + 60, seed=1, show_progress=False,
                            steps=2, options=DensifyOptions(holdout=0.0))
    found = re.search(r"before the deadline to predict (\d+) windows mirrored and 0 held-back tiles", caplog.text)
    assert found, caplog.text
    predicted = []
    make_fn = predictor_module.model_predict_fn

    def counting(model):
        model_fn = make_fn(model)

        def predict(batch):
            predicted.append(int(batch.shape[0]))
            return model_fn(batch)
        return predict

    monkeypatch.setattr(predictor_module, "model_predict_fn", counting)
    predict_classes(dataclasses.replace(fitted, mirror=False), image)
    # The volume padded to the window, as the estimate once counted it, would have made 4 x 4 x 4 windows.
    assert int(found[1]) == sum(predicted) == 27
    predicted.clear()
    predict_classes(dataclasses.replace(fitted, mirror=False), image[:16, 2:18, 1:17])  # the model's input size
    assert sum(predicted) == predictor_module.Predictor(fitted.model, overlap=8).window_count((16, 16, 16)) == 1


def test_mirroring_averages_the_eight_flips_of_a_window(case):
    import dataclasses
    import itertools

    from unet3d_keras.densify import fit_sparse, predict_classes

    image, sparse = case
    fitted = fit_sparse(image, sparse, 255, TINY, steps=3, seed=2, show_progress=False)
    assert fitted.mirror  # the default
    plain = dataclasses.replace(fitted, mirror=False)
    crop = image[2:18, 1:17, 1:17]  # one 16^3 window: the volume's own flips are the window's
    flips = [axes for n in range(4) for axes in itertools.combinations((0, 1, 2), n)]
    expected = np.mean([np.flip(predict_classes(plain, np.flip(crop, axes))[1], [a + 1 for a in axes])
                        for axes in flips], axis=0)
    labels, probabilities = predict_classes(fitted, crop)
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    assert not np.allclose(probabilities, predict_classes(plain, crop)[1], atol=1e-4)
    np.testing.assert_array_equal(labels, np.argmax(probabilities, axis=0))


def test_gaussian_window_weighting_blends_overlapping_windows_by_their_distance_from_the_centre(case):
    import dataclasses

    from unet3d_keras.densify import fit_sparse, predict_classes
    from unet3d_keras.utils.patches import compute_patch_indices

    image, sparse = case
    fitted = fit_sparse(image, sparse, 255, TINY, steps=3, seed=2, show_progress=False)
    assert fitted.window_weighting == "gaussian"  # the default
    once = dataclasses.replace(fitted, mirror=False)
    crop = image[:24, 2:18, 1:17]
    corners = compute_patch_indices(crop.shape, fitted.patch_shape, fitted.config.prediction.overlap)
    low = -corners.min(axis=0)  # the centred grid sticks out; the windows repeat the edge voxels there
    padded = np.pad((crop - crop.mean()) / crop.std(), [(p, p) for p in low], mode="edge")
    windows = np.asarray(fitted.model.predict_on_batch(np.stack(
        [padded[x:x + 16, y:y + 16, z:z + 16, None] for x, y, z in corners + low])))
    # nnU-Net's importance map written out: a Gaussian of standard deviation 16 / 8 voxels along each axis,
    # 1 at the centre, at least 1e-3 (so that a voxel only the corner of a window covers still gets a value).
    bell = np.exp(-0.5 * ((np.arange(16) - 7.5) / 2.0) ** 2)
    bell /= bell.max()
    gaussian = np.maximum(bell[:, None, None] * bell[None, :, None] * bell[None, None, :], 1e-3)
    blended = {}
    for weights, weighting in [(np.ones((16, 16, 16)), "uniform"), (gaussian, "gaussian")]:
        total, norm = np.zeros(padded.shape + (3,)), np.zeros(padded.shape + (1,))
        for (x, y, z), window in zip(corners + low, windows):
            total[x:x + 16, y:y + 16, z:z + 16] += window * weights[..., None]
            norm[x:x + 16, y:y + 16, z:z + 16] += weights[..., None]
        expected = np.moveaxis(total / norm, -1, 0)[(slice(None),) + tuple(slice(p, p + n) for p, n in
                                                                          zip(low, crop.shape))]
        blended[weighting] = predict_classes(dataclasses.replace(once, window_weighting=weighting), crop)[1]
        np.testing.assert_allclose(blended[weighting], expected, atol=1e-5)
    assert not np.allclose(blended["gaussian"], blended["uniform"], atol=1e-4)


def test_mirroring_is_dropped_with_a_warning_when_it_would_take_a_quarter_of_the_budget(case, caplog):
    import time

    from unet3d_keras.densify import fit_sparse

    image, sparse = case
    # A volume of 96^3 voxels to predict in a 30-second budget: 1728 windows (some 8 s on a 2-core CPU), 8 times
    # over, leave time to train without mirroring only.
    fitted = fit_sparse(image, sparse, 255, TINY, deadline=time.monotonic() + 30, seed=1, show_progress=False,
                        predict_shape=(96, 96, 96), steps=2)
    assert not fitted.mirror
    assert "predicting without mirroring: averaging the 8 mirrorings of each window would take about" in caplog.text
    # A budget that the 8 mirrorings of this volume's windows and held-back tiles (some 5 s on a 2-core CPU) fit
    # well inside a quarter of; 2 steps end the run long before it.
    kept = fit_sparse(image, sparse, 255, TINY, deadline=time.monotonic() + 300, seed=1, show_progress=False,
                      steps=2)
    assert kept.mirror


def test_a_deadline_that_leaves_no_step_says_so_and_still_scores(case, monkeypatch, caplog):
    import time

    from unet3d_keras.densify import fit_sparse

    image, sparse = case
    fitted = fit_sparse(image, sparse, 255, TINY, deadline=time.monotonic(), seed=1, show_progress=False)
    assert fitted.steps == 0 and fitted.epochs == 0 and not fitted.mirror
    assert "mirroring" not in caplog.text  # no advice on a run that has no time to train
    assert fitted.stop_reason == "no time left to train before the prediction"
    assert len(fitted.scores["iou"]) == 3  # the untrained weights, scored on the held-back voxels
    assert all(0 <= iou <= 1 for iou in fitted.scores["iou"])
    # densify refuses such a run before predicting the volume with the untrained weights
    import unet3d_keras.densify as densify_module
    from unet3d_keras.errors import NoTimeToTrain

    monkeypatch.setattr(densify_module, "predict_classes", lambda *args: pytest.fail("an untrained model predicted"))
    with pytest.raises(NoTimeToTrain, match="^max_seconds 0: no time left to train once the prediction was set aside$"):
        densify_module.densify(image, sparse, 255, TINY, max_seconds=0, seed=1, show_progress=False)


def test_densify_command_writes_and_prints_the_held_back_scores(case, tmp_path, capsys, monkeypatch):
    import nibabel as nib

    import unet3d_keras.densify as densify_module
    from unet3d_keras.commands.densify import main

    image, sparse = case
    nib.save(nib.Nifti1Image(image, np.eye(4)), tmp_path / "image.nii.gz")
    nib.save(nib.Nifti1Image(sparse, np.eye(4)), tmp_path / "sparse.nii.gz")
    argv = ["--image", str(tmp_path / "image.nii.gz"), "--labels", str(tmp_path / "sparse.nii.gz"),
            "--output", str(tmp_path / "dense.nii.gz"), "--steps", "20", "--holdout", "0.2", "--quiet",
            *[item for setting in TINY for item in ("--set", setting)]]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / 'dense.nii.gz'}: 20 steps (2 epochs) in " in out
    assert f"wrote {tmp_path / 'dense_scores.png'}\n" in out
    assert (tmp_path / "dense_scores.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((tmp_path / "dense_scores.json").read_text())
    assert report["steps"] == 20 and report["classes"] == [0, 1, 2] and report["holdout"] == 0.2
    # auto's choice, recorded: class 2, 2.6% of the annotated voxels, keeps under 2% of them once a fifth is held back
    assert report["class_weights"] == "sqrt" and report["sampling"] == "class_first" and report["mirror"] is True
    assert report["window_weighting"] == "gaussian" and report["output_bias"] == "zero"
    weights = report["class_weight_values"]  # the square-root weights trained with: the rarest class weighs most
    assert len(weights) == 3 and weights[2] == max(weights) > weights[0] > 0
    for value, scores in report["scores"].items():
        line = f"  {value}: {scores['voxels']}, " + ("-, - (none held back: its voxels lie in too few tiles to spare "
                                                     "one)" if scores["iou"] is None else
                                                     f"{scores['iou']:.3f}, {scores['dice']:.3f}")
        assert line + "\n" in out
    iou = [report["scores"][str(c)]["iou"] for c in (0, 1, 2)]
    assert report["low_classes"] == [c for c in (0, 1, 2) if c in [[0, 1, 2][p] for p in low_classes(iou)]]
    assert out.count("warning: class") == len(report["low_classes"])
    # the slices to annotate next, for every foreground class, never one already annotated
    assert out.count(", to check and annotate next: ") == len(set(report["low_classes"]) - {0})
    planes = annotated_planes(sparse != 255)
    assert set(report["next_slices"]) == {"1", "2"}
    for chosen in report["next_slices"].values():
        assert list(chosen) == ["x", "y", "z"]
        for axis, pick in enumerate(chosen.values()):
            assert pick["index"] is not None and 0 <= pick["index"] < sparse.shape[axis]
            assert pick["index"] not in planes[axis]
            assert pick["expected_errors"] >= 0

    # the picture of the slices to check: the classes warned about but the first, else the least sure one
    prefix = f"wrote {tmp_path / 'dense_check.png'} (the slices where the model is least sure of class "
    (line,) = [line for line in out.splitlines() if line.startswith(prefix)]
    drawn = line[len(prefix):-1].split(", ")
    warned = [str(c) for c in report["low_classes"] if c]
    assert drawn == warned if warned else len(drawn) == 1 and drawn[0] in report["next_slices"]
    assert (tmp_path / "dense_check.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    assert main([*argv, "--output", str(tmp_path / "once.nii.gz"), "--no-mirror", "--output-bias", "prior"]) == 0
    once = json.loads((tmp_path / "once_scores.json").read_text())
    assert once["mirror"] is False and once["output_bias"] == "prior"
    assert "--patience" not in out  # not given: no warning
    # the plateau's flags, given with --steps, are told to be ignored; the run's length stays its steps
    assert main([*argv, "--output", str(tmp_path / "plain.nii.gz"), "--window-weighting", "uniform",
                 "--patience", "1", "--decay-epochs", "0"]) == 0
    assert ("warning: --steps 20 trains exactly its steps, with no plateau stop: --patience, --decay-epochs ignored\n"
            in capsys.readouterr().out)
    plain = json.loads((tmp_path / "plain_scores.json").read_text())
    assert plain["window_weighting"] == "uniform" and plain["steps"] == 20

    assert main([*argv[:6], "--output", str(tmp_path / "bad.nii.gz"), "--holdout", "1"]) == 2
    assert "--holdout: expected a share between 0 and 1" in capsys.readouterr().err
    assert main([*argv[:6], "--output", str(tmp_path / "bad.nii.gz"), "--steps", "0"]) == 2
    assert "--steps: expected a positive number of steps" in capsys.readouterr().err
    assert not (tmp_path / "bad.nii.gz").exists() and not (tmp_path / "bad_scores.json").exists()
    assert not (tmp_path / "bad_scores.png").exists()
    # The picture would replace an input: refused before any work.
    (tmp_path / "image_scores.png").write_bytes((tmp_path / "image.nii.gz").read_bytes())
    assert main([*argv[:2], "--labels", str(tmp_path / "image_scores.png"), "--output", str(tmp_path / "image.nii"),
                 "--steps", "1"]) == 2
    assert (f"{tmp_path / 'image_scores.png'}: the picture of the scores would overwrite an input file"
            in capsys.readouterr().err)
    (tmp_path / "image_check.png").write_bytes((tmp_path / "image.nii.gz").read_bytes())
    assert main([*argv[:2], "--labels", str(tmp_path / "image_check.png"), "--output", str(tmp_path / "image.nii"),
                 "--steps", "1"]) == 2
    assert (f"{tmp_path / 'image_check.png'}: the picture of the slices to check would overwrite an input file"
            in capsys.readouterr().err)
    assert main([*argv[:6], "--output", str(tmp_path / "bad.nii.gz"), "--decay-epochs", "-1"]) == 2
    assert "--decay-epochs: expected 0 or more epochs, received -1" in capsys.readouterr().err
    # a budget that leaves no time to train: refused before the volume is predicted, and nothing written
    rushed = [*argv[:4], "--output", str(tmp_path / "rushed" / "dense.nii.gz"), "--max-minutes", "0.0001", "--quiet",
              *argv[10:]]
    monkeypatch.setattr(densify_module, "predict_classes", lambda *args: pytest.fail("an untrained model predicted"))
    assert main(rushed) == 2
    assert "--max-minutes 0.0001: the budget left no time to train" in capsys.readouterr().err
    assert not (tmp_path / "rushed").exists()


def test_earlier_probability_files_are_those_of_this_output_only(tmp_path):
    from unet3d_keras.commands.densify import earlier_probability_files

    names = ["a@b_probability_1.nii.gz", "a@b_probability_12.nii.gz", "a7b_probability_1.nii.gz",
             "a@b_probability_x.nii.gz", "a@b_probability_1.nii", "a@b_scores.json"]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    output = tmp_path / "a@b.nii.gz"  # an "@" in the output's own name is not the class's place
    assert earlier_probability_files(output, []) == [tmp_path / names[0], tmp_path / names[1]]
    assert earlier_probability_files(output, [tmp_path / names[1]]) == [tmp_path / names[0]]
    assert earlier_probability_files(tmp_path / "a7b.nii.gz", []) == [tmp_path / names[2]]


def test_predict_annotated_and_probabilities_write_the_models_own_on_every_voxel(case, tmp_path, capsys,
                                                                                 monkeypatch):
    import nibabel as nib

    from unet3d_keras.commands.densify import main
    from unet3d_keras.densify import densify

    image, sparse = case
    affine = np.diag([0.8, 1.2, 2.5, 1.0])
    affine[:3, 3] = [-10.0, 4.0, 7.5]
    nib.save(nib.Nifti1Image(image, affine), tmp_path / "image.nii.gz")
    labels = nib.Nifti1Image(sparse, affine)
    labels.header.set_intent("label")  # as annotation tools write label maps, shown from 0 to 255
    labels.header["cal_min"], labels.header["cal_max"] = 0, 255
    labels.header["descrip"] = b"annotation"
    nib.save(labels, tmp_path / "sparse.nii.gz")
    common = ["--image", str(tmp_path / "image.nii.gz"), "--labels", str(tmp_path / "sparse.nii.gz"),
              "--steps", "6", "--seed", "3", "--quiet", *[item for setting in TINY for item in ("--set", setting)]]
    # an earlier run's probability file is left as it was, and named: it does not describe the new map
    earlier = {name: (tmp_path / "image.nii.gz").read_bytes() for name in ("kept_probability_7.nii.gz",
                                                                            "kept_probability_x.nii.gz")}
    for name, data in earlier.items():
        (tmp_path / name).write_bytes(data)
    assert main([*common, "--output", str(tmp_path / "kept.nii.gz")]) == 0
    out = capsys.readouterr().out
    assert ": 6 steps (1 epoch) in " in out
    assert (f"warning: {tmp_path / 'kept_probability_7.nii.gz'}: probability files of an earlier run, left as they "
            "were; they do not describe this map (remove them, or pass --probabilities to write this run's)\n") in out
    assert "kept_probability_x" not in out  # not a class's file
    assert {path.name: path.read_bytes() for path in tmp_path.glob("kept_probability_*")} == earlier
    for name in ("model_probability_5.nii", "model_probability_6.nii.gz"):  # a class this run lacks; another suffix
        (tmp_path / name).write_bytes(earlier["kept_probability_7.nii.gz"])
    assert main([*common, "--output", str(tmp_path / "model.nii"), "--predict-annotated", "--probabilities"]) == 0
    paths = [tmp_path / f"model_probability_{c}.nii" for c in (0, 1, 2)]
    out = capsys.readouterr().out
    assert (f"wrote the probability of each class (0, 1, 2) to {tmp_path / 'model_probability_<label value>.nii'}\n"
            in out)
    assert (f"warning: {tmp_path / 'model_probability_5.nii'}: probability files of an earlier run, left as they "
            "were; they do not describe this map (remove them)\n") in out
    kept = np.asarray(nib.load(tmp_path / "kept.nii.gz").dataobj)
    model = np.asarray(nib.load(tmp_path / "model.nii").dataobj)
    library = densify(image, sparse, 255, TINY, steps=6, seed=3, show_progress=False, keep_annotations=False)
    np.testing.assert_array_equal(model, library.labels)
    annotated = sparse != 255
    np.testing.assert_array_equal(kept[annotated], sparse[annotated])
    np.testing.assert_array_equal(kept[~annotated], model[~annotated])
    assert np.any(model[annotated] != sparse[annotated])  # six steps of a tiny model: it disagrees somewhere

    # each class's probability, on the labels' grid, the model's own on every voxel
    read = [nib.load(path) for path in paths]
    for image_read, expected in zip(read, library.probabilities):
        np.testing.assert_array_equal(image_read.affine, nib.load(tmp_path / "sparse.nii.gz").affine)
        assert image_read.get_data_dtype() == np.float32
        # a probability, not a label map: no label intent, shown from 0 to 1, not the labels' description
        assert image_read.header.get_intent()[0] == "none"
        assert (image_read.header["cal_min"], image_read.header["cal_max"]) == (0, 1)
        assert image_read.header["descrip"] == b""
        np.testing.assert_array_equal(np.asarray(image_read.dataobj), expected)
    probabilities = np.stack([np.asarray(image_read.dataobj) for image_read in read])
    np.testing.assert_allclose(probabilities.sum(axis=0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(np.argmax(probabilities, axis=0), model)

    # a full disk on the last probability file, then on the last picture (written after them all): the label map,
    # every probability file, the scores and the pictures stay as they were
    import unet3d_keras.visualize as visualize

    sidecars = [tmp_path / name for name in ("model_scores.json", "model_scores.png", "model_check.png")]
    before = {path: path.read_bytes() for path in [tmp_path / "model.nii", *paths, *sidecars]}
    for module, name, failing, named in ((nib, "save", 4, paths[2]), (visualize, "write_png", 2, sidecars[2])):
        real, calls = getattr(module, name), []

        def write_until_the_disk_is_full(what, path, *rest, real=real, calls=calls, failing=failing):
            calls.append(path)
            if len(calls) == failing:
                raise OSError(errno.ENOSPC, "No space left on device")
            real(what, path, *rest)

        monkeypatch.setattr(module, name, write_until_the_disk_is_full)
        assert main([*common, "--output", str(tmp_path / "model.nii"), "--probabilities", "--seed", "4"]) != 0
        assert f"{named}" in capsys.readouterr().err
        assert len(calls) == failing and all(path.read_bytes() == data for path, data in before.items())
        assert not [path.name for path in tmp_path.iterdir() if ".tmp-" in path.name]
        monkeypatch.undo()

    # a probability file that would replace an input is refused before any work
    (tmp_path / "x_probability_1.nii.gz").write_bytes((tmp_path / "image.nii.gz").read_bytes())
    assert main([*common, "--image", str(tmp_path / "x_probability_1.nii.gz"), "--probabilities",
                 "--output", str(tmp_path / "x.nii.gz")]) == 2
    assert (f"{tmp_path / 'x_probability_1.nii.gz'}: the probability file would overwrite an input file"
            in capsys.readouterr().err)
    assert not (tmp_path / "x.nii.gz").exists() and not (tmp_path / "x_probability_0.nii.gz").exists()
