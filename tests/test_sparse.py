"""Sparse annotation: masked losses, class weights, one-hot with ignore, slice selection, densify."""

import math
import os
import subprocess
import sys
from pathlib import Path

import keras
import nibabel as nib
import numpy as np
import pytest
import tensorflow as tf
import yaml

from unet3d_keras.config import ConfigError, load_config
from unet3d_keras.errors import DataError
from unet3d_keras.evaluation import segmentation_scores
from unet3d_keras.generator import SamplingPlan, convert_data, one_hot_with_ignore
from unet3d_keras.metrics import (
    MaskedLabelDiceCoefficient,
    MaskedSegmentationLoss,
    annotation_mask,
    balanced_class_weights,
    masked_dice_loss,
    weighted_cross_entropy_dice_loss,
    weighted_softmax_cross_entropy,
)
from unet3d_keras.pipeline import TrainingTask, build_model, resolve_task
from unet3d_keras.prediction import get_prediction_labels
from unet3d_keras.sparse import annotated_classes, make_sparse_annotation, slice_positions

ROOT = Path(__file__).resolve().parent.parent


def sparse_batch(seed=0, shape=(2, 6, 5, 4), n_classes=3, unlabeled=0.6):
    """Random one-hot truth with unlabeled voxels (all-zero rows) and a random softmax prediction."""
    rng = np.random.default_rng(seed)
    classes = rng.integers(0, n_classes, shape)
    truth = np.eye(n_classes, dtype=np.float32)[classes]
    unlabeled_mask = rng.random(shape) < unlabeled
    truth[unlabeled_mask] = 0
    logits = rng.normal(size=shape + (n_classes,))
    prediction = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    return truth, prediction.astype(np.float32), unlabeled_mask


# --------------------------------------------------------------------------------------------
# Losses


def test_cross_entropy_known_answers():
    # One annotated voxel per class, unit weights: the mean of -log p of the true class.
    truth = np.zeros((1, 1, 1, 3, 3), np.float32)
    truth[0, 0, 0, 0, 0] = 1
    truth[0, 0, 0, 1, 1] = 1  # voxel 2 is unlabeled
    prediction = np.full((1, 1, 1, 3, 3), 1 / 3, np.float32)
    prediction[0, 0, 0, 0] = [0.5, 0.25, 0.25]
    prediction[0, 0, 0, 1] = [0.5, 0.25, 0.25]
    loss = weighted_softmax_cross_entropy(truth, prediction)
    np.testing.assert_allclose(np.asarray(loss), [(math.log(2) + math.log(4)) / 2], rtol=1e-5)
    weighted = weighted_softmax_cross_entropy(truth, prediction, class_weights=[1.0, 3.0, 1.0])
    np.testing.assert_allclose(np.asarray(weighted), [(math.log(2) + 3 * math.log(4)) / 4], rtol=1e-5)
    uniform = weighted_softmax_cross_entropy(truth, np.full_like(prediction, 1 / 3))
    np.testing.assert_allclose(np.asarray(uniform), [math.log(3)], rtol=1e-5)


def test_losses_are_zero_for_items_without_annotation_and_per_item():
    truth, prediction, _ = sparse_batch()
    truth[1] = 0
    for loss in (weighted_softmax_cross_entropy, masked_dice_loss, weighted_cross_entropy_dice_loss):
        values = np.asarray(loss(truth, prediction))
        assert values.shape == (2,)
        assert values[0] > 0
        assert abs(values[1]) < 1e-4


def test_masked_dice_known_answer():
    truth = np.zeros((1, 2, 1, 1, 2), np.float32)
    truth[0, 0, 0, 0] = [0, 1]  # one annotated voxel of class 1, one unlabeled
    prediction = np.asarray([[[[[0.2, 0.8]]], [[[0.0, 1.0]]]]], np.float32)
    smooth = 1e-5
    dice_class0 = (0 + smooth) / (0 + 0.2 + smooth)
    dice_class1 = (2 * 0.8 + smooth) / (1 + 0.8 + smooth)
    np.testing.assert_allclose(np.asarray(masked_dice_loss(truth, prediction)),
                               [1 - (dice_class0 + dice_class1) / 2], rtol=1e-5)


@pytest.mark.parametrize("loss", [
    weighted_softmax_cross_entropy, masked_dice_loss, weighted_cross_entropy_dice_loss,
    MaskedSegmentationLoss(class_weights=[0.5, 2.0, 1.0]),
])
def test_unlabeled_predictions_change_neither_loss_nor_gradient(loss):
    truth, prediction, unlabeled = sparse_batch()
    other = prediction.copy()
    rng = np.random.default_rng(1)
    noise = rng.random(other.shape).astype(np.float32)
    other[unlabeled] = (noise / noise.sum(-1, keepdims=True))[unlabeled]

    def value_and_gradient(pred):
        pred = tf.constant(pred)
        with tf.GradientTape() as tape:
            tape.watch(pred)
            value = tf.reduce_mean(loss(truth, pred))
        return float(value), tape.gradient(value, pred).numpy()

    value, gradient = value_and_gradient(prediction)
    other_value, other_gradient = value_and_gradient(other)
    assert other_value == pytest.approx(value, rel=1e-6)
    np.testing.assert_allclose(other_gradient, gradient, rtol=1e-5, atol=1e-8)
    assert np.all(gradient[unlabeled] == 0)
    assert np.any(gradient[~unlabeled] != 0)


def test_unlabeled_image_values_change_neither_loss_nor_weight_gradients():
    # A voxel-wise model (1x1x1 convolution + softmax): the image at unlabeled voxels must not
    # reach the loss or the weight gradients.
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 5, 4, 2))
    outputs = keras.layers.Conv3D(3, 1, activation="softmax")(inputs)
    model = keras.Model(inputs, outputs)
    truth, _, unlabeled = sparse_batch()
    rng = np.random.default_rng(2)
    image = rng.normal(size=(2, 6, 5, 4, 2)).astype(np.float32)
    changed = image.copy()
    changed[unlabeled] = rng.normal(size=changed[unlabeled].shape) * 10
    loss = MaskedSegmentationLoss(class_weights=[1.0, 2.0, 0.5])

    def value_and_gradients(x):
        with tf.GradientTape() as tape:
            value = loss(truth, model(x))
        return float(value), [g.numpy() for g in tape.gradient(value, model.trainable_weights)]

    value, gradients = value_and_gradients(image)
    changed_value, changed_gradients = value_and_gradients(changed)
    assert changed_value == pytest.approx(value, rel=1e-6)
    for a, b in zip(gradients, changed_gradients):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-7)
    # Control: changing an annotated voxel does change the loss.
    control = image.copy()
    control[~unlabeled] += 5
    assert value_and_gradients(control)[0] != pytest.approx(value, rel=1e-3)


def test_masked_label_dice_counts_annotated_voxels_only():
    truth, prediction, unlabeled = sparse_batch(n_classes=3)
    metric = MaskedLabelDiceCoefficient(1)  # label index 1 is channel 2
    metric.update_state(truth, prediction)
    mask = ~unlabeled
    t, p = truth[..., 2][mask], prediction[..., 2][mask]
    expected = (2 * np.sum(t * p) + 1) / (t.sum() + p.sum() + 1)
    assert float(metric.result()) == pytest.approx(expected, rel=1e-5)
    config = metric.get_config()
    assert MaskedLabelDiceCoefficient.from_config(config).label_index == 1


def test_annotation_mask_is_the_row_sum():
    truth, _, unlabeled = sparse_batch()
    np.testing.assert_array_equal(np.asarray(annotation_mask(truth))[..., 0], (~unlabeled).astype(np.float32))


def test_balanced_class_weights():
    assert balanced_class_weights([30, 10]) == pytest.approx([40 / 60, 40 / 20])
    assert balanced_class_weights([10, 10, 10]) == pytest.approx([1, 1, 1])
    assert balanced_class_weights([5, 0]) == pytest.approx([0.5, 1.0])


def test_loss_serialises():
    loss = MaskedSegmentationLoss(class_weights=[0.5, 2.0], dice=False)
    again = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(again, MaskedSegmentationLoss)
    assert again.class_weights == [0.5, 2.0] and again.dice is False and again.cross_entropy is True
    with pytest.raises(ValueError, match="needs cross_entropy, dice or both"):
        MaskedSegmentationLoss(cross_entropy=False, dice=False)
    with pytest.raises(ValueError, match="class_weights has 2 values but the output has 3 classes"):
        weighted_softmax_cross_entropy(*sparse_batch()[:2], class_weights=[1.0, 2.0])


# --------------------------------------------------------------------------------------------
# Targets, sampling, configuration


def test_one_hot_with_ignore():
    truth = np.asarray([0, 1, 255, 2, 7], dtype=np.uint8).reshape(1, 1, 5, 1, 1)
    one_hot, mask = one_hot_with_ignore(truth, labels=(1, 2), ignore_label=255)
    assert one_hot.shape == (1, 3, 5, 1, 1)
    np.testing.assert_array_equal(one_hot[0, :, :, 0, 0].T, [[1, 0, 0], [0, 1, 0], [0, 0, 0], [0, 0, 1], [1, 0, 0]])
    np.testing.assert_array_equal(mask[0, 0, :, 0, 0], [1, 1, 0, 1, 1])
    x, y = convert_data([np.zeros((1, 5, 1, 1))], [truth[0]], n_labels=2, labels=(1, 2), background=True,
                        ignore_label=255)
    assert y.shape == (1, 5, 1, 1, 3)
    np.testing.assert_array_equal(y.sum(-1)[0, :, 0, 0], [1, 1, 0, 1, 1])
    with pytest.raises(ValueError, match="ignore_label needs background=True"):
        convert_data([np.zeros((1, 5, 1, 1))], [truth[0]], n_labels=2, labels=(1, 2), ignore_label=255)


def test_skip_blank_with_ignore_keeps_annotated_background_and_drops_unannotated_patches():
    truth = np.full((8, 4, 4), 255, dtype=np.uint8)
    truth[0:4, :, 0] = 0  # first patch: annotated background only
    plan = SamplingPlan([0], (8, 4, 4), (4, 4, 4), skip_blank=True, shuffle=False, ignore_label=255)
    items = plan.plan(np.random.default_rng(0), lambda subject: truth)
    assert items[:, 1].tolist() == [0]
    # The dense rule (any non-zero voxel) would keep the unannotated patch too.
    dense_rule = SamplingPlan([0], (8, 4, 4), (4, 4, 4), skip_blank=True, shuffle=False)
    assert dense_rule.plan(np.random.default_rng(0), lambda subject: truth)[:, 1].tolist() == [0, 4]


def test_config_checks_ignore_label_loss_and_class_weights():
    assert load_config().data.ignore_label == 255
    with pytest.raises(ConfigError, match=r"data.ignore_label: 4 must .* differ .* data.labels \[1, 2, 4\]"):
        load_config(overrides=["data.ignore_label=4"])
    with pytest.raises(ConfigError, match="training.loss: 'cross_entropy' needs model.activation softmax"):
        load_config(overrides=["model.activation=sigmoid", "training.loss=cross_entropy"])
    with pytest.raises(ConfigError, match=r"training.class_weights: expected 4 non-negative weights"):
        load_config(overrides=["training.class_weights=[1, 2]"])
    with pytest.raises(ConfigError, match="training.class_weights: expected null or one of 'balanced' or a list"):
        load_config(overrides=["training.class_weights=inverse"])
    assert load_config(overrides=["training.class_weights=[1, 2, 3, 4]"]).training.class_weights == (1, 2, 3, 4)


def test_resolve_task():
    config = load_config()
    assert resolve_task(config) == TrainingTask("sigmoid", "dice", None, 0)
    histogram = np.zeros(256, np.int64)
    histogram[[0, 1, 2, 4, 255]] = [700, 100, 100, 100, 5000]
    task = resolve_task(config, histogram, unannotated=5000)
    assert task.activation == "softmax" and task.loss == "cross_entropy_dice"
    assert task.class_weights == pytest.approx(balanced_class_weights([700, 100, 100, 100]))
    fixed = resolve_task(load_config(overrides=["training.class_weights=[1, 1, 2, 2]"]), histogram, 5000)
    assert fixed.class_weights == (1, 1, 2, 2)
    dense_softmax = resolve_task(load_config(overrides=["model.activation=softmax"]))
    assert dense_softmax.softmax and dense_softmax.class_weights is None
    with pytest.raises(ConfigError, match=r"model.activation: sigmoid cannot leave out the 5000 unannotated "
                                          r"voxels \(value 255\) of data.h5"):
        resolve_task(load_config(overrides=["model.activation=sigmoid"]), histogram, 5000, "data.h5")


def test_softmax_model_has_a_background_output_and_round_trips(tmp_path):
    config = load_config(overrides=["model.depth=2", "model.n_base_filters=2", "data.image_shape=[8, 8, 8]",
                                    "model.activation=softmax"])
    model = build_model(config, resolve_task(config))
    assert model.output_shape == (None, 8, 8, 8, 4)
    assert isinstance(model.loss, MaskedSegmentationLoss)
    x = np.random.default_rng(0).normal(size=(1, 8, 8, 8, 4)).astype(np.float32)
    np.testing.assert_allclose(model.predict_on_batch(x).sum(-1), 1, rtol=1e-5)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.loss, MaskedSegmentationLoss)
    np.testing.assert_allclose(loaded.predict_on_batch(x), model.predict_on_batch(x), rtol=1e-5, atol=1e-6)


def test_softmax_predictions_become_label_maps():
    prediction = np.zeros((1, 4, 3, 1, 1), np.float32)
    prediction[0, :, 0, 0, 0] = [0.7, 0.1, 0.1, 0.1]
    prediction[0, :, 1, 0, 0] = [0.1, 0.2, 0.3, 0.4]
    prediction[0, :, 2, 0, 0] = [0.3, 0.4, 0.2, 0.1]
    labels = get_prediction_labels(prediction, labels=(1, 2, 4))[0]
    assert labels[:, 0, 0].tolist() == [0, 4, 1]


def test_scores_leave_out_unannotated_voxels():
    truth = np.asarray([1, 1, 0, 255, 255])
    prediction = np.asarray([1, 1, 0, 1, 0])
    assert segmentation_scores(truth, prediction, [1], ignore_label=255)["label_1"] == 1.0
    assert segmentation_scores(truth, prediction, [1])["label_1"] == pytest.approx(4 / 5)


# --------------------------------------------------------------------------------------------
# Sparse annotations


def test_slice_positions():
    assert slice_positions(16, 4).tolist() == [2, 6, 10, 14]
    assert slice_positions(9, 1).tolist() == [4]
    assert slice_positions(5, 0).tolist() == []
    drawn = slice_positions(20, 5, np.random.default_rng(0))
    assert len(set(drawn.tolist())) == 5 and drawn.tolist() == sorted(drawn.tolist())
    assert drawn.tolist() == slice_positions(20, 5, np.random.default_rng(0)).tolist()
    with pytest.raises(ValueError, match="count: expected 0 to 5 slices along an axis of 5 voxels, received 6"):
        slice_positions(5, 6)


def test_nested_slice_positions_keep_the_smaller_counts_and_fill_the_widest_gap():
    assert slice_positions(16, 1, nested=True).tolist() == slice_positions(16, 1).tolist() == [8]
    assert slice_positions(16, 2, nested=True).tolist() == [4, 8]
    assert slice_positions(16, 3, nested=True).tolist() == [4, 8, 12]  # equally spaced at i / 4
    assert slice_positions(16, 7, nested=True).tolist() == [2, 4, 6, 8, 10, 12, 14]
    assert slice_positions(99, 8, nested=True).tolist() == [6, 12, 24, 37, 49, 61, 74, 86]
    for size in (1, 2, 5, 11, 16, 33):
        previous: set[int] = set()
        for count in range(size + 1):
            chosen = slice_positions(size, count, nested=True).tolist()
            assert chosen == sorted(set(chosen)) and len(chosen) == count
            assert previous <= set(chosen), (size, count)
            previous = set(chosen)
    with pytest.raises(ValueError, match="count: expected 0 to 5 slices along an axis of 5 voxels, received 6"):
        slice_positions(5, 6, nested=True)
    with pytest.raises(ValueError, match="nested slices are placed, not drawn"):
        make_sparse_annotation(np.zeros((4, 4, 4), np.uint8), (1, 1, 1), rng=np.random.default_rng(0), nested=True)
    dense = np.random.default_rng(1).integers(0, 3, (16, 12, 10)).astype(np.uint8)
    two, four = (make_sparse_annotation(dense, (k, k, k), nested=True) != 255 for k in (2, 4))
    assert not (two & ~four).any() and four.sum() > two.sum()  # four slices keep the two


def test_make_sparse_annotation_keeps_whole_slices():
    dense = np.random.default_rng(0).integers(0, 3, (16, 12, 10)).astype(np.uint8)
    sparse = make_sparse_annotation(dense, (2, 1, 0))
    kept = sparse != 255
    assert kept[[4, 12]].all() and kept[:, 6].all()
    np.testing.assert_array_equal(sparse[kept], dense[kept])
    expected = 2 * 12 * 10 + 16 * 10 - 2 * 10  # two x-slices plus one y-slice, minus their crossing
    assert kept.sum() == expected
    assert sparse.dtype == np.uint8
    random = make_sparse_annotation(dense, (1, 1, 1), rng=np.random.default_rng(3), ignore_label=9)
    assert set(np.unique(random).tolist()) <= {0, 1, 2, 9}
    widened = make_sparse_annotation(dense.astype(np.int8), (1, 0, 0), ignore_label=300)
    assert widened.max() == 300 and widened.min() == 0  # widened so that the ignore value fits
    with pytest.raises(ValueError, match="ignore_label 2 is already a label"):
        make_sparse_annotation(dense, (1, 1, 1), ignore_label=2)
    with pytest.raises(ValueError, match="expected a 3D label map"):
        make_sparse_annotation(dense[0], (1, 1, 1))


def test_annotated_classes_errors():
    sparse = np.full((4, 4, 4), 255, np.uint8)
    with pytest.raises(DataError, match="labels.nii.gz: no annotated voxel"):
        annotated_classes(sparse, 255, "labels.nii.gz")
    sparse[0] = 1
    with pytest.raises(DataError, match=r"only one class \(1\) is annotated; at least two classes are needed"):
        annotated_classes(sparse, 255)
    sparse[1] = 0
    assert annotated_classes(sparse, 255) == [0, 1]
    sparse = sparse.astype(np.int16)
    sparse[2, 0, 0], sparse[3, 0, 0] = 300, -1
    with pytest.raises(DataError, match=r"labels.nii.gz: label values must lie between 0 and 255, found \[-1, 300\]"):
        annotated_classes(sparse, 255, "labels.nii.gz")


# --------------------------------------------------------------------------------------------
# scripts/densify.py and scripts/make_sparse_labels.py


def blob_volume(shape=(24, 20, 16), seed=0):
    rng = np.random.default_rng(seed)
    grid = np.indices(shape).astype(float)
    centre = np.asarray(shape)[:, None, None, None] / 2
    radius = np.sqrt((((grid - centre) / (np.asarray(shape)[:, None, None, None] / 3)) ** 2).sum(0))
    dense = (radius < 1).astype(np.uint8) + (radius < 0.5)
    image = dense + rng.normal(0, 0.3, shape)
    return image.astype(np.float32), dense


def run_script(name, *args, timeout=300):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, str(ROOT / "scripts" / name), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=ROOT)


@pytest.fixture
def sparse_case(tmp_path):
    image, dense = blob_volume()
    affine = np.diag([1.5, 1.5, 2.0, 1.0])
    affine[:3, 3] = [-10, 4, 7]
    nib.save(nib.Nifti1Image(image, affine), tmp_path / "image.nii.gz")
    nib.save(nib.Nifti1Image(dense, affine), tmp_path / "dense.nii.gz")
    return tmp_path, affine, dense


def test_make_sparse_labels_nested_placement(sparse_case):
    folder, _, dense = sparse_case
    made = run_script("make_sparse_labels.py", folder / "dense.nii.gz", folder / "nested.nii.gz", "--slices", 2, 2, 1,
                      "--nested")
    assert made.returncode == 0, made.stderr
    written = np.asarray(nib.load(folder / "nested.nii.gz").dataobj)
    np.testing.assert_array_equal(written, make_sparse_annotation(dense, (2, 2, 1), nested=True))
    both = run_script("make_sparse_labels.py", folder / "dense.nii.gz", folder / "both.nii.gz", "--random", "--nested")
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
    assert not (folder / "both.nii.gz").exists()
    (folder / "taken.nii.gz").mkdir()
    taken = run_script("make_sparse_labels.py", folder / "dense.nii.gz", folder / "taken.nii.gz")
    assert taken.returncode == 2 and "taken.nii.gz: a folder of that name is in the way of the output" in taken.stderr
    assert not any((folder / "taken.nii.gz").iterdir())


def test_make_sparse_labels_then_densify_end_to_end(sparse_case):
    folder, affine, dense = sparse_case
    # both scripts make their output folders
    made = run_script("make_sparse_labels.py", folder / "dense.nii.gz", folder / "labels" / "sparse.nii.gz",
                      "--slices", 3, 3, 3)
    assert made.returncode == 0, made.stderr
    sparse_image = nib.load(folder / "labels" / "sparse.nii.gz")
    sparse = np.asarray(sparse_image.dataobj)
    np.testing.assert_allclose(sparse_image.affine, affine)
    assert 0.2 < np.mean(sparse != 255) < 0.5

    result = run_script("densify.py", "--image", folder / "image.nii.gz",
                        "--labels", folder / "labels" / "sparse.nii.gz",
                        "--output", folder / "out" / "run 1" / "dense_pred.nii.gz", "--steps", 128, "--quiet",
                        "--set", "model.n_base_filters=4", "--set", "training.patch_shape=[16,16,16]")
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout and "no voxel is annotated 0" not in result.stdout
    output = nib.load(folder / "out" / "run 1" / "dense_pred.nii.gz")
    labels = np.asarray(output.dataobj)
    assert labels.shape == dense.shape
    np.testing.assert_allclose(output.affine, affine)
    assert set(np.unique(labels).tolist()) <= {0, 1, 2}
    annotated = sparse != 255
    np.testing.assert_array_equal(labels[annotated], sparse[annotated])
    # Even one minute of a tiny model separates the blob from the background.
    never = ~annotated
    foreground = (labels[never] > 0), (dense[never] > 0)
    iou = np.sum(foreground[0] & foreground[1]) / np.sum(foreground[0] | foreground[1])
    assert iou > 0.5


@pytest.mark.slow
def test_densify_keeps_to_max_minutes_on_a_64x64x32_volume(tmp_path):
    import re

    image, dense = blob_volume((64, 64, 32), seed=4)
    nib.save(nib.Nifti1Image(image, np.eye(4)), tmp_path / "image.nii.gz")
    nib.save(nib.Nifti1Image(make_sparse_annotation(dense, (2, 2, 2)), np.eye(4)), tmp_path / "sparse.nii.gz")
    budget_minutes = 0.5
    result = run_script("densify.py", "--image", tmp_path / "image.nii.gz", "--labels", tmp_path / "sparse.nii.gz",
                        "--output", tmp_path / "dense.nii.gz", "--max-minutes", budget_minutes, "--quiet")
    assert result.returncode == 0, result.stderr
    found = re.search(r"(\d+) s to the end of the prediction \(budget (\d+) s\), (\d+) s in all", result.stdout)
    predicted, budget, seconds = map(int, found.groups())
    line = next(line for line in result.stdout.splitlines() if found[0] in line)
    assert budget == 60 * budget_minutes
    # The run stops training in time to predict, by an estimate from one timed model call: beside another test
    # worker, a run of this test reached 31 s before the last epoch's evaluation was reserved (the page's
    # --max-minutes row says that a loaded machine can end late).
    assert predicted <= budget + 2, line
    # writing the files after the prediction takes seconds more (the help says so)
    assert predicted <= seconds <= predicted + 10 and seconds <= budget + 10, line
    assert np.asarray(nib.load(tmp_path / "dense.nii.gz").dataobj).shape == (64, 64, 32)


def _densify_error(folder, *extra, output="out.nii.gz"):
    before = sorted(p.name for p in folder.iterdir())
    from importlib import util

    spec = util.spec_from_file_location("densify_script", ROOT / "scripts" / "densify.py")
    module = util.module_from_spec(spec)
    spec.loader.exec_module(module)
    status = module.main(["--image", str(folder / "image.nii.gz"), "--output", str(folder / output), *extra])
    assert status == 2
    assert sorted(p.name for p in folder.iterdir()) == before  # nothing written
    return status


def test_densify_bad_inputs(sparse_case, capsys):
    folder, affine, dense = sparse_case
    nib.save(nib.Nifti1Image(dense[:-1], affine), folder / "short.nii.gz")
    _densify_error(folder, "--labels", str(folder / "short.nii.gz"))
    assert "short.nii.gz" in capsys.readouterr().err
    _densify_error(folder, "--labels", str(folder / "short.nii.gz"), output="new/deeper/out.nii.gz")
    assert "short.nii.gz" in capsys.readouterr().err  # and the folders made for the output are gone again
    (folder / "a_file").write_text("")
    _densify_error(folder, "--labels", str(folder / "short.nii.gz"), output="a_file/out.nii.gz")
    assert "a_file: cannot write to the output folder: " in capsys.readouterr().err
    (folder / "a_file").unlink()

    shifted = affine.copy()
    shifted[0, 3] += 5
    nib.save(nib.Nifti1Image(make_sparse_annotation(dense, (2, 2, 2)), shifted), folder / "moved.nii.gz")
    _densify_error(folder, "--labels", str(folder / "moved.nii.gz"))
    assert "moved.nii.gz" in capsys.readouterr().err

    nib.save(nib.Nifti1Image(np.full(dense.shape, 255, np.uint8), affine), folder / "empty.nii.gz")
    _densify_error(folder, "--labels", str(folder / "empty.nii.gz"))
    assert "no annotated voxel" in capsys.readouterr().err

    one_class = np.full(dense.shape, 255, np.uint8)
    one_class[3] = 1
    nib.save(nib.Nifti1Image(one_class, affine), folder / "one.nii.gz")
    _densify_error(folder, "--labels", str(folder / "one.nii.gz"))
    assert "at least two classes are needed" in capsys.readouterr().err

    nib.save(nib.Nifti1Image(make_sparse_annotation(dense, (2, 2, 2)), affine), folder / "sparse.nii.gz")
    _densify_error(folder, "--labels", str(folder / "sparse.nii.gz"), "--ignore-label", "2")
    assert "--ignore-label 2 collides with a real label" in capsys.readouterr().err

    # a folder where densify would write a file: refused before training, which would end in "Is a directory"
    for folder_name, what, extra in (("taken.nii.gz", "output", ()), ("out_scores.json", "scores file", ()),
                                     ("out_probability_1.nii.gz", "probability file", ("--probabilities",))):
        (folder / folder_name).mkdir()
        _densify_error(folder, "--labels", str(folder / "sparse.nii.gz"), "--steps", "1", *extra,
                       output="taken.nii.gz" if what == "output" else "out.nii.gz")
        message = f"{folder / folder_name}: a folder of that name is in the way of the {what}; move it or choose"
        assert message in capsys.readouterr().err
        (folder / folder_name).rmdir()

    _densify_error(folder, "--labels", str(folder / "dense.nii.gz"))
    assert "no voxel has the ignore value 255, so every voxel is already annotated" in capsys.readouterr().err

    wide = make_sparse_annotation(dense, (2, 2, 2)).astype(np.int16)
    wide[wide == 1] = 300
    nib.save(nib.Nifti1Image(wide, affine), folder / "wide.nii.gz")
    _densify_error(folder, "--labels", str(folder / "wide.nii.gz"))
    assert "wide.nii.gz: label values must lie between 0 and 255, found [300]" in capsys.readouterr().err
    # -1 for the unannotated voxels: refused for its range, not with advice to pass --ignore-label -1
    negative = np.where(wide == 255, -1, wide).astype(np.int16)
    nib.save(nib.Nifti1Image(negative, affine), folder / "negative.nii.gz")
    _densify_error(folder, "--labels", str(folder / "negative.nii.gz"))
    assert "negative.nii.gz: label values must lie between 0 and 255, found [-1, 300]" in capsys.readouterr().err

    for minutes in ("nan", "inf", "0"):
        _densify_error(folder, "--labels", str(folder / "sparse.nii.gz"), "--max-minutes", minutes)
        assert (f"--max-minutes: expected a positive, finite number of minutes, received {float(minutes)}"
                in capsys.readouterr().err)
    for seed in ("-1", "4294967296"):  # Keras's seeds are 0 to 2**32 - 1: refused before the inputs are read
        _densify_error(folder, "--labels", str(folder / "sparse.nii.gz"), "--seed", seed)
        assert f"--seed: expected a whole number from 0 to 4294967295, received {seed}" in capsys.readouterr().err


def test_densify_takes_255_as_a_class_when_the_ignore_value_is_commoner(sparse_case, capsys):
    folder, affine, dense = sparse_case
    sparse = make_sparse_annotation((dense > 0).astype(np.uint8), (2, 2, 2))
    mask = np.where(sparse == 255, 128, sparse * 255).astype(np.uint8)  # a 0/255 mask, 128 where unannotated
    nib.save(nib.Nifti1Image(mask, affine), folder / "mask.nii.gz")
    tiny = ["--set", "model.n_base_filters=2", "--set", "model.depth=2", "--set", "training.patch_shape=[16,16,16]"]
    from unet3d_keras.commands.densify import main

    args = ["--image", str(folder / "image.nii.gz"), "--labels", str(folder / "mask.nii.gz"), "--steps", "1",
            "--quiet", *tiny]
    assert main([*args, "--output", str(folder / "out.nii.gz"), "--ignore-label", "128"]) == 0
    written = np.asarray(nib.load(folder / "out.nii.gz").dataobj)
    annotated = mask != 128
    np.testing.assert_array_equal(written[annotated], mask[annotated])
    assert set(np.unique(written).tolist()) <= {0, 255}
    # A sparse map whose unannotated voxels are 255, with a class named as the ignore value: refused, nothing written
    nib.save(nib.Nifti1Image(np.where(annotated, mask // 255, 255).astype(np.uint8), affine), folder / "s.nii.gz")
    assert main([*args, "--labels", str(folder / "s.nii.gz"), "--output", str(folder / "no.nii.gz"),
                 "--ignore-label", "1"]) == 2
    assert (f"s.nii.gz: --ignore-label 1 collides with a real label: the file holds more voxels of 255, the usual "
            f"value of unannotated voxels, than of 1 ({np.sum(~annotated)} against {np.sum(mask == 255)})"
            in capsys.readouterr().err)
    assert not (folder / "no.nii.gz").exists()


def test_densify_reads_labels_simpleitk_reads_and_writes_them_on_their_grid(sparse_case):
    import SimpleITK as sitk

    folder, affine, dense = sparse_case
    sparse = make_sparse_annotation(dense, (2, 2, 2))
    nib.save(nib.Nifti1Image(sparse, affine), folder / "sparse.nii.gz")
    sitk.WriteImage(sitk.ReadImage(str(folder / "sparse.nii.gz")), str(folder / "sparse.nrrd"))
    result = run_script("densify.py", "--image", folder / "image.nii.gz", "--labels", folder / "sparse.nrrd",
                        "--output", folder / "out.nii.gz", "--steps", 2, "--quiet", "--set", "model.n_base_filters=2",
                        "--set", "model.depth=2", "--set", "training.patch_shape=[16,16,16]")
    assert result.returncode == 0, result.stderr
    written = nib.load(folder / "out.nii.gz")
    np.testing.assert_allclose(written.affine, affine, atol=1e-5)
    assert written.shape == dense.shape and written.get_data_dtype() == np.uint8
    annotated = sparse != 255
    np.testing.assert_array_equal(np.asarray(written.dataobj)[annotated], sparse[annotated])  # in the same order


def test_densify_warns_when_no_background_is_annotated(sparse_case):
    folder, affine, dense = sparse_case
    sparse = make_sparse_annotation(dense, (3, 3, 3))
    sparse[sparse == 0] = 255  # only the structure painted, as a newcomer might
    nib.save(nib.Nifti1Image(sparse, affine), folder / "painted.nii.gz")
    result = run_script("densify.py", "--image", folder / "image.nii.gz", "--labels", folder / "painted.nii.gz",
                        "--output", folder / "out.nii.gz", "--steps", 2, "--quiet", "--set", "model.n_base_filters=2",
                        "--set", "model.depth=2", "--set", "training.patch_shape=[16,16,16]")
    assert result.returncode == 0, result.stderr
    assert (f"warning: {folder / 'painted.nii.gz'}: no voxel is annotated 0, the background: every voxel of the "
            "output will get one of the annotated classes [1, 2]; annotate some background too") in result.stdout
    assert set(np.unique(np.asarray(nib.load(folder / "out.nii.gz").dataobj)).tolist()) <= {1, 2}


def test_train_script_learns_from_sparse_truth_with_the_masked_loss(tmp_path):
    """Fully-automated mode: sparse truth volumes train a softmax model; predict is unchanged."""
    from unet3d_keras.demo import write_demo_dataset
    from unet3d_keras.training import load_old_model

    folders = write_demo_dataset(tmp_path / "subjects", n_subjects=5, shape=(20, 20, 20), seed=1,
                                 show_progress=False)
    for folder in folders:
        seg = folder / f"{folder.name}_seg.nii.gz"
        image = nib.load(seg)
        sparse = make_sparse_annotation(np.asarray(image.dataobj).astype(np.uint8), (3, 3, 3))
        nib.save(nib.Nifti1Image(sparse, image.affine), seg)
    config = {
        "output_dir": "run", "seed": 3,
        "data": {"source": "brats", "data_dir": "subjects", "image_shape": [16, 16, 16]},
        "model": {"depth": 2, "n_base_filters": 4},
        "training": {"n_epochs": 2, "batch_size": 1, "validation_batch_size": 1, "mixed_precision": "off",
                     "workers": 0},
    }
    path = tmp_path / "sparse.yaml"
    path.write_text(yaml.safe_dump(config))
    done = run_script("train.py", "--config", path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "softmax output with the cross_entropy_dice loss" in done.stderr
    model = load_old_model(tmp_path / "run" / "model.keras")
    assert model.output_shape[-1] == 4  # background + labels 1, 2, 4
    assert isinstance(model.loss, MaskedSegmentationLoss) and model.loss.class_weights is not None
    log = (tmp_path / "run" / "training.log").read_text().splitlines()
    assert "val_label_2_dice_coef" in log[0] and len(log) == 3
    predicted = run_script("predict.py", "--config", path, "--quiet")
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert "Validation Dice" in predicted.stdout

    # A sigmoid model cannot be asked to learn from it.
    refused = run_script("train.py", "--config", path, "--overwrite", "--set", "model.activation=sigmoid")
    assert refused.returncode == 2
    assert "model.activation: sigmoid cannot leave out the" in refused.stderr
