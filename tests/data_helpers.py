"""Small synthetic images and BraTS-style folders for the data-pipeline tests."""

from __future__ import annotations

import os
from typing import Sequence

import nibabel as nib
import numpy as np

MODALITIES = ("t1", "t1ce", "flair", "t2")
# A BraTS-like affine: LPS-stored voxels, so nibabel sees negative x and y axes.
BRATS_AFFINE = np.array(
    [[-1.0, 0.0, 0.0, 10.0], [0.0, -1.0, 0.0, 12.0], [0.0, 0.0, 1.0, -4.0], [0.0, 0.0, 0.0, 1.0]]
)


def write_nifti(path: str, data: np.ndarray, affine: np.ndarray = BRATS_AFFINE) -> str:
    data = np.asarray(data)
    dtype = data.dtype if data.dtype in (np.int64, np.uint64) else None
    nib.Nifti1Image(data, affine, dtype=dtype).to_filename(path)
    return path


def subject_volumes(rng: np.random.Generator, shape: Sequence[int] = (12, 14, 10), n_modalities: int = 4):
    """Modality volumes with a brain-like blob on a zero background, and a truth with labels 1, 2, 4."""
    shape = tuple(shape)
    grids = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    radius = sum(g**2 for g in grids)
    brain = radius < 0.6
    volumes = []
    for index in range(n_modalities):
        volume = np.where(brain, rng.normal(100.0 + 20 * index, 10.0, shape), 0.0).astype(np.float32)
        volumes.append(volume)
    truth = np.zeros(shape, dtype=np.uint8)
    truth[radius < 0.25] = 2
    truth[radius < 0.12] = 1
    truth[radius < 0.04] = 4
    return volumes, truth


def make_brats_folder(
    root: str,
    subject_ids: Sequence[str],
    rng: np.random.Generator,
    convention: str = "2018",
    group: str = "HGG",
    shape: Sequence[int] = (12, 14, 10),
) -> list[str]:
    """Writes ``root/group/<id>/<id>_<name>.nii.gz`` files; returns the subject folders.

    ``convention="2018"``: t1, t1ce, flair, t2, seg. ``"2017"``: t1, t1Gd, flair, t2 and both
    GlistrBoost and GlistrBoost_ManuallyCorrected (the corrected one differs: label 4 removed).
    """
    folders = []
    for subject_id in subject_ids:
        folder = os.path.join(root, group, subject_id) if group else os.path.join(root, subject_id)
        os.makedirs(folder, exist_ok=True)
        volumes, truth = subject_volumes(rng, shape)
        names = ("t1", "t1ce" if convention == "2018" else "t1Gd", "flair", "t2")
        for name, volume in zip(names, volumes):
            write_nifti(os.path.join(folder, f"{subject_id}_{name}.nii.gz"), volume)
        if convention == "2018":
            write_nifti(os.path.join(folder, f"{subject_id}_seg.nii.gz"), truth)
        else:
            write_nifti(os.path.join(folder, f"{subject_id}_GlistrBoost.nii.gz"), truth)
            corrected = truth.copy()
            corrected[corrected == 4] = 1
            write_nifti(os.path.join(folder, f"{subject_id}_GlistrBoost_ManuallyCorrected.nii.gz"), corrected)
        folders.append(folder)
    return folders


def make_generic_folder(
    root: str, subject_ids: Sequence[str], rng: np.random.Generator, shape: Sequence[int] = (12, 14, 10),
    affine: np.ndarray = BRATS_AFFINE,
) -> tuple[list[str], list[tuple[str, ...]]]:
    """Writes ``root/<id>/{t1,t1ce,flair,t2,truth}.nii.gz``; returns ids and file tuples."""
    file_tuples = []
    for subject_id in subject_ids:
        folder = os.path.join(root, subject_id)
        os.makedirs(folder, exist_ok=True)
        volumes, truth = subject_volumes(rng, shape)
        files = [write_nifti(os.path.join(folder, f"{m}.nii.gz"), v, affine) for m, v in zip(MODALITIES, volumes)]
        files.append(write_nifti(os.path.join(folder, "truth.nii.gz"), truth, affine))
        file_tuples.append(tuple(files))
    return list(subject_ids), file_tuples
