"""Learning from sparse annotation (Cicek et al. 2016).

The paper's annotators labelled a few full orthogonal slices of each volume; every other
voxel is *unlabeled* and carries the ignore value (``data.ignore_label``, 255 by default).
This module makes such annotations from dense label maps, checks them, and implements the
paper's semi-automated mode: :func:`densify` trains a 3D U-Net (softmax, weighted
cross-entropy plus Dice on the annotated voxels only, elastic augmentation) on the annotated
slices of one volume and predicts the dense label map of that same volume.

The fully-automated mode is ordinary training (``scripts/train.py``) on sparse truth
volumes: the pipeline notices the ignore value in the data and uses the masked loss.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Sequence

import keras
import numpy as np

from .config import Config, ConfigError, apply_overrides, config_from_dict
from .errors import DataError
from .generator import one_hot_with_ignore

logger = logging.getLogger(__name__)

#: What ``densify`` changes from the repository's config.yaml: a model and schedule sized for
#: one small volume. Any key can still be overridden with ``--set``.
# No batch normalisation: with the few hundred steps of a densify run its moving statistics do
# not settle, and the predictions of unseen voxels suffered badly in trials on MNI152. No class
# weights: the unweighted cross-entropy keeps the class boundaries where the overlap is best.
# 8 base filters: in the same minutes, more steps of a smaller model scored better there.
DENSIFY_DEFAULTS: dict = {
    "model": {"name": "unet", "activation": "softmax", "depth": 3, "n_base_filters": 8,
              "batch_normalization": False},
    "training": {"patch_shape": [32, 32, 32], "batch_size": 4, "n_epochs": 60, "initial_learning_rate": 0.002,
                 "loss": "cross_entropy_dice", "class_weights": None, "mixed_precision": "auto"},
    "augment": {"flip": True, "elastic": True, "elastic_sigma": 2.0, "elastic_grid_spacing": 16},
    "prediction": {"overlap": 16, "batch_size": 2},
}

STEPS_PER_EPOCH = 16
_UNANNOTATED = -1


# --------------------------------------------------------------------------------------------
# Sparse annotations


def slice_positions(size: int, count: int, rng: np.random.Generator | None = None,
                    nested: bool = False) -> np.ndarray:
    """Indices of ``count`` slices along an axis of ``size`` voxels.

    Evenly spread (the centres of ``count`` equal parts) when ``rng`` is None, else drawn
    without replacement from ``rng``. ``nested`` keeps the slices of every smaller count and
    adds each new slice in the middle of the widest gap, at fractions 1/2, 1/4, 3/4, 1/8, 5/8,
    3/8, 7/8, ... of the axis: the annotation of a user who adds slices to the ones they have.
    One slice is the same either way; 3, 7, 15, ... nested slices are equally spaced, at
    ``i / (count + 1)`` of the axis.

    Returns:
        Sorted int64 indices.
    """
    if not 0 <= count <= size:
        raise ValueError(f"cannot choose {count} slices along an axis of {size} voxels")
    if rng is not None and nested:
        raise ValueError("nested slices are placed, not drawn: pass rng=None with nested=True")
    if rng is not None:
        return np.sort(rng.choice(size, size=count, replace=False)).astype(np.int64)
    if not nested:
        return np.floor((np.arange(count) + 0.5) * size / count).astype(np.int64)
    chosen: dict[int, None] = {}
    n = 1
    while len(chosen) < count:
        # Van der Corput: n's binary digits mirrored around the point (5 = 101b -> 0.101b = 5/8).
        fraction, weight, rest = 0.0, 0.5, n
        while rest:
            fraction += weight * (rest & 1)
            rest, weight = rest >> 1, weight / 2
        chosen.setdefault(int(fraction * size), None)  # close fractions of a short axis share a slice
        n += 1
    return np.sort(np.fromiter(chosen, dtype=np.int64, count=count))


def make_sparse_annotation(
    dense: np.ndarray,
    slices_per_axis: Sequence[int] = (1, 1, 1),
    rng: np.random.Generator | None = None,
    ignore_label: int = 255,
    nested: bool = False,
) -> np.ndarray:
    """Keep ``k`` full slices per orthogonal axis of a dense label map; the rest is unlabeled.

    Args:
        dense: integer label map ``(x, y, z)``.
        slices_per_axis: ``(k_x, k_y, k_z)`` slices kept across each axis.
        rng: draws the slices at random; None spreads them evenly.
        ignore_label: value given to every voxel outside the kept slices.
        nested: place the slices so that those of a smaller count are kept by every larger one
            (see :func:`slice_positions`), instead of spreading each count evenly.

    Returns:
        ``(x, y, z)`` label map, in ``dense``'s dtype (widened if the ignore value does not fit).

    Raises:
        ValueError: not 3D, not integer, more slices than voxels, or ``ignore_label`` already
            used in ``dense`` (it would be mistaken for unlabeled voxels).
    """
    dense = np.asarray(dense)
    if dense.ndim != 3:
        raise ValueError(f"expected a 3D label map, received shape {dense.shape}")
    if dense.dtype.kind not in "iub":
        raise ValueError(f"expected an integer label map, received dtype {dense.dtype}")
    if len(slices_per_axis) != 3:
        raise ValueError(f"slices_per_axis needs 3 counts (x, y, z), received {tuple(slices_per_axis)}")
    if np.any(dense == ignore_label):
        raise ValueError(
            f"ignore_label {ignore_label} is already a label of the dense map (values "
            f"{np.unique(dense).tolist()[:20]}); choose a value that no voxel has"
        )
    keep = np.zeros(dense.shape, dtype=bool)
    for axis, count in enumerate(slices_per_axis):
        index = [slice(None)] * 3
        index[axis] = slice_positions(dense.shape[axis], int(count), rng, nested)
        keep[tuple(index)] = True
    dtype = np.result_type(dense.dtype, np.min_scalar_type(ignore_label))
    sparse = np.full(dense.shape, ignore_label, dtype=dtype)
    sparse[keep] = dense[keep]
    return sparse


def annotated_classes(sparse: np.ndarray, ignore_label: int = 255, name: str = "the label map") -> list[int]:
    """The label values present in a sparse annotation, checked for training.

    Raises:
        DataError: no annotated voxel, or fewer than two classes annotated.
    """
    values = np.unique(np.asarray(sparse))
    classes = [int(v) for v in values if v != ignore_label]
    if not classes:
        raise DataError(f"{name}: no annotated voxel (every voxel has the ignore value {ignore_label})")
    if len(classes) < 2:
        raise DataError(
            f"{name}: only one class ({classes[0]}) is annotated; at least two classes are needed to learn "
            "a segmentation (annotate some background too)"
        )
    return classes


# --------------------------------------------------------------------------------------------
# Semi-automated mode


@dataclass
class DensifyResult:
    """The outcome of :func:`densify`.

    Attributes:
        labels: dense ``(x, y, z)`` label map with the sparse map's class values.
        probabilities: float32 ``(n_classes, x, y, z)`` softmax output.
        classes: class value of each output channel.
        patch_shape: training window.
        epochs: epochs trained.
        train_seconds: training time.
        total_seconds: time from start to the returned map.
        history: per-epoch training loss.
    """

    labels: np.ndarray
    probabilities: np.ndarray
    classes: tuple[int, ...]
    patch_shape: tuple[int, int, int]
    epochs: int
    train_seconds: float
    total_seconds: float
    history: list[float] = field(default_factory=list)


def densify_config(classes: Sequence[int], image_shape: Sequence[int], n_channels: int, ignore_label: int = 255,
                   overrides: Sequence[str] = (), seed: int | None = None) -> Config:
    """The config of one densify run: :data:`DENSIFY_DEFAULTS` with ``overrides`` applied.

    The first class plays the background (channel 0); the window is the configured patch
    shape cut down to the (padded) image, a multiple of ``2**(depth-1)`` on every axis.

    Raises:
        ConfigError: a bad override, naming the key.
    """
    raw = apply_overrides(DENSIFY_DEFAULTS, overrides)
    raw = {**raw, "data": {**raw.get("data", {})}}
    raw["data"].update(labels=[int(c) for c in classes[1:]], ignore_label=int(ignore_label),
                       all_modalities=[f"image{i}" for i in range(n_channels)],
                       training_modalities=[f"image{i}" for i in range(n_channels)])
    if seed is not None:
        raw["seed"] = int(seed)
    depth = raw.get("model", {}).get("depth", 3)
    if not isinstance(depth, int) or depth < 1:
        raise ConfigError(f"--set model.depth: must be an integer >= 1, received {depth!r}")
    factor = 2 ** (depth - 1)
    padded = [math.ceil(s / factor) * factor for s in image_shape]
    raw["data"]["image_shape"] = padded
    patch = raw.get("training", {}).get("patch_shape")
    if patch is not None and isinstance(patch, (list, tuple)) and len(patch) == 3:
        if all(isinstance(p, int) and p > 0 for p in patch):
            patch = [min(max(p // factor * factor, factor), s) for p, s in zip(patch, padded)]
            raw["training"] = {**raw["training"], "patch_shape": patch}
            if not any(o.strip().startswith("prediction.overlap") for o in overrides):
                # A window cut down to a small image keeps a proportionate overlap.
                raw["prediction"] = {**raw.get("prediction", {}),
                                     "overlap": min(raw.get("prediction", {}).get("overlap", 16), min(patch) // 2)}
    return config_from_dict(raw, source="densify settings")


def _normalise(images: np.ndarray) -> np.ndarray:
    """Each channel to zero mean and unit standard deviation over the volume."""
    images = np.asarray(images, dtype=np.float32)
    mean = images.mean(axis=(1, 2, 3), keepdims=True)
    std = images.std(axis=(1, 2, 3), keepdims=True)
    return (images - mean) / np.where(std > 0, std, 1.0)


class _PatchSampler(keras.utils.PyDataset):
    """Random augmented training windows centred near annotated voxels of one volume.

    Each window's centre is drawn class first (each annotated class equally likely), then an
    annotated voxel of that class: otherwise the classes that fill most of the annotation, often
    the background of slices far from the object, take most of the windows, and adding slices
    can take windows away from the structures of interest.
    """

    def __init__(self, images: np.ndarray, index_map: np.ndarray, n_classes: int, ignore: int,
                 patch_shape: Sequence[int], batch_size: int, augmentation, seed: int) -> None:
        super().__init__(workers=1)
        self.images = images
        self.index_map = index_map
        self.n_classes = n_classes
        self.ignore = ignore
        self.patch_shape = np.asarray(patch_shape)
        self.batch_size = batch_size
        self.augmentation = augmentation
        self.seed = seed
        self.by_class = [np.argwhere(index_map == position) for position in range(n_classes)]
        self.by_class = [voxels for voxels in self.by_class if len(voxels)]
        self.epoch = 0

    def __len__(self) -> int:
        return STEPS_PER_EPOCH

    def on_epoch_end(self) -> None:
        self.epoch += 1

    def __getitem__(self, index: int):
        from .augment import augment_sample

        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        shape = np.asarray(self.images.shape[1:])
        x, y = [], []
        for _ in range(self.batch_size):
            voxels = self.by_class[rng.integers(len(self.by_class))]
            centre = voxels[rng.integers(len(voxels))]
            corner = np.clip(centre - self.patch_shape // 2 + rng.integers(-8, 9, 3), 0, shape - self.patch_shape)
            window = tuple(slice(c, c + p) for c, p in zip(corner, self.patch_shape))
            data = self.images[(slice(None),) + window]
            truth = self.index_map[window]
            data, truth = augment_sample(data, truth, None, self.augmentation, rng)
            x.append(data)
            y.append(np.asarray(truth)[np.newaxis])
        one_hot, _ = one_hot_with_ignore(np.stack(y), range(1, self.n_classes), self.ignore)
        x = np.moveaxis(np.stack(x), 1, -1).astype(np.float32)
        return x, np.moveaxis(one_hot, 1, -1).astype(np.float32)


class _TimeBudget(keras.callbacks.Callback):
    """Stops training once the next step would run past a deadline."""

    def __init__(self, deadline: float, progress=None) -> None:
        super().__init__()
        self.deadline = deadline
        self.progress = progress
        self.last = time.monotonic()
        self.longest_step = 0.0
        self.steps = 0
        self.losses: list[float] = []

    def on_train_begin(self, logs=None) -> None:
        self.last = time.monotonic()

    def on_train_batch_end(self, batch, logs=None) -> None:
        now = time.monotonic()
        if self.steps:  # the first step also traces the function
            self.longest_step = max(self.longest_step, now - self.last)
        self.steps += 1
        self.last = now
        if self.progress is not None:
            self.progress.update(1)
            if logs and "loss" in logs:
                self.progress.set_postfix(loss=f"{float(logs['loss']):.3f}")
        if now + 1.5 * self.longest_step > self.deadline:
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None) -> None:
        if logs and "loss" in logs:
            self.losses.append(float(logs["loss"]))


@dataclass
class SparseModel:
    """A model trained on sparse labels by :func:`fit_sparse`, with what prediction needs.

    Attributes:
        model: the compiled Keras model (softmax over ``classes``).
        config: the resolved densify config.
        classes: class value of each output channel.
        patch_shape: the training window.
        epochs: epochs trained.
        train_seconds: training time.
        history: per-epoch training loss.
    """

    model: keras.Model
    config: Config
    classes: tuple[int, ...]
    patch_shape: tuple[int, int, int]
    epochs: int
    train_seconds: float
    history: list[float] = field(default_factory=list)


def fit_sparse(
    images: np.ndarray,
    sparse: np.ndarray,
    ignore_label: int = 255,
    overrides: Sequence[str] = (),
    deadline: float | None = None,
    seed: int | None = None,
    show_progress: bool = True,
    predict_shape: Sequence[int] | None = None,
) -> SparseModel:
    """Train a softmax U-Net on the annotated voxels of one volume.

    Args:
        images: ``(n_channels, x, y, z)`` (or ``(x, y, z)``) intensities.
        sparse: ``(x, y, z)`` labels, ``ignore_label`` where nobody annotated (a dense map works too).
        ignore_label: value of the unannotated voxels.
        overrides: ``section.key=value`` changes to :data:`DENSIFY_DEFAULTS`.
        deadline: ``time.monotonic()`` by which training and one prediction of a volume of
            ``predict_shape`` (default: this one) must be done; None trains all epochs.
        seed: overrides the config's seed.
        show_progress: a progress bar over the training steps.
        predict_shape: the shape that will be predicted, for the deadline.

    Like ``train_from_config``, this sets the global Keras dtype policy from
    ``training.mixed_precision`` (bfloat16 on CPUs that support it).

    Raises:
        DataError: shapes disagree, no annotated voxel, or one class only.
        ConfigError: a bad override.
    """
    from tqdm.auto import tqdm

    from .pipeline import augmentation_params, build_model, resolve_task
    from .precision import apply_mixed_precision

    images = _as_channels(images)
    sparse = np.asarray(sparse)
    if images.shape[1:] != sparse.shape:
        raise DataError(f"the images {images.shape[1:]} and the sparse labels {sparse.shape} differ in shape")
    classes = annotated_classes(sparse, ignore_label)
    config = densify_config(classes, sparse.shape, len(images), ignore_label, overrides, seed)
    volume, pad = _padded(_normalise(images), config)
    # Channel index of every voxel, -1 where unannotated (and in the padding).
    index_map = np.full(sparse.shape, _UNANNOTATED, dtype=np.int32)
    for position, value in enumerate(classes):
        index_map[sparse == value] = position
    index_map = np.pad(index_map, pad, mode="constant", constant_values=_UNANNOTATED)

    counts = np.bincount(index_map[index_map != _UNANNOTATED].ravel(), minlength=len(classes))
    histogram = np.bincount(np.asarray(sparse, dtype=np.int64).ravel(), minlength=256)
    task = resolve_task(config, histogram, int(histogram[ignore_label]) if ignore_label < 256 else 0,
                        "the sparse labels")
    patch = tuple(config.training.patch_shape or config.data.image_shape)
    keras.utils.set_random_seed(config.seed)
    apply_mixed_precision(config.training.mixed_precision)
    model = build_model(config, task)
    logger.info("sparse training: %s voxels, classes %s, %d annotated voxels (%.1f%%), window %s, class weights %s",
                sparse.shape, classes, int(counts.sum()), 100 * counts.sum() / sparse.size, patch, task.class_weights)

    sampler = _PatchSampler(volume, index_map, len(classes), _UNANNOTATED, patch, config.training.batch_size,
                            augmentation_params(config), config.seed)
    train_until = math.inf
    if deadline is not None:
        # Time one model call first so that the deadline leaves room for predicting.
        shape = tuple(predict_shape or sparse.shape)
        padded = [math.ceil(s / p) * p for s, p in zip(shape, patch)]
        n_windows = _window_count(padded, patch, config.prediction.overlap)
        batch = np.zeros((config.prediction.batch_size,) + patch + (len(images),), np.float32)
        model.predict_on_batch(batch)  # the first call traces the function
        probe = time.monotonic()
        model.predict_on_batch(batch)
        predict_estimate = (time.monotonic() - probe) * math.ceil(n_windows / config.prediction.batch_size)
        train_until = deadline - 1.3 * predict_estimate - 3.0
    progress = tqdm(total=config.training.n_epochs * STEPS_PER_EPOCH, desc="training on the annotated voxels",
                    unit="step", disable=not show_progress)
    budget = _TimeBudget(train_until, progress)
    schedule = keras.callbacks.LearningRateScheduler(
        lambda epoch: cosine_learning_rate(epoch, config.training.n_epochs, config.training.initial_learning_rate))
    train_start = time.monotonic()
    if time.monotonic() < train_until:
        model.fit(sampler, epochs=config.training.n_epochs, callbacks=[budget, schedule], verbose=0, shuffle=False)
    progress.close()
    return SparseModel(model=model, config=config, classes=tuple(classes), patch_shape=patch,
                       epochs=len(budget.losses), train_seconds=time.monotonic() - train_start,
                       history=budget.losses)


def predict_classes(fitted: SparseModel, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense class map of a volume from a :class:`SparseModel`.

    Args:
        images: ``(n_channels, x, y, z)`` (or ``(x, y, z)``), any spatial shape.

    Returns:
        ``(labels, probabilities)``: ``(x, y, z)`` class values (int64) and float32
        ``(n_classes, x, y, z)`` softmax outputs.
    """
    from .prediction import predict_volume

    images = _as_channels(images)
    shape = images.shape[1:]
    padded_shape = [max(math.ceil(s / f) * f, p) for s, f, p in
                    zip(shape, [2 ** (fitted.config.model.depth - 1)] * 3, fitted.patch_shape)]
    pad = [(0, p - s) for p, s in zip(padded_shape, shape)]
    volume = np.pad(_normalise(images), [(0, 0)] + pad, mode="edge")
    probabilities = predict_volume(fitted.model, volume, overlap=fitted.config.prediction.overlap,
                                   batch_size=fitted.config.prediction.batch_size)
    probabilities = probabilities[(slice(None),) + tuple(slice(0, s) for s in shape)].astype(np.float32)
    labels = np.asarray(fitted.classes)[np.argmax(probabilities, axis=0)]
    return labels, probabilities


def densify(
    images: np.ndarray,
    sparse: np.ndarray,
    ignore_label: int = 255,
    overrides: Sequence[str] = (),
    max_seconds: float | None = None,
    keep_annotations: bool = True,
    seed: int | None = None,
    show_progress: bool = True,
) -> DensifyResult:
    """Train on the annotated voxels of one volume and predict that volume densely.

    Args:
        images: ``(n_channels, x, y, z)`` (or ``(x, y, z)`` for one channel) intensities.
        sparse: ``(x, y, z)`` labels, ``ignore_label`` where nobody annotated.
        ignore_label: value of the unannotated voxels.
        overrides: ``section.key=value`` changes to :data:`DENSIFY_DEFAULTS`.
        max_seconds: bound on the whole call (training stops early to leave time to predict).
        keep_annotations: the returned map keeps the annotated voxels' own labels.
        seed: overrides the config's seed.
        show_progress: a progress bar over the training steps.

    Returns:
        The :class:`DensifyResult`.

    Raises:
        DataError: shapes disagree, no annotated voxel, or one class only.
        ConfigError: a bad override.
    """
    start = time.monotonic()
    sparse = np.asarray(sparse)
    deadline = None if max_seconds is None else start + max_seconds
    fitted = fit_sparse(images, sparse, ignore_label, overrides, deadline, seed, show_progress)
    labels, probabilities = predict_classes(fitted, images)
    labels = labels.astype(sparse.dtype if sparse.dtype.kind in "iu" else np.int64)
    if keep_annotations:
        annotated = sparse != ignore_label
        labels[annotated] = sparse[annotated]
    return DensifyResult(labels=labels, probabilities=probabilities, classes=fitted.classes,
                         patch_shape=fitted.patch_shape, epochs=fitted.epochs, train_seconds=fitted.train_seconds,
                         total_seconds=time.monotonic() - start, history=fitted.history)


def cosine_learning_rate(epoch: int, n_epochs: int, initial: float, final_fraction: float = 0.02) -> float:
    """Cosine decay from ``initial`` at epoch 0 to ``final_fraction * initial`` at the last epoch."""
    progress = min(epoch / max(n_epochs - 1, 1), 1.0)
    return float(initial * (final_fraction + (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * progress))))


def _as_channels(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[np.newaxis]
    if images.ndim != 4:
        raise DataError(f"expected images (channels, x, y, z) or (x, y, z), received shape {images.shape}")
    return images


def _padded(volume: np.ndarray, config: Config) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The volume edge-padded to ``data.image_shape`` (a multiple of the pooling factor)."""
    pad = [(0, p - s) for p, s in zip(config.data.image_shape, volume.shape[1:])]
    return np.pad(volume, [(0, 0)] + pad, mode="edge"), pad


def _window_count(shape: Sequence[int], patch: Sequence[int], overlap: int) -> int:
    from .utils.patches import compute_patch_indices

    if tuple(shape) == tuple(patch):
        return 1
    return len(compute_patch_indices(shape, patch, overlap))
