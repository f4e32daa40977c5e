"""Sampling plans: which samples (subjects, or patches of subjects) an epoch visits, in which
order, and how many batches that makes.

Every subject, or every patch of every subject's patch grid, is visited once per epoch; blank
samples (truth all zero) are dropped with ``skip_blank``; the order is shuffled. The number of
steps per epoch is the plan's length divided by the batch size, rounded up, so one epoch of
steps covers every sample exactly once.
"""

from __future__ import annotations

import logging
import math
from typing import Callable, Sequence

import numpy as np

from .checks import as_int_triple, require_cube
from .utils.patches import compute_patch_indices, get_patch_bounds, get_random_nd_index

logger = logging.getLogger(__name__)

__all__ = ["SamplingPlan", "item_index", "steps_per_epoch", "effective_batch_size", "require_cubic_samples"]


def _as_shape(value: int | Sequence[int] | None, name: str) -> tuple[int, int, int] | None:
    return None if value is None else tuple(int(v) for v in as_int_triple(value, name))


class SamplingPlan:
    """Decides which samples (subjects, or patches of subjects) an epoch visits, in which order.

    Patch corners come from :func:`compute_patch_indices`; with ``patch_start_offset`` each
    subject's grid starts at a random offset in ``[-offset, 0]`` each epoch. With
    ``skip_blank``, samples whose truth is all zero are dropped. The first plan fixes
    :attr:`n_items`; later plans are trimmed or topped up to it (only needed when random offsets
    change the number of non-blank patches).

    Items are rows ``(subject, x, y, z)`` of an int64 array (the corner is unused for whole
    volumes). The object is small and picklable.

    Args:
        index_list: subjects (indices into the data file).
        image_shape: ``(x, y, z)`` of the stored volumes.
        patch_shape: ``(px, py, pz)``, or None for whole volumes.
        patch_overlap: voxels shared by neighbouring patches.
        patch_start_offset: maximum random start offset ``(ox, oy, oz)``, or None.
        skip_blank: drop samples without any label.
        shuffle: shuffle each epoch.
        ignore_label: with ``skip_blank``, a sample is blank when every voxel is this value
            (nobody annotated it) instead of when it has no label; for softmax training,
            where annotated background is worth learning from.
    """

    def __init__(
        self,
        index_list: Sequence[int],
        image_shape: Sequence[int],
        patch_shape: Sequence[int] | None = None,
        patch_overlap: int | Sequence[int] = 0,
        patch_start_offset: Sequence[int] | None = None,
        skip_blank: bool = True,
        shuffle: bool = True,
        ignore_label: int | None = None,
    ) -> None:
        self.index_list = [int(i) for i in index_list]
        self.image_shape = _as_shape(image_shape, "image_shape")
        self.patch_shape = _as_shape(patch_shape, "patch_shape")
        self.patch_overlap = patch_overlap
        self.patch_start_offset = _as_shape(patch_start_offset, "patch_start_offset") if patch_shape else None
        if self.patch_start_offset is not None and min(self.patch_start_offset) < 0:
            raise ValueError(f"patch_start_offset must not be negative; received {patch_start_offset}")
        if self.patch_start_offset is not None and not any(self.patch_start_offset):
            self.patch_start_offset = None
        self.skip_blank = bool(skip_blank)
        self.shuffle = bool(shuffle)
        self.ignore_label = None if ignore_label is None else int(ignore_label)
        self.n_items: int | None = None
        self._fixed_items: np.ndarray | None = None
        if self.patch_shape is not None:
            compute_patch_indices(self.image_shape, self.patch_shape, patch_overlap)  # validates the overlap
            larger = [a for a in range(3) if self.patch_shape[a] > self.image_shape[a]]
            if larger:
                logger.warning(
                    "patch_shape %s is larger than the image shape %s in axis %s; patches are completed by "
                    "repeating edge voxels", self.patch_shape, self.image_shape, larger,
                )

    @property
    def random_grid(self) -> bool:
        """Whether the patch grid moves from epoch to epoch."""
        return self.patch_start_offset is not None

    def _candidates(self, rng: np.random.Generator) -> np.ndarray:
        if self.patch_shape is None:
            items = np.zeros((len(self.index_list), 4), dtype=np.int64)
            items[:, 0] = self.index_list
            return items
        blocks = []
        fixed = None
        if not self.random_grid:
            fixed = compute_patch_indices(self.image_shape, self.patch_shape, self.patch_overlap)
        for subject in self.index_list:
            if fixed is None:
                start = -np.asarray(get_random_nd_index(self.patch_start_offset, rng), dtype=np.int64)
                corners = compute_patch_indices(self.image_shape, self.patch_shape, self.patch_overlap, start=start)
            else:
                corners = fixed
            block = np.empty((len(corners), 4), dtype=np.int64)
            block[:, 0] = subject
            block[:, 1:] = corners
            blocks.append(block)
        return np.concatenate(blocks) if blocks else np.zeros((0, 4), dtype=np.int64)

    def _drop_blank(self, items: np.ndarray, read_truth: Callable[[int], np.ndarray]) -> np.ndarray:
        keep = np.zeros(len(items), dtype=bool)
        for subject in np.unique(items[:, 0]):
            rows = np.flatnonzero(items[:, 0] == subject)
            truth = read_truth(int(subject))
            if self.ignore_label is not None:
                truth = truth != self.ignore_label
            if self.patch_shape is None:
                keep[rows] = np.any(truth)
                continue
            for row in rows:
                # Edge padding repeats voxels of the clipped region: blank iff that region is.
                low, high = get_patch_bounds(truth.shape, self.patch_shape, items[row, 1:])
                keep[row] = np.any(truth[low[0]:high[0], low[1]:high[1], low[2]:high[2]])
        return items[keep]

    def plan(self, rng: np.random.Generator, read_truth: Callable[[int], np.ndarray] | None = None) -> np.ndarray:
        """The items of one epoch.

        Args:
            rng: draws the patch offsets, the order and any top-up items.
            read_truth: ``subject -> (x, y, z)`` truth; needed with ``skip_blank``.

        Returns:
            int64 ``(n_items, 4)`` rows ``(subject, x, y, z)``.
        """
        if self._fixed_items is not None:
            items = self._fixed_items
        else:
            # A moved grid can miss labels that lie in the strip it leaves uncovered; if that
            # leaves nothing at all (only for tiny labels), draw the offsets again.
            for _ in range(10):
                items = self._candidates(rng)
                if self.skip_blank:
                    if read_truth is None:
                        raise ValueError("skip_blank needs read_truth")
                    items = self._drop_blank(items, read_truth)
                if len(items) or not self.random_grid:
                    break
            if not self.random_grid:
                self._fixed_items = items  # same every epoch: compute (and read the truth) once
        if self.shuffle:
            items = items[rng.permutation(len(items))]
        if self.n_items is None:
            self.n_items = len(items)
        elif len(items) != self.n_items and len(items) > 0:
            logger.debug("Epoch plan has %d items; adjusting to %d", len(items), self.n_items)
            if len(items) > self.n_items:
                items = items[: self.n_items]
            else:
                extra = items[rng.integers(0, len(items), self.n_items - len(items))]
                items = np.concatenate([items, extra])
        return items


def item_index(row: np.ndarray, patched: bool) -> int | tuple[int, np.ndarray]:
    """A plan row ``(subject, x, y, z)`` as ``subject``, or ``(subject, corner)`` when ``patched``."""
    return (int(row[0]), np.asarray(row[1:], dtype=np.int64)) if patched else int(row[0])


def steps_per_epoch(n_samples: int, batch_size: int) -> int:
    """Batches needed to visit ``n_samples`` once: ``ceil(n_samples / batch_size)``.

    Raises:
        ValueError: ``batch_size < 1``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1; received {batch_size}")
    return int(math.ceil(int(n_samples) / int(batch_size)))


def effective_batch_size(batch_size: int, n_items: int, name: str) -> int:
    """``batch_size``, clamped (with a warning) to the ``n_items`` samples of an epoch.

    Args:
        batch_size: requested samples per batch.
        n_items: samples per epoch.
        name: the argument's name, for messages (``"batch_size"``, ``"validation_batch_size"``).

    Raises:
        ValueError: ``batch_size < 1``, or no samples at all.
    """
    if int(batch_size) < 1:
        raise ValueError(f"{name} must be at least 1; received {batch_size}")
    if n_items < 1:
        raise ValueError(f"No samples for {name}: the list of subjects is empty or every sample is blank")
    if batch_size > n_items:
        logger.warning(
            "%s %d is larger than the %d samples per epoch; using batches of %d", name, batch_size, n_items, n_items
        )
        return int(n_items)
    return int(batch_size)


def require_cubic_samples(patch_shape: Sequence[int] | None, image_shape: Sequence[int]) -> None:
    """Refuses samples that are not cubes (the cube permutations need them).

    Args:
        patch_shape: ``(px, py, pz)``, or None for whole volumes.
        image_shape: ``(x, y, z)`` of the stored volumes.

    Raises:
        ValueError: naming both shapes.
    """
    shape = tuple(patch_shape) if patch_shape else tuple(image_shape)
    patch = None if patch_shape is None else tuple(int(s) for s in patch_shape)
    require_cube(shape, f"sample for permute=True (patch_shape={patch}, image shape {tuple(image_shape)})")
