"""Lesion-wise Dice and HD95, as the BraTS 2023+ challenges compute them.

The official evaluation package (``BraTS_evaluation``, built on Panoptica) scores each region
lesion by lesion: the truth and the prediction of the region are split into connected
components (26-connectivity), truth and predicted lesions are matched one to one by maximum
bipartite matching on their Dice (pairs with a Dice of at least 1e-6; the matching that
maximises the summed Dice), and the lesion-wise Dice and HD95 are the means over the matched
pairs (Panoptica's "segmentation quality" ``sq_dsc`` and ``sq_hd95``). Without a matched pair
the package's edge-case rules apply: both empty gives NaN; otherwise (empty truth, empty
prediction, or no overlap) Dice 0 and HD95 infinite. HD95 follows the voxel spacing, so
anisotropic voxels give distances in mm. ``tests/fixtures/make_lesion_scores.py`` checks these
functions against the official package.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from .evaluation import hausdorff_95

__all__ = ["MATCHING_THRESHOLD", "lesion_components", "match_lesions", "lesion_scores", "lesion_report"]

#: The smallest Dice of a matchable pair of lesions (the official configurations' threshold).
MATCHING_THRESHOLD = 1e-6
# The official package's cost of an unmatchable pair: above any 1 - Dice.
_NO_MATCH_COST = 1.0 + 1e-6


def lesion_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Connected components of a boolean mask ``(x, y, z)`` with 26-connectivity.

    Returns:
        ``(components, n)``: int32 labels 1..n (0 outside the mask) and their number.
    """
    mask = np.asarray(mask, dtype=bool)
    components, n = ndimage.label(mask, structure=np.ones((3,) * mask.ndim, dtype=bool))
    return components.astype(np.int32, copy=False), int(n)


def match_lesions(truth_components: np.ndarray, n_truth: int, prediction_components: np.ndarray,
                  n_prediction: int) -> list[tuple[int, int, float]]:
    """Truth and predicted lesions matched one to one, maximising the summed Dice.

    Returns:
        ``[(truth lesion, predicted lesion, Dice), ...]`` of the matched pairs.
    """
    if n_truth == 0 or n_prediction == 0:
        return []
    truth_sizes = np.bincount(truth_components.ravel(), minlength=n_truth + 1)
    prediction_sizes = np.bincount(prediction_components.ravel(), minlength=n_prediction + 1)
    both = (truth_components > 0) & (prediction_components > 0)
    pairs = truth_components[both].astype(np.int64) * (n_prediction + 1) + prediction_components[both]
    overlap = np.bincount(pairs, minlength=(n_truth + 1) * (n_prediction + 1)).reshape(n_truth + 1, -1)
    dice = 2.0 * overlap / (truth_sizes[:, None] + prediction_sizes[None, :]).clip(min=1)
    cost = np.full((n_truth, n_prediction), _NO_MATCH_COST)
    matchable = dice[1:, 1:] >= MATCHING_THRESHOLD
    cost[matchable] = 1.0 - dice[1:, 1:][matchable]
    rows, columns = linear_sum_assignment(cost)
    return [(int(r) + 1, int(c) + 1, float(dice[r + 1, c + 1])) for r, c in zip(rows, columns) if cost[r, c] < 1.0]


def _bounding_box(mask: np.ndarray, pad: int = 1) -> tuple[slice, ...]:
    # HD95 of one pair on its bounding box (plus a margin, so that the surface of a lesion that does
    # not touch the volume's edge stays inside): the distances are the same, the transform far smaller.
    where = np.argwhere(mask)
    low, high = where.min(axis=0), where.max(axis=0) + 1
    return tuple(slice(max(0, int(a) - pad), min(size, int(b) + pad)) for a, b, size in zip(low, high, mask.shape))


def lesion_scores(truth: np.ndarray, prediction: np.ndarray,
                  spacing: Sequence[float] = (1.0, 1.0, 1.0)) -> dict[str, float]:
    """Lesion-wise Dice and HD95 of one region.

    Args:
        truth, prediction: boolean masks ``(x, y, z)`` of the region.
        spacing: voxel size per axis (HD95 in its unit, mm for NIfTI files).

    Returns:
        ``{"lesion_dice", "lesion_hd95", "tp", "fp", "fn"}``: means over the matched lesions, or the
        edge-case values (see the module docstring), and the lesion counts.
    """
    truth = np.asarray(truth, dtype=bool)
    prediction = np.asarray(prediction, dtype=bool)
    if truth.shape != prediction.shape:
        raise ValueError(f"truth shape {truth.shape} and prediction shape {prediction.shape} differ")
    truth_components, n_truth = lesion_components(truth)
    prediction_components, n_prediction = lesion_components(prediction)
    matches = match_lesions(truth_components, n_truth, prediction_components, n_prediction)
    counts = {"tp": float(len(matches)), "fp": float(n_prediction - len(matches)),
              "fn": float(n_truth - len(matches))}
    if not matches:
        if n_truth == 0 and n_prediction == 0:
            return {"lesion_dice": math.nan, "lesion_hd95": math.nan, **counts}
        return {"lesion_dice": 0.0, "lesion_hd95": math.inf, **counts}
    distances = []
    for truth_label, prediction_label, _ in matches:
        a, b = truth_components == truth_label, prediction_components == prediction_label
        box = _bounding_box(a | b)
        distances.append(hausdorff_95(a[box], b[box], spacing))
    return {"lesion_dice": float(np.mean([d for _, _, d in matches])), "lesion_hd95": float(np.mean(distances)),
            **counts}


def lesion_report(truth: np.ndarray, prediction: np.ndarray, regions: Mapping[str, Sequence[int]],
                  spacing: Sequence[float] = (1.0, 1.0, 1.0)) -> dict[str, float]:
    """Lesion-wise Dice and HD95 of each region of two integer label maps ``(x, y, z)``.

    Returns:
        ``{"WT_lesion_dice": ..., "WT_lesion_hd95": ..., ...}``.
    """
    scores = {}
    for name, values in regions.items():
        values = np.asarray(list(values))
        result = lesion_scores(np.isin(truth, values), np.isin(prediction, values), spacing)
        scores[f"{name}_lesion_dice"] = result["lesion_dice"]
        scores[f"{name}_lesion_hd95"] = result["lesion_hd95"]
    return scores
