"""What a GPU buys on a thin_shell volume: densify and the bound, trained under Keras's JAX backend.

The page's timed runs were made on CPUs. Here the same trainings run on one GPU, all at once, each in a
process of its own, for ``--minutes`` each:

- densify's defaults on ``--volume`` (two slices per axis annotated), each ``--seed``: ``blending.py``'s runs,
  scored on the never-annotated voxels with both blendings of the windows;
- the bound, for each ``--base-filters``: that model trained on every voxel of ``--others`` other volumes made
  alike to the end of its budget (no plateau stop), then scored on the volume's never-annotated voxels:
  ``bound.py``'s runs;
- with ``--mni152``, ``blending.py``'s MNI152 rows (4 slices per axis, 200 epochs of 16 steps) with those seeds.

    python examples/thin_shell/accelerator.py [--minutes 5] [--volume thin] [--seed 42 1] [--others 3]
                                              [--base-filters 8 32] [--mni152 SEED ...] [--backend jax]

Writes ``results_accelerator.json`` (the device, the backend, and each run's record under ``"densify"``
(seed -> run), ``"bound"`` (base filters -> run) and ``"mni152"`` (its command and seed -> run); a run with
``--seed`` and ``--base-filters`` empty keeps the others' records); ``run.py --markdown-only`` puts it on the page.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from blending import run_child
from experiments import ACCELERATOR_RESULTS, BOUND_OTHERS, DEFAULT_SEED
from processes import command_line, machine_name, run_json_process, run_two_at_a_time, save_json
from volume import VOLUMES

HERE = Path(__file__).resolve().parent


def gpu_name() -> str | None:
    """The GPU's name as nvidia-smi gives it (``N x name`` for several), or None without one."""
    try:
        names = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                               text=True, check=True).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{len(names) - 1} x {names[0].strip()}" if len(names) > 2 else names[0].strip()


def device_name() -> str:
    """The GPU's name (:func:`gpu_name`), else the processor's."""
    return gpu_name() or f"no GPU: {machine_name()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=5, help="each run's budget (default 5)")
    parser.add_argument("--volume", choices=list(VOLUMES), default="thin")
    parser.add_argument("--seed", type=int, nargs="*", default=[DEFAULT_SEED, 1],
                        help=f"densify's seeds (default {DEFAULT_SEED} 1; none: no densify run)")
    parser.add_argument("--others", type=int, default=BOUND_OTHERS,
                        help=f"the bound's fully annotated volumes (default {BOUND_OTHERS})")
    parser.add_argument("--base-filters", type=int, nargs="*", default=[8, 32],
                        help="one bound per model size (default 8 32; none: no bound)")
    parser.add_argument("--mni152", type=int, nargs="*", default=[], metavar="SEED",
                        help="also blending.py's MNI152 rows with these seeds (none by default)")
    parser.add_argument("--backend", choices=["jax", "torch", "tensorflow"], default="jax",
                        help="the Keras backend of the runs (default jax)")
    args = parser.parse_args(argv)

    # every child inherits these: the backend, and memory taken as needed, since all runs share one GPU
    os.environ.update(KERAS_BACKEND=args.backend, XLA_PYTHON_CLIENT_PREALLOCATE="false")
    jobs = ([("densify", seed) for seed in args.seed] + [("bound", filters) for filters in args.base_filters]
            + [("mni152", seed) for seed in args.mni152])
    if not jobs:
        parser.error("nothing to run: give --seed, --base-filters or --mni152")
    command, device = command_line(__file__, argv), device_name()
    results = json.loads(ACCELERATOR_RESULTS.read_text()) if ACCELERATOR_RESULTS.exists() else {}
    if (results.get("device"), results.get("backend")) != (device, args.backend):
        results = {}  # runs of another machine or backend are not kept beside these
    results.update(device=device, backend=args.backend)
    if args.seed or args.base_filters:  # the thin_shell runs are replaced together, the MNI152 ones kept
        results.update(command=command, volume=args.volume, minutes=args.minutes, others=args.others,
                       at_once=len(jobs), densify={}, bound={})
    if args.mni152:
        results["mni152"] = {"command": command, "at_once": len(jobs), "runs": {}}

    def run(job: tuple[str, int]) -> dict:
        kind, value = job
        began = time.monotonic()
        if kind == "densify":
            result = run_child("volume", args.volume, value, threads=None, minutes=args.minutes)
        elif kind == "mni152":
            result = run_child("mni152", "mni152", value, threads=None)
        else:
            result = run_json_process([str(HERE / "bound.py"), "--child", "--volume", args.volume, "--minutes",
                                       str(args.minutes), "--others", str(args.others), "--seed", str(DEFAULT_SEED),
                                       "--base-filters", str(value)], f"bound {value}", threads=None)
        result["process_seconds"] = round(time.monotonic() - began)  # imports and compilation included
        return result

    def keep(job: tuple[str, int], result: dict) -> str:
        kind, value = job
        if kind == "mni152":
            results["mni152"]["runs"][str(value)] = result
            return (f"MNI152, seed {value}: {result['steps']} steps, GM/WM IoU on the never-annotated voxels "
                    + "/".join(f"{v:.3f}" for v in result["gaussian"]))
        results[kind][str(value)] = result
        scores = result["gaussian"] if kind == "densify" else result["iou"]
        what = f"seed {value}" if kind == "densify" else f"{value} base filters"
        return (f"{kind} {args.volume}, {what}: {result['steps']} steps ({result['stop_reason']}), IoU on the "
                "never-annotated voxels " + " ".join(f"{v:.3f}" for v in scores))

    print(f"{len(jobs)} runs at once on {results['device']}, Keras backend {args.backend}", flush=True)
    run_two_at_a_time(jobs, run, keep, results, ACCELERATOR_RESULTS, at_once=len(jobs))
    save_json(ACCELERATOR_RESULTS, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
