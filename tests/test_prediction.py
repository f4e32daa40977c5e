import keras
import nibabel as nib
import numpy as np
import pytest

from unet3d_keras.prediction import (
    get_prediction_labels,
    patch_wise_prediction,
    predict,
    prediction_to_image,
)
from unet3d_keras.predictor import Predictor
from unet3d_keras.sliding_window import gaussian_importance_map


def plus_one_model(window, n_channels=2):
    """A known-answer 'model': output = input + 1, same channels."""
    inputs = keras.Input(tuple(window) + (n_channels,))
    return keras.Model(inputs, keras.layers.Rescaling(1.0, offset=1.0)(inputs))


def coordinate_volume(shape, n_channels=2):
    """Voxels encode their own position, so any misplaced window shows.

    Integer values well below 2**24 / 8 keep float32 sums of overlapping windows exact.
    """
    grid = np.indices(shape).astype(np.float32)
    base = grid[0] * 10000 + grid[1] * 100 + grid[2]
    return np.stack([base + 5e5 * c for c in range(n_channels)]).astype(np.float32)


@pytest.mark.parametrize("shape", [(33, 34, 35), (16, 16, 16), (5, 9, 7)])
@pytest.mark.parametrize("overlap", [0, 4])
@pytest.mark.parametrize("batch_size", [1, 3])
def test_plus_one_reconstructs_exactly(shape, overlap, batch_size):
    volume = coordinate_volume(shape)
    model = plus_one_model((16, 16, 16))
    result = patch_wise_prediction(model, volume[np.newaxis], overlap=overlap, batch_size=batch_size)
    assert result.shape == volume.shape and result.dtype == np.float32
    np.testing.assert_array_equal(result, volume + 1)


def test_gaussian_weighting_reconstructs_exactly_and_batches_are_independent():
    volume = coordinate_volume((20, 18, 22))
    model = plus_one_model((8, 8, 8))
    gaussian = Predictor(model, overlap=4, batch_size=5, weighting="gaussian").predict_windows(volume)
    np.testing.assert_allclose(gaussian, volume + 1, rtol=1e-6)


def test_gaussian_map_shape_and_centre():
    weights = gaussian_importance_map((8, 9, 16))
    assert weights.shape == (8, 9, 16) and weights.dtype == np.float32
    assert weights.max() == pytest.approx(1.0) and weights.min() > 0
    assert weights[4, 4, 8] > weights[0, 4, 8] > weights[0, 0, 0]
    # Along z (16 voxels, centre 7.5) sigma is 16 / 8 = 2: offsets 0.5 and 3.5 give exp(-(3.5**2 - 0.5**2) / 8).
    assert weights[4, 4, 7] == pytest.approx(weights[4, 4, 8])
    assert weights[4, 4, 11] / weights[4, 4, 7] == pytest.approx(np.exp(-1.5), rel=1e-5)


def test_uniform_average_of_overlaps_matches_known_answer():
    """A model whose output depends on the window position: overlaps are averaged."""
    inputs = keras.Input((4, 4, 4, 1))
    # Output = mean of the window: a voxel covered by two windows gets the mean of their means.
    mean = keras.layers.Lambda(lambda x: keras.ops.mean(x, axis=(1, 2, 3), keepdims=True) + 0 * x)(inputs)
    model = keras.Model(inputs, mean)
    volume = np.zeros((1, 6, 4, 4), np.float32)
    volume[0, 4:] = 8.0
    result = Predictor(model, overlap=2).predict_windows(volume)
    # The centred grid over 6 voxels (window 4, step 2) starts at x = -1, 1, 3; edge padding repeats
    # x = 0 and x = 5. Window means: x in [-1, 3) -> 0; [1, 5) -> 16 * 8 / 64 = 2; [3, 7) -> 48 * 8 / 64 = 6.
    np.testing.assert_allclose(result[0, :, 0, 0], [0, 1, 1, 4, 4, 6])
    np.testing.assert_allclose(result[0, :, 3, 3], [0, 1, 1, 4, 4, 6])


def test_mirror_and_permute_keep_an_equivariant_model_exact():
    volume = coordinate_volume((8, 8, 8))
    model = plus_one_model((8, 8, 8))
    np.testing.assert_allclose(Predictor(model, mirror=True).predict_array(volume), volume + 1, rtol=1e-6)
    np.testing.assert_allclose(predict(model, volume[np.newaxis], permute=True)[0], volume + 1, rtol=1e-6)
    np.testing.assert_allclose(
        patch_wise_prediction(model, coordinate_volume((12, 12, 12)), overlap=4, permute=True),
        coordinate_volume((12, 12, 12)) + 1, rtol=1e-6)


def test_bad_arguments():
    model = plus_one_model((8, 8, 8))
    with pytest.raises(ValueError, match="overlap \\[8, 8, 8\\] must be smaller than the patch size"):
        Predictor(model, overlap=8).predict_windows(coordinate_volume((9, 9, 9)))
    with pytest.raises(ValueError, match="the model takes 2 input channels but the volume has 3"):
        Predictor(model).predict_windows(coordinate_volume((9, 9, 9), n_channels=3))
    with pytest.raises(ValueError, match="weighting must be one of uniform, gaussian"):
        Predictor(model, weighting="hann").predict_windows(coordinate_volume((9, 9, 9)))
    with pytest.raises(ValueError, match="permute=True needs a cubic window and volume"):
        patch_wise_prediction(model, coordinate_volume((9, 10, 9)), permute=True)


def test_prediction_labels_map_indices_to_label_values():
    prediction = np.zeros((1, 3, 2, 2, 1), np.float32)
    prediction[0, 0, 0, 0] = 0.9  # label 1
    prediction[0, 1, 0, 1] = 0.6  # label 2
    prediction[0, 2, 1, 0] = 0.7  # label 4
    prediction[0, 2, 1, 1] = 0.4  # below threshold
    (labels,) = get_prediction_labels(prediction, threshold=0.5, labels=(1, 2, 4))
    np.testing.assert_array_equal(labels[..., 0], [[1, 2], [4, 0]])
    assert labels.dtype == np.uint8
    image = prediction_to_image(prediction, np.eye(4), label_map=True, labels=(1, 2, 4))
    assert isinstance(image, nib.Nifti1Image)
    np.testing.assert_array_equal(np.asarray(image.dataobj)[..., 0], [[1, 2], [4, 0]])
    images = prediction_to_image(prediction, np.eye(4))
    assert len(images) == 3 and images[2].get_fdata()[1, 0, 0] == pytest.approx(0.7)
    single = prediction_to_image(prediction[:, :1], np.eye(4), label_map=True, labels=(4,))
    np.testing.assert_array_equal(np.asarray(single.dataobj)[..., 0], [[4, 0], [0, 0]])
    with pytest.raises(ValueError, match="4 label values \\[1, 2, 4, 5\\] for 3 prediction channels"):
        get_prediction_labels(prediction, labels=(1, 2, 4, 5))
    # One channel more than labels is a softmax output: background first.
    np.testing.assert_array_equal(get_prediction_labels(prediction, labels=(1, 2))[0][..., 0], [[0, 1], [2, 2]])
