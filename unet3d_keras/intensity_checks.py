"""Plausible intensities: finite values that no scan can hold (3e38, a wrong ``scl_slope``) refused or clipped.

A finite float32 such as 3e38 passes the NaN/infinity check, yet after normalisation it overflows
the half-precision network and changes the label map far from the voxels that hold it. The bound
is relative to robust statistics, so it holds for any unit (MRI counts, CT Hounsfield units,
microscopy intensities):

* **images read from files** (training conversion, prediction of new data, densification,
  preprocessing): a non-zero voxel is implausible when it lies more than
  :data:`MAX_ROBUST_Z` (1e4) robust standard deviations from the median of the image's non-zero
  voxels (robust standard deviation = 1.4826 x the median absolute deviation, which a few
  thousand outliers do not move; ``max(|median|, 1)`` where that is 0, e.g. a binary image);
* **samples read from the data file** (training): the stored values are z-scores against the
  file's statistics (``normalization: dataset`` or ``zscore``), so a value beyond 1e4 in
  magnitude is implausible -- it also stays far inside float16's range (65504) after the
  network's first sums.

Zero voxels (background) are never checked. Implausible voxels are refused with the file, the
count and the range found, or -- when the caller asks (``data.clip_outliers: true``,
``unet3d-densify --clip-outliers``) -- clipped to the range of the image's plausible voxels with a
warning, which leaves the rest of the image unchanged.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np

from .errors import DataError

__all__ = [
    "MAX_ROBUST_Z",
    "ROBUST_SD_PER_MAD",
    "PlausibleRange",
    "plausible_range",
    "check_intensities",
    "check_normalized_sample",
]

logger = logging.getLogger(__name__)

#: Largest plausible distance from the median, in robust standard deviations.
MAX_ROBUST_Z = 1e4
#: Robust standard deviation per median absolute deviation (exact for a normal distribution).
ROBUST_SD_PER_MAD = 1.4826

_FIX_HINT = ("fix the image (e.g. a wrong scl_slope, or an image saved as raw counts), or clip such voxels to "
             "the image's plausible range with data.clip_outliers: true in the config (--clip-outliers for "
             "unet3d-densify)")


@dataclass(frozen=True)
class PlausibleRange:
    """The plausible intensities of one image: ``median +- max_z * robust_sd``."""

    median: float
    robust_sd: float
    max_z: float

    @property
    def low(self) -> float:
        return self.median - self.max_z * self.robust_sd

    @property
    def high(self) -> float:
        return self.median + self.max_z * self.robust_sd


def plausible_range(data: np.ndarray, max_z: float = MAX_ROBUST_Z) -> PlausibleRange | None:
    """The plausible range of an image from its non-zero voxels, or None when all are zero.

    Args:
        data: the image, any shape (e.g. ``(x, y, z)``), finite values.
    """
    values = np.asarray(data)[np.asarray(data) != 0].astype(np.float64)
    if values.size == 0:
        return None
    median = float(np.median(values))
    robust_sd = ROBUST_SD_PER_MAD * float(np.median(np.abs(values - median)))
    if robust_sd == 0:  # over half the foreground shares one value (a mask): scale by the value itself
        robust_sd = max(abs(median), 1.0)
    return PlausibleRange(median, robust_sd, max_z)


def check_intensities(data: np.ndarray, source: str | os.PathLike, label: str = "", clip: bool = False,
                      max_z: float = MAX_ROBUST_Z) -> np.ndarray:
    """Refuse (or clip) the implausible voxels of one image.

    Args:
        data: the image, e.g. ``(x, y, z)``, finite values.
        source: the file, named in messages.
        label: prefix of messages, e.g. ``"subject s1"``.
        clip: clip implausible voxels to the range of the plausible non-zero voxels (with a
            warning) instead of refusing the image.
        max_z: the bound in robust standard deviations.

    Returns:
        ``data`` itself when every voxel is plausible, else the clipped copy (same dtype).

    Raises:
        DataError: naming the file, the number of implausible voxels and their range.
    """
    data = np.asarray(data)
    bounds = plausible_range(data, max_z)
    if bounds is None:
        return data
    outside = (data != 0) & ((data < bounds.low) | (data > bounds.high))
    n_outside = int(np.count_nonzero(outside))
    if n_outside == 0:
        return data
    found = data[outside]
    prefix = f"{label}: " if label else ""
    message = (f"{prefix}{os.fspath(source)}: {n_outside} voxels hold implausible intensities "
               f"({float(found.min()):.4g} to {float(found.max()):.4g}), more than {max_z:g} robust standard "
               f"deviations ({bounds.robust_sd:.4g}) from the median ({bounds.median:.4g}) of its non-zero voxels")
    if not clip:
        raise DataError(f"{message}; {_FIX_HINT}")
    plausible = data[(data != 0) & ~outside]
    low, high = (plausible.min(), plausible.max()) if plausible.size else (bounds.median, bounds.median)
    logger.warning("%s; clipped to the image's plausible range %.4g to %.4g (clip_outliers)",
                   message, float(low), float(high))
    return np.where(outside, np.clip(data, low, high), data).astype(data.dtype, copy=False)


def check_normalized_sample(data: np.ndarray, data_file: str | os.PathLike, subject: str,
                            max_z: float = MAX_ROBUST_Z) -> None:
    """Refuse a sample of a normalised data file holding values beyond ``max_z`` in magnitude.

    Args:
        data: the sample as stored, ``(C, x, y, z)`` z-scores.
        data_file: named in the message.
        subject: the subject's id or index, named in the message.

    Raises:
        DataError: naming the data file, the subject, the count and range, and how to rebuild.
    """
    beyond = np.abs(data) > max_z
    if not np.any(beyond):
        return
    found = data[beyond]
    raise DataError(
        f"{os.fspath(data_file)}: subject {subject}: {int(np.count_nonzero(beyond))} stored voxels hold "
        f"implausible normalised values ({float(found.min()):.4g} to {float(found.max()):.4g}; the file's "
        f"statistics make at most {max_z:g} in magnitude plausible): the data file is corrupt or was "
        "written from images with implausible intensities; rebuild it with --overwrite"
    )
