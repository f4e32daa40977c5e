"""A rare thin class: densify on small colonies of touching cells in a wide field, two slices per axis annotated.

The volume (64 x 64 x 48 voxels, as the other volumes of this folder): four colonies, each a ball of radius 6.5
voxels cut into five cells that touch (a Voronoi tessellation of five points drawn inside it), placed so that the
annotated planes cut them off their centres. Classes and image as ``volume.py --volume thick``: 2 (membrane) is every
cell voxel with a 6-neighbour in another cell or in the background, 1 the rest of the cells, 0 the background;
background 0.2, each cell its own brightness in [0.7, 1.1], membranes 1.5, blurred (sigma 1 voxel), Gaussian noise
(sigma 0.2); after the blur, a membrane voxel is on average dimmer than a cell's interior, which its bright
membrane lifts. Most of the field is background: the membrane holds 0.9% of the annotated voxels and the cells 0.4%,
about the share at which densify without class weights lost the small lesions of ``lesion.py``.

For each seed, ``scripts/densify.py`` runs as a user runs it, one thread each, two at a time: the old densification
(``experiments.OLD``: 960 steps whatever the budget), densify's defaults at 5 and 12 minutes, and the defaults
without class weights at 5 minutes (``--class-weights none``: what the weights that ``auto`` chooses here give).
Each run's per-class IoU on the never-annotated voxels is kept, with the intensity thresholds' (fit on the annotated
voxels) as the baseline.

    python examples/thin_shell/colonies.py [--seed 42 1 2] [--rows NAME ...]

Writes ``results_colonies.json``: ``{"runs": {row: {seed: run}}, "thresholds": [iou per class], "volume": {...},
"machine": ..., "commands": [...]}`` (a later command replaces the runs of its rows and seeds), and prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from experiments import OLD, ROOT  # noqa: E402
from processes import machine_name, run_process, run_two_at_a_time, start_results  # noqa: E402
from volume import (CLASSES, IGNORE, SHAPE, best_thresholds, iou_per_class, make_volume, save_arrays,  # noqa: E402
                    sparse_labels, threshold_classes)

RESULTS = HERE / "results_colonies.json"
#: each colony's centre (voxel indices); the planes of two slices per axis are x, y 16 and 48, z 12 and 36
COLONY_CENTRES = ((20, 24, 18), (42, 40, 30), (26, 44, 26), (40, 22, 22))
COLONY_RADIUS = 6.5
CELLS_PER_COLONY = 5
#: row -> (densify's arguments, minutes); the old densification trains its 960 steps whatever the budget
ROWS: dict[str, tuple[tuple[str, ...], float]] = {  # the longest first, to keep two workers busy
    "today, 12 min": ((), 12.0),
    "old": (OLD, 12.0),
    "today, 5 min": ((), 5.0),
    "today without class weights, 5 min": (("--class-weights", "none"), 5.0),
}
SEEDS = (42, 1, 2)


def colony_cells(rng: np.random.Generator) -> np.ndarray:
    """The cell of each voxel (int, ``SHAPE``): 0 the background, the cells of colony ``k`` (from 0) numbered
    ``k * CELLS_PER_COLONY + 1`` on; each colony a Voronoi tessellation of points drawn from ``rng`` within 0.8 of
    its radius, cut to its ball."""
    grid = np.indices(SHAPE).reshape(3, -1).T.astype(float)
    cells = np.zeros(len(grid), int)
    for index, centre in enumerate(np.asarray(COLONY_CENTRES, float)):
        inside = ((grid - centre) ** 2).sum(axis=1) < COLONY_RADIUS ** 2
        points = []
        while len(points) < CELLS_PER_COLONY:  # uniform in the ball of 0.8 of the radius, by rejection
            point = centre + rng.uniform(-COLONY_RADIUS, COLONY_RADIUS, 3)
            if ((point - centre) ** 2).sum() < (0.8 * COLONY_RADIUS) ** 2:
                points.append(point)
        nearest = np.argmin(((grid[inside, None, :] - np.asarray(points)[None]) ** 2).sum(axis=2), axis=1)
        cells[inside] = index * CELLS_PER_COLONY + 1 + nearest
    return cells.reshape(SHAPE)


def make_colony_volume(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The image (float32) and dense labels (uint8: 0 background, 1 cell, 2 membrane), both ``SHAPE``: the image and
    membranes of ``volume.py --volume thick`` (:func:`volume.make_volume`'s defaults) on :func:`colony_cells`."""
    return make_volume(seed, layout=colony_cells)


def one_run(folder: Path, row: str, seed: int, dense: np.ndarray, sparse: np.ndarray) -> dict:
    """Run ``scripts/densify.py`` as ``row`` with ``seed`` on the volume in ``folder``; its steps, stop reason,
    class weighting, the classes it warned about and the per-class IoU on the never-annotated voxels."""
    import nibabel as nib

    arguments, minutes = ROWS[row]
    output = folder / f"{''.join(c if c.isalnum() else '_' for c in row)}_{seed}" / "dense.nii.gz"
    run_process([str(ROOT / "scripts" / "densify.py"), "--image", str(folder / "image.nii.gz"),
                 "--labels", str(folder / "sparse.nii.gz"), "--output", str(output), "--seed", str(seed),
                 "--max-minutes", f"{minutes:g}", "--quiet", *arguments], f"colonies, {row}, seed {seed}")
    report = json.loads(output.with_name("dense_scores.json").read_text())
    predicted = np.asarray(nib.load(output).dataobj)
    return {"steps": report["steps"], "stop_reason": report["stop_reason"],
            "class_weights": report["class_weights"], "warned": report["low_classes"],
            "iou": iou_per_class(predicted, dense, sparse == IGNORE)}


def iou_text(values: list[float]) -> str:
    """Per-class IoU as the table writes it: 'membrane / cell / background'."""
    return " / ".join(f"{values[c]:.3f}" for c in (2, 1, 0))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, nargs="+", default=list(SEEDS),
                        help=f"densify's seeds (default {' '.join(map(str, SEEDS))})")
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS), help="the runs of each seed")
    args = parser.parse_args(argv)

    results, _ = start_results(RESULTS, __file__, argv, {"runs": {}})
    image, dense = make_colony_volume()
    sparse = sparse_labels(dense)
    never = sparse == IGNORE
    annotated = sparse[~never]
    results["volume"] = {"shape": list(SHAPE), "class_share": [float(np.mean(dense == c)) for c in range(3)],
                         "annotated_share": [float(np.mean(annotated == c)) for c in range(3)],
                         "annotated_voxels": [int(np.sum(annotated == c)) for c in range(3)]}
    results["thresholds"] = iou_per_class(threshold_classes(image, *best_thresholds(image, sparse)), dense, never)
    results["machine"] = machine_name()
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        save_arrays(folder, {"image.nii.gz": image, "sparse.nii.gz": sparse})

        def keep(job: tuple[str, int], result: dict) -> str:
            row, seed = job
            results["runs"].setdefault(row, {})[str(seed)] = result
            return f"{row}, seed {seed}: {result['steps']} steps, IoU membrane / cell / background " \
                   f"{iou_text(result['iou'])}"

        jobs = [(row, seed) for seed in args.seed for row in args.rows]
        run_two_at_a_time(jobs, lambda job: one_run(folder, *job, dense, sparse), keep, results, RESULTS)
    shares = zip(CLASSES, results["volume"]["annotated_share"])
    print(f"annotated voxels: {', '.join(f'{name} {share:.1%}' for name, share in shares)}")
    print(f"intensity thresholds: IoU membrane / cell / background {iou_text(results['thresholds'])}")
    for row, runs in results["runs"].items():
        mean = np.mean([run["iou"] for run in runs.values()], axis=0)
        print(f"{row}: {iou_text(list(mean))} (mean of seeds {', '.join(runs)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
