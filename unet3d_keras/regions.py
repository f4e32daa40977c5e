"""Region-based targets and label maps: overlapping region masks in, one label map out.

A region is a set of label values (e.g. the whole tumour WT = {1, 2, 3}). A region-based model
has one sigmoid output per region and learns the overlapping masks ``isin(truth, region)``
(Isensee et al. 2018). Its outputs go back to a label map by painting the regions in order,
outer first, each with the one label value that it holds and no later region holds: for glioma
WT {1, 2, 3}, TC {1, 3}, ET {3}, a voxel in ET gets 3, in TC but not ET 1, in WT but not TC 2.
Regions that cannot be painted so (a region left with no or several own labels, a label in no
region) are refused by :func:`paint_labels`.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

__all__ = ["region_masks", "paint_labels", "regions_to_label_map", "region_targets"]


def region_masks(label_map: np.ndarray, regions: Sequence[Sequence[int]]) -> np.ndarray:
    """One boolean mask per region of an integer label map.

    Args:
        label_map: ``(...)`` integer array.
        regions: the label values of each region.

    Returns:
        bool ``(len(regions), ...)``.
    """
    label_map = np.asarray(label_map)
    return np.stack([np.isin(label_map, np.asarray(list(values))) for values in regions])


def region_targets(truth: np.ndarray, regions: Sequence[Sequence[int]]) -> np.ndarray:
    """Training targets of channels-first label maps: one channel per region.

    Args:
        truth: ``(N, 1, x, y, z)`` label maps.
        regions: the label values of each region.

    Returns:
        int8 ``(N, len(regions), x, y, z)``.
    """
    truth = np.asarray(truth)[:, 0]
    return np.moveaxis(region_masks(truth, regions), 0, 1).astype(np.int8)


def paint_labels(regions: Mapping[str, Sequence[int]] | Sequence[Sequence[int]],
                 labels: Sequence[int] | None = None) -> list[int]:
    """The label value each region paints, regions in order (outer first).

    Args:
        regions: ``{name: label values}`` in painting order, or the label value lists alone.
        labels: every label value the painted map must be able to hold (default: those of the regions).

    Returns:
        One label value per region.

    Raises:
        ValueError: a region keeps no or several label values of its own, or a label is in no region.
    """
    named = dict(regions) if isinstance(regions, Mapping) else {f"region {i}": v for i, v in enumerate(regions)}
    sets = [(name, {int(v) for v in values}) for name, values in named.items()]
    painted = []
    for index, (name, values) in enumerate(sets):
        later = set().union(*(s for _, s in sets[index + 1:]))
        own = sorted(values - later)
        if len(own) != 1:
            raise ValueError(
                f"region {name} {sorted(values)} keeps the label values {own} once the later regions "
                f"{[n for n, _ in sets[index + 1:]]} are painted over it; each region must keep exactly one "
                "(list the regions outer first, e.g. WT, TC, ET)")
        painted.append(own[0])
    covered = set().union(*(s for _, s in sets)) if sets else set()
    missing = sorted(set(int(v) for v in labels or ()) - covered)
    if missing:
        raise ValueError(f"the label values {missing} are in no region, so a region-based model cannot predict them")
    return painted


def regions_to_label_map(probabilities: np.ndarray, regions: Sequence[Sequence[int]],
                         threshold: float = 0.5) -> np.ndarray:
    """A label map from region probabilities: regions painted outer first (see the module docstring).

    Args:
        probabilities: ``(n_regions, x, y, z)`` sigmoid outputs.
        regions: the label values of each region, outer first.
        threshold: a voxel is in a region where its output reaches this (as for label outputs).

    Returns:
        uint8 ``(x, y, z)``.
    """
    probabilities = np.asarray(probabilities)
    if probabilities.shape[0] != len(regions):
        raise ValueError(f"{probabilities.shape[0]} prediction channels for {len(regions)} regions")
    label_map = np.zeros(probabilities.shape[1:], dtype=np.uint8)
    for value, channel in zip(paint_labels(regions), probabilities):
        label_map[channel >= threshold] = value
    return label_map
