"""Resampling with SimpleITK and conversion between SimpleITK, NumPy and nibabel.

Array axis ``i`` always corresponds to SimpleITK image axis ``i`` (``x, y, z``): arrays are
transposed on the way in and out, because ``sitk.GetArrayFromImage`` returns ``(z, y, x)``.
The half-voxel origin shift of ``sitk_resample_to_spacing`` is rotated by the image direction,
so it is also right for images that are not axis aligned.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import SimpleITK as sitk

logger = logging.getLogger(__name__)

__all__ = [
    "calculate_origin_offset",
    "sitk_resample_to_spacing",
    "sitk_resample_to_image",
    "sitk_new_blank_image",
    "resample_to_spacing",
    "data_to_sitk_image",
    "sitk_image_to_data",
    "get_interpolator",
    "LPS_TO_RAS",
    "sitk_image_to_affine",
]

_INTERPOLATORS = {
    "linear": sitk.sitkLinear,
    "nearest": sitk.sitkNearestNeighbor,
}

#: ITK's physical space is LPS, nibabel's is RAS: the first two world axes change sign.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def get_interpolator(interpolation: str) -> int:
    """Returns the SimpleITK interpolator for ``"linear"`` or ``"nearest"``.

    Raises:
        ValueError: for any other name.
    """
    try:
        return _INTERPOLATORS[interpolation]
    except (KeyError, TypeError):
        raise ValueError(
            f"'interpolation' must be one of {sorted(_INTERPOLATORS)}; got {interpolation!r}"
        ) from None


def calculate_origin_offset(new_spacing: Sequence[float], old_spacing: Sequence[float]) -> np.ndarray:
    """Shift of the first voxel centre that keeps the outer edge of the grid in place.

    A grid of spacing ``old`` whose first voxel centre is at 0 has its edge at ``-old/2``; a grid of
    spacing ``new`` with the same edge has its first centre at ``(new - old) / 2``.

    Returns:
        Array of shape ``(ndim,)``.
    """
    return np.subtract(new_spacing, old_spacing, dtype=float) / 2


def sitk_new_blank_image(
    size: Sequence[int],
    spacing: Sequence[float],
    direction: Sequence[float],
    origin: Sequence[float],
    default_value: float = 0.0,
) -> sitk.Image:
    """Creates a float32 SimpleITK image of ``size`` (``x, y, z`` order) filled with ``default_value``."""
    image = sitk.Image([int(s) for s in size], sitk.sitkFloat32)
    if default_value:
        image = image + float(default_value)
    image.SetSpacing([float(s) for s in spacing])
    image.SetDirection([float(d) for d in direction])
    image.SetOrigin([float(o) for o in origin])
    return image


def sitk_resample_to_image(
    image: sitk.Image,
    reference_image: sitk.Image,
    default_value: float = 0.0,
    interpolator: int = sitk.sitkLinear,
    transform: sitk.Transform | None = None,
    output_pixel_type: int | None = None,
) -> sitk.Image:
    """Resamples ``image`` onto the grid of ``reference_image``.

    Args:
        image: the image to resample.
        reference_image: provides size, spacing, origin and direction of the output.
        default_value: value of output voxels that map outside ``image``.
        interpolator: a SimpleITK interpolator constant.
        transform: maps output points to input points; identity by default.
        output_pixel_type: SimpleITK pixel id; the input's pixel type by default.
    """
    if transform is None:
        transform = sitk.Transform()
        transform.SetIdentity()
    if output_pixel_type is None:
        output_pixel_type = image.GetPixelID()
    resample_filter = sitk.ResampleImageFilter()
    resample_filter.SetInterpolator(interpolator)
    resample_filter.SetTransform(transform)
    resample_filter.SetOutputPixelType(output_pixel_type)
    resample_filter.SetDefaultPixelValue(float(default_value))
    resample_filter.SetReferenceImage(reference_image)
    return resample_filter.Execute(image)


def sitk_resample_to_spacing(
    image: sitk.Image,
    new_spacing: Sequence[float] = (1.0, 1.0, 1.0),
    interpolator: int = sitk.sitkLinear,
    default_value: float = 0.0,
) -> sitk.Image:
    """Resamples ``image`` to ``new_spacing`` covering the same physical extent.

    The output size is ``ceil(size * old_spacing / new_spacing)`` (rounded to 5 decimals first so
    that exact ratios are not pushed up by floating point error), and the grid is aligned on the
    outer edge of the first voxel.
    """
    old_spacing = np.asarray(image.GetSpacing(), dtype=float)
    new_spacing = np.asarray(new_spacing, dtype=float)
    if new_spacing.shape != old_spacing.shape:
        raise ValueError(
            f"new_spacing has {new_spacing.size} values but the image has {old_spacing.size} dimensions"
        )
    if np.any(new_spacing <= 0):
        raise ValueError(f"new_spacing must be positive; got {tuple(new_spacing)}")
    zoom_factor = old_spacing / new_spacing
    new_size = np.ceil(np.round(zoom_factor * np.asarray(image.GetSize()), decimals=5)).astype(np.int64)
    dimension = image.GetDimension()
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(dimension, dimension)
    offset = direction @ calculate_origin_offset(new_spacing, old_spacing)
    reference_image = sitk_new_blank_image(
        size=new_size,
        spacing=new_spacing,
        direction=image.GetDirection(),
        origin=np.asarray(image.GetOrigin()) + offset,
        default_value=default_value,
    )
    return sitk_resample_to_image(image, reference_image, interpolator=interpolator, default_value=default_value)


def data_to_sitk_image(data: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0)) -> sitk.Image:
    """Wraps a 2D or 3D array in a SimpleITK image (array axis ``i`` is image axis ``i``).

    Args:
        data: array of shape ``(x, y)`` or ``(x, y, z)``; bool is stored as uint8 and float16 as
            float32, which SimpleITK cannot hold.
        spacing: one value per array axis.
    """
    data = np.asarray(data)
    if data.ndim not in (2, 3):
        raise ValueError(f"data must be 2D or 3D; got shape {data.shape}")
    if data.dtype == bool:
        data = data.astype(np.uint8)
    elif data.dtype == np.float16:
        data = data.astype(np.float32)
    spacing = [float(s) for s in np.broadcast_to(np.asarray(spacing, dtype=float), (data.ndim,))]
    image = sitk.GetImageFromArray(np.ascontiguousarray(data.T))
    image.SetSpacing(spacing)
    return image


def sitk_image_to_data(image: sitk.Image) -> np.ndarray:
    """Returns the voxels of a scalar SimpleITK image as an array of shape ``(x, y[, z[, t]])``.

    For a multi-component (vector) image, the components are the last axis.
    """
    data = sitk.GetArrayFromImage(image)
    if image.GetNumberOfComponentsPerPixel() > 1:
        spatial = data.ndim - 1
        data = np.transpose(data, tuple(reversed(range(spatial))) + (spatial,))
    else:
        data = data.T
    return np.ascontiguousarray(data)


def resample_to_spacing(
    data: np.ndarray,
    spacing: Sequence[float],
    target_spacing: Sequence[float],
    interpolation: str = "linear",
    default_value: float = 0.0,
) -> np.ndarray:
    """Resamples an array from ``spacing`` to ``target_spacing`` over the same extent.

    Args:
        data: array of shape ``(x, y)`` or ``(x, y, z)``.
        spacing: voxel size of ``data``, one value per axis.
        target_spacing: voxel size of the output.
        interpolation: ``"linear"`` or ``"nearest"``.
        default_value: value of output voxels outside the input.

    Returns:
        Array of shape ``ceil(data.shape * spacing / target_spacing)`` with the dtype of ``data``
        (bool comes back as uint8).
    """
    interpolator = get_interpolator(interpolation)
    image = data_to_sitk_image(data, spacing=spacing)
    resampled_image = sitk_resample_to_spacing(
        image, new_spacing=target_spacing, interpolator=interpolator, default_value=default_value
    )
    return sitk_image_to_data(resampled_image)


def sitk_image_to_affine(image: "sitk.Image | sitk.ImageFileReader") -> np.ndarray:
    """The 4x4 RAS voxel-to-world affine (nibabel convention) of a 2D, 3D or 4D SimpleITK image.

    Also accepts an ``sitk.ImageFileReader`` after ``ReadImageInformation()``, so the geometry
    of a file can be checked without reading its voxels. Only the first three axes are spatial;
    a 2D image gets a unit third axis.
    """
    dimension = image.GetDimension()
    n_spatial = min(dimension, 3)
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(dimension, dimension)
    spacing = np.asarray(image.GetSpacing(), dtype=float)
    origin = np.asarray(image.GetOrigin(), dtype=float)
    affine = np.eye(4)
    affine[:n_spatial, :n_spatial] = direction[:n_spatial, :n_spatial] * spacing[:n_spatial]
    affine[:n_spatial, 3] = origin[:n_spatial]
    return LPS_TO_RAS @ affine
