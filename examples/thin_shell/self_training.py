"""Self-training (the model's confident predictions as labels) against densify's defaults, paired runs.

For each seed, the runs of the same budget train two at a time (two processes with one thread each, as
``run.py`` runs its rows; by default each seed's defaults and self-training side by side) on one volume
of ``volume.py`` (two slices per axis annotated):

- ``defaults``: ``unet3d_keras.densify.fit_sparse`` with densify's defaults for the whole budget;
- ``self-training``: the same for the first half of the budget (``experiments.SELF_TRAINING_FIRST_SHARE``);
  then every never-annotated voxel whose predicted probability is at least
  ``experiments.SELF_TRAINING_THRESHOLD`` (0.9) takes the predicted class as its label, and a new model trains
  from scratch on the annotated voxels and those for the rest of the budget, to its end (the held-back
  tiles would hold pseudo-labels too, so their plateau does not stop it);
- ``balanced self-training``: the same, but each class labels the surest half
  (``experiments.SELF_TRAINING_BALANCED_SHARE``) of the voxels predicted as it, so that no class is left
  unlabelled more than another (class-balanced self-training, Zou et al. 2018).

Each is predicted as densify predicts (``predict_classes``) and scored on the never-annotated voxels;
the self-training runs also record their first model's scores, how many never-annotated voxels got a
label, and the precision and recall of the membrane labels.

    python examples/thin_shell/self_training.py [--volume thin] [--seed 42 1] [--minutes 12]
        [--variants defaults self-training]

Writes ``results_self_training.json`` (``{"commands": [...], "12": {volume: {variant: {seed: run}}}}``);
``run.py --markdown-only`` puts the figures on the page.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from experiments import (SELF_TRAINING_BALANCED_SHARE, SELF_TRAINING_FIRST_SHARE, SELF_TRAINING_RESULTS,  # noqa: E402
                         SELF_TRAINING_THRESHOLD)
from processes import seed_variants_main  # noqa: E402
from volume import IGNORE, MEMBRANE, iou_per_class, sparse_volume  # noqa: E402

#: the runs of a seed: densify's defaults, and self-training with the labels that :func:`pseudo_labels` makes with
#: these arguments
VARIANTS: dict[str, dict | None] = {"defaults": None, "self-training": {},
                                    "balanced self-training": {"balanced_share": SELF_TRAINING_BALANCED_SHARE}}


def pseudo_labels(sparse: np.ndarray, classes: np.ndarray, probabilities: np.ndarray,
                  threshold: float = SELF_TRAINING_THRESHOLD, balanced_share: float | None = None,
                  rng: np.random.Generator | None = None) -> np.ndarray:
    """The annotation with the unannotated voxels that the model is sure of labelled with their predicted class.

    Args:
        sparse: ``(x, y, z)`` labels, ``IGNORE`` where nobody annotated.
        classes: ``(x, y, z)`` the predicted classes.
        probabilities: ``(n_classes, x, y, z)`` the predicted probabilities.
        threshold: label each voxel whose highest probability reaches it.
        balanced_share: instead, label this share (rounded up) of each class's predicted voxels, those of the
            highest probability, so that each class keeps its predicted share of the labels.
        rng: with ``balanced_share``, orders the voxels of equal probability (most background voxels reach
            1.0): at random, not by position, which would label one end of the volume only.

    Returns:
        ``(x, y, z)`` labels of ``sparse``'s dtype: the annotated voxels as they were.
    """
    unannotated = sparse == IGNORE
    highest = probabilities.max(axis=0)
    if balanced_share is None:
        confident = unannotated & (highest >= threshold)
    else:
        confident = np.zeros(sparse.size, bool)
        for value in np.unique(classes[unannotated]):
            where = np.flatnonzero(unannotated & (classes == value))
            shuffled = where[(rng or np.random.default_rng(0)).permutation(len(where))]
            surest = shuffled[np.argsort(-highest.ravel()[shuffled], kind="stable")]
            confident[surest[:int(np.ceil(balanced_share * len(where)))]] = True
        confident = confident.reshape(sparse.shape)
    return np.where(confident, classes, sparse).astype(sparse.dtype)


def one_run(volume: str, seed: int, minutes: int, variant: str) -> dict:
    """Train one variant on ``volume`` for ``minutes`` and score the never-annotated voxels (IoU per class)."""
    from unet3d_keras.densify import fit_sparse, predict_classes
    from unet3d_keras.densify_holdout import DensifyOptions

    image, dense, sparse, never = sparse_volume(volume)
    began = time.monotonic()
    end = began + 60 * minutes
    trained = VARIANTS[variant] is not None
    first_end = began + 60 * minutes * SELF_TRAINING_FIRST_SHARE if trained else end
    fitted = fit_sparse(image, sparse, IGNORE, deadline=first_end, seed=seed, show_progress=False)
    predicted, probabilities = predict_classes(fitted, image)
    record = {"steps": fitted.steps, "stop_reason": fitted.stop_reason}
    if trained:
        labels = pseudo_labels(sparse, predicted, probabilities, rng=np.random.default_rng(seed), **VARIANTS[variant])
        added = never & (labels != IGNORE)
        membranes = added & (labels == MEMBRANE)
        record.update(first_iou=iou_per_class(predicted, dense, never), first_steps=fitted.steps,
                      labelled_share=float(added.sum() / never.sum()),
                      membrane_precision=float((dense[membranes] == MEMBRANE).mean()),
                      membrane_recall=float((membranes & (dense == MEMBRANE)).sum()
                                            / (never & (dense == MEMBRANE)).sum()),
                      # the membrane's share of the never-annotated voxels left unlabelled, and of all of them
                      unlabelled_membrane_share=float((dense[never & ~added] == MEMBRANE).mean()),
                      membrane_share=float((dense[never] == MEMBRANE).mean()))
        fitted = fit_sparse(image, labels, IGNORE, deadline=end, seed=seed, show_progress=False,
                            options=DensifyOptions(patience_epochs=10**6))
        predicted, _ = predict_classes(fitted, image)
        record.update(steps=record["steps"] + fitted.steps, stop_reason=fitted.stop_reason)
    return {**record, "seconds": round(time.monotonic() - began), "iou": iou_per_class(predicted, dense, never)}


def main(argv: list[str] | None = None) -> int:
    return seed_variants_main(__file__, __doc__, SELF_TRAINING_RESULTS, list(VARIANTS), list(VARIANTS)[:2], one_run,
                              lambda result: "IoU " + " ".join(f"{v:.3f}" for v in result["iou"]), argv)


if __name__ == "__main__":
    sys.exit(main())
