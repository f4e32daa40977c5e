"""Patch grids, patch extraction and reconstruction (ports of the reference's tests, plus
known-answer reconstructions on odd shapes)."""

import numpy as np
import pytest

from unet3d_keras.utils.patches import (
    compute_patch_indices,
    fix_out_of_bound_patch_attempt,
    get_patch_from_3d_data,
    get_random_nd_index,
    get_random_patch_index,
    get_set_of_patch_indices,
    reconstruct_from_patches,
)


def patches_of(data, patch_shape, indices):
    return [get_patch_from_3d_data(data, patch_shape, index) for index in indices]


# -- grids ----------------------------------------------------------------------------------


def test_centred_grid_with_overlap():
    indices = compute_patch_indices((10, 10, 10), (5, 5, 5), overlap=2)
    assert len(indices) == 4**3
    assert sorted(set(indices[:, 0].tolist())) == [-2, 1, 4, 7]
    assert indices.dtype == np.int64


def test_grid_from_a_start_keeps_its_size():
    for start in range(0, -4, -1):
        indices = compute_patch_indices((10, 10, 10), (5, 5, 5), overlap=0, start=start)
        assert len(indices) == 2**3
        assert indices.min() == start


def test_grid_tiles_the_volume():
    indices = compute_patch_indices((33, 34, 35), (8, 8, 8), overlap=(2, 3, 0))
    covered = np.zeros((33, 34, 35), dtype=bool)
    for index in indices:
        low = np.maximum(index, 0)
        high = np.minimum(index + 8, (33, 34, 35))
        covered[low[0]:high[0], low[1]:high[1], low[2]:high[2]] = True
    assert covered.all()


def test_set_of_patch_indices():
    indices = get_set_of_patch_indices((0, 0, 0), (4, 2, 3), (2, 2, 3))
    assert indices.tolist() == [[0, 0, 0], [2, 0, 0]]


def test_overlap_not_smaller_than_the_patch_is_refused():
    with pytest.raises(ValueError, match="overlap"):
        compute_patch_indices((10, 10, 10), (4, 4, 4), overlap=4)


def test_random_indices_are_seeded_and_in_range():
    draws = [get_random_patch_index((10, 8, 6), (4, 4, 4), rng=np.random.default_rng(3)) for _ in range(2)]
    assert draws[0] == draws[1]
    rng = np.random.default_rng(0)
    values = np.array([get_random_nd_index((3, 0, 2), rng) for _ in range(200)])
    assert values.min(axis=0).tolist() == [0, 0, 0] and values.max(axis=0).tolist() == [3, 0, 2]


# -- extraction -----------------------------------------------------------------------------


def test_patch_inside_is_a_view():
    data = np.arange(2 * 6 * 7 * 8).reshape(2, 6, 7, 8)
    patch = get_patch_from_3d_data(data, (2, 3, 4), (1, 2, 3))
    np.testing.assert_array_equal(patch, data[:, 1:3, 2:5, 3:7])
    assert np.shares_memory(patch, data)


@pytest.mark.parametrize("index", [(-2, 0, 0), (4, 5, 6), (-3, 6, -1), (-10, 20, 3)])
def test_patch_outside_is_edge_padded(index):
    data = np.arange(2 * 5 * 6 * 7).reshape(2, 5, 6, 7)
    patch_shape = np.array((3, 4, 5))
    index = np.array(index)
    padded, fixed = fix_out_of_bound_patch_attempt(data, patch_shape, index)
    expected = padded[:, fixed[0]:fixed[0] + 3, fixed[1]:fixed[1] + 4, fixed[2]:fixed[2] + 5]
    patch = get_patch_from_3d_data(data, patch_shape, index)
    np.testing.assert_array_equal(patch, expected)
    assert index.tolist() == list(index)  # the caller's index is left alone


def test_patch_of_a_3d_array():
    data = np.arange(4 * 4 * 4).reshape(4, 4, 4)
    assert get_patch_from_3d_data(data, (2, 2, 2), (-1, -1, -1)).shape == (2, 2, 2)


# -- the reference's reconstruction tests ----------------------------------------------------


@pytest.fixture(scope="module")
def image():
    shape = (120, 144, 90)
    return np.arange(np.prod(shape)).reshape(shape)


def test_reconstruct_from_patches(image):
    indices = compute_patch_indices(image.shape, (32, 32, 32), 0)
    reconstructed = reconstruct_from_patches(patches_of(image, (32, 32, 32), indices), indices, image.shape)
    assert np.all(image == reconstructed)


def test_reconstruct_with_overlapping_patches(image):
    indices = compute_patch_indices(image.shape, (32, 32, 32), 0)
    patches = patches_of(image, (32, 32, 32), indices)
    patches.extend([patch - 2 for patch in patches])
    indices = np.concatenate([indices, indices])
    # Half the patches are 2 lower: the average is 1 lower.
    assert np.all(image - 1 == reconstruct_from_patches(patches, indices, image.shape))


def test_reconstruct_with_overlapping_patches2():
    shape = (144, 144, 144)
    data = np.arange(np.prod(shape)).reshape(shape)
    indices = compute_patch_indices(shape, (64, 64, 64), 16)
    other = compute_patch_indices(shape, (64, 64, 64), 32)
    patches = patches_of(data, (64, 64, 64), indices) + patches_of(data, (64, 64, 64), other)
    reconstructed = reconstruct_from_patches(patches, np.concatenate([indices, other]), shape)
    assert np.all(data == reconstructed)


def test_reconstruct_with_multiple_channels():
    shape = (144, 144, 144)
    data = np.arange(np.prod(shape) * 4).reshape((4,) + shape)
    indices = compute_patch_indices(shape, (64, 64, 64), 16)
    patches = patches_of(data, (64, 64, 64), indices)
    assert patches[0].shape == (4, 64, 64, 64)
    assert np.all(data == reconstruct_from_patches(patches, indices, data.shape))


# -- known answers on odd shapes -------------------------------------------------------------


@pytest.mark.parametrize("overlap", [0, 3, (4, 2, 5)])
def test_identity_patches_reconstruct_exactly(overlap):
    rng = np.random.default_rng(0)
    data = rng.standard_normal((2, 33, 34, 35)).astype(np.float32)
    indices = compute_patch_indices((33, 34, 35), (8, 9, 10), overlap)
    patches = np.stack(patches_of(data, (8, 9, 10), indices))
    reconstructed = reconstruct_from_patches(patches, indices, data.shape)
    assert reconstructed.dtype == np.float32
    np.testing.assert_allclose(reconstructed, data, rtol=1e-6, atol=1e-6)
    # A predictor "x + 1" reconstructs to data + 1 everywhere.
    np.testing.assert_allclose(reconstruct_from_patches(patches + 1, indices, data.shape), data + 1, atol=1e-5)


def test_uncovered_voxels_get_the_default_value():
    patch = np.ones((2, 2, 2))
    reconstructed = reconstruct_from_patches([patch, patch * 3], [(0, 0, 0), (1, 1, 1)], (4, 4, 4), default_value=-1)
    assert reconstructed[0, 0, 0] == 1 and reconstructed[1, 1, 1] == 2 and reconstructed[2, 2, 2] == 3
    assert reconstructed[3, 3, 3] == -1 and reconstructed[0, 3, 0] == -1


def test_patches_sticking_out_and_wholly_outside():
    data = np.arange(5 * 6 * 7, dtype=np.float64).reshape(5, 6, 7)
    indices = np.array([[-2, -2, -2], [3, 4, 5], [10, 0, 0]])
    patches = patches_of(data, (4, 4, 4), indices)
    reconstructed = reconstruct_from_patches(patches, indices, data.shape, default_value=np.nan)
    covered = ~np.isnan(reconstructed)
    np.testing.assert_array_equal(reconstructed[covered], data[covered])
    assert covered[0, 0, 0] and covered[4, 5, 6] and not covered[2, 3, 3]
