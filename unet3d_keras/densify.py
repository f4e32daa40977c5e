"""The semi-automated mode of sparse annotation: densify one volume from its annotated slices.

:func:`fit_sparse` trains a 3D U-Net (softmax, class-weighted cross-entropy plus per-class Dice on
the annotated voxels only, flips) on the annotated voxels of one volume, less a share held back
to score it (:mod:`unet3d_keras.densify_holdout`): for a fixed number of steps, or until a time
budget is spent or the held-back score stops improving (and a final decay of the learning
rate is done), keeping the best weights of the decayed learning rate;
:func:`predict_classes` predicts a dense label map with it (averaged over the 8 mirrorings of each
window by default); :func:`densify` does both for one volume, keeping the annotated voxels' own labels.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping, Sequence

import keras
import numpy as np
from tqdm.auto import tqdm

from .config import Config, ConfigError, apply_overrides, config_from_dict, sets_key
from .errors import DataError, NoTimeToTrain
from .model_from_config import build_model
from .precision import apply_mixed_precision
from .predict_functions import model_predict_fn
from .predictor import Predictor
from .densify_holdout import (USER_SET_WEIGHTS, DensifyOptions, chosen_weighting, class_weights_for, hold_out,
                              start_output_bias, tile_sides)
from .densify_monitor import HeldOutMonitor
from .schedule import TimeBudget, TimeCosine, cosine_learning_rate
from .sparse import annotated_classes
from .sparse_sampler import ClassFirstPatchSampler
from .step_loop import fit_steps
from .tasks import resolve_task
from .tta import BATCH_SPATIAL_AXES, mirrored

logger = logging.getLogger(__name__)

__all__ = ["DENSIFY_DEFAULTS", "STEPS_PER_EPOCH", "DensifyResult", "SparseModel", "densify_config", "fit_sparse",
           "predict_classes", "densify"]

#: What ``densify`` changes from the repository's config.yaml: a model and schedule sized for
#: one small volume. Any key can still be overridden with ``--set``.
# No batch normalisation: with the few hundred steps of a densify run its moving statistics do
# not settle, and the predictions of unseen voxels suffered badly in trials on MNI152. No
# class weights here: they come from DensifyOptions.class_weighting and the training voxels' counts.
# No elastic deformation: it interpolates the intensities but not the labels (nearest
# neighbour), which blurs thin structures against their labels (MNI152, 4 slices per axis: IoU
# 0.871/0.856 with it, 0.883/0.873 without).
# 8 base filters: in the same minutes, more steps of a smaller model scored better there.
# Read-only: every run copies it (config.apply_overrides) before its overrides.
DENSIFY_DEFAULTS: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    "model": MappingProxyType({"name": "unet", "activation": "softmax", "depth": 3, "n_base_filters": 8,
                               "batch_normalization": False}),
    "training": MappingProxyType({"patch_shape": (32, 32, 32), "batch_size": 4, "n_epochs": 60,
                                  "initial_learning_rate": 0.002, "loss": "cross_entropy_dice", "class_weights": None,
                                  "mixed_precision": "auto"}),
    "augment": MappingProxyType({"flip": True, "elastic": False, "elastic_sigma": 2.0, "elastic_grid_spacing": 16}),
    "prediction": MappingProxyType({"overlap": 16, "batch_size": 2}),
})

STEPS_PER_EPOCH = 16
_UNANNOTATED = -1
_MIRRORINGS = 2 ** len(BATCH_SPATIAL_AXES)  # each subset of the axes that tta.mirrored flips
#: Most of the time left that the mirrored prediction may take; beyond it each window is predicted once.
MIRROR_SHARE_MAX = 0.25
#: A timed run stops training this many times the estimated time of the prediction and of the held-back evaluation
#: of the epoch it cuts short, plus PREDICTION_SLACK_SECONDS, before its deadline (estimated from one model call).
PREDICTION_MARGIN = 1.3
PREDICTION_SLACK_SECONDS = 3.0


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
        fitted: the trained model, its steps, stop reason and held-back scores.
    """

    labels: np.ndarray
    probabilities: np.ndarray
    classes: tuple[int, ...]
    patch_shape: tuple[int, int, int]
    epochs: int
    train_seconds: float
    total_seconds: float
    history: list[float] = field(default_factory=list)
    fitted: "SparseModel | None" = None


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
    if factor > (largest := int(max(image_shape))):  # padding to such a multiple only grows the volume
        raise ConfigError(f"--set model.depth: {depth} halves the window {depth - 1} times, which needs sides that are "
                          f"multiples of {factor}, more than the volume's largest side ({largest}); use at "
                          f"most {largest.bit_length()}")
    padded = _padded_shape(image_shape, depth, [factor] * len(image_shape))
    raw["data"]["image_shape"] = padded
    patch = raw.get("training", {}).get("patch_shape")
    if isinstance(patch, (list, tuple)) and len(patch) == 3 and all(isinstance(p, int) and p > 0 for p in patch):
        patch = [min(max(p // factor * factor, factor), s) for p, s in zip(patch, padded)]
        raw["training"] = {**raw["training"], "patch_shape": patch}
        if not sets_key(overrides, "prediction.overlap"):
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
        steps: steps trained.
        stop_reason: why training stopped.
        plateaued: training stopped on a plateau of the held-back score (after its final decay,
            if any; not when the budget ran out first).
        scores: per-class ``iou``, ``dice`` and ``voxels`` on the held-back voxels with the
            returned weights (None without held-back voxels).
        kept_epoch: the epoch whose weights were kept.
        score_history: the held-back scores of each evaluation.
        held_out_voxels: annotated voxels held back from training.
        held_out_mask: bool ``(x, y, z)``, the held-back voxels (None without them).
        mirror: predictions (and ``scores``) average the 8 mirrorings of each window.
        window_weighting: blending of the overlapping windows of a volume's prediction
            (``"gaussian"`` or ``"uniform"``).
        class_weighting: the class weighting trained with (``"auto"`` resolved: ``"none"``,
            ``"balanced"`` or ``"sqrt"``; ``"set"``, :data:`~unet3d_keras.densify_holdout.USER_SET_WEIGHTS`,
            when the overrides set ``training.class_weights``).
        class_weight_values: the cross-entropy weight of each class trained with (None: all 1).
    """

    model: keras.Model
    config: Config
    classes: tuple[int, ...]
    patch_shape: tuple[int, int, int]
    epochs: int
    train_seconds: float
    history: list[float] = field(default_factory=list)
    steps: int = 0
    stop_reason: str = ""
    plateaued: bool = False
    scores: dict | None = None
    kept_epoch: int = 0
    score_history: list[dict] = field(default_factory=list)
    held_out_voxels: int = 0
    held_out_mask: np.ndarray | None = None
    mirror: bool = False
    window_weighting: str = "uniform"
    class_weighting: str = "none"
    class_weight_values: tuple[float, ...] | None = None


def fit_sparse(
    images: np.ndarray,
    sparse: np.ndarray,
    ignore_label: int = 255,
    overrides: Sequence[str] = (),
    deadline: float | None = None,
    seed: int | None = None,
    show_progress: bool = True,
    predict_shape: Sequence[int] | None = None,
    steps: int | None = None,
    options: DensifyOptions | None = None,
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
        steps: train exactly this many steps (cosine decay over them, the last weights kept),
            stopping early only at ``deadline``. None with a ``deadline``: train until the
            deadline or until the held-back score stops improving and a final learning-rate
            decay is done, then keep the weights of its best evaluation at a decayed learning
            rate (:data:`~unet3d_keras.densify_monitor.KEEP_RATE_SHARE`). None without:
            ``training.n_epochs`` epochs of 16 steps.
        options: held-back share, patience, class weighting, sampling, mirroring and window
            blending (None: the defaults).

    Like ``train_from_config``, this sets the global Keras dtype policy from
    ``training.mixed_precision`` (bfloat16 on CPUs that support it).

    Raises:
        DataError: shapes disagree, a label outside 0-255 or ``ignore_label`` outside 1-255, no
            annotated voxel, one class only, or ``steps`` below 1.
        ConfigError: a bad override.
    """
    if ignore_label != int(ignore_label):
        raise DataError(f"ignore_label: expected a whole number, received {ignore_label}")
    ignore_label = int(ignore_label)  # an index below: a float 255.0 would fail there
    if not 1 <= ignore_label <= 255:
        raise DataError(f"ignore_label: expected a value between 1 and 255 (0 is background), received {ignore_label}")
    if steps is not None and steps < 1:
        raise DataError(f"steps: expected a positive number of steps, received {steps}")
    images = _as_channels(images)
    sparse = np.asarray(sparse)
    if images.shape[1:] != sparse.shape:
        raise DataError(f"the images {images.shape[1:]} and the sparse labels {sparse.shape} differ in shape")
    classes = annotated_classes(sparse, ignore_label)
    config = densify_config(classes, sparse.shape, len(images), ignore_label, overrides, seed)
    volume, pad = _padded(_normalise(images), config.data.image_shape)
    # Channel index of every voxel, -1 where unannotated (and in the padding).
    index_map = np.full(sparse.shape, _UNANNOTATED, dtype=np.int32)
    for position, value in enumerate(classes):
        index_map[sparse == value] = position
    options = options or DensifyOptions()
    patch = tuple(config.training.patch_shape or config.data.image_shape)
    tile = tile_sides(patch, sparse.shape)
    # default_rng(seed) also draws the sampler's first batch (default_rng([seed, 0, 0])): harmless, as it never draws
    # a held-back voxel; kept so that seeded runs repeat across versions (seeds.stream_rng would change every tile).
    held_out = hold_out(index_map, options.holdout, tile, np.random.default_rng(config.seed), _UNANNOTATED)
    # Padded after the split: the padding would lower a partial slice's annotated share below an annotated slice's.
    index_map, held_out = np.pad(index_map, pad, constant_values=_UNANNOTATED), held_out.padded(pad)
    train_map = np.where(held_out.mask, _UNANNOTATED, index_map)
    counts = np.bincount(train_map[train_map != _UNANNOTATED].ravel(), minlength=len(classes))
    weighting = chosen_weighting(counts, options.class_weighting)
    weights = class_weights_for(counts, weighting)
    if sets_key(overrides, "training.class_weights"):
        weighting, weights = USER_SET_WEIGHTS, None  # the user's own weights win over the option
    if weights is not None:
        weight_text = "[" + ",".join(f"{w:.6g}" for w in weights) + "]"
        config = densify_config(classes, sparse.shape, len(images), ignore_label,
                                [f"training.class_weights={weight_text}", *overrides], seed)
    # The training voxels only (not the held-back ones): class_weights=balanced then matches the option's balanced.
    histogram = np.zeros(256, np.int64)
    histogram[list(classes)] = counts
    task = resolve_task(config, histogram, int((sparse == ignore_label).sum()), "the sparse labels")
    keras.utils.set_random_seed(config.seed)
    apply_mixed_precision(config.training.mixed_precision)
    model = build_model(config, task)
    start_output_bias(model, counts, options.output_bias)
    logger.info("sparse training: %s voxels, classes %s, %d annotated voxels for training (%.1f%%), %d held back, "
                "window %s, class weights %s (%s)", sparse.shape, classes, int(counts.sum()),
                100 * counts.sum() / sparse.size, int(held_out.mask.sum()), patch, task.class_weights,
                weighting if weighting in (options.class_weighting, USER_SET_WEIGHTS)
                else f"{options.class_weighting}: {weighting}")

    sampler = ClassFirstPatchSampler(volume, train_map, len(classes), _UNANNOTATED, patch,
                                     config.training.batch_size, config.augment, config.seed,
                                     STEPS_PER_EPOCH, options.sampling)
    train_until = math.inf
    mirror = options.mirror
    if deadline is not None:
        # Time one model call first so that the deadline leaves room for predicting (and scoring).
        shape = _padded_shape(predict_shape or sparse.shape, config.model.depth, patch)
        windows = Predictor(model, overlap=config.prediction.overlap).window_count(shape)
        batch = np.zeros((config.prediction.batch_size,) + patch + (len(images),), np.float32)
        model.predict_on_batch(batch)  # the first call traces the function
        probe = time.monotonic()
        model.predict_on_batch(batch)
        call_seconds = time.monotonic() - probe
        predict_estimate = call_seconds * math.ceil((windows + held_out.n_groups) / config.prediction.batch_size)
        left, mirrored_seconds = deadline - time.monotonic(), _MIRRORINGS * predict_estimate
        dropped = mirror and mirrored_seconds > left * MIRROR_SHARE_MAX
        mirror = mirror and not dropped
        predict_estimate = mirrored_seconds if mirror else predict_estimate
        predict_estimate += call_seconds * math.ceil(held_out.n_groups / config.prediction.batch_size)
        train_until = deadline - PREDICTION_MARGIN * predict_estimate - PREDICTION_SLACK_SECONDS
        if dropped and train_until > time.monotonic():  # with no time to train, the run is refused: no advice
            logger.warning("predicting without mirroring: averaging the %d mirrorings of each window would take "
                           "about %.0f s of the %.0f s left (more than %.0f%%); --no-mirror chooses this up front",
                           _MIRRORINGS, mirrored_seconds, left, 100 * MIRROR_SHARE_MAX)
        logger.info("training stops %.1f s before the deadline to predict %d windows%s and %d held-back tiles "
                    "(%.3f s a model call)", deadline - train_until, windows,
                    " mirrored" if mirror else "", held_out.n_groups, call_seconds)
    timed = steps is None and deadline is not None  # train until the budget or a plateau
    n_epochs = math.ceil(steps / STEPS_PER_EPOCH) if steps is not None else config.training.n_epochs
    fit_epochs = 10**6 if timed else n_epochs
    progress = tqdm(total=None if timed else (steps or n_epochs * STEPS_PER_EPOCH),
                    desc="training on the annotated voxels", unit="step", disable=not show_progress)
    budget = TimeBudget(train_until, progress, max_steps=steps)
    train_start = time.monotonic()
    if timed:
        schedule = TimeCosine(train_start, train_until, config.training.initial_learning_rate)
    else:
        schedule = keras.callbacks.LearningRateScheduler(
            lambda epoch: cosine_learning_rate(epoch, n_epochs, config.training.initial_learning_rate))
    monitor = HeldOutMonitor(volume, index_map, held_out, len(classes), patch, options, stop_on_plateau=timed,
                             budget=budget, class_names=[str(c) for c in classes],
                             schedule=schedule if timed else None)
    monitor.set_model(model)  # it scores the final weights even when no step fits the deadline
    if timed and monitor.windows and not monitor.watches_foreground:
        logger.warning("no voxel of a foreground class is held back (each class's annotated voxels lie in too few "
                       "tiles to spare one): no held-back score to stop on, training runs to the time budget")
    if time.monotonic() < train_until:
        fit_steps(model, sampler.__getitem__, fit_epochs, STEPS_PER_EPOCH, [budget, schedule, monitor])
    progress.close()
    kept_epoch = monitor.restore_best(len(budget.losses))
    scores = monitor.evaluate(mirrored(model_predict_fn(model)) if mirror else None) if monitor.windows else None
    return SparseModel(model=model, config=config, classes=tuple(classes), patch_shape=patch,
                       epochs=len(budget.losses), train_seconds=time.monotonic() - train_start,
                       history=budget.losses, steps=budget.steps, stop_reason=monitor.stop_reason(budget),
                       plateaued=monitor.stopped_on_plateau, scores=scores, kept_epoch=kept_epoch,
                       score_history=monitor.history, held_out_voxels=int(held_out.mask.sum()),
                       held_out_mask=held_out.mask[tuple(slice(0, s) for s in sparse.shape)] if monitor.windows
                       else None, mirror=mirror,
                       window_weighting=options.window_weighting, class_weighting=weighting,
                       class_weight_values=task.class_weights)


def predict_classes(fitted: SparseModel, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense class map of a volume from a :class:`SparseModel`, its windows blended and mirrored as it says.

    Args:
        fitted: the trained model, its classes, config and prediction settings (:func:`fit_sparse`).
        images: ``(n_channels, x, y, z)`` (or ``(x, y, z)``), any spatial shape.

    Returns:
        ``(labels, probabilities)``: ``(x, y, z)`` class values (int64) and float32
        ``(n_classes, x, y, z)`` softmax outputs.
    """
    images = _as_channels(images)
    shape = images.shape[1:]
    volume, _ = _padded(_normalise(images), _padded_shape(shape, fitted.config.model.depth, fitted.patch_shape))
    predictor = Predictor(fitted.model, overlap=fitted.config.prediction.overlap,
                          batch_size=fitted.config.prediction.batch_size, mirror=fitted.mirror,
                          weighting=fitted.window_weighting)
    probabilities = predictor.predict_array(volume)
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
    steps: int | None = None,
    options: DensifyOptions | None = None,
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
        steps, options: as for :func:`fit_sparse`.

    Returns:
        The :class:`DensifyResult`.

    Raises:
        DataError: shapes disagree, a label outside 0-255 or ``ignore_label`` outside 1-255, no
            annotated voxel, one class only, or ``steps`` below 1.
        NoTimeToTrain: ``max_seconds`` left no time to train; nothing was predicted.
        ConfigError: a bad override.
    """
    start = time.monotonic()
    sparse = np.asarray(sparse)
    deadline = None if max_seconds is None else start + max_seconds
    fitted = fit_sparse(images, sparse, ignore_label, overrides, deadline, seed, show_progress,
                        steps=steps, options=options)
    if fitted.steps == 0:  # only a deadline stops a run before its first step
        raise NoTimeToTrain(f"max_seconds {max_seconds:g}: no time left to train once the prediction was set aside")
    labels, probabilities = predict_classes(fitted, images)
    labels = labels.astype(sparse.dtype if sparse.dtype.kind in "iu" else np.int64)
    if keep_annotations:
        annotated = sparse != ignore_label
        labels[annotated] = sparse[annotated]
    return DensifyResult(labels=labels, probabilities=probabilities, classes=fitted.classes,
                         patch_shape=fitted.patch_shape, epochs=fitted.epochs, train_seconds=fitted.train_seconds,
                         total_seconds=time.monotonic() - start, history=fitted.history, fitted=fitted)


def _as_channels(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[np.newaxis]
    if images.ndim != 4:
        raise DataError(f"expected images (channels, x, y, z) or (x, y, z), received shape {images.shape}")
    return images


def _padded(volume: np.ndarray, shape: Sequence[int]) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """``(n_channels, x, y, z)`` edge-padded at the end of each axis to ``shape`` (:func:`_padded_shape`), and the
    padding of each spatial axis."""
    pad = [(0, p - s) for p, s in zip(shape, volume.shape[1:])]
    return np.pad(volume, [(0, 0)] + pad, mode="edge"), pad


def _padded_shape(shape: Sequence[int], depth: int, patch: Sequence[int]) -> list[int]:
    """The shape a volume is edge-padded to, to train and predict: a multiple of the pooling factor, at least patch."""
    return [max(math.ceil(s / 2 ** (depth - 1)) * 2 ** (depth - 1), p) for s, p in zip(shape, patch)]
