"""Images in and out of prediction: new subjects found and preprocessed as in training, label maps
put back on a subject's own grid and written atomically.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Sequence

import nibabel as nib
import numpy as np
from scipy import ndimage

from .channel_statistics import safe_std
from .errors import DataError
from .fileio import check_output_file, write_together
from .hdf5_store import REFERENCE_NORMALIZATION
from .normalize import normalize_data, normalize_data_storage
from .subject_images import read_subject_images
from .subjects import NIFTI_SUFFIXES, find_subjects
from .utils.utils import read_image_header


def check_nifti_output(path: str | os.PathLike, what: str = "output") -> Path:
    """``path`` checked before any work: a NIfTI file name (.nii or .nii.gz) where a file can be written
    (:func:`~unet3d_keras.fileio.check_output_file`); :class:`DataError` naming it otherwise.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    if not str(path).endswith(NIFTI_SUFFIXES):
        raise DataError(f"{path}: the {what} must be a NIfTI file name ending in .nii or .nii.gz")
    return check_output_file(path, what)


def save_image_atomically(image: nib.spatialimages.SpatialImage, path: str | os.PathLike) -> None:
    """Write a NIfTI image to a temporary name in the same folder, then rename it."""
    save_images_atomically([image], [path])


def save_images_atomically(images: Sequence[nib.spatialimages.SpatialImage], paths: Sequence[str | os.PathLike]
                           ) -> None:
    """Write NIfTI images that belong together: all or none.

    Each is written to a temporary name beside its path; only when every one is written are they renamed
    (:func:`~unet3d_keras.fileio.write_together`), so that a failure (a full disk, a rename refused) leaves
    the earlier files of all ``paths`` as they were.
    """
    if len(images) != len(paths):
        raise ValueError(f"{len(images)} images for {len(paths)} paths")
    write_together(paths, [functools.partial(nib.save, image) for image in images], list(map(nifti_suffix, paths)))


def nifti_suffix(path: str | os.PathLike) -> str:
    """The suffix of ``path``'s temporary name: nibabel picks compression from the name, so it keeps the target's
    extension (``.nii.gz`` or ``.nii``)."""
    return ".nii.gz" if str(path).endswith(".gz") else os.path.splitext(str(path))[1] or ".nii.gz"


def resample_to_grid(
    data: np.ndarray, affine: np.ndarray, target_affine: np.ndarray, target_shape: Sequence[int], order: int = 0
) -> np.ndarray:
    """Resample ``data`` (voxel-to-world ``affine``) onto another voxel grid of the same space.

    Args:
        data: ``(x, y, z)`` array.
        affine: 4x4 voxel-to-world matrix of ``data``.
        target_affine: 4x4 voxel-to-world matrix of the target grid.
        target_shape: ``(x, y, z)`` of the target grid.
        order: Spline order (0: nearest neighbour, for label maps).

    Returns:
        Array of ``target_shape``; voxels outside ``data`` are 0.
    """
    mapping = np.linalg.inv(np.asarray(affine, dtype=np.float64)) @ np.asarray(target_affine, dtype=np.float64)
    return ndimage.affine_transform(
        np.asarray(data), mapping[:3, :3], offset=mapping[:3, 3], output_shape=tuple(int(s) for s in target_shape),
        order=order, mode="constant", cval=0,
    )


def output_names(output_basename: str, subject: str, n_images: int = 1) -> list[str]:
    """File names of one subject's prediction images, as the reference named them.

    ``output_basename`` with ``{subject}`` filled in; several images (one probability map per
    label) are named ``1_<name>``, ``2_<name>``, ... (the reference's ``run_validation_case``).

    Raises:
        ValueError: ``output_basename`` lacks ``{subject}``, has another placeholder, or does not
            end in ``.nii`` or ``.nii.gz``.
    """
    try:
        name = output_basename.format(subject=subject)
    except (KeyError, IndexError, ValueError) as error:
        raise ValueError(f"output basename {output_basename!r}: only the placeholder {{subject}} is known "
                         f"({type(error).__name__}: {error})") from None
    if "{subject}" not in output_basename or not name.endswith(NIFTI_SUFFIXES):
        raise ValueError(f"output basename {output_basename!r}: must contain {{subject}} (one file per subject) "
                         "and end in .nii or .nii.gz, e.g. '{subject}.nii.gz'")
    return [name] if n_images == 1 else [f"{i + 1}_{name}" for i in range(n_images)]


def probability_images(probabilities: np.ndarray, affine: np.ndarray, target_affine: np.ndarray,
                       target_shape: Sequence[int]) -> list[nib.Nifti1Image]:
    """One float32 image per channel of ``(n_labels, x, y, z)`` probabilities, resampled (linearly)
    from the grid of ``affine`` onto the target grid (the subject's own)."""
    return [nib.Nifti1Image(resample_to_grid(channel, affine, target_affine, target_shape, order=1)
                            .astype(np.float32), np.asarray(target_affine))
            for channel in np.asarray(probabilities, dtype=np.float32)]


def normalize_like_training(volume: np.ndarray, attributes: dict) -> np.ndarray:
    """Apply a data file's normalisation to a new channels-first volume ``(n_channels, x, y, z)``.

    ``dataset``: the stored per-channel training mean and standard deviation;
    ``zscore``: the volume's own foreground statistics; ``reference`` (a file written by the
    reference): the volume's own per-channel mean and standard deviation over all voxels;
    ``none``: unchanged.

    Raises:
        DataError: ``attributes`` do not say (no data file was given).
    """
    if "normalization" not in attributes:
        raise DataError("how new subjects are normalised is unknown: give the data file the model was trained on "
                        "(its attributes say), or attributes={'normalization': 'zscore' or 'none'}")
    method = attributes["normalization"]
    volume = np.asarray(volume, dtype=np.float32)
    if method == REFERENCE_NORMALIZATION:
        # The reference's brats/predict.py wrote new subjects with write_data_to_file, which normalised
        # them by the channel statistics of the subjects written together: here, of this subject alone.
        mean = volume.mean(axis=(1, 2, 3), dtype=np.float64)
        std = safe_std(volume.std(axis=(1, 2, 3), dtype=np.float64), "reference normalisation of a new subject")
        return normalize_data(volume.copy(), mean, std).astype(np.float32)
    if method == "dataset":
        mean = np.asarray(attributes["normalization_mean"], dtype=np.float64)
        std = np.asarray(attributes["normalization_std"], dtype=np.float64)
        if mean.shape != (volume.shape[0],):
            raise ValueError(
                f"the data file's statistics cover {mean.shape[0]} channels but the volume has {volume.shape[0]}"
            )
        return normalize_data(volume, mean, np.where(std > 0, std, 1.0)).astype(np.float32)
    if method == "zscore":
        storage = volume[np.newaxis].copy()
        normalize_data_storage(storage, method="zscore")
        return storage[0]
    return volume


def read_subject_volume(
    files: Sequence[str | os.PathLike],
    image_shape: Sequence[int],
    attributes: dict,
    crop: bool = True,
    subject_id: str | None = None,
    clip_outliers: bool = False,
) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int], np.ndarray]:
    """One new subject's modality files preprocessed as in training.

    The files are cropped to the foreground, resampled to ``image_shape`` and normalised with
    the data file's ``attributes`` (:func:`normalize_like_training`). Implausible intensities are
    refused, or clipped with ``clip_outliers`` (:mod:`unet3d_keras.intensity_checks`).

    Returns:
        ``(volume, affine, original_shape, original_affine)``: float32 ``(n_channels, x, y, z)``
        and its voxel-to-world matrix, and the first file's own ``(x, y, z)`` and matrix.
    """
    shape, original_affine = read_image_header(files[0])
    images = read_subject_images(files, image_shape, crop=crop, subject_id=subject_id, clip_outliers=clip_outliers)
    volume = normalize_like_training(np.stack([np.asarray(i.dataobj, dtype=np.float32) for i in images]), attributes)
    return volume, images[0].affine, tuple(shape[:3]), original_affine


def input_subjects(
    paths: Sequence[str | os.PathLike], modalities: Sequence[str]
) -> tuple[list[tuple[str, tuple[str, ...]]], list[tuple[str, str]]]:
    """``(subject id, modality files)`` for prediction inputs, and the subjects that cannot be used.

    ``paths`` is either one subject's modality files (in ``modalities``
    order), a subject folder (``{modality}.nii.gz`` or BraTS naming), or a
    folder of subject folders (BraTS or generic layout). In a folder of
    subjects, a subject missing a modality is reported and the others kept.

    Returns:
        ``(subjects, [(subject, error message), ...])``.
    """
    paths = [Path(p) for p in paths]
    if paths and all(p.is_file() for p in paths):
        if len(paths) != len(modalities):
            raise DataError(f"--input: {len(paths)} files given for the {len(modalities)} modalities "
                            f"{list(modalities)} (one file per modality, in that order)")
        return [(paths[0].name.split(".")[0], tuple(str(p) for p in paths))], []
    if len(paths) != 1 or not paths[0].is_dir():
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            raise DataError(f"--input: {missing[0]}: no such file or folder")
        raise DataError(f"--input: {[str(p) for p in paths]}: expected one subject's image files or one folder")
    folder = paths[0]
    if all((folder / f"{m}.nii.gz").is_file() for m in modalities):  # one subject, generic naming
        return [(folder.name, tuple(str(folder / f"{m}.nii.gz") for m in modalities))], []
    try:
        ids, files = find_subjects(folder, modalities=modalities, include_truth=False, layout="auto")
        return list(zip(ids, files)), []
    except DataError:
        pass
    # Some subject is incomplete: look at each folder of images on its own.
    subjects, failures = [], []
    for root, dirs, names in sorted(os.walk(folder)):
        dirs.sort()
        if not any(n.endswith(NIFTI_SUFFIXES) for n in names):
            continue
        try:
            if all(os.path.isfile(os.path.join(root, f"{m}.nii.gz")) for m in modalities):
                subjects.append((os.path.basename(root),
                                 tuple(os.path.join(root, f"{m}.nii.gz") for m in modalities)))
                continue
            ids, files = find_subjects(root, modalities=modalities, include_truth=False, layout="brats")
            subjects += [(i, f) for i, f in zip(ids, files) if os.path.dirname(f[0]) == root]
        except DataError as error:
            failures.append((os.path.basename(root), " ".join(str(error).split())))
    if not subjects and not failures:
        raise DataError(f"--input: no subjects with modalities {list(modalities)} found in {folder}")
    return subjects, failures
