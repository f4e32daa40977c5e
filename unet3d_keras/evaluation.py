"""Segmentation scores: Dice per label and per BraTS region.

Scores are computed on integer label maps ``(x, y, z)`` with NumPy. Dice of
two empty masks is 1 (nothing to find, nothing found), of one empty mask 0.
"""

from __future__ import annotations

import csv
import io
import math
import os
from typing import Callable, Mapping, Sequence

import numpy as np
from scipy import ndimage

from .fileio import write_text_atomically

# BraTS regions as functions of the label map: whole tumour, tumour core, enhancing tumour.
BRATS_REGIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "WT": lambda labels: labels > 0,
    "TC": lambda labels: np.isin(labels, (1, 4)),
    "ET": lambda labels: labels == 4,
}


def dice_score(truth: np.ndarray, prediction: np.ndarray) -> float:
    """Dice of two boolean masks of the same shape (1.0 when both are empty)."""
    truth = np.asarray(truth, dtype=bool)
    prediction = np.asarray(prediction, dtype=bool)
    if truth.shape != prediction.shape:
        raise ValueError(f"truth shape {truth.shape} and prediction shape {prediction.shape} differ")
    total = int(truth.sum()) + int(prediction.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(truth, prediction).sum()) / total


def regions_for_labels(labels: Sequence[int]) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """The BraTS regions when the labels are BraTS's (1, 2, 4), else none."""
    return dict(BRATS_REGIONS) if sorted(labels) == [1, 2, 4] else {}


def segmentation_scores(
    truth: np.ndarray,
    prediction: np.ndarray,
    labels: Sequence[int],
    regions: Mapping[str, Callable[[np.ndarray], np.ndarray]] | None = None,
    ignore_label: int | None = None,
) -> dict[str, float]:
    """Dice per label value and per region for one subject.

    Args:
        truth: Integer label map ``(x, y, z)``.
        prediction: Integer label map of the same shape.
        labels: Label values to score, e.g. ``(1, 2, 4)``.
        regions: Named masks computed from a label map; BraTS's WT/TC/ET
            when None and the labels are (1, 2, 4).
        ignore_label: Truth value of unannotated voxels; those voxels are left out
            (sparse truth is scored on its annotated voxels only).

    Returns:
        ``{"label_1": ..., "label_2": ..., "WT": ...}``.
    """
    regions = regions_for_labels(labels) if regions is None else regions
    if ignore_label is not None:
        annotated = np.asarray(truth) != ignore_label
        if not annotated.all():
            truth, prediction = np.asarray(truth)[annotated], np.asarray(prediction)[annotated]
    scores = {f"label_{label}": dice_score(truth == label, prediction == label) for label in labels}
    for name, region in regions.items():
        scores[name] = dice_score(region(truth), region(prediction))
    return scores


def format_score_table(rows: Mapping[str, Mapping[str, float]]) -> str:
    """A plain-text table of scores with a mean row.

    Args:
        rows: ``{subject: {score name: value}}`` with the same names per row.

    Returns:
        The table as a string, one subject per line, then ``mean``.
    """
    if not rows:
        return "(no subjects)"
    names = list(next(iter(rows.values())))
    width = max(len("subject"), *(len(s) for s in rows))
    lines = ["subject".ljust(width) + "".join(f"{n:>10}" for n in names)]
    for subject, scores in rows.items():
        lines.append(subject.ljust(width) + "".join(f"{scores[n]:>10.3f}" for n in names))
    means = mean_scores(rows)
    lines.append("mean".ljust(width) + "".join(f"{means[n]:>10.3f}" for n in names))
    return "\n".join(lines)


def score_report(rows: Mapping[str, Mapping[str, float]]) -> str:
    """The table printed after training and prediction: per-subject and mean Dice."""
    return "Validation Dice\n" + format_score_table(rows)


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def mean_scores(rows: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Mean of each score over subjects (NaNs ignored)."""
    if not rows:
        return {}
    names = list(next(iter(rows.values())))
    return {n: _nanmean([scores[n] for scores in rows.values()]) for n in names}


def sensitivity(truth: np.ndarray, prediction: np.ndarray) -> float:
    """Fraction of truth voxels that are predicted (NaN when the truth is empty)."""
    truth = np.asarray(truth, dtype=bool)
    total = int(truth.sum())
    if total == 0:
        return math.nan
    return int(np.logical_and(truth, np.asarray(prediction, dtype=bool)).sum()) / total


def _surface(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def hausdorff_95(truth: np.ndarray, prediction: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0)) -> float:
    """95th-percentile symmetric Hausdorff distance between two masks, in the units of ``spacing``.

    The larger of the two directed 95th percentiles of surface-to-surface
    distances (as in the BraTS evaluation). NaN when either mask is empty.
    """
    truth = np.asarray(truth, dtype=bool)
    prediction = np.asarray(prediction, dtype=bool)
    if not truth.any() or not prediction.any():
        return math.nan
    truth_surface, prediction_surface = _surface(truth), _surface(prediction)
    to_truth = ndimage.distance_transform_edt(~truth_surface, sampling=spacing)
    to_prediction = ndimage.distance_transform_edt(~prediction_surface, sampling=spacing)
    return float(max(np.percentile(to_truth[prediction_surface], 95),
                     np.percentile(to_prediction[truth_surface], 95)))


def region_report(
    truth: np.ndarray,
    prediction: np.ndarray,
    regions: Mapping[str, Callable[[np.ndarray], np.ndarray]],
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
) -> dict[str, float]:
    """Dice, HD95 (in mm for a spacing in mm) and sensitivity of each region.

    Returns:
        ``{"WT_dice": ..., "WT_hd95": ..., "WT_sensitivity": ..., ...}``.
    """
    scores = {}
    for name, region in regions.items():
        t, p = region(truth), region(prediction)
        scores[f"{name}_dice"] = dice_score(t, p)
        scores[f"{name}_hd95"] = hausdorff_95(t, p, spacing)
        scores[f"{name}_sensitivity"] = sensitivity(t, p)
    return scores


def write_scores_csv(rows: dict[str, dict[str, float]], path: str | os.PathLike) -> None:
    """CSV of scores per subject with a final ``mean`` row, written atomically.

    Here rather than in :mod:`unet3d_keras.pipeline` so that scoring scripts need not load Keras.
    """
    names = list(next(iter(rows.values()))) if rows else []
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["subject", *names])
    for subject, scores in rows.items():
        writer.writerow([subject, *(f"{scores[n]:.6f}" for n in names)])
    means = mean_scores(rows)
    writer.writerow(["mean", *(f"{means[n]:.6f}" for n in names)])
    write_text_atomically(path, buffer.getvalue())
