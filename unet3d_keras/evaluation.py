"""Segmentation scores: Dice per label and per BraTS region.

Scores are computed on integer label maps ``(x, y, z)`` with NumPy. Dice of
two empty masks is 1 (nothing to find, nothing found), of one empty mask 0.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import numpy as np

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
) -> dict[str, float]:
    """Dice per label value and per region for one subject.

    Args:
        truth: Integer label map ``(x, y, z)``.
        prediction: Integer label map of the same shape.
        labels: Label values to score, e.g. ``(1, 2, 4)``.
        regions: Named masks computed from a label map; BraTS's WT/TC/ET
            when None and the labels are (1, 2, 4).

    Returns:
        ``{"label_1": ..., "label_2": ..., "WT": ...}``.
    """
    regions = regions_for_labels(labels) if regions is None else regions
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


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def mean_scores(rows: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Mean of each score over subjects (NaNs ignored)."""
    if not rows:
        return {}
    names = list(next(iter(rows.values())))
    return {n: _nanmean([scores[n] for scores in rows.values()]) for n in names}
