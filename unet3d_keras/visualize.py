"""Pictures of segmentations: three orthogonal slices through the tumour with outlines."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .fileio import atomic_path


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
    # why: matplotlib is heavy and needed only for pictures; Agg must be chosen before pyplot loads
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # why: see above

    path = Path(path)
    centre = _centre(truth, prediction, image)
    figure, axes = plt.subplots(1, 3, figsize=(10, 3.6))
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


def save_figure(figure, path: str | os.PathLike, dpi: int = 100) -> None:
    """Save a matplotlib figure as PNG under a temporary name, rename it, and close the figure."""
    import matplotlib.pyplot as plt  # why: matplotlib is heavy and needed only for pictures

    try:
        with atomic_path(path, suffix=".png") as tmp:
            figure.savefig(tmp, dpi=dpi)
    finally:
        plt.close(figure)
