"""Training windows drawn class first from the annotated voxels of one volume.

Each window's centre is drawn class first (each annotated class equally likely), then an
annotated voxel of that class: otherwise the classes that fill most of the annotation, often
the background of slices far from the object, take most of the windows, and adding slices can
take windows away from the structures of interest.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .augmentation.compose import augment_sample
from .augmentation.params import AugmentationParams
from .densify_holdout import SAMPLINGS
from .labels import one_hot_with_ignore

__all__ = ["ClassFirstPatchSampler"]


class ClassFirstPatchSampler:
    """Random augmented training windows centred near annotated voxels of one volume.

    Args:
        images: float32 ``(n_channels, x, y, z)`` intensities.
        index_map: int ``(x, y, z)`` channel index of each voxel's class, ``ignore`` where unannotated.
        n_classes: number of classes (channel 0 is the background).
        ignore: the value of unannotated voxels in ``index_map``.
        patch_shape: ``(px, py, pz)`` window, at most the image shape.
        batch_size: windows per batch.
        augmentation: the augmentation applied to each window.
        seed: seeds each batch together with its epoch and its place in the epoch.
        steps_per_epoch: batches per epoch.
        sampling: ``"class_first"`` draws a class, then one of its voxels; ``"uniform"`` draws
            any annotated voxel (classes in proportion to their annotated voxels).

    Batch ``i`` (any ``i >= 0``) is that of epoch ``i // steps_per_epoch + 1``: it depends on its index
    only, so it may be made ahead of time (``unet3d_keras.step_loop`` makes the next while one trains).

    Batches are ``(x, y)``: float32 ``(batch, px, py, pz, n_channels)`` and one-hot float32
    ``(batch, px, py, pz, n_classes)``, all zero where unannotated.
    """

    def __init__(self, images: np.ndarray, index_map: np.ndarray, n_classes: int, ignore: int,
                 patch_shape: Sequence[int], batch_size: int, augmentation: AugmentationParams,
                 seed: int, steps_per_epoch: int, sampling: str = "class_first") -> None:
        self.images = images
        self.index_map = index_map
        self.n_classes = n_classes
        self.ignore = ignore
        self.patch_shape = np.asarray(patch_shape)
        # The window moves by up to a quarter of its side around the voxel drawn, which so stays inside it
        # (a fixed 8 voxels, as before, for the default 32-voxel side: the same draws for the same seed).
        self.jitter = self.patch_shape // 4
        self.batch_size = batch_size
        self.augmentation = augmentation
        self.seed = seed
        self.steps_per_epoch = steps_per_epoch
        self.by_class = [np.argwhere(index_map == position) for position in range(n_classes)]
        self.by_class = [voxels for voxels in self.by_class if len(voxels)]
        if sampling == "uniform":
            self.by_class = [np.concatenate(self.by_class)]
        elif sampling != "class_first":
            raise ValueError(f"sampling: expected one of {SAMPLINGS}, received {sampling!r}")

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        # epoch + 1: the draws, and so the figures on the docs pages, of the Keras dataset of one epoch it was
        epoch, step = divmod(int(index), self.steps_per_epoch)
        rng = np.random.default_rng([self.seed, epoch + 1, step])
        shape = np.asarray(self.images.shape[1:])
        x, y = [], []
        for _ in range(self.batch_size):
            voxels = self.by_class[rng.integers(len(self.by_class))]
            centre = voxels[rng.integers(len(voxels))]
            shift = rng.integers(-self.jitter, self.jitter + 1)
            corner = np.clip(centre - self.patch_shape // 2 + shift, 0, shape - self.patch_shape)
            window = tuple(slice(c, c + p) for c, p in zip(corner, self.patch_shape))
            data = self.images[(slice(None),) + window]
            truth = self.index_map[window]
            data, truth = augment_sample(data, truth, None, self.augmentation, rng)
            x.append(data)
            y.append(np.asarray(truth)[np.newaxis])
        one_hot, _ = one_hot_with_ignore(np.stack(y), range(1, self.n_classes), self.ignore)
        x = np.moveaxis(np.stack(x), 1, -1).astype(np.float32)
        return x, np.moveaxis(one_hot, 1, -1).astype(np.float32)
