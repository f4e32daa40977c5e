"""Two models averaged within densify's budget, against densify's defaults: paired runs.

For each seed, on one volume of ``volume.py`` (two slices per axis annotated), two at a time (two processes
with one thread each, as ``run.py`` runs its rows):

- ``second model``: ``unet3d_keras.densify.fit_sparse`` with densify's defaults and the whole budget (the
  plateau of its held-back score often ends it early); then, where at least a minute is left, a second
  model with another seed (``experiments.ENSEMBLE_SEED_OFFSET`` added), as densify trains, until the budget's end.
  The run records the first model's scores (densify's defaults), the second's, and those of the two
  models' probabilities averaged;
- ``two halves``: a model for the first half of the budget and one with another seed for the rest, their
  probabilities averaged.

Each model predicts as densify does (``predict_classes``: mirrored, Gaussian-blended windows); the scores are
IoU per class on the never-annotated voxels.

    python examples/thin_shell/ensemble.py [--volume thin] [--seed 42 1] [--minutes 12]
        [--variants 'second model' 'two halves']

Writes ``results_ensemble.json`` (``{"commands": [...], "12": {volume: {variant: {seed: run}}}}``);
``run.py --markdown-only`` puts the figures on the page.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from experiments import ENSEMBLE_RESULTS, ENSEMBLE_SEED_OFFSET, ENSEMBLE_WAYS  # noqa: E402
from processes import seed_variants_main  # noqa: E402
from volume import IGNORE, iou_per_class, sparse_volume  # noqa: E402

#: a second model needs at least this many seconds of the budget to be trained
SHORTEST_SECOND_MODEL = 60


def averaged_classes(classes: np.ndarray, probabilities: list[np.ndarray]) -> np.ndarray:
    """The class map of several models' probabilities averaged: ``classes`` (the value of each channel) at the
    argmax of the mean of ``probabilities`` (each ``(n_classes, x, y, z)``), ``(x, y, z)``."""
    return np.asarray(classes)[np.argmax(np.mean(probabilities, axis=0), axis=0)]


def one_run(volume: str, seed: int, minutes: int, variant: str) -> dict:
    """Train and average the two models of ``variant`` on ``volume`` within ``minutes``; their scores."""
    from unet3d_keras.densify import fit_sparse, predict_classes

    image, dense, sparse, never = sparse_volume(volume)
    began = time.monotonic()
    end = began + 60 * minutes
    first_end = end if variant == "second model" else began + 30 * minutes
    first = fit_sparse(image, sparse, IGNORE, deadline=first_end, seed=seed, show_progress=False)
    first_classes, first_probabilities = predict_classes(first, image)
    record = {"first_iou": iou_per_class(first_classes, dense, never), "first_steps": first.steps,
              "first_stop_reason": first.stop_reason, "first_seconds": round(time.monotonic() - began)}
    if end - time.monotonic() < SHORTEST_SECOND_MODEL:
        return {**record, "second_steps": 0, "steps": first.steps, "seconds": round(time.monotonic() - began),
                "iou": record["first_iou"]}
    second = fit_sparse(image, sparse, IGNORE, deadline=end, seed=seed + ENSEMBLE_SEED_OFFSET, show_progress=False)
    second_classes, second_probabilities = predict_classes(second, image)
    averaged = averaged_classes(first.classes, [first_probabilities, second_probabilities])
    return {**record, "second_iou": iou_per_class(second_classes, dense, never), "second_steps": second.steps,
            "second_stop_reason": second.stop_reason, "steps": first.steps + second.steps,
            "seconds": round(time.monotonic() - began),
            "iou": iou_per_class(averaged, dense, never)}


def main(argv: list[str] | None = None) -> int:
    return seed_variants_main(__file__, __doc__, ENSEMBLE_RESULTS, list(ENSEMBLE_WAYS), list(ENSEMBLE_WAYS), one_run,
                              lambda result: "IoU " + " ".join(f"{v:.3f}" for v in result["iou"])
                              + ", first model " + " ".join(f"{v:.3f}" for v in result["first_iou"]), argv)


if __name__ == "__main__":
    sys.exit(main())
