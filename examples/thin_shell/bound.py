"""How far full annotation and a long training take densify's model on a thin_shell volume.

The tables' bound ("every voxel of another volume annotated") trains for at most 12 minutes on one
thread. Here the same model (densify's defaults, 8 base filters) trains on every voxel of several
other volumes made alike (seeds 1, 2, ...), stacked along the last axis, for ``--minutes`` on all
the threads TensorFlow takes, to the end of its budget (no plateau stop); then it predicts this
volume as densify does, and its IoU per class is scored on the voxels that the tables score (those
outside the two annotated slices per axis). Its held-back score (tiles of the other volumes that it
did not train on) is recorded at each evaluation: how the score still moves at the end.

    python examples/thin_shell/bound.py [--volume thin] [--minutes 60] [--others 3] [--seed 42] [--base-filters N]

``--base-filters`` (default densify's) asks whether a larger model gets further in the same time,
``--others`` whether more annotated volumes do.
Writes ``results_bound.json`` (``{key: run}``, the key ``volume`` for densify's model and 3 other volumes,
``"volume, N base filters"`` with ``--base-filters N``, ``"volume, M other volumes"`` with ``--others M``,
``"volume, seed S"`` with another ``--seed``);
``run.py --markdown-only`` puts it on the page.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from accelerator import gpu_name
from experiments import BOUND_OTHERS, BOUND_RESULTS, DEFAULT_SEED
from processes import command_line, machine_name, reply_to_parent, run_json_process, save_json
from volume import IGNORE, VOLUMES, iou_per_class, make_volume, other_volumes, sparse_labels


def one_run(volume: str, minutes: float, others: int, seed: int, base_filters: int | None) -> dict:
    """Train densify's model (with ``base_filters``, if given) on every voxel of ``others`` volumes made like
    ``volume`` for ``minutes``, score ``volume``."""
    from unet3d_keras.densify import fit_sparse, predict_classes
    from unet3d_keras.densify_holdout import DensifyOptions

    arguments = VOLUMES[volume]
    image, dense = make_volume(**arguments)
    never = sparse_labels(dense) == IGNORE
    train_image, train_labels = other_volumes(arguments, others)
    began = time.monotonic()
    # a patience longer than the budget: the whole budget is trained, as run.py's "without the plateau stop"
    overrides = [f"model.n_base_filters={base_filters}"] if base_filters else []
    fitted = fit_sparse(train_image, train_labels, IGNORE, overrides=overrides, deadline=began + 60 * minutes,
                        seed=seed, show_progress=False, predict_shape=image.shape,
                        options=DensifyOptions(patience_epochs=10**6))
    predicted, _ = predict_classes(fitted, image)
    return {"volume": volume, "base_filters": fitted.config.model.n_base_filters, "minutes": minutes,
            "others": others, "seed": seed, "steps": fitted.steps, "stop_reason": fitted.stop_reason,
            "seconds": round(time.monotonic() - began),
            "iou": iou_per_class(predicted, dense, never),
            "iou_every_voxel": iou_per_class(predicted, dense, np.ones(dense.shape, bool)),
            "held_back": fitted.scores, "kept_epoch": fitted.kept_epoch,
            "history": [[entry["epoch"], *entry["iou"]] for entry in fitted.score_history]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volume", choices=list(VOLUMES), default="thin")
    parser.add_argument("--minutes", type=float, default=60.0, help="training budget (default 60)")
    parser.add_argument("--others", type=int, default=BOUND_OTHERS,
                        help=f"fully annotated volumes to train on (default {BOUND_OTHERS})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"densify's seed (default {DEFAULT_SEED})")
    parser.add_argument("--base-filters", type=int, help="the model's base filters (default densify's)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        reply_to_parent(one_run(args.volume, args.minutes, args.others, args.seed, args.base_filters))

    given = argv if argv is not None else sys.argv[1:]
    result = run_json_process([__file__, "--child", *given], f"bound of {args.volume}", threads=None)
    gpu = gpu_name()
    result.update(command=command_line(__file__, given),
                  machine=(f"{gpu}, Keras's {os.environ.get('KERAS_BACKEND', 'tensorflow')} backend" if gpu
                           else f"{machine_name()}, every thread"))
    results = json.loads(BOUND_RESULTS.read_text()) if BOUND_RESULTS.exists() else {}
    # the first runs' keys stay as they were: other options add to the volume's name
    key = ", ".join([args.volume, *([f"{args.base_filters} base filters"] if args.base_filters else []),
                     *([f"{args.others} other volumes"] if args.others != BOUND_OTHERS else []),
                     *([f"seed {args.seed}"] if args.seed != DEFAULT_SEED else [])])
    results[key] = result
    save_json(BOUND_RESULTS, results)
    print(f"{key}: {result['steps']} steps in {result['seconds']} s, IoU on the never-annotated voxels "
          + " ".join(f"{v:.3f}" for v in result["iou"]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
