"""Augmentation: cube permutations (reference tests), known-answer alignment of images and labels
after every spatial transform, the elastic field's statistics, gray-value changes."""

import numpy as np
import pytest

from unet3d_keras.augment import (
    augment_data,
    generate_permutation_keys,
    get_image,
    permute_data,
    random_flip_dimensions,
    random_permutation_key,
    reverse_permute_data,
    scale_image,
)
from unet3d_keras.augmentation.compose import apply_augmentation, augment_sample, sample_augmentation
from unet3d_keras.augmentation.elastic import (
    elastic_displacement_field,
    elastic_grid,
    elastic_node_displacements,
    elastic_transform,
)
from unet3d_keras.augmentation.intensity import gamma_transform, intensity_transform
from unet3d_keras.augmentation.params import AugmentationParams
from unet3d_keras.augmentation.spatial import apply_rotation, apply_spatial_transform, rotate, sampling_coordinates

SHAPE = (48, 46, 44)  # large enough that the nearest-vs-linear boundary band stays < 1%
THRESHOLD = 0.5


def smooth_sample(shape=SHAPE, n_channels=2):
    """A smooth blob image (two channels, scaled copies) and its thresholded label."""
    grids = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    blob = np.exp(-((grids[0] - 0.1) ** 2 + (grids[1] + 0.15) ** 2 / 0.6 + grids[2] ** 2 / 0.8) * 2.5)
    data = np.stack([blob * (c + 1) for c in range(n_channels)]).astype(np.float32)
    return data, (blob > THRESHOLD).astype(np.uint8)


def agreement(data, truth):
    """Fraction of voxels where the label still equals the thresholded (first channel) image."""
    return np.mean((data[0] > THRESHOLD) == (truth > 0))


ALIGNMENT_CASES = {
    "flip": AugmentationParams(flip=True),
    "scale": AugmentationParams(distortion_factor=0.25),
    "rotation": AugmentationParams(rotation_degrees=30),
    "elastic (paper)": AugmentationParams(elastic=True),
    "elastic (dense grid)": AugmentationParams(elastic=True, elastic_sigma=3, elastic_grid_spacing=8),
    "all spatial": AugmentationParams(
        flip=True, distortion_factor=0.1, rotation_degrees=20, elastic=True, elastic_grid_spacing=16
    ),
}


@pytest.mark.parametrize("name", list(ALIGNMENT_CASES))
def test_labels_stay_aligned_with_the_image(name):
    data, truth = smooth_sample()
    rng = np.random.default_rng(0)
    changed = 0
    for _ in range(4):
        new_data, new_truth = augment_sample(data, truth, np.eye(4), ALIGNMENT_CASES[name], rng)
        assert new_data.shape == data.shape and new_truth.shape == truth.shape
        assert new_data.dtype == np.float32 and new_truth.dtype == np.uint8
        assert agreement(new_data, new_truth) >= 0.99
        changed += not np.array_equal(new_truth, truth)
    assert changed >= 2  # the transform did something


def test_permutation_keeps_labels_aligned():
    data, truth = smooth_sample(shape=(24, 24, 24))
    rng = np.random.default_rng(1)
    for _ in range(6):
        new_data, new_truth = augment_sample(data, truth[None], None, AugmentationParams(permute=True), rng)
        assert new_truth.shape == (1, 24, 24, 24)
        assert agreement(new_data, new_truth[0]) == 1.0


def test_reference_augment_data_keeps_labels_aligned():
    data, truth = smooth_sample()
    affine = np.diag([1.2, 1.2, 2.0, 1.0])
    rng = np.random.default_rng(2)
    for _ in range(4):
        new_data, new_truth = augment_data(data, truth, affine, scale_deviation=0.25, flip=True, rng=rng)
        assert new_data.shape == data.shape and new_truth.shape == truth.shape
        assert agreement(new_data, new_truth) >= 0.99


def test_voxels_that_encode_their_coordinates_move_with_their_labels():
    """Images hold each voxel's own coordinates; labels a function of them. After a combined
    scale + rotation + elastic transform, the label of each voxel must be the label of the
    coordinates its image now holds: both were sampled at the same place."""
    shape = (20, 22, 24)
    coordinates = np.indices(shape).astype(np.float32)
    labels = ((coordinates[0] // 3 + 2 * (coordinates[1] // 4) + 3 * (coordinates[2] // 5)) % 7).astype(np.uint8)
    params = AugmentationParams(distortion_factor=0.1, rotation_degrees=15, elastic=True, elastic_grid_spacing=8)
    sampled = sample_augmentation(params, coordinates.shape, np.random.default_rng(3))
    moved, moved_labels = apply_augmentation(coordinates, labels, sampled)
    source = np.clip(np.floor(moved + 0.5).astype(int), 0, np.array(shape).reshape(3, 1, 1, 1) - 1)
    expected = labels[source[0], source[1], source[2]]
    assert np.mean(expected == moved_labels) > 0.995
    assert np.mean(np.abs(moved - coordinates)) > 0.5  # it did move


def test_flips_are_exact_and_follow_the_seed():
    data = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    truth = (data[0] % 3).astype(np.uint8)
    new_data, new_truth = augment_data(data, truth, np.eye(4), flip=True, rng=np.random.default_rng(4))
    axes = random_flip_dimensions(3, np.random.default_rng(4))
    np.testing.assert_array_equal(new_data, np.flip(data, [a + 1 for a in axes]))
    np.testing.assert_array_equal(new_truth, np.flip(truth, axes))


def test_same_seed_same_augmentation():
    data, truth = smooth_sample()
    params = AugmentationParams(flip=True, distortion_factor=0.1, rotation_degrees=10, elastic=True,
                                intensity_scale=0.1, intensity_shift=0.1, gamma_range=(0.8, 1.2))
    a = augment_sample(data, truth, np.eye(4), params, np.random.default_rng(5))
    b = augment_sample(data, truth, np.eye(4), params, np.random.default_rng(5))
    c = augment_sample(data, truth, np.eye(4), params, np.random.default_rng(6))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_nothing_switched_on_changes_nothing():
    data, truth = smooth_sample()
    new_data, new_truth = augment_sample(data, truth, np.eye(4), AugmentationParams(), 0)
    np.testing.assert_array_equal(new_data, data)
    assert new_truth is truth


# -- the reference's nibabel helpers ---------------------------------------------------------


def test_scale_image_keeps_the_centre():
    image = get_image(np.zeros((10, 12, 14), dtype=np.float32), np.diag([2.0, 2.0, 3.0, 1.0]))
    scaled = scale_image(image, (1.5, 0.5, 1.0))
    centre = np.array([5, 6, 7, 1])
    np.testing.assert_allclose(image.affine @ centre, scaled.affine @ centre)
    np.testing.assert_allclose(np.diag(scaled.affine)[:3], [3.0, 1.0, 3.0])


# -- rotation -------------------------------------------------------------------------------


def test_quarter_turn_about_z_is_exact():
    data = np.random.default_rng(7).standard_normal((1, 9, 9, 5)).astype(np.float32)
    rotated, _ = apply_rotation(data, None, axis=(0, 0, 1), angle_degrees=90)
    turned = np.rot90(data, k=1, axes=(1, 2))
    assert np.allclose(rotated, turned, atol=1e-4) or np.allclose(rotated, np.rot90(data, -1, (1, 2)), atol=1e-4)


def test_rotate_is_random_and_small():
    data, truth = smooth_sample()
    rng = np.random.default_rng(8)
    changes = [np.mean(rotate(data, truth, max_degrees=10, rng=rng)[1] != truth) for _ in range(5)]
    assert max(changes) < 0.05 and len(set(changes)) > 1


# -- elastic deformation --------------------------------------------------------------------


def test_elastic_grid_covers_the_volume():
    n_nodes, origin = elastic_grid((64, 64, 64), 32)
    assert n_nodes == (3, 3, 3)
    assert np.all(origin <= 0) and np.all(origin + 2 * 32 >= 63)
    assert elastic_grid((10, 100, 40), 32)[0] == (2, 5, 3)


def test_elastic_node_displacements_have_the_papers_statistics():
    rng = np.random.default_rng(9)
    nodes = np.stack([elastic_node_displacements((64, 64, 64), sigma=4.0, grid_spacing=32, rng=rng)
                      for _ in range(300)])
    assert nodes.shape == (300, 3, 3, 3, 3) and nodes.dtype == np.float32
    assert abs(nodes.std() - 4.0) < 0.5
    for axis in range(3):
        assert abs(nodes[:, axis].std() - 4.0) < 0.5
    assert abs(nodes.mean()) < 0.2


def test_elastic_field_passes_through_the_nodes_and_is_smooth():
    shape = (65, 65, 65)  # nodes at voxels 0, 32 and 64
    rng = np.random.default_rng(10)
    values = []
    for _ in range(100):
        nodes = elastic_node_displacements(shape, 4.0, 32, rng)
        field = elastic_displacement_field(nodes, shape, 32)
        assert field.shape == (3,) + shape and field.dtype == np.float32
        np.testing.assert_allclose(field[:, ::32, ::32, ::32], nodes, atol=1e-4)
        values.append(field[:, ::32, ::32, ::32])
        # Smooth: neighbouring voxels move by far less than a voxel relative to each other.
        assert np.abs(np.diff(field, axis=1)).max() < 1.5
    assert abs(np.std(values) - 4.0) < 0.5


def test_elastic_transform_deforms_image_and_labels_together():
    data, truth = smooth_sample()
    new_data, new_truth = elastic_transform(data, truth, sigma=4, grid_spacing=16, rng=np.random.default_rng(11))
    assert not np.array_equal(new_truth, truth)
    assert agreement(new_data, new_truth) >= 0.99


def test_sampling_coordinates_are_the_matrix_applied_to_each_displaced_voxel():
    shape = (5, 7, 3)
    rng = np.random.default_rng(12)
    matrix = np.eye(4)
    matrix[:3, :3] = rng.normal(size=(3, 3))
    matrix[:3, 3] = rng.normal(size=3) * 4
    displacement = rng.normal(size=(3,) + shape).astype(np.float32)
    coordinates = sampling_coordinates(shape, matrix, displacement)
    voxels = np.indices(shape, dtype=np.float64) + displacement
    expected = np.einsum("ij,jxyz->ixyz", matrix[:3, :3], voxels) + matrix[:3, 3, None, None, None]
    assert coordinates.shape == (3,) + shape and coordinates.dtype == np.float32
    np.testing.assert_allclose(coordinates, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(sampling_coordinates(shape), np.indices(shape))


def test_elastic_field_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="node_displacements must have shape"):
        elastic_displacement_field(np.zeros((3, 2, 2, 2)), (64, 64, 64), 32)


# -- gray values ----------------------------------------------------------------------------


def test_intensity_transform_known_answer():
    data = np.ones((2, 3, 3, 3), dtype=np.float32)
    result = intensity_transform(data, scale=[2.0, 3.0], shift=[0.5, -1.0])
    assert np.all(result[0] == 2.5) and np.all(result[1] == 2.0)


def test_gamma_keeps_the_range_and_one_is_identity():
    data = np.random.default_rng(12).standard_normal((2, 5, 5, 5)).astype(np.float32)
    np.testing.assert_allclose(gamma_transform(data, 1.0), data, atol=1e-6)
    result = gamma_transform(data, [0.5, 2.0])
    np.testing.assert_allclose(result.min(axis=(1, 2, 3)), data.min(axis=(1, 2, 3)), atol=1e-6)
    np.testing.assert_allclose(result.max(axis=(1, 2, 3)), data.max(axis=(1, 2, 3)), atol=1e-5)
    assert np.mean(result[0]) > np.mean(data[0])  # gamma < 1 brightens


def test_gray_value_augmentation_leaves_labels_alone():
    data, truth = smooth_sample()
    params = AugmentationParams(intensity_scale=0.2, intensity_shift=0.2, gamma_range=(0.5, 2.0))
    new_data, new_truth = augment_sample(data, truth, None, params, np.random.default_rng(13))
    assert np.array_equal(new_truth, truth)
    assert not np.allclose(new_data, data)


# -- cube permutations (reference tests) -----------------------------------------------------


def test_n_permutations():
    assert len(generate_permutation_keys()) == 48


def test_unique_permutations():
    data = np.arange(54).reshape((2, 3, 3, 3))
    permutations = [permute_data(data, key) for key in generate_permutation_keys()]
    assert len({p.tobytes() for p in permutations}) == 48
    assert all(p.shape == data.shape and p.sum() == data.sum() for p in permutations)


def test_reverse_permutation():
    data = np.arange(4 * 32**3).reshape((4, 32, 32, 32))
    for key in generate_permutation_keys():
        assert np.array_equal(reverse_permute_data(permute_data(data, key), key), data)


def test_permutation_key_follows_the_seed():
    assert random_permutation_key(np.random.default_rng(1)) == random_permutation_key(np.random.default_rng(1))
    keys = {random_permutation_key(np.random.default_rng(s)) for s in range(200)}
    assert len(keys) > 40


# -- bad input ------------------------------------------------------------------------------


def test_permute_needs_a_cube():
    with pytest.raises(ValueError, match=r"\(1, 4, 4, 5\)"):
        permute_data(np.zeros((1, 4, 4, 5)), ((0, 0), 0, 0, 0, 1))
    with pytest.raises(ValueError, match="cubic"):
        augment_sample(np.zeros((1, 4, 4, 5)), None, None, AugmentationParams(permute=True), 0)


@pytest.mark.parametrize(
    "kwargs, name",
    [({"elastic_sigma": -1}, "elastic_sigma"), ({"elastic_grid_spacing": 0}, "elastic_grid_spacing"),
     ({"gamma_range": (2.0, 1.0)}, "gamma_range"), ({"rotation_degrees": -5}, "rotation_degrees"),
     ({"distortion_factor": -0.1}, "distortion_factor")],
)
def test_bad_parameters_are_refused(kwargs, name):
    with pytest.raises(ValueError, match=name):
        AugmentationParams(**kwargs)


def test_spatial_transform_of_labels_only():
    truth = np.zeros((6, 6, 6), dtype=np.uint8)
    truth[1, 2, 3] = 4
    matrix = np.eye(4)
    matrix[:3, 3] = (1, 0, 0)  # output voxel p samples input voxel p + (1, 0, 0)
    _, moved = apply_spatial_transform(None, truth, matrix=matrix)
    assert moved[0, 2, 3] == 4 and moved.sum() == 4


@pytest.mark.parametrize("shape", [(9, 7, 5), (1, 6, 4), (12, 1, 1), (16, 16, 16)])
def test_resampling_matches_scipy_map_coordinates(shape, monkeypatch):
    """The shared-index trilinear and nearest resamplers give scipy's values, edges included."""
    from scipy import ndimage

    from unet3d_keras.augmentation import spatial as augment
    from unet3d_keras.augmentation.spatial import interpolate_linear, interpolate_nearest

    monkeypatch.setattr(augment, "_INTERPOLATION_CHUNK", 97)  # several chunks, the last one partial

    rng = np.random.default_rng(3)
    channels = rng.standard_normal((3,) + shape).astype(np.float32)
    labels = rng.integers(0, 5, shape).astype(np.uint8)
    # Points inside, on the edges and well outside the volume, plus exact integers and halves.
    points = rng.uniform(-3, np.asarray(shape)[:, None] + 2, size=(3, 500)).astype(np.float32)
    exact = np.stack([np.arange(40) % s * 0.5 for s in shape]).astype(np.float32)
    points = np.concatenate([points, exact], axis=1)

    linear = interpolate_linear(channels, points)
    for index in range(3):
        expected = ndimage.map_coordinates(channels[index], points, order=1, mode="nearest", prefilter=False)
        np.testing.assert_allclose(linear[index], expected, rtol=0, atol=2e-6)
    nearest = interpolate_nearest(labels, points)
    assert nearest.dtype == np.uint8
    np.testing.assert_array_equal(nearest, ndimage.map_coordinates(labels, points, order=0, mode="nearest",
                                                                   prefilter=False))
