"""Segmentation scores: Dice per label and per region, HD95 and sensitivity of regions.

Scores are computed on integer label maps ``(x, y, z)`` with NumPy. Dice of
two empty masks is 1 (nothing to find, nothing found), of one empty mask 0.
A region is a set of label values (``{"WT": (1, 2, 4), ...}``, see
:mod:`unet3d_keras.label_conventions`); a function of the label map is accepted too.
"""

from __future__ import annotations

import csv
import io
import math
import os
from typing import Callable, Mapping, Sequence, Union

import numpy as np
from scipy import ndimage

from .fileio import write_text_atomically
from .label_conventions import CONVENTIONS

#: A region: its label values, or a function of the label map giving its mask.
Region = Union[Sequence[int], Callable[[np.ndarray], np.ndarray]]


def _label_set_mask(values: Sequence[int]) -> Callable[[np.ndarray], np.ndarray]:
    return lambda labels: np.isin(labels, np.asarray(values))


#: The 2017-2021 BraTS regions as functions of the label map: whole tumour, tumour core, enhancing tumour.
BRATS_REGIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    name: _label_set_mask(values) for name, values in CONVENTIONS["brats2017"].regions.items()}


def region_mask(labels: np.ndarray, region: Region) -> np.ndarray:
    """The boolean mask of ``region`` (label values or a function) in a label map."""
    if callable(region):
        return np.asarray(region(labels), dtype=bool)
    return np.isin(labels, np.asarray(list(region)))


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


def regions_for_labels(labels: Sequence[int]) -> dict[str, tuple[int, ...]]:
    """The 2017-2021 BraTS regions when the labels are theirs (1, 2, 4), else none."""
    return dict(CONVENTIONS["brats2017"].regions) if sorted(labels) == [1, 2, 4] else {}


def segmentation_scores(
    truth: np.ndarray,
    prediction: np.ndarray,
    labels: Sequence[int],
    regions: Mapping[str, Region] | None = None,
    ignore_label: int | None = None,
) -> dict[str, float]:
    """Dice per label value and per region for one subject.

    Args:
        truth: Integer label map ``(x, y, z)``.
        prediction: Integer label map of the same shape.
        labels: Label values to score, e.g. ``(1, 2, 4)``.
        regions: ``{name: label values}`` (or functions of the label map); BraTS's
            WT/TC/ET when None and the labels are (1, 2, 4).
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
        scores[name] = dice_score(region_mask(truth, region), region_mask(prediction, region))
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


def surface_distances(truth: np.ndarray, prediction: np.ndarray,
                      spacing: Sequence[float] = (1.0, 1.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    """Distances from each surface voxel of one non-empty mask to the surface of the other.

    A surface voxel is a voxel of the mask with a face neighbour outside it (or on the volume's
    edge).

    Returns:
        ``(truth to prediction, prediction to truth)``: 1D arrays, in the units of ``spacing``.
    """
    truth_surface, prediction_surface = _surface(truth), _surface(prediction)
    to_truth = ndimage.distance_transform_edt(~truth_surface, sampling=spacing)
    to_prediction = ndimage.distance_transform_edt(~prediction_surface, sampling=spacing)
    return to_prediction[truth_surface], to_truth[prediction_surface]


def hausdorff_95(truth: np.ndarray, prediction: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0)) -> float:
    """95th-percentile Hausdorff distance between two masks, in the units of ``spacing``.

    The 95th percentile of the surface distances of both directions pooled, as the official
    BraTS evaluation package (Panoptica) computes it. NaN when either mask is empty.
    """
    truth = np.asarray(truth, dtype=bool)
    prediction = np.asarray(prediction, dtype=bool)
    if not truth.any() or not prediction.any():
        return math.nan
    return float(np.percentile(np.concatenate(surface_distances(truth, prediction, spacing)), 95))


def region_report(
    truth: np.ndarray,
    prediction: np.ndarray,
    regions: Mapping[str, Region],
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
) -> dict[str, float]:
    """Dice, HD95 (in mm for a spacing in mm) and sensitivity of each region.

    Returns:
        ``{"WT_dice": ..., "WT_hd95": ..., "WT_sensitivity": ..., ...}``.
    """
    scores = {}
    for name, region in regions.items():
        t, p = region_mask(truth, region), region_mask(prediction, region)
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
