"""unet3d_keras.utils.sitk_utils: axis order, spacing, origin shift, LPS/RAS."""

import numpy as np
import pytest
import SimpleITK as sitk

from unet3d_keras.utils.sitk_utils import (
    calculate_origin_offset,
    data_to_sitk_image,
    resample_to_spacing,
    sitk_image_to_affine,
    sitk_image_to_data,
    sitk_new_blank_image,
    sitk_resample_to_image,
    sitk_resample_to_spacing,
)


def test_array_axes_are_image_axes():
    data = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)
    image = data_to_sitk_image(data, spacing=(1.0, 2.0, 3.0))
    assert image.GetSize() == (3, 4, 5)
    assert image.GetSpacing() == (1.0, 2.0, 3.0)
    assert image.GetPixel(2, 1, 4) == data[2, 1, 4]
    np.testing.assert_array_equal(sitk_image_to_data(image), data)


def test_bool_data_is_stored_as_uint8():
    image = data_to_sitk_image(np.ones((2, 3, 4), dtype=bool))
    assert image.GetPixelID() == sitk.sitkUInt8


def test_anisotropic_2d_spacing_applies_to_the_right_axes():
    data = np.arange(6).reshape(2, 3)
    new_data = resample_to_spacing(data, (2.0, 1.0), (1.0, 1.0), interpolation="nearest")
    assert new_data.shape == (4, 3)
    np.testing.assert_array_equal(new_data, np.repeat(data, 2, axis=0))


def test_calculate_origin_offset():
    np.testing.assert_allclose(calculate_origin_offset((1, 1, 1), (2, 2, 2)), [-0.5, -0.5, -0.5])
    np.testing.assert_allclose(calculate_origin_offset((3, 1, 2), (1, 1, 1)), [1.0, 0.0, 0.5])


def test_resample_to_spacing_keeps_extent_and_rounds_size_up():
    image = data_to_sitk_image(np.ones((5, 6, 7), dtype=np.float32), spacing=(1.0, 1.0, 1.0))
    image.SetOrigin((10.0, 20.0, 30.0))
    resampled = sitk_resample_to_spacing(image, new_spacing=(2.0, 3.0, 1.0))
    assert resampled.GetSize() == (3, 2, 7)
    np.testing.assert_allclose(resampled.GetOrigin(), (10.5, 21.0, 30.0))


def test_origin_offset_follows_direction():
    image = data_to_sitk_image(np.ones((4, 4, 4), dtype=np.float32))
    image.SetDirection((-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0))
    resampled = sitk_resample_to_spacing(image, new_spacing=(2.0, 2.0, 2.0))
    # The first voxel moves half a new voxel *into* the image along each (flipped) axis.
    np.testing.assert_allclose(resampled.GetOrigin(), (-0.5, -0.5, 0.5))
    np.testing.assert_array_equal(sitk_image_to_data(resampled), np.ones((2, 2, 2)))


def test_resample_to_image_default_value_outside():
    image = data_to_sitk_image(np.ones((4, 4, 4), dtype=np.float32))
    reference = sitk_new_blank_image((6, 4, 4), (1.0, 1.0, 1.0), image.GetDirection(), (0.0, 0.0, 0.0))
    resampled = sitk_image_to_data(sitk_resample_to_image(image, reference, default_value=-7.0))
    assert resampled.shape == (6, 4, 4)
    np.testing.assert_array_equal(resampled[:4], 1.0)
    np.testing.assert_array_equal(resampled[5], -7.0)


def test_blank_image_default_value():
    image = sitk_new_blank_image((2, 3, 4), (1.0, 2.0, 3.0), np.eye(3).ravel(), (1.0, 2.0, 3.0), default_value=5.0)
    assert image.GetSize() == (2, 3, 4)
    np.testing.assert_array_equal(sitk_image_to_data(image), np.full((2, 3, 4), 5.0))


def test_bad_interpolation_name():
    with pytest.raises(ValueError, match="'linear'"):
        resample_to_spacing(np.ones((2, 2, 2)), (1, 1, 1), (2, 2, 2), interpolation="bspline")


def test_affine_is_ras():
    image = data_to_sitk_image(np.zeros((2, 2, 2), dtype=np.float32), spacing=(2.0, 3.0, 4.0))
    image.SetOrigin((5.0, 6.0, 7.0))
    affine = sitk_image_to_affine(image)
    np.testing.assert_allclose(
        affine, [[-2.0, 0, 0, -5.0], [0, -3.0, 0, -6.0], [0, 0, 4.0, 7.0], [0, 0, 0, 1.0]]
    )
