"""The training and validation data of a run, from the reference's arguments: the arguments
checked once, the split drawn (or reused), and the batch settings of each part.

Both :func:`~unet3d_keras.generator.get_training_and_validation_generators` and
:func:`~unet3d_keras.dataset.get_training_and_validation_datasets` are built on
:class:`TrainingDataSettings`. Training samples are augmented and, with
``training_patch_start_offset``, cut on a patch grid moved by a random offset each epoch;
validation samples are neither, and use ``validation_patch_overlap``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import KW_ONLY, dataclass, replace
from typing import Sequence

import numpy as np

from .augmentation.params import AugmentationParams
from .batches import BatchSettings, resolve_augmentation
from .labels import check_label_values, check_labels_argument
from .sampling import require_cubic_samples
from .samples import image_shape, n_subjects
from .seeds import TRAINING_STREAM, VALIDATION_STREAM, resolve_seed, stream_rng
from .splits import get_validation_split

logger = logging.getLogger(__name__)

__all__ = ["TrainingDataSettings", "TrainingAndValidation"]

PathLike = str | os.PathLike


@dataclass(frozen=True)
class TrainingAndValidation:
    """A run's split and the batch settings of each part.

    Attributes:
        seed: the run's seed (drawn when none was given).
        training_list, validation_list: subject indices into the data file.
        training, validation: batch settings of each part.
    """

    seed: int
    training_list: list[int]
    validation_list: list[int]
    training: BatchSettings
    validation: BatchSettings

    def training_rng(self) -> np.random.Generator:
        """The random stream of the training batches."""
        return stream_rng(self.seed, TRAINING_STREAM)

    def validation_rng(self) -> np.random.Generator:
        """The random stream of the validation batches."""
        return stream_rng(self.seed, VALIDATION_STREAM)

    def check_label_values(self, data_file, counts: dict[int, np.ndarray] | None = None) -> list[int]:
        """Warns about labels absent from (or values unknown to) the truth of both parts; see
        :func:`~unet3d_keras.labels.check_label_values`."""
        subjects = list(self.training_list) + list(self.validation_list)
        return check_label_values(data_file, subjects, self.training.n_labels, self.training.labels, counts)


@dataclass(frozen=True)
class TrainingDataSettings:
    """The reference's arguments of ``get_training_and_validation_generators`` (after ``data_file``).

    Attributes:
        batch_size: training batch size.
        n_labels: output labels (1: binary target ``truth > 0``).
        training_keys_file, validation_keys_file: JSON split files, see
            :func:`~unet3d_keras.splits.get_validation_split`.
        data_split: fraction of subjects for training.
        overwrite: draw a new split even if the files exist.
        labels: label values, e.g. ``(1, 2, 4)``; ``len(labels)`` must equal ``n_labels > 1``.
        augment, augment_flip, augment_distortion_factor: the reference's augmentation.
        patch_shape: ``(px, py, pz)``, or None for whole volumes.
        validation_patch_overlap: overlap of validation patches.
        training_patch_start_offset: maximum random offset ``(ox, oy, oz)`` of the training grid.
        validation_batch_size: defaults to ``batch_size``.
        skip_blank: leave out samples without labels.
        permute: random cube symmetries (cubic samples only).
        seed: seeds the split and the batches; None draws one (logged).
        augmentation: full augmentation parameters; replaces ``augment``, ``augment_flip``
            and ``augment_distortion_factor``.
        allow_pickle: allow ``.pkl`` split files (pickle can execute code).
        data_format: model data format; None reads Keras' setting.

    Raises:
        ValueError: labels that do not fit ``n_labels``.
    """

    batch_size: int
    n_labels: int
    training_keys_file: PathLike
    validation_keys_file: PathLike
    data_split: float = 0.8
    overwrite: bool = False
    labels: Sequence[int] | None = None
    augment: bool = False
    augment_flip: bool = True
    augment_distortion_factor: float | None = 0.25
    patch_shape: Sequence[int] | None = None
    validation_patch_overlap: int | Sequence[int] = 0
    training_patch_start_offset: Sequence[int] | None = None
    validation_batch_size: int | None = None
    skip_blank: bool = True
    permute: bool = False
    _: KW_ONLY
    seed: int | None = None
    augmentation: AugmentationParams | None = None
    allow_pickle: bool = False
    data_format: str | None = None

    def __post_init__(self) -> None:
        check_labels_argument(self.n_labels, self.labels)

    def prepare(self, data_file, shuffle_validation: bool = True) -> TrainingAndValidation:
        """Checks the settings against the data file, then draws (or reuses) the split.

        Args:
            data_file: open PyTables data file.
            shuffle_validation: shuffle the validation samples each epoch.

        Returns:
            The split and the batch settings of each part.

        Raises:
            ValueError: permutation with non-cubic samples, or no training subjects.
            SplitFileError: see :func:`~unet3d_keras.splits.get_validation_split`.
        """
        augmentation = resolve_augmentation(
            self.augment, self.augment_flip, self.augment_distortion_factor, self.permute, self.augmentation
        )
        if augmentation.permute:  # before the split files are written
            require_cubic_samples(self.patch_shape, image_shape(data_file))
        training = BatchSettings(
            self.batch_size, self.n_labels, self.labels, self.patch_shape, 0, self.training_patch_start_offset,
            self.skip_blank, True, augmentation, self.data_format,
        )
        validation = replace(
            training, batch_size=self.validation_batch_size or self.batch_size,
            patch_overlap=self.validation_patch_overlap, patch_start_offset=None, shuffle=shuffle_validation,
            augmentation=AugmentationParams(),
        )
        seed = resolve_seed(self.seed)
        training_list, validation_list = get_validation_split(
            data_file, self.training_keys_file, self.validation_keys_file, data_split=self.data_split,
            overwrite=self.overwrite, seed=seed, allow_pickle=self.allow_pickle,
        )
        if not training_list:
            raise ValueError(f"No training subjects: data_split={self.data_split} of {n_subjects(data_file)} subjects")
        if not validation_list:
            logger.warning("No validation subjects (data_split=%s); no validation data", self.data_split)
        return TrainingAndValidation(seed, training_list, validation_list, training, validation)
