"""unet3d_keras.utils.utils: the reference's resize known answers, geometry, reading, bad files."""

import gzip
import pickle

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from unet3d_keras.errors import DataError
from unet3d_keras.utils.sitk_utils import resample_to_spacing
from unet3d_keras.utils.utils import (
    crop_img,
    crop_img_to,
    fix_shape,
    get_affine,
    pickle_dump,
    pickle_load,
    read_image,
    read_image_files,
    read_image_header,
    resize,
)


def _create_image(image_shape):
    data = np.arange(np.prod(image_shape), dtype=float).reshape(image_shape)
    return nib.Nifti1Image(data, np.eye(4))


def _resize_round_trip(image, target_shape):
    original_shape = image.shape
    new_image = resize(image, target_shape)
    assert new_image.shape == tuple(target_shape)
    new_image = resize(new_image, original_shape, interpolation="linear")
    assert new_image.shape == original_shape


# --- The reference's known-answer tests (legacy/test/test_utils.py) ---------------------------


def test_resize_image_1():
    _resize_round_trip(_create_image((4, 4, 4)), (2, 2, 2))


def test_resize_image_2():
    _resize_round_trip(_create_image((12, 10, 8)), (8, 8, 8))


def test_resize_image_3():
    _resize_round_trip(_create_image((2, 5, 3)), (7, 5, 11))


def test_resize_image_2d():
    data = np.arange(1, 5).reshape((2, 2))
    new_data = resample_to_spacing(data, (2, 2), (1, 1), interpolation="nearest")
    np.testing.assert_array_equal(new_data, [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]])
    orig_data = resample_to_spacing(new_data, (1, 1), (2, 2), interpolation="linear")
    np.testing.assert_array_equal(orig_data, data)


def test_resize_image_3d():
    data = np.arange(1, 9).reshape((2, 2, 2))
    new_data = resample_to_spacing(data, (2, 2, 2), (1, 1, 1), interpolation="nearest")
    np.testing.assert_array_equal(new_data[0], [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]])
    orig_data = resample_to_spacing(new_data, (1, 1, 1), (2, 2, 2), interpolation="linear")
    np.testing.assert_array_equal(orig_data, data)


def test_images_align():
    data = np.arange(1, 9).reshape((2, 2, 2)).astype(np.int16)
    affine = np.diag(np.ones(4) * 2)
    affine[3, 3] = 1
    new_image = resize(nib.Nifti1Image(data, affine=affine), (4, 4, 4), interpolation="nearest")
    np.testing.assert_array_equal(
        np.asanyarray(new_image.dataobj)[0], [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]
    )
    np.testing.assert_array_equal(
        new_image.affine,
        [[1.0, 0.0, 0.0, -0.5], [0.0, 1.0, 0.0, -0.5], [0.0, 0.0, 1.0, -0.5], [0.0, 0.0, 0.0, 1.0]],
    )


# --- Geometry beyond the reference ----------------------------------------------------------


def test_resize_keeps_world_coordinates_with_flipped_anisotropic_affine():
    # Voxel values encode their world x coordinate; after a linear resize every interior voxel
    # must still hold the world x of its centre under the new affine.
    shape = (9, 7, 5)
    affine = np.array([[-2.0, 0, 0, 30.0], [0, 1.5, 0, -4.0], [0, 0, 3.0, 7.0], [0, 0, 0, 1.0]])
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), axis=-1)
    world_x = (ijk @ affine[:3, :3].T + affine[:3, 3])[..., 0]
    new_image = resize(nib.Nifti1Image(world_x.astype(np.float32), affine), (13, 6, 5))
    new_ijk = np.stack(np.meshgrid(*[np.arange(s) for s in new_image.shape], indexing="ij"), axis=-1)
    expected = (new_ijk @ new_image.affine[:3, :3].T + new_image.affine[:3, 3])[..., 0]
    interior = (slice(1, -1), slice(None), slice(None))
    np.testing.assert_allclose(np.asanyarray(new_image.dataobj)[interior], expected[interior], atol=1e-4)
    # Canonical orientation: positive diagonal; extent preserved.
    assert np.all(np.diag(new_image.affine)[:3] > 0)
    np.testing.assert_allclose(np.diag(new_image.affine)[:3] * new_image.shape, [18.0, 10.5, 15.0])


def test_resize_nearest_keeps_label_set():
    rng = np.random.default_rng(0)
    labels = rng.choice([0, 1, 2, 4], size=(11, 9, 7)).astype(np.uint8)
    new_image = resize(nib.Nifti1Image(labels, np.eye(4)), (8, 8, 8), interpolation="nearest")
    assert set(np.unique(np.asanyarray(new_image.dataobj))) <= {0, 1, 2, 4}
    assert np.asanyarray(new_image.dataobj).dtype == np.uint8


def test_resize_rejects_bad_interpolation():
    with pytest.raises(ValueError, match="interpolation"):
        resize(_create_image((4, 4, 4)), (2, 2, 2), interpolation="cubic")


# --- Reading ----------------------------------------------------------------------------------


def _rotated_affine():
    angle = 0.3
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([-1.2, 0.9, 2.0])
    affine[:3, 3] = [12.0, -30.0, 5.5]
    return affine


@pytest.mark.parametrize("extension", [".mha", ".nrrd"])
def test_sitk_formats_read_like_nifti(tmp_path, extension):
    rng = np.random.default_rng(1)
    data = rng.normal(size=(7, 6, 5)).astype(np.float32)
    affine = _rotated_affine()
    nifti_file = str(tmp_path / "image.nii.gz")
    nib.Nifti1Image(data, affine).to_filename(nifti_file)
    other_file = str(tmp_path / f"image{extension}")
    sitk.WriteImage(sitk.ReadImage(nifti_file), other_file)

    from_nifti = read_image(nifti_file)
    from_sitk = read_image(other_file)
    np.testing.assert_allclose(from_sitk.affine, from_nifti.affine, atol=1e-5)
    np.testing.assert_allclose(from_nifti.affine, affine, atol=1e-5)
    np.testing.assert_array_equal(np.asanyarray(from_sitk.dataobj), np.asanyarray(from_nifti.dataobj))
    shape, header_affine = read_image_header(other_file)
    assert shape == (7, 6, 5)
    np.testing.assert_allclose(header_affine, affine, atol=1e-5)
    np.testing.assert_allclose(get_affine(other_file), affine, atol=1e-5)


def test_read_image_crop_then_resize(tmp_path):
    data = np.zeros((10, 12, 8), dtype=np.float32)
    data[3:7, 2:10, 1:5] = 5.0
    path = str(tmp_path / "a.nii.gz")
    nib.Nifti1Image(data, np.eye(4)).to_filename(path)
    crop = crop_img(nib.load(path), return_slices=True)
    assert crop == [slice(2, 8), slice(1, 11), slice(0, 6)]
    image = read_image(path, image_shape=(4, 4, 4), crop=crop)
    assert image.shape == (4, 4, 4)
    assert image.get_data_dtype() == np.float32
    # Extent of the crop (6 x 10 x 6 voxels starting at voxel (2, 1, 0)) is kept.
    np.testing.assert_allclose(np.diag(image.affine)[:3], [1.5, 2.5, 1.5])
    np.testing.assert_allclose(image.affine[:3, 3], np.array([2, 1, 0]) + (np.array([1.5, 2.5, 1.5]) - 1) / 2)


def test_crop_img_to_shifts_affine():
    affine = np.diag([2.0, 3.0, 4.0, 1.0])
    affine[:3, 3] = [1, 2, 3]
    image = nib.Nifti1Image(np.ones((5, 5, 5), dtype=np.float32), affine)
    cropped = crop_img_to(image, [slice(1, 4), slice(2, 5), slice(0, 2)])
    assert cropped.shape == (3, 3, 2)
    np.testing.assert_allclose(cropped.affine[:3, 3], [1 + 2, 2 + 6, 3])


def test_read_image_files_uses_nearest_for_labels(tmp_path):
    rng = np.random.default_rng(2)
    intensity = str(tmp_path / "t1.nii.gz")
    labels = str(tmp_path / "truth.nii.gz")
    nib.Nifti1Image(rng.normal(size=(9, 9, 9)).astype(np.float32), np.eye(4)).to_filename(intensity)
    nib.Nifti1Image(rng.choice([0, 3], size=(9, 9, 9)).astype(np.uint8), np.eye(4)).to_filename(labels)
    images = read_image_files([intensity, labels], image_shape=(5, 6, 7), label_indices=1)
    assert [image.shape for image in images] == [(5, 6, 7)] * 2
    assert set(np.unique(np.asanyarray(images[1].dataobj))) <= {0, 3}


def test_fix_shape_squeezes_trailing_singleton(tmp_path):
    path = str(tmp_path / "a.nii.gz")
    nib.Nifti1Image(np.ones((4, 5, 6, 1), dtype=np.float32), np.eye(4)).to_filename(path)
    assert fix_shape(nib.load(path)).shape == (4, 5, 6)
    assert read_image(path).shape == (4, 5, 6)


def test_fix_shape_rejects_4d_series(tmp_path):
    path = str(tmp_path / "series.nii.gz")
    nib.Nifti1Image(np.ones((4, 5, 6, 3), dtype=np.float32), np.eye(4)).to_filename(path)
    with pytest.raises(DataError, match=r"series\.nii\.gz.*3 volumes"):
        read_image(path)


def test_truncated_nifti_is_a_clear_error(tmp_path):
    path = str(tmp_path / "t1.nii.gz")
    nib.Nifti1Image(np.random.default_rng(3).normal(size=(16, 16, 16)).astype(np.float32), np.eye(4)).to_filename(path)
    with open(path, "rb") as opened:
        content = opened.read()
    with open(path, "wb") as opened:
        opened.write(content[: len(content) // 2])
    with pytest.raises(DataError, match="t1.nii.gz"):
        read_image(path)


def test_garbage_file_is_a_clear_error(tmp_path):
    path = str(tmp_path / "t2.nii.gz")
    with gzip.open(path, "wb") as opened:
        opened.write(b"not an image")
    with pytest.raises(DataError, match="t2.nii.gz"):
        read_image(path)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="not found.*missing.nii.gz"):
        read_image(str(tmp_path / "missing.nii.gz"))


def test_pickle_load_requires_opt_in(tmp_path):
    path = str(tmp_path / "ids.pkl")
    pickle_dump([1, 2, 3], path)
    with pytest.raises(ValueError, match="allow_pickle=True"):
        pickle_load(path)
    assert pickle_load(path, allow_pickle=True) == [1, 2, 3]
    with open(path, "rb") as opened:
        assert pickle.load(opened) == [1, 2, 3]
