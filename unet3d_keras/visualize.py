"""Pictures: three orthogonal slices through the tumour with outlines, the course of a densify run
(held-back IoU per class and training loss by epoch) and the slices where its model is least sure."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .fileio import atomic_path

if TYPE_CHECKING:  # why: matplotlib is imported only when a picture is drawn
    from matplotlib.figure import Figure


def _subplots(columns: int, size: tuple[float, float], rows: int = 1):
    """A figure of ``rows`` rows of ``columns`` axes, drawn by matplotlib's Agg backend (no display)."""
    # why: matplotlib is heavy and needed only for pictures; Agg must be chosen before pyplot loads
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # why: see above

    return plt.subplots(rows, columns, figsize=size, squeeze=rows == 1)


def _centre(*masks: np.ndarray | None) -> tuple[int, int, int]:
    for mask in masks:
        if mask is not None and np.any(mask):
            return tuple(int(round(c)) for c in np.argwhere(mask).mean(axis=0))
    shape = next(m for m in masks if m is not None).shape
    return tuple(s // 2 for s in shape)


def save_overlay_png(
    image: np.ndarray,
    path: str | os.PathLike,
    prediction: np.ndarray | None = None,
    truth: np.ndarray | None = None,
    title: str = "",
) -> Path:
    """Write a PNG of the three orthogonal slices through the tumour centre.

    Args:
        image: ``(x, y, z)`` intensities (e.g. one modality).
        path: PNG file to write (temporary name, then renamed).
        prediction: ``(x, y, z)`` label map, outlined in red.
        truth: ``(x, y, z)`` label map, outlined in green.
        title: Figure title.

    Returns:
        The path written.
    """
    path = Path(path)
    centre = _centre(truth, prediction, image)
    figure, axes = _subplots(3, (10, 3.6))
    for axis, (name, dim) in zip(axes, (("sagittal", 0), ("coronal", 1), ("axial", 2))):
        index = [slice(None)] * 3
        index[dim] = centre[dim]
        index = tuple(index)
        axis.imshow(np.asarray(image)[index].T, cmap="gray", origin="lower")
        for mask, colour in ((truth, "lime"), (prediction, "red")):
            if mask is not None and np.any(np.asarray(mask)[index] > 0):
                axis.contour((np.asarray(mask)[index] > 0).T, levels=[0.5], colors=colour, linewidths=1)
        axis.set_title(f"{name} {centre[dim]}")
        axis.axis("off")
    legend = [label for label, mask in (("truth: green", truth), ("prediction: red", prediction)) if mask is not None]
    figure.suptitle(" ".join(filter(None, [title, "(" + ", ".join(legend) + ")" if legend else ""])))
    figure.tight_layout()
    save_figure(figure, path, dpi=80)
    return path


def densify_history_figure(
    score_history: Sequence[dict],
    losses: Sequence[float],
    class_names: Sequence[str],
    kept_epoch: int = 0,
    final_iou: Sequence[float | None] | None = None,
    title: str = "",
) -> Figure:
    """A figure of a densify run: held-back IoU per class (left) and training loss (right) by epoch.

    Args:
        score_history: the evaluations, each ``{"epoch": e, "iou": [IoU or None per class], ...}``
            (``SparseModel.score_history``; epochs count from 1).
        losses: training loss of each epoch, the first being epoch 1.
        class_names: one name per entry of ``iou``.
        kept_epoch: epoch whose weights were kept, marked on both panels (0: none).
        final_iou: the kept weights' IoU per class as the volume is predicted (``SparseModel.scores``,
            mirrorings averaged where the evaluations during training were not), starred at
            ``kept_epoch``.
        title: figure title.

    Returns:
        The matplotlib figure (for :func:`save_figure`).
    """
    figure, (scores_axis, loss_axis) = _subplots(2, (10, 3.8))
    from matplotlib.ticker import MaxNLocator  # why: matplotlib is heavy and needed only for pictures

    epochs = [row["epoch"] for row in score_history]
    colours = []
    for position, name in enumerate(class_names):
        iou = [np.nan if row["iou"][position] is None else row["iou"][position] for row in score_history]
        colours.append(scores_axis.plot(epochs, iou, marker=".", label=f"class {name}")[0].get_color())
    if kept_epoch and final_iou is not None:
        star_label = "kept weights, as predicted"  # in the legend once
        for value, colour in zip(final_iou, colours):
            if value is not None:
                scores_axis.plot([kept_epoch], [value], marker="*", markersize=10, color=colour, linestyle="none",
                                 label=star_label)
                star_label = "_"  # matplotlib leaves labels starting with "_" out of the legend
    loss_axis.plot(range(1, len(losses) + 1), losses, color="black", label="loss")
    if kept_epoch:
        for axis in (scores_axis, loss_axis):
            axis.axvline(kept_epoch, color="grey", linestyle="--", linewidth=1, label="kept weights")
    if not score_history:
        scores_axis.text(0.5, 0.5, "no held-back voxels", ha="center", va="center", transform=scores_axis.transAxes)
    scores_axis.set(title="held-back IoU per class", xlabel="epoch", ylabel="IoU", ylim=(0, 1.02))
    loss_axis.set(title="training loss", xlabel="epoch", ylabel="loss")
    for axis in (scores_axis, loss_axis):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs
        if axis.get_legend_handles_labels()[0]:
            axis.legend(loc="best", fontsize="small")
    figure.suptitle(title, wrap=True)  # a long output name or stop reason wraps instead of running off
    figure.tight_layout()
    return figure


def densify_check_figure(
    image: np.ndarray,
    probabilities: np.ndarray,
    annotated: np.ndarray,
    shown: Sequence[tuple[int, str, Sequence[int | None]]],
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    title: str = "",
) -> Figure:
    """A figure of the slices where a densify model is least sure of some classes, to check the map there.

    For each class shown, two rows of three panels (its slice along x, y and z): the image with the
    annotated voxels tinted, and the model's probability of the class (0 to 1).

    Args:
        image: ``(x, y, z)`` intensities (the first channel).
        probabilities: ``(n_classes, x, y, z)`` the model's softmax outputs.
        annotated: bool ``(x, y, z)``, True where the label map was annotated.
        shown: per class, ``(position, name, indices)``: its index along the first axis of
            ``probabilities``, its name, and the slice to draw along x, y and z (None: none to check;
            :func:`~unet3d_keras.annotation_advice.slices_to_check`). Empty: a figure that says so.
        spacing: the voxel size along x, y and z, so that the slices keep their proportions.
        title: figure title.

    Returns:
        The matplotlib figure (for :func:`save_figure`).
    """
    if not shown:
        figure, axis = _subplots(1, (8, 2))
        axis.axis("off")
        axis.text(0.5, 0.5, "no slice to check", ha="center", va="center", transform=axis.transAxes)
        figure.suptitle(title, wrap=True)
        return figure
    figure, axes = _subplots(3, (10, 6.6 * len(shown)), rows=2 * len(shown))
    for row, (position, name, indices) in enumerate(shown):
        drawn = None
        for dim, (axis_name, index) in enumerate(zip("xyz", indices)):
            image_axis, probability_axis = axes[2 * row, dim], axes[2 * row + 1, dim]
            for axis in (image_axis, probability_axis):
                axis.axis("off")
            if index is None:
                image_axis.text(0.5, 0.5, f"{axis_name}: no slice\nto check", ha="center", va="center",
                                transform=image_axis.transAxes, fontsize="small")
                continue
            cut = tuple(index if a == dim else slice(None) for a in range(3))
            across, up = (float(spacing[a]) for a in range(3) if a != dim)  # the panel's columns, then its rows
            style = {"origin": "lower", "aspect": up / across}
            image_axis.imshow(np.asarray(image[cut], dtype=np.float32).T, cmap="gray", **style)
            marked = np.asarray(annotated[cut], dtype=np.float32).T
            image_axis.imshow(np.ma.masked_equal(marked, 0), cmap="winter", alpha=0.35, vmin=0, vmax=1, **style)
            image_axis.set_title(f"{axis_name} {index}: image", fontsize="small")
            drawn = probability_axis.imshow(np.asarray(probabilities[position][cut], dtype=np.float32).T,
                                            cmap="magma", vmin=0, vmax=1, **style)
            probability_axis.set_title(f"{axis_name} {index}: P(class {name})", fontsize="small")
        if drawn is not None:  # beside both rows, so that they keep one size
            figure.colorbar(drawn, ax=list(axes[2 * row:2 * row + 2].ravel()), shrink=0.6)
    legend = "image: annotated voxels tinted green; P(class): the model's probability of the class"
    figure.suptitle(f"{title}\n{legend}" if title else legend, wrap=True)
    return figure


def save_figure(figure, path: str | os.PathLike, dpi: int = 100) -> None:
    """Save a matplotlib figure as PNG under a temporary name, rename it, and close the figure."""
    try:
        with atomic_path(path, suffix=".png") as tmp:
            write_png(figure, tmp, dpi)
    finally:
        close_figure(figure)


def write_png(figure, path: str | os.PathLike, dpi: int = 100) -> None:
    """Write a matplotlib figure as PNG to ``path`` itself (e.g. a temporary of
    :func:`~unet3d_keras.fileio.write_together`); the figure stays open."""
    figure.savefig(path, dpi=dpi, format="png")


def close_figure(figure) -> None:
    """Release a figure of this module once it is written."""
    import matplotlib.pyplot as plt  # why: matplotlib is heavy and needed only for pictures

    plt.close(figure)
