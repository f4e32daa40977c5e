"""A picture of the thin-structure experiment: one slice between the annotated ones, per volume.

For each volume of ``volume.py`` (two slices per axis annotated) and each ``--seed`` (default 42),
run ``scripts/densify.py`` twice with a 12-minute budget, as run.py's rows "old, 12 min" and
"new, 12 min" do (the old densification and today's defaults), two at a time with one thread
each; keep the written maps in ``figure_maps.npz`` and their scores in ``results_figure.json``:
the IoU per class, the membrane's IoU apart between touching cells and on the outer surface
that faces the background, and how much of the membrane each finds up to one voxel (the best
intensity thresholds too). Draw the axial slice z = 24 (between the annotated z slices 12 and
36) of each volume, seed 42: the image, the truth, the best intensity thresholds, old and
today's densification, to ``docs/thin_shell_slices.png``.

    python examples/thin_shell/figure.py [--volume thin ...] [--seed 42 1] [--draw-only]

``run.py --markdown-only`` puts the picture and the scores on the page.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from experiments import DEFAULT_SEED, FIGURE, FIGURE_RESULTS, HERE  # noqa: E402
from processes import machine_name, run_two_at_a_time, save_json, start_results  # noqa: E402
from run import run_row  # noqa: E402
from volume import (CLASSES, IGNORE, MEMBRANE, SHAPE, VOLUMES, best_thresholds, iou_per_class,  # noqa: E402
                    make_volume, sparse_labels, sparse_volume, threshold_classes, volume_cells, write_inputs)

from unet3d_keras.fileio import atomic_path  # noqa: E402

MAPS = HERE / "figure_maps.npz"
RESULTS = FIGURE_RESULTS
PICTURE = FIGURE
#: The densify runs drawn: run.py's row -> the picture's column title.
RUNS = {"old, 12 min": "old densification", "new, 12 min": "today's densification"}
SLICE = SHAPE[2] // 2


def run_volumes(volumes: list[str], seeds: list[int], argv: list[str] | None) -> None:
    """Densify each volume with each of RUNS and ``seeds``; save the maps and their scores after each run.

    A run of DEFAULT_SEED is kept as its row's name, one of another seed as 'NAME [seed N]' (as run.py does);
    the command (``argv``, or the process's arguments) is added to the commands that RESULTS records.
    """
    maps = dict(np.load(MAPS, allow_pickle=False)) if MAPS.exists() else {}
    results, _ = start_results(RESULTS, __file__, argv, {"volumes": {}})
    results["machine"] = machine_name()
    with tempfile.TemporaryDirectory() as tmp:
        folders, truths = {}, {}  # volume -> its densify inputs' folder; its dense labels and never-annotated voxels
        for volume in volumes:
            folders[volume] = Path(tmp) / volume
            folders[volume].mkdir()
            write_inputs(folders[volume], VOLUMES[volume])
            _, dense = make_volume(**VOLUMES[volume])
            truths[volume] = dense, sparse_labels(dense) == IGNORE

        def run(job: tuple[str, str, int]) -> tuple[dict, Path]:
            volume, name, seed = job
            return run_row(name, folders[volume], seed)

        def keep(job: tuple[str, str, int], row_output: tuple[dict, Path]) -> str:
            (volume, name, seed), (row, output) = job, row_output
            key = name if seed == DEFAULT_SEED else f"{name} [seed {seed}]"
            predicted = np.asarray(nib.load(output).dataobj).astype(np.uint8)
            row["iou"] = iou_per_class(predicted, *truths[volume])
            maps[f"{volume}/{key}"] = predicted
            results["volumes"].setdefault(volume, {})[key] = row
            with atomic_path(MAPS, suffix=".npz") as partial:
                np.savez_compressed(partial, **maps)
            return (f"{volume}, {key}: IoU " + ", ".join(f"{c} {v:.3f}" for c, v in zip(CLASSES, row["iou"]))
                    + f" ({row['steps']} steps, {row['stop_reason']})")

        # the long runs first, so that the two workers end together
        run_two_at_a_time([(volume, name, seed) for name in reversed(RUNS) for seed in seeds for volume in volumes],
                          run, keep, results, RESULTS)


def near_background(dense: np.ndarray) -> np.ndarray:
    """The voxels ``(x, y, z)`` with a background voxel among their 6-neighbours or themselves background."""
    return ndimage.binary_dilation(dense == 0, ndimage.generate_binary_structure(3, 1))


def membrane_ious_by_place(predicted: np.ndarray, dense: np.ndarray, never: np.ndarray) -> tuple[float, float]:
    """The membrane's IoU on the never-annotated voxels with no background voxel among their 6-neighbours
    (the membranes between touching cells) and on the others (the outer surface that faces the background)."""
    outside = near_background(dense)
    return (iou_per_class(predicted, dense, never & ~outside)[MEMBRANE],
            iou_per_class(predicted, dense, never & outside)[MEMBRANE])


def membrane_within_one_voxel(predicted: np.ndarray, dense: np.ndarray, never: np.ndarray,
                              regions: np.ndarray) -> dict[str, float]:
    """The membrane found up to one voxel, on the never-annotated voxels ``never``.

    Args:
        predicted, dense: the map's classes and the true ones, ``(x, y, z)``.
        never: the never-annotated voxels (bool, ``(x, y, z)``); matches are looked for among them only, so that
            the annotation that the written maps keep finds nothing.
        regions: the true cell of each voxel, 0 the background (``(x, y, z)``).

    Returns:
        ``precision``: the share of the map's membrane voxels with a true membrane voxel at most one voxel away
        (itself or a 6-neighbour); ``recall``: the share of the true membrane voxels with a voxel of the map's
        membrane that near; ``exact_recall``: the share that the map marks itself. The true membrane voxels that it
        misses but has within a voxel are split by where its membrane lies among their 6-neighbours, in this order:
        ``across``, in another cell or the background (the other side of the face); ``inward``, a voxel of the same
        cell that is not membrane; ``gap``, only true membrane voxels (the face is drawn around a hole). ``recall``
        is ``exact_recall`` plus the three.
    """
    step = ndimage.generate_binary_structure(3, 1)
    found, truth = (predicted == MEMBRANE) & never, (dense == MEMBRANE) & never
    missed = truth & ~found
    beside = {"across": np.zeros_like(missed), "inward": np.zeros_like(missed), "gap": np.zeros_like(missed)}
    for axis in range(3):
        for shift in (1, -1):  # the volumes' borders are background, so np.roll brings no cell round
            marked = np.roll(found, shift, axis=axis) & missed
            same_cell = np.roll(regions, shift, axis=axis) == regions
            true_membrane = np.roll(truth, shift, axis=axis)
            beside["across"] |= marked & ~same_cell & ~true_membrane
            beside["inward"] |= marked & same_cell & ~true_membrane
            beside["gap"] |= marked & true_membrane
    beside["inward"] &= ~beside["across"]
    beside["gap"] &= ~beside["across"] & ~beside["inward"]
    count = max(np.sum(truth), 1)
    return {"precision": float(np.sum(found & ndimage.binary_dilation(truth, step)) / max(np.sum(found), 1)),
            "recall": float(np.sum(truth & ndimage.binary_dilation(found, step)) / count),
            "exact_recall": float(np.sum(truth & found) / count),
            **{name: float(np.sum(voxels) / count) for name, voxels in beside.items()}}


def record_by_place() -> None:
    """Add each saved map's :func:`membrane_ious_by_place` and :func:`membrane_within_one_voxel` to RESULTS, each
    volume's share of its never-annotated membrane voxels that lie between cells, and the latter of the best
    intensity thresholds."""
    maps = dict(np.load(MAPS, allow_pickle=False))
    results = json.loads(RESULTS.read_text())
    results["membrane_between_cells_share"], results["thresholds_within_one_voxel"] = {}, {}
    for volume, runs in results["volumes"].items():
        image, dense, sparse, never = sparse_volume(volume)
        regions = volume_cells(volume, dense)
        membrane = (dense == 2) & never
        results["membrane_between_cells_share"][volume] = float(np.sum(membrane & ~near_background(dense))
                                                                / np.sum(membrane))
        results["thresholds_within_one_voxel"][volume] = membrane_within_one_voxel(
            threshold_classes(image, *best_thresholds(image, sparse)), dense, never, regions)
        for name, row in runs.items():
            between, outer = membrane_ious_by_place(maps[f"{volume}/{name}"], dense, never)
            row.update(membrane_between_cells_iou=between, membrane_outer_iou=outer,
                       membrane_within_one_voxel=membrane_within_one_voxel(maps[f"{volume}/{name}"], dense, never,
                                                                           regions))
    save_json(RESULTS, results)


def draw() -> None:
    """Draw slice SLICE of every volume with saved maps to PICTURE."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    from unet3d_keras.visualize import save_figure

    maps = dict(np.load(MAPS, allow_pickle=False))
    volumes = [volume for volume in VOLUMES if all(f"{volume}/{name}" in maps for name in RUNS)]
    # the annotated voxels (where annotated x and y slices cross this one) in grey: the written maps keep
    # their labels, and no score counts them
    colours = ListedColormap(["black", "tab:blue", "yellow", "dimgray"])
    figure, axes = plt.subplots(len(volumes), 3 + len(RUNS), figsize=(2.6 * (3 + len(RUNS)), 2.7 * len(volumes)),
                                squeeze=False)
    for row, volume in enumerate(volumes):
        image, dense, sparse, never = sparse_volume(volume)
        classes = {"intensity thresholds": threshold_classes(image, *best_thresholds(image, sparse)),
                   **{title: maps[f"{volume}/{name}"] for name, title in RUNS.items()}}
        panels = [(f"--volume {volume}", image, "gray"), ("truth", dense, ""),
                  *((f"{title}\n" * (row == 0) + f"membrane IoU {iou_per_class(values, dense, never)[2]:.3f}",
                     np.where(never, values, 3), "") for title, values in classes.items())]
        for axis, (title, values, cmap) in zip(axes[row], panels):
            axis.imshow(np.rot90(values[:, :, SLICE]), cmap=cmap or colours, interpolation="nearest",
                        **({} if cmap else {"vmin": 0, "vmax": 3}))
            axis.set_title(title, fontsize=9)
            axis.axis("off")
    figure.suptitle(f"axial slice z={SLICE} (between the annotated z slices): blue cell, yellow membrane, grey "
                    "annotated; IoU on the never-annotated voxels of the whole volume", fontsize=10)
    figure.tight_layout()
    save_figure(figure, PICTURE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volume", nargs="+", default=list(VOLUMES), choices=list(VOLUMES))
    parser.add_argument("--seed", type=int, nargs="+", default=[DEFAULT_SEED],
                        help=f"densify's seeds (default {DEFAULT_SEED}, the one drawn)")
    parser.add_argument("--draw-only", action="store_true", help="draw the picture from the saved maps")
    args = parser.parse_args(argv)
    if not args.draw_only:
        run_volumes(args.volume, args.seed, argv)
    record_by_place()
    draw()
    return 0


if __name__ == "__main__":
    sys.exit(main())
