"""Gaussian against uniform blending of densify's overlapping windows: one model, predicted both ways.

For each volume of ``volume.py`` (two slices per axis annotated) and each seed, train densify's
defaults for 5 minutes (``--minutes 12``: 12) with ``unet3d_keras.densify.fit_sparse``, then
predict the volume twice with the same weights, each window's 8 mirrorings averaged: the
overlapping windows blended uniformly (a plain average) and with Gaussian weights that fall off
from each window's centre.
Both are scored on the never-annotated voxels. ``--mni152`` does the same for the MNI152 rows of
``examples/mni152_sparse`` (4 slices per axis, 200 epochs of 16 steps). One model scores both
blendings, so the difference is the blending's alone, not that of two timed trainings.

    python examples/thin_shell/blending.py [--volume thin ...] [--seed 42 1] [--minutes 5|12] [--other]
                                           [--mni152 42 1 2]

Each training runs in its own process with one thread, two at a time (as ``run.py`` does; the
MNI152 ones one at a time, with every thread). Writes ``results_blending.json`` (the volumes' runs
under their budget: ``{"volumes": {"5": {volume: {seed: run}}, "12": ...}}``; with ``--other``,
the models trained on every voxel of another volume, under ``"other_volume"``);
``run.py --markdown-only`` puts the figures on the page.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from unet3d_keras.densify import SparseModel

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
from experiments import BLENDING_RESULTS as RESULTS  # noqa: E402
from processes import reply_to_parent, run_json_process, run_two_at_a_time, save_json, start_results  # noqa: E402

MINUTES = (5, 12)
MNI152_EPOCHS = 200
BLENDINGS = ("uniform", "gaussian")


def predict_both_ways(fitted: SparseModel, images: np.ndarray) -> dict[str, np.ndarray]:
    """Class indices ``(x, y, z)`` of ``images`` predicted with each blending of ``BLENDINGS``."""
    import dataclasses

    from unet3d_keras.densify import predict_classes

    return {weighting: predict_classes(dataclasses.replace(fitted, window_weighting=weighting), images)[0]
            for weighting in BLENDINGS}


def one_volume(volume: str, seed: int, minutes: int, other: bool = False, changes: dict | None = None) -> dict:
    """Train on one thin_shell volume for ``minutes`` and score both blendings (IoU per class).

    ``other``: train on every voxel of another volume made alike, stacked before this one (left
    unannotated), as run.py's rows "every voxel of another volume annotated" do. ``changes``: fields of
    densify's options (``DensifyOptions``) that differ from its defaults.
    """
    import keras
    from volume import IGNORE, SHAPE, VOLUMES, after_other_volume, iou_per_class, sparse_volume

    from unet3d_keras.densify import fit_sparse
    from unet3d_keras.densify_holdout import DensifyOptions

    options = DensifyOptions(**(changes or {}))
    image, dense, sparse, never = sparse_volume(volume)
    if other:
        image, sparse = after_other_volume(image, VOLUMES[volume])
    began = time.monotonic()
    fitted = fit_sparse(image, sparse, IGNORE, deadline=began + 60 * minutes, seed=seed, show_progress=False,
                        options=options)
    seconds = round(time.monotonic() - began)
    # this volume is the last SHAPE[2] slices of the image (all of it unless ``other``)
    predicted = {weighting: labels[..., -SHAPE[2]:] for weighting, labels in predict_both_ways(fitted, image).items()}
    return {"steps": fitted.steps, "stop_reason": fitted.stop_reason, "plateaued": fitted.plateaued,
            "mirror": fitted.mirror, "seconds": seconds,
            "class_weighting": fitted.class_weighting, "patience_epochs": options.patience_epochs,
            "policy": keras.config.dtype_policy().name,
            **{weighting: iou_per_class(labels, dense, never) for weighting, labels in predicted.items()}}


def one_mni152(seed: int) -> dict:
    """Train on 4 slices per axis of MNI152 for MNI152_EPOCHS epochs and score both blendings (GM, WM IoU)."""
    sys.path.insert(0, str(ROOT / "examples" / "mni152_sparse"))
    import keras
    from run import EXTRA_SETTINGS, IGNORE, iou, load_mni152, sparse_labels

    from unet3d_keras.densify import fit_sparse

    t1, labels, _ = load_mni152()
    sparse = sparse_labels(labels, 4)
    never = sparse == IGNORE
    began = time.monotonic()
    fitted = fit_sparse(t1, sparse, IGNORE, overrides=[f"training.n_epochs={MNI152_EPOCHS}", *EXTRA_SETTINGS],
                        seed=seed, show_progress=False)
    seconds = round(time.monotonic() - began)
    predicted = predict_both_ways(fitted, t1)
    return {"steps": fitted.steps, "mirror": fitted.mirror, "seconds": seconds,
            "policy": keras.config.dtype_policy().name,
            **{weighting: [iou(classes[never], labels[never], c) for c in (1, 2)]
               for weighting, classes in predicted.items()}}


def run_child(kind: str, name: str, seed: int, threads: int | None, minutes: int = MINUTES[0]) -> dict:
    """One training in its own process (TensorFlow's threads are fixed when it starts)."""
    return run_json_process([__file__, "--child", kind, name, str(seed), str(minutes)], f"{kind} {name} seed {seed}",
                            threads)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volume", nargs="*", default=["thick", "thin", "clear", "edges"],
                        choices=["thick", "thin", "clear", "edges"])
    parser.add_argument("--seed", type=int, nargs="+", default=[42, 1], help="densify's seeds (default 42 1)")
    parser.add_argument("--minutes", type=int, choices=MINUTES, default=MINUTES[0],
                        help="the volumes' time budget (default 5)")
    parser.add_argument("--other", action="store_true",
                        help="train on every voxel of another volume made alike (run.py's rows 'every voxel of "
                             "another volume annotated'), not on two slices per axis of this one")
    parser.add_argument("--mni152", type=int, nargs="*", default=[], metavar="SEED",
                        help="also the MNI152 rows with these seeds (none by default)")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, name, seed, minutes = args.child
        result = (one_mni152(int(seed)) if kind == "mni152" else
                  one_volume(name, int(seed), int(minutes), other=kind == "other"))
        reply_to_parent(result)

    results, _ = start_results(RESULTS, __file__, argv, {})
    for key in ("volumes", "other_volume", "mni152"):
        results.setdefault(key, {})
    kind = "other" if args.other else "volume"

    def run(job: tuple[str, int]) -> dict:
        volume, seed = job
        return run_child(kind, volume, seed, threads=1, minutes=args.minutes)

    def keep(job: tuple[str, int], result: dict) -> str:
        volume, seed = job
        budget = results["other_volume" if args.other else "volumes"].setdefault(str(args.minutes), {})
        budget.setdefault(volume, {})[str(seed)] = result
        which = f"{volume}{' (another volume annotated)' * args.other}, {args.minutes} min, seed {seed}"
        return f"{which}: " + "; ".join(f"{w} " + " ".join(f"{v:.3f}" for v in result[w]) for w in BLENDINGS)

    run_two_at_a_time([(volume, seed) for volume in args.volume for seed in args.seed], run, keep, results, RESULTS)
    for seed in args.mni152:
        result = run_child("mni152", "mni152", seed, threads=None)
        results["mni152"][str(seed)] = result
        save_json(RESULTS, results)  # a failed run loses only itself
        print(f"MNI152, seed {seed}: " + "; ".join(
            f"{w} GM/WM " + "/".join(f"{v:.3f}" for v in result[w]) for w in BLENDINGS), flush=True)
    save_json(RESULTS, results)  # the command, where nothing ran
    return 0


if __name__ == "__main__":
    sys.exit(main())
