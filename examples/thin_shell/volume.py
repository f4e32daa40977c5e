"""The synthetic tissue of this folder's experiments: cells packed against each other, each wrapped in a
membrane one or two voxels thick.

A synthetic volume (64 x 64 x 48 voxels), two slices per axis annotated
(`unet3d_keras.sparse.make_sparse_annotation`):
- **Cells.** A Voronoi tessellation of 40 random seeds inside an ellipsoid makes cells that touch.
- **Classes.** 2 (membrane) is every cell voxel with a 6-neighbour in another cell or in the
  background: 2 voxels thick between two cells, 1 against the background. 1 is the rest of the
  cells, 0 the background.
- **The image** (`--volume thick`): background 0.2, each cell's interior its own brightness in
  [0.7, 1.1], membranes 1.5, blurred (Gaussian, sigma 1 voxel), with Gaussian noise (sigma 0.2).
  So the intensity alone confuses a membrane with bright cell interiors and blurred edges.
- `--volume thin`: one voxel thick (between two cells, only the cell with the smaller number has
  it) and fainter (1.3).
- `--volume clear`: the thin membranes with a quarter of the noise (sigma 0.05).
- `--volume edges`: the two-voxel membranes with no brightness of their own (a membrane voxel is
  as bright as its cell, the cells drawn from [0.4, 1.2]) and a quarter of the noise. Intensity
  alone says nothing about a membrane: only the edge between two cells of different brightness,
  or between a cell and the background, shows it.

Run as a script, it writes one volume's files, to try densify on it:

    python examples/thin_shell/volume.py --volume thin --output thin
    python scripts/densify.py --image thin/image.nii.gz --labels thin/sparse.nii.gz --output thin/densified.nii.gz

``thin/dense.nii.gz`` holds the true labels (one background corner left unannotated, see :func:`write_inputs`).
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

SHAPE = (64, 64, 48)
IGNORE = 255
CLASSES = ("background", "cell", "membrane")
MEMBRANE = CLASSES.index("membrane")
#: --volume NAME -> the arguments of make_volume that make it
VOLUMES: dict[str, dict] = {
    "thick": {},
    "thin": {"thickness": 1, "membrane_value": 1.3},
    "clear": {"thickness": 1, "membrane_value": 1.3, "noise": 0.05},
    "edges": {"membrane_value": None, "noise": 0.05, "brightness_range": (0.4, 1.2)},
}
#: the volumes whose membranes are one voxel thick, on one side of each face: where a face's side is the question
ONE_VOXEL = [name for name, arguments in VOLUMES.items() if arguments.get("thickness") == 1]
#: the files that :func:`write_inputs` writes
INPUT_FILES = ("image.nii.gz", "sparse.nii.gz", "dense.nii.gz", "other_image.nii.gz", "other_labels.nii.gz")
#: the seed of the generator that makes the other volumes (:func:`other_volumes`): this volume's is 0
OTHER_SEED = 1


def make_cells(rng: np.random.Generator) -> np.ndarray:
    """The cell of each voxel (int, ``SHAPE``): 1 to 40, a Voronoi tessellation of 40 points drawn from ``rng``
    inside an ellipsoid; 0 outside it (background)."""
    grid = np.indices(SHAPE).reshape(3, -1).T.astype(float)
    centre = (np.asarray(SHAPE) - 1) / 2
    radii = np.asarray(SHAPE) * 0.42
    inside = (((grid - centre) / radii) ** 2).sum(axis=1) < 1
    seeds = []
    while len(seeds) < 40:
        point = rng.uniform(0, SHAPE)
        if (((point - centre) / radii) ** 2).sum() < 1:
            seeds.append(point)
    _, cell = cKDTree(np.asarray(seeds)).query(grid)
    return np.where(inside, cell + 1, 0).reshape(SHAPE)


def membrane_mask(cells: np.ndarray, thickness: int = 2, carrier: np.ndarray | None = None) -> np.ndarray:
    """The membrane voxels (bool, ``cells.shape``): the cell voxels with a 6-neighbour in the background, or in
    another cell that does not leave the membrane to them.

    ``thickness`` 2: both sides of a boundary between cells are membrane. 1: only the side of the cell that
    ``carrier[a, b]`` names for cells ``a`` and ``b`` (a symmetric table, ``(cells.max() + 1,) * 2``; default the
    one with the smaller number), so that every membrane is one voxel thick.
    """
    if carrier is None:
        count = cells.max() + 1
        carrier = np.minimum.outer(np.arange(count), np.arange(count))
    membrane = np.zeros(cells.shape, bool)
    for axis in range(3):
        for shift in (1, -1):
            neighbour = np.roll(cells, shift, axis=axis)
            other = (neighbour != cells) & ((neighbour == 0) | (thickness == 2) | (carrier[cells, neighbour] == cells))
            membrane |= (cells > 0) & other
    return membrane


def face_sides(regions: np.ndarray) -> dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]:
    """For each pair of touching regions ``a < b`` (6-neighbours; 0 is no region): the flat indices of a's voxels
    that touch b and of b's voxels that touch a."""
    flat = regions.ravel()
    voxels, others = [], []
    for axis in range(3):
        for shift in (1, -1):
            neighbour = np.roll(regions, shift, axis=axis).ravel()  # the volume's border is background
            touching = np.flatnonzero((flat > 0) & (neighbour > 0) & (neighbour != flat))
            voxels.append(touching)
            others.append(neighbour[touching])
    voxel, other = np.concatenate(voxels), np.concatenate(others)
    own = flat[voxel]
    rows = np.unique(np.stack([np.minimum(own, other), np.maximum(own, other), voxel]), axis=1)
    pairs, which = np.unique(rows[:2], axis=1, return_inverse=True)
    sides = {}
    for index, (a, b) in enumerate(pairs.T.tolist()):
        members = rows[2, which.ravel() == index]
        sides[(a, b)] = (members[flat[members] == a], members[flat[members] == b])
    return sides


def draw_image(cells: np.ndarray, brightness: np.ndarray, membrane: np.ndarray, membrane_value: float | None,
               blur: float) -> np.ndarray:
    """The image before noise (float64, ``cells.shape``): background 0.2, each cell ``brightness[cell]``, the
    membrane ``membrane_value`` (None: its cell's), blurred by a Gaussian of ``blur`` voxels."""
    image = np.where(cells > 0, brightness[cells], 0.2)
    if membrane_value is not None:
        image = np.where(membrane, membrane_value, image)
    return ndimage.gaussian_filter(image, blur)


def make_volume(seed: int = 0, thickness: int = 2, membrane_value: float | None = 1.5, blur: float = 1.0,
                noise: float = 0.2, brightness_range: tuple[float, float] = (0.7, 1.1),
                layout: Callable[[np.random.Generator], np.ndarray] = make_cells) -> tuple[np.ndarray, np.ndarray]:
    """The image (float32) and dense labels (uint8) of the synthetic tissue, ``SHAPE``.

    ``thickness`` 2: both sides of a boundary between cells are membrane; 1: only the side of
    the cell with the smaller number (so that every membrane is one voxel thick).
    ``membrane_value`` None: a membrane voxel has its cell's brightness (drawn from ``brightness_range``),
    so that only the edge between two cells of different brightness shows it.
    ``layout`` draws the cells from the generator (:func:`make_cells` by default).
    """
    rng = np.random.default_rng(seed)
    cells, membrane, brightness = make_tissue(rng, thickness, brightness_range, layout)
    dense = np.where(membrane, 2, np.where(cells > 0, 1, 0)).astype(np.uint8)
    image = draw_image(cells, brightness, membrane, membrane_value, blur) + rng.normal(0, noise, SHAPE)
    return image.astype(np.float32), dense


def make_tissue(rng: np.random.Generator, thickness: int = 2, brightness_range: tuple[float, float] = (0.7, 1.1),
                layout: Callable[[np.random.Generator], np.ndarray] = make_cells
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What :func:`make_volume` draws before the image: the cells (``layout``, :func:`make_cells` by default), their
    membrane (:func:`membrane_mask`) and each cell's brightness (``(cells.max() + 1,)``, drawn from
    ``brightness_range``)."""
    cells = layout(rng)
    return cells, membrane_mask(cells, thickness), rng.uniform(*brightness_range, cells.max() + 1)


def volume_cells(volume: str, dense: np.ndarray) -> np.ndarray:
    """The true cell of each voxel of ``volume`` (a key of VOLUMES; int, ``SHAPE``, 0 the background), drawn again
    as :func:`make_volume` drew them, and checked against the volume's dense labels ``dense``."""
    arguments = VOLUMES[volume]
    cells, membrane, _ = make_tissue(np.random.default_rng(arguments.get("seed", 0)), arguments.get("thickness", 2),
                                     arguments.get("brightness_range", (0.7, 1.1)))
    if not np.array_equal(membrane, dense == MEMBRANE):
        raise RuntimeError(f"{volume}: the cells drawn again do not give the volume's membrane")
    return cells


def sparse_labels(dense: np.ndarray) -> np.ndarray:
    """Two slices per axis of ``dense`` annotated, the rest IGNORE: the annotation every row densifies."""
    from unet3d_keras.sparse import make_sparse_annotation

    return make_sparse_annotation(dense, (2, 2, 2))


def sparse_volume(volume: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``volume`` (a key of VOLUMES) as the scripts of this folder densify it: the image and dense labels
    (:func:`make_volume`), the annotation (:func:`sparse_labels`) and the never-annotated voxels (bool)."""
    image, dense = make_volume(**VOLUMES[volume])
    sparse = sparse_labels(dense)
    return image, dense, sparse, sparse == IGNORE


def write_inputs(folder: Path, volume_arguments: dict) -> None:
    """Write INPUT_FILES, those that run.py's rows give densify, into ``folder``, for the volume made with
    ``volume_arguments``:

    image.nii.gz and sparse.nii.gz (two slices per axis); dense.nii.gz (every voxel annotated but
    one); other_image.nii.gz and other_labels.nii.gz (another volume made alike, every voxel
    annotated, stacked before this one, which is left unannotated).
    """
    image, dense = make_volume(**volume_arguments)
    # densify refuses a map without an unannotated voxel: leave one background corner out.
    almost_dense = dense.copy()
    almost_dense[0, 0, 0] = IGNORE
    arrays = (image, sparse_labels(dense), almost_dense, *after_other_volume(image, volume_arguments))
    save_arrays(folder, dict(zip(INPUT_FILES, arrays, strict=True)))


def save_arrays(folder: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write each array of ``arrays`` (file name -> array) into ``folder`` as NIfTI on an identity affine."""
    for name, array in arrays.items():
        nib.save(nib.Nifti1Image(array, np.eye(4)), folder / name)


def other_volumes(volume_arguments: dict, count: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``count`` other volumes made alike (seeds OTHER_SEED, OTHER_SEED + 1, ...) stacked along the last axis:
    the image ``(x, y, count z)`` and its dense labels."""
    made = [make_volume(seed=OTHER_SEED + i, **volume_arguments) for i in range(count)]
    return np.concatenate([image for image, _ in made], axis=2), np.concatenate([dense for _, dense in made], axis=2)


def after_other_volume(image: np.ndarray, volume_arguments: dict) -> tuple[np.ndarray, np.ndarray]:
    """``image`` stacked after another volume made alike (:func:`other_volumes`) along the last axis,
    ``(x, y, 2 z)``, and its labels: the other volume's, every voxel annotated, then IGNORE over ``image``."""
    other_image, other_dense = other_volumes(volume_arguments)
    return (np.concatenate([other_image, image], axis=2),
            np.concatenate([other_dense, np.full(SHAPE, IGNORE, np.uint8)], axis=2))


def iou_per_class(predicted: np.ndarray, truth: np.ndarray, where: np.ndarray) -> list[float]:
    """The IoU of each class (background, cell, membrane) of ``predicted`` against ``truth`` on the voxels
    ``where`` (bool); all three arrays of one shape."""
    p, t = predicted[where], truth[where]
    return [float(np.sum((p == c) & (t == c)) / max(np.sum((p == c) | (t == c)), 1)) for c in range(3)]


def best_thresholds(image: np.ndarray, sparse: np.ndarray) -> tuple[float, float]:
    """The two thresholds (background < cell < membrane) of the best mean IoU on the annotated voxels."""
    annotated = sparse != IGNORE
    values, truth = image[annotated], sparse[annotated]
    levels = np.quantile(values, np.linspace(0.01, 0.99, 99))
    best, pair = -1.0, (levels[0], levels[-1])
    for i, low in enumerate(levels):
        for high in levels[i + 1:]:
            predicted = np.where(values >= high, 2, np.where(values >= low, 1, 0))
            score = np.mean(iou_per_class(predicted, truth, np.ones(len(values), bool)))
            if score > best:
                best, pair = score, (float(low), float(high))
    return pair


def threshold_classes(image: np.ndarray, low: float, high: float) -> np.ndarray:
    """The classes ``(x, y, z)`` of ``image`` cut at two thresholds: background < low <= cell < high <= membrane."""
    return np.where(image >= high, 2, np.where(image >= low, 1, 0)).astype(np.uint8)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volume", choices=list(VOLUMES), default="thin")
    parser.add_argument("--output", type=Path, required=True, help="the folder to write the files into")
    args = parser.parse_args(argv)
    if args.output.exists() and not args.output.is_dir():
        parser.error(f"--output {args.output}: not a folder")
    present = [name for name in INPUT_FILES if (args.output / name).exists()]
    if present:
        parser.error(f"--output {args.output}: already holds {', '.join(present)}; choose another folder")
    args.output.mkdir(parents=True, exist_ok=True)
    write_inputs(args.output, VOLUMES[args.volume])
    print(f"{args.volume}: wrote {', '.join(INPUT_FILES)} to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
