"""Held-back annotated voxels of a densify run: the options (with the class weights and the start of the output
layer's biases that they choose), the split, the per-class scores.

A share of each annotated slice (``DensifyOptions.holdout``, 10% by default) is held back from
training, as in-plane tiles chosen with the seed: tiles rather than scattered voxels, so
that a held-back voxel is not surrounded by training voxels of the same slice and its score
says something about voxels nobody annotated; a few slices annotated side by side are tiled together.
Other voxels (a scribble, a partial slice, many slices side by side, a volume annotated throughout) are held
back the same way in blocks. A class that no drawn tile
holds (a small lesion often is in none) gets one of its tiles held back, so that it is scored too;
a class none of whose voxels would be left for training keeps all of them.

:class:`~unet3d_keras.densify_monitor.HeldOutMonitor` scores them during training. This module
does not load Keras, so the command can check its options first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .errors import DataError
from .utils.patches import WEIGHTINGS

if TYPE_CHECKING:
    import keras

__all__ = ["DensifyOptions", "HeldOut", "hold_out", "annotated_planes", "class_scores", "low_classes",
           "foreground_mean", "class_weights_for", "chosen_weighting", "CLASS_WEIGHTINGS", "RARE_CLASS_SHARE",
           "SAMPLINGS", "USER_SET_WEIGHTS", "OUTPUT_BIASES", "prior_output_bias",
           "start_output_bias", "tile_sides"]

CLASS_WEIGHTINGS = ("auto", "none", "balanced", "sqrt")
#: The class weighting a run reports when ``--set training.class_weights=[...]`` gave the weights.
USER_SET_WEIGHTS = "set"
#: ``"auto"`` class weighting is ``"sqrt"`` when a class holds less than this share of the training voxels,
#: else ``"none"``. Without weights, small lesions (examples/thin_shell/lesion.py, 640 steps) were missed altogether
#: by 4 of the 6 runs that trained on them as 1.13% or less of the voxels, which square-root weights learned; all
#: 18 runs that had them as 1.28% to 7.2% learned them without weights, as well as with them. On the thin-shell
#: volumes (every class 9% and more) and MNI152 (4 slices per axis; 5.9% and more at 1 to 8), weights gave the
#: thin class no more than the seeds' spread and cost the other classes on most (docs/sparse_annotation.md).
RARE_CLASS_SHARE = 0.02
SAMPLINGS = ("class_first", "uniform")
#: How the biases of the model's last layer (before the softmax) start: at zero (Keras's default), or at the log of
#: each class's share of the training voxels (:func:`prior_output_bias`).
OUTPUT_BIASES = ("zero", "prior")
#: A plane counts as an annotated slice when at least this share of its voxels is annotated.
_PLANE_SHARE = 0.5


@dataclass(frozen=True)
class DensifyOptions:
    """How a densify run trains, stops and weighs its classes.

    Attributes:
        holdout: share of each annotated slice held back to score and stop training (0: none).
        patience_epochs: epochs (of 16 steps) without an improvement of the held-back mean
            foreground IoU by ``min_delta`` after which a time-bounded run decays its learning
            rate to zero over ``decay_epochs`` epochs and stops.
        decay_epochs: length of that final decay (cut short by the time budget).
        min_delta: the improvement that counts.
        class_weighting: cross-entropy weights from the training voxels' class counts: ``"none"``,
            ``"balanced"`` (inverse frequency), ``"sqrt"`` (its square root, normalised the same
            way) or ``"auto"`` (:func:`chosen_weighting`). ``--set training.class_weights=[...]``
            wins over it.
        sampling: window centres drawn ``"class_first"`` (each class equally likely) or
            ``"uniform"`` over the annotated voxels.
        mirror: predict the volume (and score the held-back voxels at the end) as the average
            over the 8 mirrorings of each window; turned off for the run, with a warning, when
            that would take more than a quarter of the time left in its budget.
        window_weighting: how the overlapping windows of the volume's prediction are blended:
            ``"gaussian"`` (weights falling off from each window's centre, where the model sees the
            most context) or ``"uniform"`` (a plain average). The held-back voxels are scored in
            windows centred on them either way.
        output_bias: the biases of the model's last layer start at ``"zero"`` or at the
            ``"prior"``: :func:`prior_output_bias` of the training voxels' class counts.
    """

    holdout: float = 0.1
    patience_epochs: int = 40
    decay_epochs: int = 20
    min_delta: float = 0.002
    class_weighting: str = "auto"
    sampling: str = "class_first"
    mirror: bool = True
    window_weighting: str = "gaussian"
    output_bias: str = "zero"

    def __post_init__(self) -> None:
        # Each message starts with the field's name: the densify command swaps in its flag.
        if not 0 <= self.holdout < 1:
            raise ValueError(f"holdout: expected a share between 0 and 1 (below 1), received {self.holdout}")
        if self.patience_epochs < 1:
            raise ValueError(f"patience_epochs: expected at least 1 epoch, received {self.patience_epochs}")
        if self.decay_epochs < 0:
            raise ValueError(f"decay_epochs: expected 0 or more epochs, received {self.decay_epochs}")
        if self.class_weighting not in CLASS_WEIGHTINGS:
            raise ValueError(f"class_weighting: expected one of {CLASS_WEIGHTINGS}, received {self.class_weighting!r}")
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"sampling: expected one of {SAMPLINGS}, received {self.sampling!r}")
        if self.window_weighting not in WEIGHTINGS:
            raise ValueError(f"window_weighting: expected one of {WEIGHTINGS}, received {self.window_weighting!r}")
        if self.output_bias not in OUTPUT_BIASES:
            raise ValueError(f"output_bias: expected one of {OUTPUT_BIASES}, received {self.output_bias!r}")


def chosen_weighting(counts: Sequence[int], weighting: str) -> str:
    """The class weighting that ``weighting`` means for these training voxel counts: ``"auto"`` is
    ``"sqrt"`` when a class holds less than :data:`RARE_CLASS_SHARE` of them, else ``"none"``;
    any other is itself."""
    if weighting != "auto":
        return weighting
    counts_array = np.asarray(counts, dtype=float)
    return "sqrt" if counts_array.min() < RARE_CLASS_SHARE * counts_array.sum() else "none"


def class_weights_for(counts: Sequence[int], weighting: str) -> list[float] | None:
    """Cross-entropy class weights from annotated voxel counts (background first); None for ``"none"``.

    ``"sqrt"`` is the square root of :func:`~unet3d_keras.losses.balanced_class_weights`,
    scaled so that the weights average 1 over the annotated voxels, like the balanced ones;
    ``"auto"`` is the one :func:`chosen_weighting` picks.
    """
    weighting = chosen_weighting(counts, weighting)
    if weighting == "none":
        return None
    # why: losses loads Keras, which checking a command's options does not need
    from .losses import balanced_class_weights

    weights = np.asarray(balanced_class_weights(counts))
    if weighting == "sqrt":
        counts_array = np.asarray(counts, dtype=float)
        weights = np.sqrt(weights)
        weights *= counts_array.sum() / max(float((weights * counts_array).sum()), 1e-12)
    return [float(w) for w in weights]


def prior_output_bias(counts: Sequence[int]) -> np.ndarray:
    """Biases for the last layer before the softmax, ``(n_classes,)`` float32: the log of each class's share of
    ``counts`` (the training voxels per class; a class without any counts as one voxel).

    The untrained model then predicts the classes' shares instead of equal probabilities, so the first steps do
    not push nearly every voxel towards the largest class. Started at zero, those steps can grow the logits by
    orders of magnitude until a rare class's probability underflows and it is never learned
    (examples/thin_shell/lesion.py, docs/sparse_annotation.md).
    """
    counts_array = np.maximum(np.asarray(counts, dtype=np.float64), 1.0)
    return np.log(counts_array / counts_array.sum()).astype(np.float32)


def start_output_bias(model: keras.Model, counts: Sequence[int], output_bias: str) -> None:
    """Start the biases of ``model``'s last convolution (``unet3d_keras.model.unet.HEAD_LAYER``) as ``output_bias``
    (one of :data:`OUTPUT_BIASES`) says: ``"zero"`` leaves Keras's zeros, ``"prior"`` sets :func:`prior_output_bias`
    of ``counts``.

    Raises:
        DataError: ``"prior"`` for a model without that layer (the ``isensee2017`` model ends in a sum of several).
    """
    if output_bias == "zero":
        return
    # why: the model package loads Keras, which checking a command's options does not need
    from .model.unet import HEAD_LAYER

    if HEAD_LAYER not in [layer.name for layer in model.layers]:
        raise DataError(f"--output-bias prior: the model {model.name!r} has no layer {HEAD_LAYER!r} (the unet "
                        f"model's last convolution) whose biases it sets; use it with model.name unet")
    model.get_layer(HEAD_LAYER).bias.assign(prior_output_bias(counts))


@dataclass
class HeldOut:
    """The held-back voxels of one volume.

    Attributes:
        mask: bool ``(x, y, z)``, True where held back.
        groups: int ``(x, y, z)``, the tile of each held-back voxel, -1 elsewhere.
        n_groups: number of tiles.
    """

    mask: np.ndarray
    groups: np.ndarray
    n_groups: int

    def padded(self, pad: Sequence[tuple[int, int]]) -> HeldOut:
        """The same voxels in the volume padded by ``pad`` (``np.pad``'s widths); none held back in the padding."""
        return HeldOut(np.pad(self.mask, pad), np.pad(self.groups, pad, constant_values=-1), self.n_groups)


def annotated_planes(annotated: np.ndarray) -> list[np.ndarray]:
    """The annotated slices along each axis: planes with at least half of their voxels annotated.

    Args:
        annotated: bool ``(x, y, z)``, True where someone annotated.

    Returns:
        For each of the 3 axes, the sorted int64 indices of its annotated planes.
    """
    return [np.flatnonzero(annotated.mean(axis=tuple(a for a in range(3) if a != axis)) >= _PLANE_SHARE)
            for axis in range(3)]


def tile_sides(patch: Sequence[int], shape: Sequence[int]) -> list[int]:
    """The held-back tiles' side along each axis of a volume: cubes of half the training window's side, at most a
    quarter of the volume's shortest side (at least 2 voxels).

    An axis shorter than a quarter of the longest (a stack of thin sections) is left out of that bound and gets
    its own side, half the window and a quarter of the volume along it: the stack's sections keep tiles as wide
    as their own sides allow, where that bound would make them a few voxels wide.

    Args:
        patch: the training window ``(x, y, z)``.
        shape: the volume's ``(x, y, z)``.

    Returns:
        The ``[x, y, z]`` sides, for :func:`hold_out`.
    """
    long_axes = [a for a, s in enumerate(shape) if 4 * s >= max(shape)]
    cube = max(2, min(min(patch[a] for a in long_axes) // 2, min(shape[a] for a in long_axes) // 4))
    return [cube if a in long_axes else max(2, min(patch[a] // 2, shape[a] // 4)) for a in range(len(shape))]


def hold_out(index_map: np.ndarray, share: float, tile: int | Sequence[int], rng: np.random.Generator,
             unannotated: int = -1) -> HeldOut:
    """Hold back ``share`` of the tiles of every annotated slice, chosen by ``rng``.

    The annotated planes (:func:`annotated_planes`) are cut into tiles, but a tile of one plane among annotated
    neighbours would be a sheet one voxel thick between training voxels of the same structure: up to a tile's
    side of planes side by side are cut together, their tiles as thick as the slab; more (every other slice
    annotated makes every plane across them half annotated; a volume annotated throughout) go into blocks with
    the other voxels.

    Args:
        index_map: int ``(x, y, z)`` class index of each voxel, ``unannotated`` where nobody annotated.
        share: expected share of each slice's (or slab's) tiles held back (stochastically rounded for each).
        tile: the tiles' (and the blocks') side along each axis, or one side for all: a plane's tiles take the
            sides of its two axes.
        rng: chooses the tiles.
        unannotated: the value of ``index_map`` where nobody annotated.

    Returns:
        The :class:`HeldOut` voxels.
    """
    sides = [int(tile)] * 3 if np.ndim(tile) == 0 else [int(t) for t in tile]
    annotated = index_map != unannotated
    groups = np.full(index_map.shape, -1, dtype=np.int64)
    free = annotated.copy()
    n_groups = 0
    units: list[np.ndarray] = []  # per unit (slice, slab or leftover), tile id of each of its voxels
    members: list[tuple[np.ndarray, ...]] = []
    for axis, planes in enumerate(annotated_planes(annotated)):
        for run in np.split(planes, np.flatnonzero(np.diff(planes) > 1) + 1):  # planes side by side
            if not 1 <= len(run) <= sides[axis]:
                continue
            where = [slice(None)] * 3
            where[axis] = slice(run[0], run[-1] + 1)
            coords = list(np.nonzero(free[tuple(where)]))
            if not len(coords[0]):
                continue
            coords[axis] += run[0]
            u, v = (c // sides[a] for a, c in enumerate(coords) if a != axis)
            members.append(tuple(coords))
            units.append(u * (max(index_map.shape) + 1) + v)
            free[tuple(coords)] = False
    if free.any():  # annotated voxels outside the annotated planes: blocks
        coords = np.nonzero(free)
        members.append(coords)
        units.append(np.ravel_multi_index([c // t for c, t in zip(coords, sides)],
                                          [math.ceil(s / t) for s, t in zip(index_map.shape, sides)]))
    tile_ids = np.full(index_map.shape, -1, dtype=np.int64)  # every annotated voxel's tile, numbered across units
    n_tiles = 0
    for coords, tiles in zip(members, units):
        unique, inverse = np.unique(tiles, return_inverse=True)
        tile_ids[coords] = n_tiles + inverse.ravel()
        n_tiles += len(unique)
        expected = share * len(unique)
        count = int(expected) + int(rng.random() < expected - int(expected))
        if count == 0:
            continue
        chosen = rng.choice(len(unique), size=count, replace=False)
        local = np.full(len(unique), -1, dtype=np.int64)
        local[chosen] = n_groups + np.arange(count)
        n_groups += count
        groups[coords] = local[inverse.ravel()]
    if share > 0:
        n_groups = _hold_each_class(index_map[annotated], tile_ids, groups, annotated, n_groups, rng)
    mask = groups >= 0
    for position in np.unique(index_map[annotated]):
        of_class = index_map == position
        if not np.any(of_class & annotated & ~mask):  # keep every class trainable
            mask[of_class] = False
    groups[~mask] = -1
    return HeldOut(mask=mask, groups=groups, n_groups=n_groups)


#: A class that no drawn tile holds gets one of its tiles held back only if that tile holds at most
#: this share of its annotated voxels: the rest must still teach it.
_TOP_UP_SHARE = 1 / 3


def _hold_each_class(labels: np.ndarray, tile_ids: np.ndarray, groups: np.ndarray, annotated: np.ndarray,
                     n_groups: int, rng: np.random.Generator) -> int:
    """Hold back, in ``groups``, one tile of each class that no held-back tile holds; returns the group count.

    A small class (a lesion a few tiles wide) is often in none of the tiles drawn: without it, the
    run could neither score it nor see it stop improving. Of the tiles holding at most
    :data:`_TOP_UP_SHARE` of the class's annotated voxels, the one holding the most is held back
    (``rng`` breaks ties); a class with no such tile keeps all of its voxels for training.
    """
    held_labels = labels[groups[annotated] >= 0]
    class_tiles = tile_ids[annotated]
    for position in np.unique(labels):
        if np.any(held_labels == position):
            continue
        tiles, counts = np.unique(class_tiles[labels == position], return_counts=True)
        eligible = counts <= _TOP_UP_SHARE * counts.sum()
        if not eligible.any():
            continue
        tiles, counts = tiles[eligible], counts[eligible]
        order = rng.permutation(len(tiles))  # breaks ties
        chosen = tiles[order[np.argmax(counts[order])]]  # the most voxels to score the class on
        groups[tile_ids == chosen] = n_groups
        n_groups += 1
        held_labels = labels[groups[annotated] >= 0]
    return n_groups


def class_scores(truth: np.ndarray, predicted: np.ndarray, n_classes: int) -> dict[str, list]:
    """Per-class IoU and Dice of class indices, with the voxel count of each class in ``truth``.

    Args:
        truth, predicted: class indices (0 to ``n_classes - 1``) of the same voxels, any equal shape.
        n_classes: the number of classes.

    Returns:
        ``{"iou": [...], "dice": [...], "voxels": [...]}``, one entry per class.

    A class absent from ``truth`` scores None: with no voxel of it to find, its score would
    count only the voxels wrongly given to it, which the classes they belong to already count.
    """
    confusion = np.bincount(np.asarray(truth, np.int64) * n_classes + np.asarray(predicted, np.int64),
                            minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    tp = np.diag(confusion).astype(float)
    fp = confusion.sum(axis=0) - tp
    fn = confusion.sum(axis=1) - tp
    union = tp + fp + fn
    voxels = confusion.sum(axis=1)
    iou = [float(t / u) if v else None for t, u, v in zip(tp, union, voxels)]
    dice = [float(2 * t / (2 * t + f + n)) if v else None for t, f, n, v in zip(tp, fp, fn, voxels)]
    return {"iou": iou, "dice": dice, "voxels": [int(c) for c in voxels]}


def low_classes(iou: Sequence[float | None], ratio: float = 0.5) -> list[int]:
    """Positions of the classes whose IoU is below ``ratio`` times the median IoU of the other classes."""
    low = []
    for position, value in enumerate(iou):
        others = [v for p, v in enumerate(iou) if p != position and v is not None]
        if value is not None and others and value < ratio * float(np.median(others)):
            low.append(position)
    return low


def foreground_mean(iou: Sequence[float | None]) -> float:
    """Mean IoU of the scored classes after the background (position 0)."""
    values = [v for v in iou[1:] if v is not None]
    return float(np.mean(values)) if values else 0.0
