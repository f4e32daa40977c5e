"""Reading the images of one subject: checked, optionally cropped to its foreground and resized.

A subject is a sequence of image files of one grid (modalities, then truth). Its images must be
3D, share shape and affine (within a tolerance scaled to the voxel size) and hold finite,
plausible values (:mod:`unet3d_keras.intensity_checks`); errors name the subject and the file.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Sequence

import nibabel as nib
import numpy as np

from .errors import DataError
from .intensity_checks import check_intensities
from .utils.utils import crop_img, crop_img_to, new_image, read_image, resize

__all__ = ["AFFINE_RTOL", "foreground_mask", "check_subject_geometry", "read_subject_images"]

PathLike = str | os.PathLike

#: Default relative tolerance when comparing the affines of one subject's images.
AFFINE_RTOL = 1e-3


def _subject_label(subject_id: Any, in_files: Sequence[PathLike]) -> str:
    if subject_id is not None:
        return f"subject {subject_id!s}"
    if in_files:
        return f"subject in {os.path.dirname(os.path.abspath(os.fspath(in_files[0])))}"
    return "subject"


def foreground_mask(data: np.ndarray, background_value: float = 0, tolerance: float = 0.00001) -> np.ndarray:
    """Voxels farther than ``tolerance`` from ``background_value``.

    Args:
        data: any shape, e.g. ``(x, y, z)``.

    Returns:
        bool array of ``data``'s shape.
    """
    return np.logical_or(data < (background_value - tolerance), data > (background_value + tolerance))


def _affines_match(affine: np.ndarray, reference: np.ndarray, rtol: float) -> bool:
    # Absolute slack scaled to the voxel size so that zero entries of rotated affines compare sanely.
    voxel_size = float(np.max(np.linalg.norm(reference[:3, :3], axis=0)))
    return bool(np.allclose(affine, reference, rtol=rtol, atol=rtol * max(voxel_size, 1e-6)))


def check_subject_geometry(
    in_files: Sequence[PathLike],
    shapes: Sequence[Sequence[int]],
    affines: Sequence[np.ndarray],
    subject_id: Any = None,
    rtol: float = AFFINE_RTOL,
) -> None:
    """Checks that the images of one subject are 3D and share shape and affine.

    Args:
        in_files: the subject's files (for messages).
        shapes: shape of each image; trailing singleton axes after the third are ignored.
        affines: 4x4 affine of each image.
        subject_id: named in messages.
        rtol: relative tolerance on affine entries (absolute slack ``rtol`` times the voxel size).

    Raises:
        DataError: naming the subject and the first file that disagrees with the first image.
    """
    label = _subject_label(subject_id, in_files)
    reference_shape = reference_affine = None
    for in_file, shape, affine in zip(in_files, shapes, affines):
        shape = tuple(int(s) for s in shape)
        if len(shape) > 3 and all(s == 1 for s in shape[3:]):
            shape = shape[:3]
        if len(shape) != 3:
            raise DataError(
                f"{label}: {os.fspath(in_file)} has shape {shape}; expected a 3D image"
                + (f" ({int(np.prod(shape[3:]))} volumes along the 4th axis)" if len(shape) > 3 else "")
            )
        affine = np.asarray(affine, dtype=float)
        if reference_shape is None:
            reference_shape, reference_affine, reference_file = shape, affine, in_file
            continue
        if shape != reference_shape:
            raise DataError(
                f"{label}: {os.fspath(in_file)} has shape {shape}, but {os.fspath(reference_file)} "
                f"has shape {reference_shape}; all images of a subject must share one grid"
            )
        if not _affines_match(affine, reference_affine, rtol):
            raise DataError(
                f"{label}: the affine of {os.fspath(in_file)} differs from that of "
                f"{os.fspath(reference_file)} by more than the tolerance (rtol={rtol}):\n"
                f"{np.array2string(affine, precision=4)}\nvs\n{np.array2string(reference_affine, precision=4)}"
            )


def read_subject_images(
    in_files: Sequence[PathLike],
    image_shape: Sequence[int] | None = None,
    label_indices: int | Iterable[int] | None = None,
    crop: bool = False,
    subject_id: Any = None,
    affine_rtol: float = AFFINE_RTOL,
    clip_outliers: bool = False,
) -> list[nib.Nifti1Image]:
    """Reads, checks, crops and resizes the images of one subject, reading each file once.

    Args:
        in_files: the subject's files (e.g. modalities, then truth).
        image_shape: ``(x, y, z)`` to resize to, or ``None`` to keep the (cropped) shape.
        label_indices: indices of label images (nearest-neighbour interpolation).
        crop: crop all images to the subject's foreground box (union over all files).
        subject_id: named in error messages.
        affine_rtol: tolerance of the affine comparison.
        clip_outliers: clip implausible intensities of the images (not the labels) with a
            warning instead of refusing them (:func:`~unet3d_keras.intensity_checks.check_intensities`).

    Returns:
        One image per file, in RAS+ orientation when resized.

    Raises:
        DataError: a file is missing or unreadable, is not 3D, holds NaN, infinite or implausible
            values, or disagrees in shape or affine with the subject's first image.
    """
    label = _subject_label(subject_id, in_files)
    if label_indices is None:
        label_set: set[int] = set()
    elif isinstance(label_indices, (int, np.integer)):
        label_set = {int(label_indices)}
    else:
        label_set = {int(i) for i in label_indices}
    images = []
    for index, in_file in enumerate(in_files):
        try:
            image = read_image(in_file, interpolation="nearest" if index in label_set else "linear")
        except DataError as error:
            raise DataError(f"{label}: {error}") from error
        data = np.asanyarray(image.dataobj)
        if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
            n_bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
            raise DataError(f"{label}: {os.fspath(in_file)} contains {n_bad} NaN or infinite voxels")
        if index not in label_set:
            checked = check_intensities(data, in_file, label, clip=clip_outliers)
            if checked is not data:
                image = image.__class__(checked, image.affine, image.header)
        images.append(image)
    check_subject_geometry(
        in_files, [image.shape for image in images], [image.affine for image in images], subject_id, affine_rtol
    )
    if crop:
        foreground = np.zeros(images[0].shape, dtype=np.uint8)
        for image in images:
            foreground[foreground_mask(np.asanyarray(image.dataobj))] = 1
        crop_slices = crop_img(new_image(foreground, images[0].affine), return_slices=True)
        images = [crop_img_to(image, crop_slices, copy=False) for image in images]
    if image_shape:
        images = [
            resize(image, image_shape, interpolation="nearest" if index in label_set else "linear")
            for index, image in enumerate(images)
        ]
    return images
