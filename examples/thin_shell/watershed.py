"""Redrawing the one-voxel membrane between the cells that a watershed finds.

The membrane that densify draws between touching cells is faint and broken (``docs/thin_shell_check.png``).
A classic repair in cell segmentation is to find the cells first, then draw their boundaries: here a
watershed (scikit-image) of the model's membrane probability, smoothed, from seeds far from any likely
membrane, inside the model's foreground; then, on each face between two basins, a membrane one voxel thick
on the side that the annotation marks where the face crosses an annotated slice, else on the side where the
model's (smoothed) membrane probability is higher on average; the outer surface of the foreground is membrane.
Scored on one densify run's probabilities (``scripts/densify.py --probabilities --steps N``):

- the model's own labels (the argmax of its probabilities);
- the redraw with one setting (smoothing, seed threshold, seed spacing), and the lowest and highest over a grid
  of settings (choosing among them needs the never-annotated truth, which no user has);
- the redraw given the true cells (cut by the model's foreground): only the side of each face is chosen, by
  the model's probability alone, or by the annotation first: what the redraw could give if the cells were found;
- how many of the cells the watershed finds (a basin with IoU above 0.7 with the cell).

IoU per class on the never-annotated voxels, as the tables are. One densify run, then seconds.

    python examples/thin_shell/watershed.py [--volume thin clear] [--steps 2624] [--seed 42]

Writes ``results_watershed.json`` (``{"volumes": {volume: result}, "commands": [...]}``); ``run.py
--markdown-only`` puts it on the page.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from experiments import DEFAULT_SEED, ROOT, WATERSHED_RESULTS  # noqa: E402
from processes import run_process, save_json, start_results  # noqa: E402
from volume import (CLASSES, IGNORE, MEMBRANE, ONE_VOXEL, VOLUMES, face_sides, iou_per_class,  # noqa: E402
                    sparse_volume, volume_cells, write_inputs)

#: the steps of today's defaults in the page's 12-minute run on `thin` (seed 42)
STEPS = 2624
#: (smoothing of the membrane probability in voxels, seeds where it is below this, seeds at least this many
#: voxels apart); SETTING was chosen on a timed 12-minute run (1139 steps) before this script ran
GRID = list(itertools.product((0.7, 1.0, 1.5), (0.1, 0.2, 0.3), (7, 9)))
SETTING = (1.0, 0.2, 9)
#: a basin finds a cell when their IoU is above this
FOUND_IOU = 0.7


def redraw(regions: np.ndarray, foreground: np.ndarray, boundary: np.ndarray, sparse: np.ndarray) -> np.ndarray:
    """The classes ``(x, y, z)``: the foreground cell, its outer surface and one side of each face between two
    ``regions`` membrane; the side the annotation marks more (membrane voxels less cell voxels), else the one with
    the higher mean ``boundary``."""
    labels = np.where(foreground, 1, 0).astype(np.uint8)
    inner = ndimage.binary_erosion(foreground, border_value=0)  # 6-neighbours, as the membrane is drawn
    labels[foreground & ~inner] = MEMBRANE
    flat_labels, flat_boundary, flat_sparse = labels.ravel(), boundary.ravel(), sparse.ravel()
    for side_a, side_b in face_sides(regions).values():
        marks = [np.sum(flat_sparse[side] == MEMBRANE) - np.sum(flat_sparse[side] == 1) for side in (side_a, side_b)]
        means = [flat_boundary[side].mean() for side in (side_a, side_b)]  # a touches b: b touches a
        first = marks[0] > marks[1] if marks[0] != marks[1] else means[0] >= means[1]
        flat_labels[side_a if first else side_b] = MEMBRANE
    return flat_labels.reshape(labels.shape)  # ravel copies arrays in Fortran order, as NIfTI reads them


def watershed_cells(probabilities: np.ndarray, foreground: np.ndarray, smoothing: float, threshold: float,
                    spacing: int) -> tuple[np.ndarray, np.ndarray]:
    """The basins ``(x, y, z)`` (0 outside ``foreground``) of the smoothed membrane probability, from seeds at the
    local maxima (``spacing`` apart) of the distance to the voxels where it reaches ``threshold``; and that
    smoothed probability."""
    # why here: the rest of this script (redraw) runs without the examples extra
    from skimage.segmentation import watershed

    boundary = ndimage.gaussian_filter(probabilities[MEMBRANE], smoothing)
    distance = ndimage.distance_transform_edt(foreground & (boundary < threshold))
    seeds = (distance == ndimage.maximum_filter(distance, size=spacing)) & (distance >= 1.5)
    markers, _ = ndimage.label(ndimage.binary_dilation(seeds))
    return watershed(boundary, markers, mask=foreground), boundary


def cells_found(basins: np.ndarray, cells: np.ndarray) -> int:
    """How many ``cells`` have a basin whose IoU with them is above FOUND_IOU."""
    found = 0
    for cell in range(1, cells.max() + 1):
        inside = cells == cell
        ids, counts = np.unique(basins[inside], return_counts=True)
        counts = np.where(ids == 0, 0, counts)
        best = ids[counts.argmax()]
        union = inside.sum() + np.sum(basins == best) - counts.max()
        found += counts.max() / union > FOUND_IOU
    return int(found)


def densify_probabilities(volume: str, steps: int, seed: int, folder: Path) -> tuple[np.ndarray, float]:
    """Run scripts/densify.py on ``volume`` (two slices per axis) with ``--probabilities``: the probabilities
    ``(3, x, y, z)`` and the seconds the run took."""
    write_inputs(folder, VOLUMES[volume])
    began = time.monotonic()
    run_process([str(ROOT / "scripts" / "densify.py"), "--image", str(folder / "image.nii.gz"),
                 "--labels", str(folder / "sparse.nii.gz"), "--output", str(folder / "dense.nii.gz"),
                 "--probabilities", "--steps", str(steps), "--seed", str(seed), "--quiet"],
                f"densify {volume}", threads=None)
    return (np.stack([np.asarray(nib.load(folder / f"dense_probability_{c}.nii.gz").dataobj)
                      for c in range(len(CLASSES))]), time.monotonic() - began)


def measure(volume: str, steps: int, seed: int) -> dict:
    """The scores of the model, the watershed redraw and the redraw given the true cells on ``volume``."""
    _, dense, sparse, never = sparse_volume(volume)
    cells = volume_cells(volume, dense)
    with tempfile.TemporaryDirectory() as folder:
        probabilities, seconds = densify_probabilities(volume, steps, seed, Path(folder))
    foreground = probabilities[0] < 0.5
    grid = {}
    for setting in GRID:
        basins, boundary = watershed_cells(probabilities, foreground, *setting)
        grid[" ".join(map(str, setting))] = {
            "iou": iou_per_class(redraw(basins, foreground, boundary, sparse), dense, never),
            "basins": int(basins.max()), "cells_found": cells_found(basins, cells)}
    boundary = ndimage.gaussian_filter(probabilities[MEMBRANE], SETTING[0])
    true_cells = np.where(foreground, cells, 0)
    unannotated = np.full_like(sparse, IGNORE)
    return {"steps": steps, "seed": seed, "densify_seconds": round(seconds), "cells": int(cells.max()),
            "model": iou_per_class(np.argmax(probabilities, axis=0), dense, never),
            "setting": " ".join(map(str, SETTING)), "grid": grid,
            "true_cells_model_side": iou_per_class(redraw(true_cells, foreground, boundary, unannotated), dense, never),
            "true_cells_annotation_side": iou_per_class(redraw(true_cells, foreground, boundary, sparse), dense, never)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volume", nargs="+", choices=ONE_VOXEL, default=["thin"])
    parser.add_argument("--steps", type=int, default=STEPS, help=f"densify's --steps (default {STEPS})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"densify's --seed (default {DEFAULT_SEED})")
    args = parser.parse_args(argv)
    results, _ = start_results(WATERSHED_RESULTS, __file__, argv, {"volumes": {}})
    for volume in args.volume:
        result = results["volumes"][volume] = measure(volume, args.steps, args.seed)
        save_json(WATERSHED_RESULTS, results)
        grid = [run["iou"][MEMBRANE] for run in result["grid"].values()]
        print(f"{volume}: membrane IoU, the model {result['model'][MEMBRANE]:.3f}; the redraw "
              f"{result['grid'][result['setting']]['iou'][MEMBRANE]:.3f} ({min(grid):.3f} to {max(grid):.3f} over the "
              f"grid); given the true cells {result['true_cells_model_side'][MEMBRANE]:.3f}, with the annotation "
              f"{result['true_cells_annotation_side'][MEMBRANE]:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
