"""A deterministic synthetic BraTS-like dataset, so the whole pipeline runs with no download.

Each subject is a head-like ellipsoid (scalp, grey and white matter, ventricles)
imaged in four modalities (t1, t1ce, flair, t2) with different tissue
contrasts, carrying a tumour made of a necrotic core (label 1), oedema
(label 2) and an enhancing rim (label 4) of random size, position and shape,
under a smooth bias field and noise. Files follow the 2017-2021 BraTS layout,
``<folder>/Demo_001/Demo_001_{t1,t1ce,flair,t2,seg}.nii.gz``, or the 2023+ one with its
modality names and the labels of a 2023+ convention (glioma: 1 necrotic core, 2 oedema,
3 enhancing), ``<folder>/BraTS-GLI-00000-000/BraTS-GLI-00000-000-{t1n,t1c,t2f,t2w,seg}.nii.gz``.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Mapping, Sequence

import nibabel as nib
import numpy as np
from scipy import ndimage
from tqdm.auto import tqdm

from .fileio import remove_stale_temporary_files, temporary_path
from .label_conventions import LAYOUT_2017, LAYOUT_2023
from .modalities import BRATS_2023_NAMES, BRATS_MODALITIES

logger = logging.getLogger(__name__)

# Mean intensity per tissue and modality (t1, t1ce, flair, t2), on a 0..1 scale.
_TISSUE = {
    "scalp": (0.85, 0.85, 0.45, 0.40),
    "csf": (0.15, 0.15, 0.10, 0.95),
    "grey": (0.55, 0.56, 0.62, 0.62),
    "white": (0.78, 0.78, 0.52, 0.45),
    "oedema": (0.45, 0.46, 0.95, 0.85),
    "necrosis": (0.28, 0.30, 0.35, 0.92),
    "enhancing": (0.50, 1.00, 0.72, 0.70),
}
_MARKER = "demo_dataset.txt"
# The simulated tumour's label values in make_demo_subject (the 2017-2021 convention's).
_DEMO_TISSUES = {"necrotic": 1, "oedema": 2, "enhancing": 4}


def smooth_field(rng: np.random.Generator, shape: Sequence[int], nodes: int = 4) -> np.ndarray:
    """A smooth random field of unit-order amplitude.

    Args:
        rng: Random generator.
        shape: Output shape ``(x, y, z)``.
        nodes: Number of random control values per axis (lower is smoother).

    Returns:
        float32 array of ``shape`` interpolated with cubic splines.
    """
    coarse = rng.normal(size=(nodes, nodes, nodes))
    zoom = [s / nodes for s in shape]
    field = ndimage.zoom(coarse, zoom, order=3, mode="nearest")
    return field[: shape[0], : shape[1], : shape[2]].astype(np.float32)


def _ellipsoid_distance(coords: np.ndarray, centre, radii, rotation: np.ndarray) -> np.ndarray:
    """Normalised ellipsoid distance: < 1 inside. ``coords`` is ``(3, x, y, z)``."""
    offset = coords - np.asarray(centre, dtype=np.float32)[:, None, None, None]
    rotated = np.tensordot(rotation.astype(np.float32), offset, axes=1)
    radii = np.asarray(radii, dtype=np.float32)[:, None, None, None]
    return np.sqrt(np.sum((rotated / radii) ** 2, axis=0))


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.diag(r))


def make_demo_subject(
    rng: np.random.Generator, shape: Sequence[int] = (64, 64, 64)
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Simulate one subject.

    Args:
        rng: Random generator; the subject is a function of its state.
        shape: Grid ``(x, y, z)``.

    Returns:
        ``(images, seg)``: a dict of int16 ``(x, y, z)`` arrays keyed by
        modality, and the uint8 label map (0, 1, 2, 4).
    """
    shape = tuple(int(s) for s in shape)
    scale = np.asarray(shape, dtype=np.float32)
    coords = np.indices(shape, dtype=np.float32)
    centre = scale / 2 + rng.normal(0, 0.02, 3) * scale
    head_radii = scale * rng.uniform(0.40, 0.46, 3)
    head = _ellipsoid_distance(coords, centre, head_radii, np.eye(3))
    wobble = 0.04 * smooth_field(rng, shape, nodes=3)
    head = head + wobble

    tissue = np.zeros(shape, dtype=np.uint8)  # index into the tissue list below
    names = ["background", "scalp", "grey", "white", "csf", "oedema", "necrosis", "enhancing"]
    index = {name: i for i, name in enumerate(names)}
    tissue[head < 1.0] = index["scalp"]
    tissue[head < 0.88] = index["grey"]
    tissue[head < 0.70 + 0.05 * smooth_field(rng, shape, nodes=5)] = index["white"]
    ventricles = _ellipsoid_distance(coords, centre, scale * np.array([0.06, 0.12, 0.08]), np.eye(3))
    tissue[ventricles < 1.0] = index["csf"]

    # Tumour: irregular nested shells centred inside the brain.
    brain_radii = head_radii * 0.55
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    tumour_centre = centre + direction * brain_radii * rng.uniform(0.2, 0.8)
    size = float(np.min(scale)) * rng.uniform(0.06, 0.11)
    tumour_radii = size * rng.uniform(0.8, 1.25, 3)
    tumour = _ellipsoid_distance(coords, tumour_centre, tumour_radii, _random_rotation(rng))
    tumour = tumour + 0.25 * smooth_field(rng, shape, nodes=6)
    brain = head < 0.88
    core_edge = rng.uniform(0.45, 0.7)
    rim_edge = 1.0
    oedema_edge = rng.uniform(1.6, 2.2)
    seg = np.zeros(shape, dtype=np.uint8)
    seg[(tumour < oedema_edge) & brain] = 2
    seg[(tumour < rim_edge) & brain] = 4
    seg[(tumour < core_edge) & brain] = 1
    tissue[seg == 2] = index["oedema"]
    tissue[seg == 4] = index["enhancing"]
    tissue[seg == 1] = index["necrosis"]

    table = np.zeros((len(names), len(BRATS_MODALITIES)), dtype=np.float32)
    for name, values in _TISSUE.items():
        table[index[name]] = values
    images = {}
    inside = tissue > 0
    for channel, modality in enumerate(BRATS_MODALITIES):
        contrast = table[tissue, channel] * rng.uniform(0.9, 1.1)
        # Partial-volume blur, a smooth bias field and noise, as a scanner would add.
        contrast = ndimage.gaussian_filter(contrast, sigma=0.6)
        bias = 1.0 + 0.15 * smooth_field(rng, shape, nodes=3)
        noisy = contrast * bias + rng.normal(0, 0.03, shape).astype(np.float32) * inside
        noisy[~ndimage.binary_dilation(inside, iterations=1)] = 0
        images[modality] = np.clip(noisy * 1000.0, 0, 32767).astype(np.int16)
    return images, seg


def demo_affine(shape: Sequence[int], spacing: float = 2.0) -> np.ndarray:
    """A RAS affine with isotropic ``spacing`` mm voxels, centred on the origin."""
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = -spacing * (np.asarray(shape) - 1) / 2
    return affine


def subject_id(index: int, layout: str = LAYOUT_2017, task: str = "GLI") -> str:
    """Subject id of the ``index``-th demo subject, BraTS-style (``Demo_001``, or ``BraTS-GLI-00000-000``)."""
    return f"BraTS-{task}-{index:05d}-000" if layout == LAYOUT_2023 else f"Demo_{index + 1:03d}"


def relabel_tumour(seg: np.ndarray, tissues: Mapping[str, int]) -> np.ndarray:
    """A demo label map (1 necrotic, 2 oedema, 4 enhancing) in another convention's label values.

    Args:
        seg: uint8 ``(x, y, z)`` from :func:`make_demo_subject`.
        tissues: label value of ``necrotic``, ``oedema`` and ``enhancing``.
    """
    lookup = np.zeros(256, dtype=np.uint8)
    for tissue, value in _DEMO_TISSUES.items():
        lookup[value] = tissues[tissue]
    return lookup[seg]


def write_demo_dataset(
    out_dir: str | os.PathLike,
    n_subjects: int = 24,
    shape: Sequence[int] = (64, 64, 64),
    seed: int = 0,
    overwrite: bool = False,
    show_progress: bool = True,
    layout: str = LAYOUT_2017,
    tissues: Mapping[str, int] | None = None,
    task: str = "GLI",
) -> list[Path]:
    """Write the demo dataset in a BraTS folder layout.

    The folder is built under a temporary name and renamed when complete, so
    an interrupted run leaves no partial dataset. An existing complete dataset
    with the same parameters is reused.

    Args:
        out_dir: Folder to create (``<out_dir>/Demo_001/Demo_001_t1.nii.gz``...).
        n_subjects: Number of subjects.
        shape: Grid of each subject.
        seed: Subject ``i`` is drawn from ``np.random.default_rng([seed, i])``.
        overwrite: Rebuild even if a matching dataset exists.
        show_progress: Show a progress bar.
        layout: ``brats2017`` (``Demo_001/Demo_001_t1ce.nii.gz``, labels 1, 2, 4) or ``brats2023``
            (``BraTS-GLI-00000-000/BraTS-GLI-00000-000-t1c.nii.gz``).
        tissues: label value of the ``necrotic``, ``oedema`` and ``enhancing`` parts (default:
            1, 2, 4; glioma 2023+: 1, 2, 3).
        task: the 2023+ task in the subject ids (``GLI``, ``MEN``, ``MET``, ``PED``, ``SSA``).

    Returns:
        The subject folders, sorted.
    """
    out_dir = Path(out_dir)
    shape = tuple(int(s) for s in shape)
    if layout not in (LAYOUT_2017, LAYOUT_2023):
        raise ValueError(f"layout must be {LAYOUT_2017!r} or {LAYOUT_2023!r}; received {layout!r}")
    tissues = dict(tissues or _DEMO_TISSUES)
    signature = f"n_subjects={n_subjects} shape={list(shape)} seed={seed}\n"
    if layout == LAYOUT_2023 or tissues != _DEMO_TISSUES:
        signature += f"layout={layout} task={task} labels={tissues}\n"
    marker = out_dir / _MARKER
    if out_dir.exists() and not overwrite:
        if marker.is_file() and marker.read_text() == signature:
            return sorted(p for p in out_dir.iterdir() if p.is_dir())
        raise FileExistsError(
            f"{out_dir}: exists but is not a demo dataset with {signature.strip()}; "
            "remove it or pass overwrite=True"
        )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # Named after this process, so that the next run can tell a killed writer's leftovers from a live one's.
    remove_stale_temporary_files(out_dir)
    tmp = temporary_path(out_dir)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        affine = demo_affine(shape)
        for i in tqdm(range(n_subjects), desc="demo subjects", disable=not show_progress):
            images, seg = make_demo_subject(np.random.default_rng([seed, i]), shape)
            sid = subject_id(i, layout, task)
            folder = tmp / sid
            folder.mkdir()
            for modality, data in images.items():
                name = f"{sid}-{BRATS_2023_NAMES[modality]}" if layout == LAYOUT_2023 else f"{sid}_{modality}"
                nib.save(nib.Nifti1Image(data, affine), folder / f"{name}.nii.gz")
            seg_name = f"{sid}-seg" if layout == LAYOUT_2023 else f"{sid}_seg"
            nib.save(nib.Nifti1Image(relabel_tumour(seg, tissues), affine), folder / f"{seg_name}.nii.gz")
        (tmp / _MARKER).write_text(signature)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("Wrote %d demo subjects to %s", n_subjects, out_dir)
    return sorted(p for p in out_dir.iterdir() if p.is_dir())
