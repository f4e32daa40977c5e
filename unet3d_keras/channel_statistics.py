"""Per-channel intensity statistics of stored subjects, streamed one subject at a time."""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
from tqdm.auto import tqdm

from .errors import DataError

logger = logging.getLogger(__name__)

__all__ = ["compute_channel_statistics", "safe_std"]


def safe_std(std: np.ndarray, what: str) -> np.ndarray:
    """``std`` as float64 with every zero (or NaN) replaced by 1, logging a warning naming ``what``.

    Args:
        std: shape ``(channels,)``.

    Returns:
        A new float64 array of ``std``'s shape.
    """
    std = np.array(std, dtype=np.float64, copy=True)
    zero = ~(std > 0)
    if np.any(zero):
        logger.warning(
            "%s: standard deviation 0 for channel(s) %s; dividing by 1 instead", what, np.nonzero(zero)[0].tolist()
        )
        std[zero] = 1.0
    return std


def compute_channel_statistics(
    data_storage: Any, indices: Sequence[int] | None = None, show_progress: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and (pooled, population) standard deviation over all voxels of some subjects.

    Streams one subject at a time and one channel at a time in float64, merging the per-subject
    means and centred sums of squares (Chan et al.'s pairwise update, which stays accurate where
    a plain sum of squares would cancel).

    Args:
        data_storage: array-like of shape ``(n_subjects, channels, x, y, z)`` (e.g. a PyTables
            EArray); indexed one subject at a time.
        indices: subjects to use; all by default.
        show_progress: show a tqdm bar.

    Returns:
        ``(mean, std)``, float64 arrays of shape ``(channels,)``.
    """
    n_subjects = int(data_storage.shape[0])
    n_channels = int(data_storage.shape[1])
    indices = list(range(n_subjects)) if indices is None else [int(i) for i in indices]
    if not indices:
        raise DataError("Cannot compute normalisation statistics from an empty list of subjects")
    bad = [i for i in indices if not 0 <= i < n_subjects]
    if bad:
        raise DataError(f"Normalisation indices {bad} are outside 0..{n_subjects - 1}")
    count = np.zeros(n_channels)
    mean = np.zeros(n_channels)
    m2 = np.zeros(n_channels)
    for index in tqdm(indices, desc="Normalisation statistics", unit="subject", disable=not show_progress):
        subject = data_storage[index]
        for channel in range(n_channels):
            values = np.asarray(subject[channel], dtype=np.float64)
            n_b = values.size
            mean_b = values.mean()
            m2_b = np.sum(np.square(values - mean_b))
            n_a = count[channel]
            n = n_a + n_b
            delta = mean_b - mean[channel]
            mean[channel] += delta * n_b / n
            m2[channel] += m2_b + delta * delta * n_a * n_b / n
            count[channel] = n
        del subject
    return mean, np.sqrt(m2 / count)
