"""A decision offset for the membrane, chosen on the held-back voxels: does it pay?

For a volume of ``volume.py`` (two slices per axis annotated) and each seed, train densify's defaults
for ``--minutes`` with ``unet3d_keras.densify.fit_sparse`` and predict the volume as densify does
(Gaussian blending, each window's 8 mirrorings averaged). Then add an offset ``b`` to
the membrane's log-probability before the argmax, for ``b`` from -2 to 3 in steps of 0.1, and
score every ``b`` on the held-back annotated voxels (where a user could choose it) and on the
never-annotated voxels (where the tables score). One model scores every offset.

The same prediction scores a second rule, ridge decoding: a voxel whose membrane probability is above a
threshold ``t`` (from 0.05 to 0.45) and peaks across the membrane becomes membrane, whatever the argmax says,
unless the argmax says background. Across the membrane: along the axis where the probability falls off
fastest from the voxel (the most negative second difference), as non-maximum suppression thins an edge to
one pixel. A faint membrane one voxel thick whose probability the model spreads over both sides of a face
would then be drawn once, on its likelier side.

    python examples/thin_shell/offsets.py [--volume thin] [--seed 42 1] [--minutes 5 12]

Each training runs in its own process with one thread, two at a time (as ``run.py`` does).
Writes ``results_offsets.json``: ``{"runs": {volume: {minutes: {seed: run}}}}``, each run with
its steps and, for each offset (``offsets``) and each threshold of the ridge decoding (``ridges``), the IoU
per class on both sets of voxels; prints a summary.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from experiments import DECISION_RULES, OFFSET_RESULTS, chosen_settings  # noqa: E402
from processes import reply_to_parent, run_json_process, run_two_at_a_time, start_results  # noqa: E402
from volume import IGNORE, MEMBRANE, VOLUMES, iou_per_class, sparse_volume  # noqa: E402

OFFSETS = np.round(np.arange(-2.0, 3.01, 0.1), 1)
#: the ridge decoding's thresholds: above 0.5 the argmax already says membrane
RIDGE_THRESHOLDS = np.round(np.arange(0.05, 0.451, 0.05), 2)


def membrane_ridges(membrane: np.ndarray) -> np.ndarray:
    """Where ``membrane`` (a probability, ``(x, y, z)``) peaks across the structure (bool, same shape): it is at
    least its two neighbours along the axis of its most negative second difference (the volume's edge counts as
    the voxel's own value)."""
    padded = np.pad(membrane, 1, mode="edge")
    inner = (slice(1, -1),) * 3
    second, peak = [], []
    for axis in range(3):
        before, after = (tuple(slice(start, stop) if a == axis else whole for a, whole in enumerate(inner))
                         for start, stop in ((0, -2), (2, None)))
        second.append(padded[before] + padded[after] - 2 * membrane)
        peak.append((membrane >= padded[before]) & (membrane >= padded[after]))
    steepest = np.argmin(np.stack(second), axis=0)[None]
    return np.take_along_axis(np.stack(peak), steepest, axis=0)[0]


def ridge_classes(probabilities: np.ndarray, threshold: float) -> np.ndarray:
    """The argmax of ``probabilities`` ``(classes, x, y, z)``, with the membrane where its probability is above
    ``threshold`` on :func:`membrane_ridges`, unless the argmax is background."""
    classes = np.argmax(probabilities, axis=0)
    membrane = probabilities[MEMBRANE]
    classes[membrane_ridges(membrane) & (membrane > threshold) & (classes != 0)] = MEMBRANE
    return classes


def one_run(volume: str, seed: int, minutes: int) -> dict:
    """Train on ``volume`` for ``minutes``; the IoU per class of each membrane offset and each ridge threshold on
    the held-back and the never-annotated voxels."""
    from unet3d_keras.densify import fit_sparse, predict_classes

    image, dense, sparse, never = sparse_volume(volume)
    fitted = fit_sparse(image, sparse, IGNORE, deadline=time.monotonic() + 60 * minutes, seed=seed,
                        show_progress=False)
    _, probabilities = predict_classes(fitted, image)
    log_p = np.log(np.maximum(probabilities, 1e-8))
    def scored(classes: np.ndarray) -> dict:
        return {"held_back": iou_per_class(classes, dense, fitted.held_out_mask),
                "never_annotated": iou_per_class(classes, dense, never)}

    membrane = (np.arange(len(log_p)) == MEMBRANE)[:, None, None, None]
    # log_p itself unchanged: no drift between offsets
    scores = {f"{offset:.1f}": scored(np.argmax(log_p + offset * membrane, axis=0)) for offset in OFFSETS}
    ridges = {f"{threshold:.2f}": scored(ridge_classes(probabilities, threshold)) for threshold in RIDGE_THRESHOLDS}
    return {"steps": fitted.steps, "stop_reason": fitted.stop_reason, "held_out_voxels": fitted.held_out_voxels,
            "held_out_membrane_voxels": int(np.sum(fitted.held_out_mask & (dense == MEMBRANE))), "offsets": scores,
            "ridges": ridges}


def summary(run: dict) -> list[str]:
    """Each chosen offset's and ridge threshold's never-annotated IoU against the argmax."""
    base = run["offsets"]["0.0"]["never_annotated"]
    lines = [f"  no offset: background/cell/membrane {' / '.join(f'{v:.3f}' for v in base)} ({run['steps']} steps)"]
    for field, (name, _) in DECISION_RULES.items():
        for how, setting in chosen_settings(run[field]).items():
            iou = run[field][setting]["never_annotated"]
            lines.append(f"  best {how}: {name} {setting}: {' / '.join(f'{v:.3f}' for v in iou)} "
                         f"(membrane {iou[MEMBRANE] - base[MEMBRANE]:+.3f}, cell {iou[1] - base[1]:+.3f})")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volume", default="thin", choices=list(VOLUMES))
    parser.add_argument("--seed", type=int, nargs="+", default=[42, 1], help="densify's seeds (default 42 1)")
    parser.add_argument("--minutes", type=int, nargs="+", default=[5, 12], help="time budgets (default 5 12)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        volume, seed, minutes = args.child
        reply_to_parent(one_run(volume, int(seed), int(minutes)))

    results, _ = start_results(OFFSET_RESULTS, __file__, argv, {"runs": {}})

    def what(budget_seed: tuple[int, int]) -> str:
        return f"{args.volume}, {budget_seed[0]} min, seed {budget_seed[1]}"

    def run(budget_seed: tuple[int, int]) -> dict:
        minutes, seed = budget_seed
        return run_json_process([__file__, "--child", args.volume, str(seed), str(minutes)], what(budget_seed))

    def keep(budget_seed: tuple[int, int], result: dict) -> str:
        minutes, seed = budget_seed
        results["runs"].setdefault(args.volume, {}).setdefault(str(minutes), {})[str(seed)] = result
        return "\n".join([f"{what(budget_seed)}:", *summary(result)])

    run_two_at_a_time([(minutes, seed) for minutes in args.minutes for seed in args.seed], run, keep, results,
                      OFFSET_RESULTS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
