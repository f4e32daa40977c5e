#!/usr/bin/env python
"""Settings trials for the semi-automated MNI152 experiment, several trainings at once.

Each trial is one ``semi_automated`` run of ``run.py`` (densify settings, slices per axis,
seed); trials run in parallel worker processes (each its own Keras session, useful on a GPU
or a many-core machine) and every result is appended as one JSON line as soon as it is known,
so a run stopped at a time limit keeps what it finished.

    python examples/mni152_sparse/sweep.py --save-data /tmp/mni152.npz      # needs nilearn
    KERAS_BACKEND=jax python examples/mni152_sparse/sweep.py --data /tmp/mni152.npz \\
        --workers 8 --minutes 5 --output sweep.jsonl

Each line also holds the IoU on the annotated voxels themselves, which tells underfitting
(low there too) from poor generalisation (high there, low elsewhere).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from unet3d_keras.config import sets_key

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # noqa: E402 (examples/mni152_sparse/run.py)

# (name, densify settings, epochs): the first is the experiment's current setting.
TRIALS: list[tuple[str, tuple[str, ...], int]] = [
    ("current", run.EXTRA_SETTINGS, 80),
    ("float32", (*run.EXTRA_SETTINGS, "training.mixed_precision=off"), 80),
    ("ce", (*run.EXTRA_SETTINGS, "training.loss=cross_entropy"), 80),
    ("ce_float32", (*run.EXTRA_SETTINGS, "training.loss=cross_entropy", "training.mixed_precision=off"), 80),
    ("epochs200", run.EXTRA_SETTINGS, 200),
    ("ce_epochs200", (*run.EXTRA_SETTINGS, "training.loss=cross_entropy"), 200),
    ("filters16_epochs200", (*run.EXTRA_SETTINGS, "model.n_base_filters=16"), 200),
    ("patch48_epochs200", (*run.EXTRA_SETTINGS, "training.patch_shape=[48,48,48]"), 200),
    ("lr005_epochs200", (*run.EXTRA_SETTINGS, "training.initial_learning_rate=0.005"), 200),
    ("depth4_f16_epochs200", (*run.EXTRA_SETTINGS, "model.depth=4", "model.n_base_filters=16"), 200),
    ("float32_epochs200", (*run.EXTRA_SETTINGS, "training.mixed_precision=off"), 200),
    ("elastic_epochs200", (), 200),
]


def trial_list(names: list[str] | None, slices: list[int], seeds: list[int]) -> list[dict]:
    """Every (trial, slices, seed), slices and seeds outermost so each trial gets a first row early."""
    chosen = [t for t in TRIALS if names is None or t[0] in names]
    return [{"name": name, "settings": list(settings), "epochs": epochs, "slices": s, "seed": seed}
            for seed in seeds for s in slices for name, settings, epochs in chosen]


def _precision_setting(settings: list[str], default: str) -> list[str]:
    """Pin the precision so that a GPU (float16 under ``auto``) trains as the CPU would."""
    if sets_key(settings, "training.mixed_precision"):
        return settings
    return [*settings, f"training.mixed_precision={default}"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="npz with t1 and labels (from --save-data), instead of nilearn")
    parser.add_argument("--save-data", help="write the template and labels to this npz and stop")
    parser.add_argument("--output", default="sweep.jsonl", help="JSON lines, appended")
    parser.add_argument("--trials", nargs="+", help=f"names among {[t[0] for t in TRIALS]} (default all)")
    parser.add_argument("--slices", type=int, nargs="+", default=[4, 1, 8, 2])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    parser.add_argument("--epochs", type=int, help="override every trial's epochs (a machinery check)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--minutes", type=float, default=float("inf"), help="start no trial after this")
    parser.add_argument("--precision", default="bfloat16", help="training.mixed_precision unless a trial sets it")
    args = parser.parse_args(argv)
    if args.data:
        loaded = np.load(args.data)
        arrays = {key: loaded[key] for key in ("t1", "labels", "affine")}
    else:
        t1, labels, affine = run.load_mni152()
        arrays = {"t1": t1, "labels": labels, "affine": affine}
    if args.save_data:
        np.savez_compressed(args.save_data, **arrays)
        print(f"wrote {args.save_data}: {arrays['t1'].shape}")
        return 0
    trials = trial_list(args.trials, args.slices, args.seeds)
    if args.epochs:
        for trial in trials:
            trial["epochs"] = args.epochs
    print(f"{len(trials)} trials on {args.workers} workers", flush=True)
    by_call = {}
    calls = []
    for trial in trials:
        kwargs = {"slices": trial["slices"], "epochs": trial["epochs"], "seed": trial["seed"],
                  "settings": tuple(_precision_setting(trial["settings"], args.precision))}
        calls.append(("semi", kwargs))
        by_call[id(kwargs)] = trial
    start = time.monotonic()

    def record(call: tuple[str, dict], result) -> None:
        trial = {**by_call[id(call[1])], "settings": list(call[1]["settings"])}
        if isinstance(result, Exception):  # one failed trial must not lose the others
            row = {**trial, "error": repr(result)}
        else:
            row, sparse, prediction = result
            annotated = sparse != run.IGNORE
            labels = arrays["labels"]
            row.update(trial, sweep_elapsed_seconds=time.monotonic() - start,
                       annotated_gm_iou=run.iou(prediction[annotated], labels[annotated], 1),
                       annotated_wm_iou=run.iou(prediction[annotated], labels[annotated], 2))
        with open(args.output, "a") as stream:
            stream.write(json.dumps(row) + "\n")
        print(f"{row['name']:<22} slices {row['slices']} seed {row['seed']}: "
              f"GM {row.get('cnn_gm_iou', 0):.3f} WM {row.get('cnn_wm_iou', 0):.3f} (annotated "
              f"{row.get('annotated_gm_iou', 0):.3f}/{row.get('annotated_wm_iou', 0):.3f}) "
              f"{row.get('seconds', 0):.0f} s {row.get('error', '')}", flush=True)

    left = run.run_trials(calls, arrays, args.workers, record, deadline=start + 60 * args.minutes)
    if left:
        print(f"time limit: {len(left)} trials not started", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
