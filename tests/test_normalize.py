"""unet3d_keras.normalize: foreground crop over all files, reslicing, streaming statistics."""

import os

import nibabel as nib
import numpy as np
import pytest

from unet3d_keras.errors import DataError
from unet3d_keras.channel_statistics import compute_channel_statistics
from unet3d_keras.normalize import (
    find_downsized_info,
    get_complete_foreground,
    get_cropping_parameters,
    get_foreground_from_set_of_files,
    normalize_data,
    normalize_data_storage,
    reslice_image_set,
)
from unet3d_keras.subject_images import read_subject_images

try:
    from data_helpers import write_nifti
except ImportError:  # tests imported as a package
    from tests.data_helpers import write_nifti


def _box(shape, corner, size, value=1.0, dtype=np.float32):
    data = np.zeros(shape, dtype=dtype)
    data[tuple(slice(c, c + s) for c, s in zip(corner, size))] = value
    return data


@pytest.fixture
def subject(tmp_path):
    """Two modalities and a truth whose foregrounds differ; the union is voxels 2..9, 3..10, 1..6."""
    shape = (13, 14, 9)
    files = [
        write_nifti(str(tmp_path / "t1.nii.gz"), _box(shape, (2, 3, 1), (4, 4, 3), 10.0), np.eye(4)),
        write_nifti(str(tmp_path / "t2.nii.gz"), _box(shape, (5, 6, 3), (5, 5, 4), 20.0), np.eye(4)),
        write_nifti(str(tmp_path / "truth.nii.gz"), _box(shape, (4, 5, 2), (2, 2, 2), 4, np.uint8), np.eye(4)),
    ]
    return files


def test_foreground_is_union_of_all_files(subject):
    foreground = get_foreground_from_set_of_files(subject)
    assert foreground.dtype == np.uint8
    expected = np.zeros((13, 14, 9), dtype=bool)
    expected[2:6, 3:7, 1:4] = True
    expected[5:10, 6:11, 3:7] = True
    np.testing.assert_array_equal(foreground.astype(bool), expected)
    assert get_foreground_from_set_of_files(subject, return_image=True).shape == (13, 14, 9)


def test_cropping_parameters_cover_all_modalities_plus_margin(subject):
    assert get_cropping_parameters([subject]) == [slice(1, 11), slice(2, 12), slice(0, 8)]


def test_complete_foreground_over_subjects(subject, tmp_path):
    other = [write_nifti(str(tmp_path / "o.nii.gz"), _box((13, 14, 9), (0, 0, 0), (1, 1, 1)), np.eye(4))]
    foreground = np.asanyarray(get_complete_foreground([subject, other]).dataobj)
    assert foreground[0, 0, 0] == 1 and foreground[3, 4, 2] == 1 and foreground.sum() > 1
    crop_slices, affine, _ = find_downsized_info([subject, other], (4, 4, 4))
    assert crop_slices[0].start == 0
    assert affine.shape == (4, 4)


def test_reslice_image_set_crops_and_resizes(subject, tmp_path):
    images = reslice_image_set(subject, (8, 8, 8), label_indices=2, crop=True)
    assert [image.shape for image in images] == [(8, 8, 8)] * 3
    truth = np.asanyarray(images[2].dataobj)
    assert set(np.unique(truth)) == {0, 4}
    # The crop box starts at voxel (1, 2, 0) of the original grid and keeps its extent.
    extent = np.diag(images[0].affine)[:3] * 8
    np.testing.assert_allclose(extent, [10, 10, 8])
    out_files = [str(tmp_path / f"out{i}.nii.gz") for i in range(3)]
    written = reslice_image_set(subject, (8, 8, 8), out_files=out_files, label_indices=[2], crop=True)
    assert written == [os.path.abspath(f) for f in out_files]
    assert nib.load(out_files[0]).shape == (8, 8, 8)


def test_read_subject_images_rejects_non_finite(subject):
    data = np.ones((13, 14, 9), dtype=np.float32)
    data[1, 2, 3] = np.inf
    write_nifti(subject[1], data, np.eye(4))
    with pytest.raises(DataError, match=r"subject s1: .*t2.nii.gz contains 1 NaN or infinite"):
        read_subject_images(subject, (4, 4, 4), subject_id="s1")


def test_read_subject_images_rejects_other_affine(subject):
    affine = np.eye(4)
    affine[0, 3] = 0.5
    write_nifti(subject[1], np.ones((13, 14, 9), dtype=np.float32), affine)
    with pytest.raises(DataError, match=r"subject s2: the affine of .*t2.nii.gz differs"):
        read_subject_images(subject, subject_id="s2")


def test_read_subject_images_tolerates_rounding_in_affine(subject):
    affine = np.eye(4)
    affine[0, 0] = 1.0 + 1e-5
    write_nifti(subject[1], np.ones((13, 14, 9), dtype=np.float32), affine)
    assert len(read_subject_images(subject, subject_id="s3")) == 3


def test_normalize_data_in_place():
    data = np.stack([np.full((2, 2, 2), 3.0), np.full((2, 2, 2), 10.0)]).astype(np.float32)
    result = normalize_data(data, np.array([1.0, 4.0]), np.array([2.0, 3.0]))
    assert result is data
    np.testing.assert_allclose(data[0], 1.0)
    np.testing.assert_allclose(data[1], 2.0)


class _CountingStorage:
    """Array wrapper that only allows one-subject reads and writes, and counts them."""

    def __init__(self, array):
        self.array = array
        self.shape = array.shape
        self.reads = 0

    def __getitem__(self, index):
        assert isinstance(index, (int, np.integer)), "the whole data set must never be read at once"
        self.reads += 1
        return self.array[index].copy()

    def __setitem__(self, index, value):
        assert isinstance(index, (int, np.integer))
        self.array[index] = value


def _random_storage(seed=0, n=5, channels=3, shape=(6, 7, 5)):
    rng = np.random.default_rng(seed)
    scale = np.array([1.0, 10.0, 100.0])[:channels, None, None, None]
    offsets = rng.normal(0, 50, size=(n, channels, 1, 1, 1))
    return (rng.normal(size=(n, channels) + shape) * scale + 1000 + offsets).astype(np.float32)


def test_dataset_statistics_from_training_indices_only():
    array = _random_storage()
    original = array.copy()
    storage = _CountingStorage(array)
    statistics = normalize_data_storage(storage, indices=[0, 2, 3], return_statistics=True)
    subset = original[[0, 2, 3]].astype(np.float64)
    expected_mean = subset.mean(axis=(0, 2, 3, 4))
    expected_std = subset.std(axis=(0, 2, 3, 4))
    assert statistics["method"] == "dataset"
    np.testing.assert_allclose(statistics["mean"], expected_mean, rtol=1e-10)
    np.testing.assert_allclose(statistics["std"], expected_std, rtol=1e-10)
    np.testing.assert_array_equal(statistics["indices"], [0, 2, 3])
    # Every subject (training or not) is normalised with those statistics.
    expected = (original - expected_mean[None, :, None, None, None]) / expected_std[None, :, None, None, None]
    np.testing.assert_allclose(array, expected, rtol=1e-4, atol=1e-4)
    # 3 reads for the statistics, 5 for normalising: one subject at a time.
    assert storage.reads == 8


def test_statistics_are_accurate_for_large_offsets():
    array = (np.random.default_rng(5).normal(size=(4, 1, 8, 8, 8)) + 1e6).astype(np.float32)
    mean, std = compute_channel_statistics(array)
    np.testing.assert_allclose(std, array.astype(np.float64).std(), rtol=1e-9)
    np.testing.assert_allclose(mean, array.astype(np.float64).mean(), rtol=1e-12)


def test_zscore_over_foreground():
    array = _random_storage(seed=1)
    array[:, :, :2] = 0.0  # background in every channel
    statistics = normalize_data_storage(array, method="zscore", return_statistics=True)
    assert statistics["method"] == "zscore"
    assert statistics["mean"].shape == (5, 3)
    np.testing.assert_array_equal(array[:, :, :2], 0.0)
    foreground = array[:, :, 2:].astype(np.float64)
    np.testing.assert_allclose(foreground.mean(axis=(2, 3, 4)), 0.0, atol=1e-5)
    np.testing.assert_allclose(foreground.std(axis=(2, 3, 4)), 1.0, rtol=1e-4)


def test_constant_channel_does_not_divide_by_zero():
    array = np.ones((2, 2, 3, 3, 3), dtype=np.float32)
    array[:, 1] = np.arange(27, dtype=np.float32).reshape(3, 3, 3)
    statistics = normalize_data_storage(array, return_statistics=True)
    assert statistics["std"][0] == 0.0
    assert np.all(np.isfinite(array))
    np.testing.assert_array_equal(array[:, 0], 0.0)


def test_bad_method_and_indices():
    array = _random_storage(n=2)
    with pytest.raises(ValueError, match="zscore"):
        normalize_data_storage(array, method="minmax")
    with pytest.raises(DataError, match="outside"):
        normalize_data_storage(array, indices=[5])
    with pytest.raises(DataError, match="empty"):
        normalize_data_storage(array, indices=[])


def test_normalize_data_storage_returns_the_storage_like_the_reference():
    array = np.arange(2 * 2 * 8, dtype=np.float32).reshape(2, 2, 2, 2, 2)
    assert normalize_data_storage(array) is array
    np.testing.assert_allclose(array.mean(axis=(0, 2, 3, 4)), 0, atol=1e-6)
