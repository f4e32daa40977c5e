#!/usr/bin/env python
"""Score predicted BraTS label maps: Dice, HD95 and sensitivity of WT, TC and ET, with plots.

    python brats/evaluate.py PREDICTION_DIR [--training-log FILE] [--output DIR]

PREDICTION_DIR holds one folder per subject with truth.nii.gz and a
*prediction.nii.gz label map, as written by scripts/predict.py. Writes
brats_scores.csv (one row per subject and a mean row), brats_scores_boxplot.png
and, given the training log, loss_graph.png.
"""

from __future__ import annotations

import csv
import math
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from unet3d_keras.cli import base_parser, run  # noqa: E402

REGIONS = ("WT", "TC", "ET")


def find_cases(prediction_dir: str | os.PathLike) -> list[tuple[str, Path, Path]]:
    """``(subject, truth file, prediction file)`` of each subject folder, sorted."""
    from unet3d_keras.errors import DataError

    folder = Path(prediction_dir)
    if not folder.is_dir():
        raise DataError(f"{folder}: prediction folder not found")
    cases = []
    for case in sorted(p for p in folder.iterdir() if p.is_dir()):
        truth = case / "truth.nii.gz"
        predictions = sorted(case.glob("*prediction.nii.gz"))
        if truth.is_file() and len(predictions) == 1:
            cases.append((case.name, truth, predictions[0]))
    if not cases:
        raise DataError(f"{folder}: no subject folder holds truth.nii.gz and one *prediction.nii.gz label map")
    return cases


def evaluate_cases(cases) -> dict[str, dict[str, float]]:
    """Region scores of each subject (HD95 in mm, from the truth image's voxel size)."""
    import nibabel as nib
    import numpy as np

    from unet3d_keras.errors import DataError
    from unet3d_keras.evaluation import BRATS_REGIONS, region_report

    rows = {}
    for subject, truth_file, prediction_file in cases:
        truth_image = nib.load(truth_file)
        prediction_image = nib.load(prediction_file)
        truth = np.asarray(truth_image.dataobj)
        prediction = np.asarray(prediction_image.dataobj)
        if truth.shape != prediction.shape:
            raise DataError(f"{prediction_file}: shape {prediction.shape} differs from {truth_file} {truth.shape}")
        spacing = truth_image.header.get_zooms()[:3]
        rows[subject] = region_report(truth, prediction, BRATS_REGIONS, spacing)
    return rows


def save_boxplot(rows: dict[str, dict[str, float]], path: Path) -> None:
    """Box plot of the Dice of each region over subjects."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from unet3d_keras.visualize import save_figure

    values = [[scores[f"{region}_dice"] for scores in rows.values()] for region in REGIONS]
    figure, axis = plt.subplots(figsize=(5, 4))
    axis.boxplot(values)
    axis.set_xticks(range(1, len(REGIONS) + 1), ["whole tumour", "tumour core", "enhancing tumour"])
    axis.set_ylabel("Dice coefficient")
    axis.set_ylim(0, 1)
    axis.set_title(f"Dice over {len(rows)} subjects")
    figure.tight_layout()
    save_figure(figure, path)


def save_loss_graph(training_log: Path, path: Path) -> None:
    """Training and validation loss per epoch from a Keras CSV log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from unet3d_keras.errors import DataError
    from unet3d_keras.visualize import save_figure

    with open(training_log, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or "loss" not in rows[0]:
        raise DataError(f"{training_log}: expected a CSV training log with an epoch and a loss column")
    epochs = [int(r["epoch"]) + 1 for r in rows]
    figure, axis = plt.subplots(figsize=(5, 4))
    axis.plot(epochs, [float(r["loss"]) for r in rows], label="training loss")
    if "val_loss" in rows[0]:
        axis.plot(epochs, [float(r["val_loss"]) for r in rows], label="validation loss")
    axis.set_xlabel("epoch")
    axis.set_ylabel("loss")
    axis.legend()
    figure.tight_layout()
    save_figure(figure, path)


def parse_args(argv=None):
    parser = base_parser(__doc__.splitlines()[0], with_config=False)
    parser.add_argument("prediction_dir", help="folder of subject folders written by scripts/predict.py")
    parser.add_argument("--training-log", default=None, help="CSV training log for the loss graph")
    parser.add_argument("--output", default=None, help="output folder (default: PREDICTION_DIR)")
    return parser.parse_args(argv)


def work(args) -> int:
    from unet3d_keras.evaluation import mean_scores
    from unet3d_keras.pipeline import write_scores_csv

    cases = find_cases(args.prediction_dir)
    output = Path(args.output or args.prediction_dir)
    output.mkdir(parents=True, exist_ok=True)
    rows = evaluate_cases(cases)
    write_scores_csv(rows, output / "brats_scores.csv")
    save_boxplot(rows, output / "brats_scores_boxplot.png")
    if args.training_log:
        save_loss_graph(Path(args.training_log), output / "loss_graph.png")
    means = mean_scores(rows)
    print(f"{len(rows)} subjects: " + ", ".join(
        f"{region} Dice {means[f'{region}_dice']:.3f} HD95 {means[f'{region}_hd95']:.2f} mm" for region in REGIONS))
    empty = [s for s, r in rows.items() if any(math.isnan(r[f"{g}_hd95"]) for g in REGIONS)]
    if empty:
        print(f"HD95 undefined (empty truth or prediction) for some regions of: {', '.join(empty)}")
    return 0


def main(argv=None) -> int:
    return run(work, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
