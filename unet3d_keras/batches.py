"""Batches for the model: one settings type for how samples are drawn and converted, the
conversion of channels-first samples into a batch in the model's data format, and an endless
stream of batches over a sampling plan.

Samples stay channels-first ``(C, x, y, z)`` while they are read, cut into patches and
augmented; :func:`make_batch`, where batches are formed, is the one place that converts them to
the model's data format (``keras.config.resolve_data_format()``, channels-last by default).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Iterator, Sequence

import numpy as np

from .augmentation.params import AugmentationParams
from .checks import as_int_triple
from .layout import resolve_data_format
from .labels import check_labels_argument, label_targets
from .sampling import SamplingPlan, effective_batch_size, require_cubic_samples, steps_per_epoch
from .samples import image_shape, load_sample, truth_reader

logger = logging.getLogger(__name__)

__all__ = [
    "BatchSettings",
    "to_model_format",
    "make_batch",
    "resolve_augmentation",
    "batch_stream",
]

def to_model_format(batch: np.ndarray, data_format: str | None = None) -> np.ndarray:
    """Converts a channels-first batch ``(N, C, x, y, z)`` to the model's data format.

    Args:
        batch: ``(N, C, x, y, z)``.
        data_format: ``"channels_last"``/``"channels_first"``; None reads
            ``keras.config.resolve_data_format()``.

    Returns:
        ``(N, x, y, z, C)`` (C-contiguous) for channels-last, else ``batch`` unchanged.
    """
    if resolve_data_format(data_format) == "channels_last":
        return np.ascontiguousarray(np.moveaxis(batch, 1, -1))
    return batch


def make_batch(
    x_list: Sequence[np.ndarray],
    y_list: Sequence[np.ndarray],
    n_labels: int = 1,
    labels: Sequence[int] | None = None,
    *,
    data_format: str | None = None,
    background: bool = False,
    ignore_label: int | None = None,
    regions: Sequence[Sequence[int]] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Stacks samples into a batch in the model's data format: the one place that converts.

    Args:
        x_list: samples ``(C, x, y, z)``.
        y_list: truths ``(1, x, y, z)``.
        n_labels, labels, background, ignore_label, regions: the target, see
            :func:`~unet3d_keras.labels.label_targets`.
        data_format: see :func:`to_model_format`.

    Returns:
        float32 ``(x, y)``: ``(N, x, y, z, C)`` and ``(N, x, y, z, n_labels)`` channels-last
        (channels-first: ``(N, C, x, y, z)`` and ``(N, n_labels, x, y, z)``); with
        ``background`` y has ``n_labels + 1`` channels.
    """
    x = np.asarray(x_list, dtype=np.float32)
    y = label_targets(np.asarray(y_list), n_labels, labels, background, ignore_label, regions)
    return to_model_format(x, data_format), to_model_format(y, data_format)


def resolve_augmentation(
    augment: bool = False,
    augment_flip: bool = True,
    augment_distortion_factor: float | None = 0.25,
    permute: bool = False,
    augmentation: AugmentationParams | None = None,
) -> AugmentationParams:
    """The augmentation the reference's switches stand for; ``augmentation`` replaces them (but
    ``permute=True`` still switches permutation on)."""
    if augmentation is None:
        return AugmentationParams.from_reference(augment, augment_flip, augment_distortion_factor, permute)
    if permute and not augmentation.permute:
        return replace(augmentation, permute=True)
    return augmentation


@dataclass(frozen=True)
class BatchSettings:
    """How samples are drawn, augmented and turned into batches; checked once, when built.

    Attributes:
        batch_size: requested samples per batch (clamped to the samples per epoch when used).
        n_labels, labels: the output labels; ``len(labels)`` must equal ``n_labels > 1``.
        patch_shape: ``(px, py, pz)``, or None for whole volumes.
        patch_overlap: voxels shared by neighbouring patches.
        patch_start_offset: maximum random offset of the patch grid per subject and epoch, or None.
        skip_blank: leave out samples without labels.
        shuffle: shuffle the samples each epoch.
        augmentation: augmentation parameters (none by default; None means none).
        data_format: model data format; None is replaced by Keras' setting when built.
        background: softmax targets, background channel first (``n_labels + 1`` channels).
        ignore_label: with ``background``, the value of unlabeled voxels (see
            :class:`~unet3d_keras.sampling.SamplingPlan` and
            :func:`~unet3d_keras.labels.label_targets`).
        regions: the label values of each output for region-based targets (one overlapping
            mask per region, ``len(regions) == n_labels``), or None.

    Raises:
        ValueError: labels that do not fit ``n_labels``, ``ignore_label`` without
            ``background``, a bad ``patch_shape`` or ``data_format``.
    """

    batch_size: int = 1
    n_labels: int = 1
    labels: Sequence[int] | None = None
    patch_shape: Sequence[int] | None = None
    patch_overlap: int | Sequence[int] = 0
    patch_start_offset: Sequence[int] | None = None
    skip_blank: bool = True
    shuffle: bool = True
    augmentation: AugmentationParams | None = field(default_factory=AugmentationParams)
    data_format: str | None = None
    background: bool = False
    ignore_label: int | None = None
    regions: Sequence[Sequence[int]] | None = None

    def __post_init__(self) -> None:
        check_labels_argument(self.n_labels, self.labels, self.background, self.ignore_label)
        if self.regions is not None and len(self.regions) != int(self.n_labels):
            raise ValueError(f"{len(self.regions)} regions for n_labels={self.n_labels} outputs")
        normal = {
            "n_labels": int(self.n_labels),
            "labels": None if self.labels is None else tuple(int(v) for v in self.labels),
            "patch_shape": None if self.patch_shape is None else tuple(
                int(s) for s in as_int_triple(self.patch_shape, "patch_shape")
            ),
            "augmentation": self.augmentation or AugmentationParams(),
            "data_format": resolve_data_format(self.data_format),
            "background": bool(self.background),
            "ignore_label": None if self.ignore_label is None else int(self.ignore_label),
            "regions": None if self.regions is None else tuple(tuple(int(v) for v in r) for r in self.regions),
        }
        for name, value in normal.items():
            object.__setattr__(self, name, value)  # frozen: normalised once, here

    def sampling_plan(self, index_list: Sequence[int], volume_shape: Sequence[int]) -> SamplingPlan:
        """The plan of the samples of ``index_list`` from volumes of ``volume_shape`` ``(x, y, z)``.

        Raises:
            ValueError: permutation with samples that are not cubes.
        """
        if self.augmentation.permute:
            require_cubic_samples(self.patch_shape, volume_shape)
        return SamplingPlan(
            index_list, volume_shape, self.patch_shape, self.patch_overlap, self.patch_start_offset, self.skip_blank,
            self.shuffle, ignore_label=self.ignore_label,
        )

    def make_batch(self, x_list: Sequence[np.ndarray], y_list: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """:func:`make_batch` with these settings' targets and data format."""
        return make_batch(x_list, y_list, self.n_labels, self.labels, data_format=self.data_format,
                          background=self.background, ignore_label=self.ignore_label, regions=self.regions)


def batch_stream(
    data_file,
    index_list: Sequence[int],
    settings: BatchSettings,
    rng: np.random.Generator,
    name: str = "batch_size",
    counts: dict[int, np.ndarray] | None = None,
) -> tuple[Iterator[tuple[np.ndarray, np.ndarray]], int]:
    """An endless stream of batches, epoch after epoch, and the number of batches per epoch.

    The first epoch is planned (and the batch size clamped) now, so bad arguments fail here and
    not at the first batch.

    Args:
        data_file: open PyTables data file.
        index_list: subjects to draw from.
        settings: sampling, augmentation and conversion.
        rng: draws the plans (patch offsets, order) and the augmentation.
        name: the batch size's argument name, for messages.
        counts: per-subject truth histograms, filled in while blank samples are looked for.

    Returns:
        ``(batches, steps_per_epoch)``; each batch as :func:`make_batch` returns it.

    Raises:
        ValueError: no samples, a bad batch size, permutation with non-cubic samples.
    """
    plan = settings.sampling_plan(index_list, image_shape(data_file))
    read_truth = truth_reader(data_file, counts)
    first_items = plan.plan(rng, read_truth)
    batch_size = effective_batch_size(settings.batch_size, len(first_items), name)

    def batches() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        items = first_items
        while True:
            for start in range(0, len(items), batch_size):
                samples = [
                    load_sample(data_file, row, plan.patch_shape, settings.augmentation, rng)
                    for row in items[start:start + batch_size]
                ]
                yield settings.make_batch([x for x, _ in samples], [y for _, y in samples])
            items = plan.plan(rng, read_truth)

    return batches(), steps_per_epoch(len(first_items), batch_size)
