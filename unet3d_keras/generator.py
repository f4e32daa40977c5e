"""The reference's training and validation generators over the HDF5 data file.

Each function here is a thin call into the modules that do the work: :mod:`.splits` (the
validation split), :mod:`.sampling` (which samples an epoch visits), :mod:`.samples` (reading
and augmenting one sample), :mod:`.labels` (targets) and :mod:`.batches` (batches in the
model's data format, the endless stream). The generators are endless, and one epoch of the
returned number of steps covers every sample or patch exactly once.
"""

from __future__ import annotations

import logging
import os
from typing import Iterator, Sequence

import numpy as np
import tables

from .augment import AugmentationParams, augment_sample
from .batches import BatchSettings, batch_stream, make_batch, resolve_augmentation
from .labels import get_multi_class_labels, one_hot_with_ignore
from .sampling import SamplingPlan, item_index, require_cubic_samples, steps_per_epoch
from .samples import hdf5_lock, load_sample, open_read_only, read_sample, read_subject_ids, truth_reader
from .samples import image_shape as stored_image_shape
from .seeds import item_rng, plan_rng, split_rng
from .splits import SplitFileError, get_validation_split, load_split, save_split, split_list
from .training_data import TrainingDataSettings

logger = logging.getLogger(__name__)

__all__ = [
    "get_training_and_validation_generators",
    "get_number_of_steps",
    "get_validation_split",
    "split_list",
    "data_generator",
    "get_number_of_patches",
    "create_patch_index_list",
    "add_data",
    "get_data_from_file",
    "convert_data",
    "get_multi_class_labels",
    # Helpers that live in their own modules, importable from here as before.
    "SamplingPlan",
    "SplitFileError",
    "item_rng",
    "load_sample",
    "load_split",
    "one_hot_with_ignore",
    "plan_rng",
    "read_subject_ids",
    "save_split",
    "split_rng",
]

PathLike = str | os.PathLike

# The reference's name of the one place where samples become a batch in the model's format.
convert_data = make_batch


def create_patch_index_list(
    index_list: Sequence[int],
    image_shape: Sequence[int],
    patch_shape: Sequence[int],
    patch_overlap: int | Sequence[int],
    patch_start_offset: Sequence[int] | None = None,
    *,
    rng: np.random.Generator | int | None = None,
) -> list[tuple[int, np.ndarray]]:
    """Every patch of every subject, as ``(subject, corner)`` pairs.

    With ``patch_start_offset`` each subject's grid starts at a random offset in
    ``[-offset, 0]`` (drawn from ``rng``).
    """
    plan = SamplingPlan(
        index_list, image_shape, patch_shape, patch_overlap, patch_start_offset, skip_blank=False, shuffle=False
    )
    return [item_index(row, True) for row in plan.plan(np.random.default_rng(rng))]


def get_number_of_patches(
    data_file: tables.File,
    index_list: Sequence[int],
    patch_shape: Sequence[int] | None = None,
    patch_overlap: int | Sequence[int] = 0,
    patch_start_offset: Sequence[int] | None = None,
    skip_blank: bool = True,
    *,
    rng: np.random.Generator | int | None = None,
) -> int:
    """Number of samples (patches, or whole volumes) one epoch visits; blank ones excluded
    with ``skip_blank``. With random offsets and ``skip_blank`` this is the count for one draw
    of the offsets (from ``rng``)."""
    plan = SamplingPlan(
        index_list, stored_image_shape(data_file), patch_shape, patch_overlap, patch_start_offset, skip_blank,
        shuffle=False,
    )
    return len(plan.plan(np.random.default_rng(rng), truth_reader(data_file)))


def get_number_of_steps(n_samples: int, batch_size: int) -> int:
    """Batches needed to visit ``n_samples`` once: ``ceil(n_samples / batch_size)``."""
    return steps_per_epoch(n_samples, batch_size)


def get_data_from_file(
    data_file: tables.File, index: int | tuple[int, np.ndarray], patch_shape: Sequence[int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One subject, or one patch of it.

    Args:
        data_file: open PyTables data file.
        index: subject index, or ``(subject, corner)`` with ``patch_shape``.
        patch_shape: ``(px, py, pz)`` or None.

    Returns:
        ``(data (C, x, y, z), truth (x, y, z))``.
    """
    if patch_shape:
        subject, corner = index
        row = [int(subject)] + [int(c) for c in np.asarray(corner).reshape(-1)[:3]]
        data, truth, _ = read_sample(data_file, row, patch_shape)
    else:
        data, truth, _ = read_sample(data_file, (int(index), 0, 0, 0), None)
    return data, truth


def add_data(
    x_list: list,
    y_list: list,
    data_file: tables.File,
    index: int | tuple[int, np.ndarray],
    augment: bool = False,
    augment_flip: bool = False,
    augment_distortion_factor: float | None = 0.25,
    patch_shape: Sequence[int] | None = False,
    skip_blank: bool = True,
    permute: bool = False,
    *,
    rng: np.random.Generator | int | None = None,
    augmentation: AugmentationParams | None = None,
) -> bool:
    """Reads (and augments) one sample and appends it to ``x_list``/``y_list``.

    Args:
        x_list, y_list: lists the sample ``(C, x, y, z)`` and truth ``(1, x, y, z)`` go to.
        data_file: open PyTables data file.
        index: subject index, or ``(subject, corner)`` with ``patch_shape``.
        augment, augment_flip, augment_distortion_factor, permute: the reference's switches.
        patch_shape: ``(px, py, pz)`` or None/False for whole volumes.
        skip_blank: do not append a sample whose (augmented) truth is all zero.
        rng: random generator or seed for the augmentation.
        augmentation: full augmentation parameters; replaces the reference's switches.

    Returns:
        Whether the sample was appended.

    Raises:
        ValueError: ``permute`` with a sample that is not a cube.
    """
    params = resolve_augmentation(augment, augment_flip, augment_distortion_factor, permute, augmentation)
    patch_shape = patch_shape or None
    data, truth = get_data_from_file(data_file, index, patch_shape=patch_shape)
    if params.permute:
        require_cubic_samples(patch_shape, stored_image_shape(data_file))
    if params.enabled:
        subject = index[0] if patch_shape else index
        with hdf5_lock():
            affine = np.asarray(data_file.root.affine[int(subject)])
        data, truth = augment_sample(data, truth, affine, params, np.random.default_rng(rng))
    truth = truth[np.newaxis]
    if skip_blank and not np.any(truth != 0):
        return False
    x_list.append(np.asarray(data, dtype=np.float32))
    y_list.append(truth)
    return True


def data_generator(
    data_file: tables.File,
    index_list: Sequence[int],
    batch_size: int = 1,
    n_labels: int = 1,
    labels: Sequence[int] | None = None,
    augment: bool = False,
    augment_flip: bool = True,
    augment_distortion_factor: float | None = 0.25,
    patch_shape: Sequence[int] | None = None,
    patch_overlap: int | Sequence[int] = 0,
    patch_start_offset: Sequence[int] | None = None,
    shuffle_index_list: bool = True,
    skip_blank: bool = True,
    permute: bool = False,
    *,
    rng: np.random.Generator | int | None = None,
    augmentation: AugmentationParams | None = None,
    data_format: str | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """An endless generator of ``(x, y)`` batches in the model's data format.

    Each pass visits the planned samples once (see :class:`~unet3d_keras.sampling.SamplingPlan`)
    in batches of ``batch_size`` (the last one smaller); ``ceil(n_samples / batch_size)`` batches
    make one epoch. Arguments are checked when this function is called, not at the first batch.

    Args:
        data_file: open PyTables data file.
        index_list: subjects to draw from.
        batch_size: samples per batch (clamped, with a warning, to the samples per epoch).
        n_labels, labels: see :func:`~unet3d_keras.labels.label_targets`.
        augment, augment_flip, augment_distortion_factor, permute: the reference's augmentation
            switches; ``augmentation`` replaces them.
        patch_shape: ``(px, py, pz)``, or None for whole volumes.
        patch_overlap: voxels shared by neighbouring patches.
        patch_start_offset: maximum random grid offset per epoch, or None.
        shuffle_index_list: shuffle each epoch.
        skip_blank: leave out samples without labels.
        rng: random generator or seed (patch offsets, order, augmentation).
        augmentation: see :class:`~unet3d_keras.augment.AugmentationParams`.
        data_format: see :func:`~unet3d_keras.batches.to_model_format`.

    Yields:
        float32 ``(x, y)`` batches: ``(n, x, y, z, C)`` and ``(n, x, y, z, n_labels)`` channels-last.
    """
    params = resolve_augmentation(augment, augment_flip, augment_distortion_factor, permute, augmentation)
    settings = BatchSettings(
        batch_size, n_labels, labels, patch_shape, patch_overlap, patch_start_offset, skip_blank, shuffle_index_list,
        params, data_format,
    )
    generator, _ = batch_stream(data_file, index_list, settings, np.random.default_rng(rng))
    return generator


def get_training_and_validation_generators(
    data_file: tables.File | PathLike,
    batch_size: int,
    n_labels: int,
    training_keys_file: PathLike,
    validation_keys_file: PathLike,
    data_split: float = 0.8,
    overwrite: bool = False,
    labels: Sequence[int] | None = None,
    augment: bool = False,
    augment_flip: bool = True,
    augment_distortion_factor: float | None = 0.25,
    patch_shape: Sequence[int] | None = None,
    validation_patch_overlap: int | Sequence[int] = 0,
    training_patch_start_offset: Sequence[int] | None = None,
    validation_batch_size: int | None = None,
    skip_blank: bool = True,
    permute: bool = False,
    *,
    seed: int | None = None,
    augmentation: AugmentationParams | None = None,
    allow_pickle: bool = False,
    data_format: str | None = None,
) -> tuple[Iterator, Iterator | None, int, int]:
    """Training and validation generators and their steps per epoch.

    Args:
        data_file: open PyTables data file (or its path, opened read-only and kept open).
        batch_size ... data_format: see :class:`~unet3d_keras.training_data.TrainingDataSettings`.

    Returns:
        ``(training_generator, validation_generator, n_training_steps, n_validation_steps)``;
        with no validation subjects (``data_split=1``) the validation generator is None and its
        step count 0.

    Raises:
        ValueError: bad arguments (labels, permute with non-cubic samples, no training samples).
        SplitFileError: see :func:`~unet3d_keras.splits.get_validation_split`.
    """
    if isinstance(data_file, (str, os.PathLike)):
        data_file = open_read_only(data_file)
    setup = TrainingDataSettings(
        batch_size, n_labels, training_keys_file, validation_keys_file, data_split, overwrite, labels, augment,
        augment_flip, augment_distortion_factor, patch_shape, validation_patch_overlap, training_patch_start_offset,
        validation_batch_size, skip_blank, permute, seed=seed, augmentation=augmentation, allow_pickle=allow_pickle,
        data_format=data_format,
    ).prepare(data_file)
    counts: dict[int, np.ndarray] = {}  # truth histograms, shared by the blank check and the label check
    training_generator, n_training_steps = batch_stream(
        data_file, setup.training_list, setup.training, setup.training_rng(), "batch_size", counts
    )
    logger.info("Number of training steps: %d", n_training_steps)
    validation_generator, n_validation_steps = None, 0
    if setup.validation_list:
        validation_generator, n_validation_steps = batch_stream(
            data_file, setup.validation_list, setup.validation, setup.validation_rng(), "validation_batch_size", counts
        )
        logger.info("Number of validation steps: %d", n_validation_steps)
    setup.check_label_values(data_file, counts)
    return training_generator, validation_generator, n_training_steps, n_validation_steps
