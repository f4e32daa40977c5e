"""Reading, cropping and resizing images, and (opt-in) pickle helpers.

Images are handled as nibabel images. NIfTI (and other formats nibabel knows) are read with
nibabel; ``.mha``, ``.mhd``, ``.nrrd`` and anything else SimpleITK can read are read with
SimpleITK and converted to a :class:`nibabel.Nifti1Image` with a RAS affine. Intensities are
loaded as float32 (so that linear interpolation of integer images is not truncated); label images
keep their stored dtype. Unreadable files raise :class:`~unet3d_keras.errors.DataError` naming
the file. Loading a pickle needs an explicit opt-in.
"""

from __future__ import annotations

import logging
import numbers
import os
import pickle
from typing import Any, Iterable, Sequence

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from ..errors import DataError
from .sitk_utils import (
    calculate_origin_offset,
    resample_to_spacing,
    sitk_image_to_affine,
    sitk_image_to_data,
)

logger = logging.getLogger(__name__)

__all__ = [
    "pickle_dump",
    "pickle_load",
    "get_affine",
    "read_image_files",
    "read_image",
    "read_image_header",
    "load_image",
    "new_image",
    "fix_shape",
    "resize",
    "crop_img",
    "crop_img_to",
    "reorder_to_canonical",
]

PathLike = str | os.PathLike

# Extensions nibabel reads natively; everything else goes through SimpleITK.
_NIBABEL_SUFFIXES = (".nii", ".nii.gz", ".img", ".hdr", ".img.gz", ".mgz", ".mgh")


def pickle_dump(item: Any, out_file: PathLike) -> None:
    """Writes ``item`` to ``out_file`` with pickle.

    Prefer JSON for anything that is meant to be shared: loading a pickle can execute code.
    """
    with open(out_file, "wb") as opened_file:
        pickle.dump(item, opened_file)


def pickle_load(in_file: PathLike, *, allow_pickle: bool = False) -> Any:
    """Loads a pickle file, only if the caller explicitly opts in.

    Unpickling can execute arbitrary code, so a pickle file must come from a trusted source.
    This function raises unless ``allow_pickle=True`` is passed.

    Args:
        in_file: path of the pickle file.
        allow_pickle: must be ``True`` to load anything.

    Raises:
        ValueError: if ``allow_pickle`` is not ``True``.
    """
    if allow_pickle is not True:
        raise ValueError(
            f"Refusing to load pickle file {os.fspath(in_file)!r}: unpickling can execute arbitrary "
            "code. Call pickle_load(..., allow_pickle=True) only for a file you trust, or store the "
            "data as JSON."
        )
    with open(in_file, "rb") as opened_file:
        return pickle.load(opened_file)


def new_image(data: np.ndarray, affine: np.ndarray) -> nib.Nifti1Image:
    """A :class:`nibabel.Nifti1Image` holding ``data`` as is (64-bit integers included)."""
    data = np.asanyarray(data)
    if data.dtype == bool:
        data = data.astype(np.uint8)
    # nibabel 5 refuses 64-bit integer data unless its dtype is given explicitly.
    dtype = data.dtype if data.dtype in (np.int64, np.uint64) else None
    return nib.Nifti1Image(data, np.asarray(affine, dtype=float), dtype=dtype)


def _uses_nibabel(in_file: PathLike) -> bool:
    return os.fspath(in_file).lower().endswith(_NIBABEL_SUFFIXES)


def load_image(in_file: PathLike) -> nib.spatialimages.SpatialImage:
    """Opens an image file without applying ``fix_shape``.

    NIfTI-like files come back as lazy nibabel images; other formats are read with SimpleITK
    into an in-memory :class:`nibabel.Nifti1Image` with a RAS affine (ITK's LPS world
    coordinates with the first two axes negated).

    Raises:
        DataError: the file does not exist or cannot be read.
    """
    path = os.fspath(in_file)
    if not os.path.isfile(path):
        raise DataError(f"Image file not found: {path}")
    try:
        if _uses_nibabel(path):
            return nib.load(path)
        image = sitk.ReadImage(path)
        return new_image(sitk_image_to_data(image), sitk_image_to_affine(image))
    except DataError:
        raise
    except Exception as error:  # nibabel and SimpleITK raise many unrelated types
        raise DataError(f"Could not read image file {path}: {type(error).__name__}: {error}") from error


def read_image_header(in_file: PathLike) -> tuple[tuple[int, ...], np.ndarray]:
    """Shape and affine of an image file, read from its header only.

    Returns:
        ``(shape, affine)`` where ``affine`` is the 4x4 RAS voxel-to-world matrix.

    Raises:
        DataError: the file does not exist or its header cannot be read.
    """
    path = os.fspath(in_file)
    if not os.path.isfile(path):
        raise DataError(f"Image file not found: {path}")
    try:
        if _uses_nibabel(path):
            image = nib.load(path)
            return tuple(int(s) for s in image.shape), np.asarray(image.affine, dtype=float)
        reader = sitk.ImageFileReader()
        reader.SetFileName(path)
        reader.ReadImageInformation()
        shape = tuple(int(s) for s in reader.GetSize())
        if reader.GetNumberOfComponents() > 1:
            shape = shape + (int(reader.GetNumberOfComponents()),)
        return shape, sitk_image_to_affine(reader)
    except Exception as error:
        raise DataError(f"Could not read the header of {path}: {type(error).__name__}: {error}") from error


def get_affine(in_file: PathLike) -> np.ndarray:
    """The 4x4 voxel-to-world affine of an image file."""
    return read_image_header(in_file)[1]


def fix_shape(image: nib.spatialimages.SpatialImage) -> nib.spatialimages.SpatialImage:
    """Squeezes singleton axes after the third one (a ``(x, y, z, 1)`` image becomes 3D).

    Raises:
        DataError: the image has more than one volume along its 4th or later axes.
    """
    if len(image.shape) <= 3:
        return image
    extra = image.shape[3:]
    if any(size != 1 for size in extra):
        name = image.get_filename() or "image"
        raise DataError(
            f"{name}: expected a 3D image, got shape {tuple(image.shape)} "
            f"({int(np.prod(extra))} volumes); split the series into 3D files first"
        )
    data = np.asanyarray(image.dataobj).reshape(image.shape[:3])
    return new_image(data, image.affine)


def _load_data(image: nib.spatialimages.SpatialImage, as_float: bool) -> np.ndarray:
    if as_float:
        return image.get_fdata(dtype=np.float32)
    return np.asanyarray(image.dataobj)


def read_image(
    in_file: PathLike,
    image_shape: Sequence[int] | None = None,
    interpolation: str = "linear",
    crop: Sequence[slice] | None = None,
) -> nib.Nifti1Image:
    """Reads an image, optionally crops it and resizes it.

    Args:
        in_file: image file (NIfTI, or any format SimpleITK reads).
        image_shape: if given, the output is resized to this shape with ``resize``.
        interpolation: ``"linear"`` (intensities; data loaded as float32) or ``"nearest"``
            (labels; stored dtype kept).
        crop: slices (one per axis) applied in the original voxel grid before resizing.

    Returns:
        A nibabel image with its data in memory.

    Raises:
        DataError: missing, unreadable or truncated file, or a 4D series.
    """
    logger.debug("Reading: %s", in_file)
    image = load_image(in_file)
    path = os.fspath(in_file)
    try:
        image = fix_shape(image)
        data = _load_data(image, as_float=(interpolation == "linear"))
    except DataError as error:
        if path in str(error):
            raise
        raise DataError(f"{path}: {error}") from error
    except Exception as error:  # truncated archives surface here, not at nib.load
        raise DataError(f"Could not read image file {path}: {type(error).__name__}: {error}") from error
    image = new_image(data, image.affine)
    if crop:
        image = crop_img_to(image, crop, copy=True)
    if image_shape:
        image = resize(image, new_shape=image_shape, interpolation=interpolation)
    return image


def read_image_files(
    image_files: Sequence[PathLike],
    image_shape: Sequence[int] | None = None,
    crop: Sequence[slice] | None = None,
    label_indices: int | Iterable[int] | None = None,
) -> list[nib.Nifti1Image]:
    """Reads a set of images, using nearest-neighbour interpolation for label images.

    Args:
        image_files: image files, e.g. the modalities of one subject followed by its truth.
        image_shape: shape to resize every image to, or ``None``.
        crop: slices applied to every image before resizing.
        label_indices: index or indices of the label images in ``image_files``; ``None`` means
            no label image.

    Returns:
        One nibabel image per file.
    """
    if label_indices is None:
        label_indices = set()
    elif isinstance(label_indices, numbers.Integral):
        label_indices = {int(label_indices)}
    else:
        label_indices = {int(index) for index in label_indices}
    return [
        read_image(
            image_file,
            image_shape=image_shape,
            crop=crop,
            interpolation="nearest" if index in label_indices else "linear",
        )
        for index, image_file in enumerate(image_files)
    ]


def reorder_to_canonical(image: nib.spatialimages.SpatialImage) -> nib.Nifti1Image:
    """Permutes and flips the axes of a 3D image so that its affine is closest to RAS+.

    No interpolation happens: an oblique image keeps its rotation.
    """
    canonical = nib.as_closest_canonical(new_image(np.asanyarray(image.dataobj), image.affine))
    return new_image(np.asanyarray(canonical.dataobj), canonical.affine)


def resize(
    image: nib.spatialimages.SpatialImage, new_shape: Sequence[int], interpolation: str = "linear"
) -> nib.Nifti1Image:
    """Resamples a 3D image to ``new_shape`` over the same physical extent.

    The image is first reoriented to RAS+ (axis permutations and flips only), then resampled in
    voxel space. The new affine maps the new grid onto the same extent, centre-aligned: with a
    voxel-size ratio ``s = old_shape / new_shape`` per axis, new voxel ``i`` lies at old voxel
    coordinate ``s * i + (s - 1) / 2``. For example a 2x2x2 image with 2 mm voxels resized to
    4x4x4 has 1 mm voxels and its origin moved by -0.5 mm along each axis.

    Args:
        image: a 3D nibabel image.
        new_shape: ``(x, y, z)`` of the output.
        interpolation: ``"linear"`` for intensities, ``"nearest"`` for labels.

    Returns:
        A :class:`nibabel.Nifti1Image` of shape ``new_shape`` with the dtype of the input data.
    """
    new_shape = tuple(int(s) for s in new_shape)
    if len(new_shape) != 3 or len(image.shape) != 3:
        raise ValueError(f"resize needs a 3D image and a 3D shape; got {tuple(image.shape)} -> {new_shape}")
    if min(new_shape) < 1:
        raise ValueError(f"new_shape must be positive; got {new_shape}")
    image = reorder_to_canonical(image)
    old_shape = np.asarray(image.shape, dtype=float)
    zoom_level = np.asarray(new_shape, dtype=float) / old_shape
    # Resampling is done in voxel units; spacing only sets the ratio, so any consistent unit works.
    old_spacing = np.ones(3)
    new_spacing = old_spacing / zoom_level
    new_data = resample_to_spacing(
        np.asanyarray(image.dataobj), old_spacing, new_spacing, interpolation=interpolation
    )
    voxel_map = np.eye(4)
    np.fill_diagonal(voxel_map[:3, :3], new_spacing)
    voxel_map[:3, 3] = calculate_origin_offset(new_spacing, old_spacing)
    new_affine = image.affine @ voxel_map
    return new_image(new_data, new_affine)


def crop_img_to(img: nib.spatialimages.SpatialImage, slices: Sequence[slice], copy: bool = True) -> nib.Nifti1Image:
    """Crops an image to ``slices`` (one per spatial axis) and shifts its affine accordingly."""
    slices = tuple(slices)
    data = np.asanyarray(img.dataobj)[slices]
    if copy:
        data = data.copy()
    start = np.array([s.indices(size)[0] for s, size in zip(slices, img.shape)] + [0] * (3 - len(slices)))
    affine = np.array(img.affine, dtype=float, copy=True)
    affine[:3, 3] = affine[:3, :3] @ start[:3] + affine[:3, 3]
    return new_image(data, affine)


def crop_img(
    img: nib.spatialimages.SpatialImage, rtol: float = 1e-8, copy: bool = True, return_slices: bool = False
) -> nib.Nifti1Image | list[slice]:
    """Crops an image to the bounding box of its non-negligible voxels, plus one voxel of margin.

    Voxels with ``|value| <= rtol * max(|data|)`` are background. The one-voxel margin avoids
    sampling problems at the edge when the crop is resampled. An image without foreground is
    not cropped.

    Args:
        img: a 3D (or 4D, where any volume counts) nibabel image.
        rtol: relative tolerance, with respect to the largest absolute value.
        copy: copy the cropped data.
        return_slices: return the slices instead of the cropped image.
    """
    data = np.asanyarray(img.dataobj)
    infinity_norm = float(np.max(np.abs(data))) if data.size else 0.0
    passes_threshold = np.abs(data) > rtol * infinity_norm
    if data.ndim == 4:
        passes_threshold = np.any(passes_threshold, axis=-1)
    if not passes_threshold.any():
        logger.warning("No foreground found; the image is not cropped")
        slices = [slice(0, size) for size in data.shape[:3]]
    else:
        coords = np.nonzero(passes_threshold)
        start = np.array([c.min() for c in coords])
        end = np.array([c.max() for c in coords]) + 1
        start = np.maximum(start - 1, 0)
        end = np.minimum(end + 1, data.shape[:3])
        slices = [slice(int(s), int(e)) for s, e in zip(start, end)]
    if return_slices:
        return slices
    return crop_img_to(img, slices, copy=copy)
