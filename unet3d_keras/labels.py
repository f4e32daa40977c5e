"""Training targets from label maps, and the checks of the label arguments against the truth.

A label map is ``(N, 1, x, y, z)`` of integer values. With one output label the target is
``truth > 0``; with more, one binary channel per label value; with a background channel
(softmax), a one-hot target in which unlabeled voxels (``ignore_label``) are all zero.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from .regions import region_targets
from .samples import file_name, truth_reader

logger = logging.getLogger(__name__)

__all__ = [
    "label_values",
    "check_labels_argument",
    "require_background_for_ignore",
    "check_label_values",
    "get_multi_class_labels",
    "one_hot_with_ignore",
    "label_targets",
]


def label_values(n_labels: int, labels: Sequence[int] | None) -> list[int]:
    """The label value of each output channel: ``labels[:n_labels]``, ``1..n_labels`` when None."""
    return list(range(1, n_labels + 1)) if labels is None else [int(v) for v in list(labels)[:n_labels]]


def require_background_for_ignore(background: bool, ignore_label: int | None) -> None:
    """Refuses ``ignore_label`` without a background channel.

    Raises:
        ValueError: ``ignore_label`` is set and ``background`` is not.
    """
    if ignore_label is not None and not background:
        raise ValueError("ignore_label needs background=True: without a background channel an unlabeled "
                         "voxel cannot be told from annotated background")


def check_labels_argument(
    n_labels: int, labels: Sequence[int] | None, background: bool = False, ignore_label: int | None = None
) -> None:
    """Checks ``n_labels`` and ``labels`` against each other (and ``ignore_label`` against ``background``).

    Raises:
        ValueError: ``n_labels < 1``, ``len(labels) != n_labels`` for ``n_labels > 1``, or
            ``ignore_label`` without ``background``.
    """
    if int(n_labels) < 1:
        raise ValueError(f"n_labels must be at least 1; received {n_labels}")
    if labels is not None and n_labels > 1 and len(labels) != n_labels:
        raise ValueError(f"labels {tuple(labels)} has {len(labels)} values but n_labels is {n_labels}")
    require_background_for_ignore(background, ignore_label)


def check_label_values(
    data_file,
    index_list: Sequence[int],
    n_labels: int,
    labels: Sequence[int] | None = None,
    counts: dict[int, np.ndarray] | None = None,
    ignore_label: int | None = None,
) -> list[int]:
    """Checks ``labels`` against the truth of the listed subjects; logs warnings.

    Warns about labels that occur in none of the subjects and about label values present in the
    truth that are not among ``labels`` (their voxels become background). Does nothing for
    ``n_labels == 1`` (the target is then ``truth > 0``).

    Args:
        data_file: open PyTables data file.
        index_list: subjects to scan.
        n_labels: number of output labels.
        labels: label values, ``1..n_labels`` when None.
        counts: per-subject value histograms already computed (reused, extended).
        ignore_label: the value of unlabeled voxels, not reported as an unknown label.

    Returns:
        The labels that never occur.
    """
    if n_labels <= 1:
        return []
    values = label_values(n_labels, labels)
    counts = {} if counts is None else counts
    read = truth_reader(data_file, counts)
    total = np.zeros(256, dtype=np.int64)
    for subject in index_list:
        if int(subject) not in counts:
            read(int(subject))
        histogram = counts[int(subject)]
        total[: len(histogram)] += histogram[:256]
    present = set(np.flatnonzero(total).tolist())
    missing = [v for v in values if v not in present]
    if missing:
        logger.warning(
            "labels %s never occur in the truth of the %d subjects scanned in %s (values present: %s)",
            missing, len(index_list), file_name(data_file), sorted(present),
        )
    unknown = sorted(present - set(values) - {0, ignore_label})
    if unknown:
        logger.warning(
            "truth values %s in %s are not among labels %s; those voxels are treated as background",
            unknown, file_name(data_file), values,
        )
    return missing


def get_multi_class_labels(data: np.ndarray, n_labels: int, labels: Sequence[int] | None = None) -> np.ndarray:
    """Turns a label map into one binary channel per label.

    Args:
        data: ``(N, 1, ...)`` label map.
        n_labels: number of output channels.
        labels: the label value of each channel, ``1..n_labels`` when None (e.g. ``(1, 2, 4)``).

    Returns:
        int8 ``(N, n_labels, ...)``.

    Raises:
        ValueError: fewer than ``n_labels`` label values.
    """
    data = np.asarray(data)
    values = np.arange(1, n_labels + 1) if labels is None else np.asarray(labels)[:n_labels]
    if len(values) < n_labels:
        raise ValueError(f"labels {tuple(np.asarray(labels).tolist())} has fewer than n_labels={n_labels} values")
    values = values.reshape((1, n_labels) + (1,) * (data.ndim - 2))
    return (data[:, :1] == values).astype(np.int8)


def one_hot_with_ignore(
    data: np.ndarray, labels: Sequence[int], ignore_label: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One-hot targets with a background channel; unlabeled voxels stay all zero.

    Args:
        data: ``(N, 1, ...)`` label map; 0 is background, ``ignore_label`` unlabeled.
        labels: label value of each channel after the background, e.g. ``(1, 2)``.
        ignore_label: value of the voxels nobody annotated (None: every voxel is annotated).

    Returns:
        int8 ``(N, 1 + len(labels), ...)`` one-hot (background first) and the int8
        ``(N, 1, ...)`` mask of the annotated voxels (the one-hot's sum over channels).
        Values other than 0, the labels and ``ignore_label`` count as background.
    """
    data = np.asarray(data)[:, :1]
    values = np.asarray([int(v) for v in labels]).reshape((1, len(labels)) + (1,) * (data.ndim - 2))
    label_channels = data == values
    annotated = np.ones_like(data, dtype=bool) if ignore_label is None else data != ignore_label
    background = annotated & ~np.any(label_channels, axis=1, keepdims=True)
    one_hot = np.concatenate([background, label_channels], axis=1).astype(np.int8)
    return one_hot, annotated.astype(np.int8)


def label_targets(
    truth: np.ndarray,
    n_labels: int = 1,
    labels: Sequence[int] | None = None,
    background: bool = False,
    ignore_label: int | None = None,
    regions: Sequence[Sequence[int]] | None = None,
) -> np.ndarray:
    """The float32 training target of a channels-first label map.

    Args:
        truth: ``(N, 1, x, y, z)`` label map.
        n_labels: 1 gives a binary target (any label > 0); more gives one channel per label.
        labels: label values for ``n_labels > 1``.
        background: a background channel first, then one per label; voxels equal to
            ``ignore_label`` all zero (see :func:`one_hot_with_ignore`).
        ignore_label: value of unlabeled voxels, with ``background``.
        regions: the label values of each output instead (region-based training): one
            overlapping mask per region, see :func:`~unet3d_keras.regions.region_targets`.

    Returns:
        float32 ``(N, n_labels, x, y, z)``, or ``(N, n_labels + 1, x, y, z)`` with ``background``,
        or ``(N, len(regions), x, y, z)``.

    Raises:
        ValueError: ``ignore_label`` without ``background``.
    """
    y = np.asarray(truth)
    if regions is not None:
        if background or ignore_label is not None:
            raise ValueError("region targets are sigmoid targets: no background channel, no ignore_label")
        return region_targets(y, regions).astype(np.float32)
    if background:
        y = one_hot_with_ignore(y, label_values(n_labels, labels), ignore_label)[0]
    else:
        require_background_for_ignore(background, ignore_label)
        if n_labels == 1:
            y = y > 0
        elif n_labels > 1:
            y = get_multi_class_labels(y, n_labels=n_labels, labels=labels)
    return y.astype(np.float32)
