#!/usr/bin/env python
"""Score predicted BraTS label maps: whole-volume and lesion-wise Dice and HD95 of each region, with plots.

    python brats/evaluate.py PREDICTION_DIR [--convention NAME] [--training-log FILE] [--output DIR]

PREDICTION_DIR holds one folder per subject with truth.nii.gz and a
*prediction.nii.gz label map, as written by scripts/predict.py. The regions are
those of the label convention (default brats2017: WT, TC, ET of the labels 1, 2,
4; brats-gli: NETC, SNFH, ET, RC, TC, WT of the 2023+ glioma labels...); label
values outside it are refused. Per region: whole-volume Dice, HD95 (mm) and
sensitivity, and the lesion-wise Dice and HD95 of the BraTS 2023+ challenges
(unet3d_keras.lesion_scores, checked against the official package). Writes
brats_scores.csv (one row per subject and a mean row), brats_scores_boxplot.png
and, given the training log, loss_graph.png.
"""

from __future__ import annotations

import csv
import math
import os
import sys
from pathlib import Path

import numpy as np

from unet3d_keras.cli import base_parser, run
from unet3d_keras.errors import DataError
from unet3d_keras.evaluation import BRATS_REGIONS, dice_score, mean_scores, region_report, write_scores_csv
from unet3d_keras.fileio import check_writable_folder
from unet3d_keras.label_conventions import get_convention
from unet3d_keras.lesion_scores import lesion_report
from unet3d_keras.utils.utils import read_image
from unet3d_keras.visualize import save_figure

REGIONS = ("WT", "TC", "ET")
#: Plot names of the regions.
REGION_NAMES = {"WT": "whole tumour", "TC": "tumour core", "ET": "enhancing tumour"}


# The reference's region masks and Dice (BraTS 2017-2020 labels: 1 core, 2 oedema, 4 enhancing),
# as thin calls of unet3d_keras.evaluation.
def get_whole_tumor_mask(data: np.ndarray) -> np.ndarray:
    """Whole tumour: ``data > 0``, boolean of ``data``'s shape."""
    return BRATS_REGIONS["WT"](np.asarray(data))


def get_tumor_core_mask(data: np.ndarray) -> np.ndarray:
    """Tumour core: labels 1 or 4, boolean of ``data``'s shape."""
    return BRATS_REGIONS["TC"](np.asarray(data))


def get_enhancing_tumor_mask(data: np.ndarray) -> np.ndarray:
    """Enhancing tumour: label 4, boolean of ``data``'s shape."""
    return BRATS_REGIONS["ET"](np.asarray(data))


def dice_coefficient(truth: np.ndarray, prediction: np.ndarray) -> float:
    """Dice of two masks of one shape; 1.0 when both are empty (the reference divided 0 by 0)."""
    return dice_score(truth, prediction)


def find_cases(prediction_dir: str | os.PathLike) -> list[tuple[str, Path, Path]]:
    """``(subject, truth file, prediction file)`` of each subject folder, sorted."""
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


BRATS_LABELS = (0, 1, 2, 4)


def read_label_map(path: Path, allowed: tuple[int, ...] = BRATS_LABELS,
                   convention: str = "brats2017") -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """``(labels, affine, voxel size)`` of a 3D BraTS label map, checked.

    Args:
        allowed: the values allowed, background included (default: the 2017-2021 labels 0, 1, 2, 4).
        convention: named in the message.

    Raises:
        DataError: naming the file: unreadable or truncated, not 3D, non-integer values (NaN
            included), or values outside ``allowed``.
    """
    image = read_image(path, interpolation="nearest")  # DataError for missing, truncated or 4D files
    labels = np.asarray(image.dataobj)
    if labels.ndim != 3:
        raise DataError(f"{path}: expected a 3D label map, found shape {labels.shape}")
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
            raise DataError(f"{path}: the label map holds non-integer values (NaN, infinite or fractional)")
    elif labels.dtype.kind not in "iub":
        raise DataError(f"{path}: the label map has the unsupported type {labels.dtype}")
    values = np.unique(labels)
    unexpected = [int(v) for v in values if int(v) not in allowed]
    if unexpected:
        raise DataError(f"{path}: holds label values {unexpected} (values found: {[int(v) for v in values]}); "
                        f"label maps of the {convention} convention hold {list(allowed)} only (--convention)")
    return labels.astype(np.uint8), image.affine, tuple(float(z) for z in image.header.get_zooms()[:3])


def evaluate_cases(cases, convention: str = "brats2017") -> dict[str, dict[str, float]]:
    """Region scores of each subject (HD95 in mm, from the truth image's voxel size): whole-volume
    Dice, HD95 and sensitivity, and lesion-wise Dice and HD95, of the convention's regions."""
    regions = get_convention(convention).regions
    allowed = (0, *get_convention(convention).labels)

    rows = {}
    for subject, truth_file, prediction_file in cases:
        truth, truth_affine, spacing = read_label_map(truth_file, allowed, convention)
        prediction, prediction_affine, _ = read_label_map(prediction_file, allowed, convention)
        if truth.shape != prediction.shape:
            raise DataError(f"{prediction_file}: shape {prediction.shape} differs from {truth_file} {truth.shape}")
        if not np.allclose(truth_affine, prediction_affine, rtol=1e-3, atol=1e-3):
            raise DataError(f"{prediction_file}: its affine differs from that of {truth_file}: the label maps "
                            "are not on one grid")
        rows[subject] = {**region_report(truth, prediction, regions, spacing),
                         **lesion_report(truth, prediction, regions, spacing)}
    return rows


def save_boxplot(rows: dict[str, dict[str, float]], path: Path) -> None:
    """Box plot of the whole-volume and lesion-wise Dice of each region over subjects (NaNs left out)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    regions = [key[: -len("_lesion_dice")] for key in next(iter(rows.values())) if key.endswith("_lesion_dice")]
    figure, axis = plt.subplots(figsize=(1.6 * len(regions) + 2, 4))
    for offset, (suffix, label, colour) in enumerate(
            (("_dice", "whole volume", "tab:blue"), ("_lesion_dice", "lesion-wise", "tab:orange"))):
        values = [[v for v in (scores[f"{region}{suffix}"] for scores in rows.values()) if not math.isnan(v)]
                  for region in regions]
        parts = axis.boxplot(values, positions=[3 * i + offset + 1 for i in range(len(regions))], widths=0.8,
                             patch_artist=True)
        for box in parts["boxes"]:
            box.set_facecolor(colour)
        axis.plot([], [], color=colour, linewidth=6, label=label)
    axis.set_xticks([3 * i + 1.5 for i in range(len(regions))], [REGION_NAMES.get(r, r) for r in regions])
    axis.legend(loc="lower left")
    axis.set_ylabel("Dice coefficient")
    axis.set_ylim(0, 1)
    axis.set_title(f"Dice over {len(rows)} subjects")
    figure.tight_layout()
    save_figure(figure, path)


def read_training_log(training_log: Path) -> list[dict[str, float]]:
    """Rows of a Keras CSV training log (``epoch``, ``loss``, optional ``val_loss``) as numbers.

    Raises:
        DataError: the file is missing, or not such a log (naming the file and the row).
    """
    try:
        with open(training_log, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except FileNotFoundError:
        raise DataError(f"{training_log}: training log not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"{training_log}: cannot read the training log ({error})") from None
    if not rows or "loss" not in rows[0] or "epoch" not in rows[0]:
        raise DataError(f"{training_log}: expected a CSV training log with an epoch and a loss column")
    numbers = []
    for line, row in enumerate(rows, start=2):
        try:
            numbers.append({key: float(row[key]) for key in ("epoch", "loss", "val_loss") if row.get(key) is not None})
        except (TypeError, ValueError):
            raise DataError(f"{training_log}: line {line} is not a row of numbers: {row}") from None
    return numbers


def save_loss_graph(training_log: Path | list[dict[str, float]], path: Path) -> None:
    """Training and validation loss per epoch from a Keras CSV log (or its rows, read before)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    rows = read_training_log(training_log) if isinstance(training_log, (str, os.PathLike)) else training_log
    epochs = [int(r["epoch"]) + 1 for r in rows]
    figure, axis = plt.subplots(figsize=(5, 4))
    axis.plot(epochs, [r["loss"] for r in rows], label="training loss")
    if "val_loss" in rows[0]:
        axis.plot(epochs, [r["val_loss"] for r in rows], label="validation loss")
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
    parser.add_argument("--convention", default="brats2017",
                        help="label convention of the label maps: brats2017 (labels 1, 2, 4) | brats-gli | brats-ssa | "
                             "brats-met | brats-men | brats-ped | brats-goat | brats-men-rt (default: brats2017)")
    return parser.parse_args(argv)


def work(args) -> int:
    # Every input is read and checked before anything is written, and before Keras loads.

    regions = list(get_convention(args.convention).regions)  # an unknown convention fails here, naming them all
    cases = find_cases(args.prediction_dir)
    log_rows = read_training_log(Path(args.training_log)) if args.training_log else None
    rows = evaluate_cases(cases, args.convention)


    output = Path(args.output or args.prediction_dir)
    output.mkdir(parents=True, exist_ok=True)
    check_writable_folder(output)
    write_scores_csv(rows, output / "brats_scores.csv")
    save_boxplot(rows, output / "brats_scores_boxplot.png")
    if log_rows is not None:
        save_loss_graph(log_rows, output / "loss_graph.png")
    means = mean_scores(rows)
    print(f"{len(rows)} subjects: " + ", ".join(
        f"{region} Dice {means[f'{region}_dice']:.3f} HD95 {means[f'{region}_hd95']:.2f} mm "
        f"(lesion-wise {means[f'{region}_lesion_dice']:.3f}, {means[f'{region}_lesion_hd95']:.2f} mm)"
        for region in regions))
    empty = [s for s, r in rows.items() if any(math.isnan(r[f"{g}_hd95"]) for g in regions)]
    if empty:
        print(f"HD95 undefined (empty truth or prediction) for some regions of: {', '.join(empty)}")
    return 0


def main(argv=None) -> int:
    return run(work, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
