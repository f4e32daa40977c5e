"""Where to annotate next: the slices densify names against the middle of the widest gap and a random slice.

For a volume of ``volume.py`` (two slices per axis annotated) and each seed, densify's defaults train for
``--steps`` steps with ``unet3d_keras.densify.fit_sparse`` and predict the volume as densify does; on a
class that scores low, densify names, per axis, the unannotated slice where the model expects the most
errors about it (``unet3d_keras.annotation_advice.least_certain_slices``, here for the membrane). Then
one slice more per axis is annotated, three ways, and densify trains again as long, with the same seed:

- **least sure**: the slices that densify named;
- **widest gap**: the middle of the widest gap between the annotated slices, the slice a user adds to
  spread them evenly (``slice_positions(..., nested=True)``: here the middle of each axis);
- **random**: a slice drawn at random (with the seed) among the unannotated ones.

Each is scored on the voxels that none of the runs of its seed saw annotated, so that the three compare.

    python examples/thin_shell/next_slices.py [--volume thin] [--seed 42 1] [--steps 640]

Each training runs in its own process with one thread, two at a time (as ``run.py`` does).
Writes ``results_next_slices.json``: ``{"runs": {volume: {"command", "machine", "steps", "seeds": {seed:
{"scored_voxels", "most_first_run_errors", "runs": {name: {"added", "steps", "seconds", "iou", ...}}}}}},
"commands": [...]}``: ``added`` is the slice added along x, y and z (none for the first run), ``iou`` the IoU
per class on the scored voxels; the first run has the ``expected_errors`` of the slices it named (by its own
probabilities), the others the never-annotated membrane voxels that the first run's map got wrong in their
added slices (``first_run_errors``), against the most in any slice of each axis (``most_first_run_errors``).
``run.py --markdown-only`` puts it on the page.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from experiments import ADDED_WAYS, FIRST_RUN, NEXT_SLICE_RESULTS  # noqa: E402
from processes import (machine_name, reply_to_parent, run_json_process, run_two_at_a_time, save_json,  # noqa: E402
                       start_results)
from volume import IGNORE, MEMBRANE, VOLUMES, iou_per_class, make_volume, sparse_labels  # noqa: E402


def annotation(dense: np.ndarray, added: list[int] | None) -> np.ndarray:
    """Two slices per axis of ``dense`` annotated (:func:`volume.sparse_labels`), and the slice ``added[axis]`` of
    each axis too."""
    sparse = sparse_labels(dense)
    for axis, index in enumerate(added or []):
        where = [slice(None)] * 3
        where[axis] = index
        sparse[tuple(where)] = dense[tuple(where)]
    return sparse


def widest_gap(dense: np.ndarray) -> list[int]:
    """Per axis, the slice in the middle of the widest gap between the two annotated slices and the edges."""
    from unet3d_keras.sparse import slice_positions

    # the nested order adds the middle of the widest gap to the slices it already has; check they are the same
    chosen = []
    for size in dense.shape:
        have = set(slice_positions(size, 2).tolist())
        nested = slice_positions(size, 3, nested=True).tolist()
        if not have < set(nested):
            raise RuntimeError(f"an axis of {size} voxels: the nested slices {nested} do not hold the even {have}")
        chosen.append(next(index for index in nested if index not in have))
    return chosen


def random_slices(dense: np.ndarray, seed: int) -> list[int]:
    """Per axis, a slice drawn with ``seed`` among those that are not annotated."""
    from unet3d_keras.densify_holdout import annotated_planes

    rng = np.random.default_rng(seed)
    planes = annotated_planes(sparse_labels(dense) != IGNORE)
    return [int(rng.choice(np.setdiff1d(np.arange(size), have))) for size, have in zip(dense.shape, planes)]


def one_run(volume: str, seed: int, steps: int, added: list[int] | None, predicted_path: str) -> dict:
    """Train on ``volume`` annotated as :func:`annotation` says for ``steps``; save the predicted classes to
    ``predicted_path`` (.npy) and return the run and the slices densify would name for the membrane."""
    import keras

    from unet3d_keras.annotation_advice import least_certain_slices
    from unet3d_keras.densify import fit_sparse, predict_classes

    image, dense = make_volume(**VOLUMES[volume])
    sparse = annotation(dense, added)
    began = time.monotonic()
    fitted = fit_sparse(image, sparse, IGNORE, steps=steps, seed=seed, show_progress=False)
    predicted, probabilities = predict_classes(fitted, image)
    np.save(predicted_path, predicted.astype(np.uint8))
    named = least_certain_slices(probabilities, MEMBRANE, sparse != IGNORE)
    return {"steps": fitted.steps, "seconds": round(time.monotonic() - began),
            "precision": keras.config.dtype_policy().name,  # densify's mixed_precision auto: this CPU's choice
            "least_sure": [index for index, _ in named], "expected_errors": [round(e, 1) for _, e in named]}


def predicted_file(folder: Path, seed: int, name: str) -> Path:
    """Where the run ``name`` of ``seed`` leaves its predicted classes (.npy)."""
    return folder / f"{seed}_{name.replace(' ', '_')}.npy"


def score_seed(dense: np.ndarray, runs: dict[str, dict], predicted_path: Callable[[str], Path]) -> dict:
    """One seed's record: each run's IoU per class on the voxels that none of them saw annotated; and, in the first
    run's map, the never-annotated membrane voxels it got wrong in each slice added (per axis) and in the slice of
    each axis with the most of them.

    Args:
        dense: the volume's dense labels.
        runs: name -> the run's ``added`` slices, ``steps``, ``seconds`` (and, for the first, ``expected_errors``).
        predicted_path: name -> the .npy file of its predicted classes.
    """
    never = sparse_labels(dense) == IGNORE  # not annotated in the first run
    scored = never.copy()
    for name in ADDED_WAYS:
        scored &= annotation(dense, runs[name]["added"]) == IGNORE
    first = np.load(predicted_path(FIRST_RUN))
    wrong = ((first == MEMBRANE) != (dense == MEMBRANE)) & never
    per_slice = [wrong.sum(axis=tuple(a for a in range(3) if a != axis)) for axis in range(3)]
    record = {"scored_voxels": int(scored.sum()), "most_first_run_errors": [int(p.max()) for p in per_slice],
              "runs": {}}
    for name, run in runs.items():
        record["runs"][name] = {"added": run["added"], "steps": run["steps"], "seconds": run["seconds"],
                                "iou": iou_per_class(np.load(predicted_path(name)), dense, scored)}
        if name == FIRST_RUN:
            record["runs"][name]["expected_errors"] = run["expected_errors"]
        else:
            record["runs"][name]["first_run_errors"] = [int(p[index]) for p, index in zip(per_slice, run["added"])]
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volume", default="thin", choices=list(VOLUMES))
    parser.add_argument("--seed", type=int, nargs="+", default=[42, 1], help="densify's seeds (default 42 1)")
    parser.add_argument("--steps", type=int, default=640, help="training steps of each run (default 640)")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        volume, seed, steps, added, predicted_path = args.child
        reply_to_parent(one_run(volume, int(seed), int(steps), json.loads(added), predicted_path))

    results, command = start_results(NEXT_SLICE_RESULTS, __file__, argv, {"runs": {}})
    # a later command's runs replace this volume's: runs of two sessions do not compare
    record = results["runs"][args.volume] = {"command": command, "machine": machine_name(),
                                             "steps": args.steps, "seeds": {}}
    _, dense = make_volume(**VOLUMES[args.volume])
    runs: dict[tuple[int, str], dict] = {}
    with tempfile.TemporaryDirectory(prefix="next_slices_") as temporary:
        folder = Path(temporary)

        def train(job: tuple[int, str, list[int] | None]) -> dict:
            seed, name, added = job
            return run_json_process([__file__, "--child", args.volume, str(seed), str(args.steps),
                                     json.dumps(added), str(predicted_file(folder, seed, name))],
                                    f"{args.volume}, seed {seed}, {name}")

        def keep(job: tuple[int, str, list[int] | None], result: dict) -> str:
            seed, name, added = job
            runs[seed, name] = dict(result, added=added)
            return (f"{args.volume}, seed {seed}, {name} (added {added}): {result['steps']} steps in "
                    f"{result['seconds']} s")

        first = [(seed, FIRST_RUN, None) for seed in args.seed]
        others = [(seed, name, added) for seed in args.seed for name, added in
                  (("widest gap", widest_gap(dense)), ("random", random_slices(dense, seed)))]
        run_two_at_a_time(first + others[:len(first)], train, keep, results, NEXT_SLICE_RESULTS)
        # the slices that the first run of each seed named
        named = [(seed, "least sure", runs[seed, FIRST_RUN]["least_sure"]) for seed in args.seed]
        run_two_at_a_time(others[len(first):] + named, train, keep, results, NEXT_SLICE_RESULTS)
        record["machine"] += f", {runs[args.seed[0], FIRST_RUN]['precision']}"
        for seed in args.seed:
            seed_runs = {name: runs[seed, name] for name in (FIRST_RUN, *ADDED_WAYS)}
            record["seeds"][str(seed)] = score_seed(dense, seed_runs, lambda name: predicted_file(folder, seed, name))
            for name, run in record["seeds"][str(seed)]["runs"].items():
                print(f"seed {seed}, {name}: background/cell/membrane IoU "
                      + " / ".join(f"{v:.3f}" for v in run["iou"]))
    save_json(NEXT_SLICE_RESULTS, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
