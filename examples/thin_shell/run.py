"""Thin-structure densification experiment: densify on cells packed against each other, each wrapped in a
membrane one or two voxels thick, scored on the voxels never annotated.

The folder: ``volume.py`` makes the volumes and their annotation (``python examples/thin_shell/volume.py
--volume thin --output thin`` writes one, to try densify on it); ``experiments.py`` names what each script
runs and the file it keeps its results in; ``processes.py`` runs the trainings in child processes;
``page.py`` writes the page section from the results.

Each row runs ``scripts/densify.py`` (the command a user runs) and scores the written map's
per-class IoU on the never-annotated voxels; the intensity row chooses the two thresholds that
maximise the mean IoU on the annotated voxels and scores the same voxels. The row "every voxel
annotated" trains on the dense labels: what the model reaches in the same minutes when nothing
is missing, on voxels it trained on. The rows "every voxel of another volume annotated" train on
the dense labels of a second volume made alike (seed 1 instead of 0), with this volume stacked
after it, unannotated, in the image that densify reads: what full annotation gives on voxels that
the model did not see.

    python examples/thin_shell/run.py [--volume thick|thin|clear|edges] [--rows NAME ...] [--seed N ...] [--workers 2]

Results go to examples/thin_shell/results*.json (rows already there are kept unless rerun).
``blending.py`` scores today's models with both blendings of the windows, ``figure.py`` draws a slice,
``offsets.py`` tries a decision offset and ridge decoding for the membrane, ``bound.py`` trains long on every
voxel of other volumes, ``tuning.py`` changes the learning rate, the window, the batch or the depth, or
rotates the training windows, ``next_slices.py`` adds the slices that densify names for annotation,
``oracle.py`` asks how much of a one-voxel membrane the image shows, ``forest.py`` runs the classic baseline
(a random forest on filter responses), ``watershed.py`` redraws the membrane between the cells that a
watershed finds, ``weights.py`` pairs square-root class weights with the defaults at one budget,
``self_training.py`` trains again on the model's surest predictions (self-training) beside the defaults,
``ensemble.py`` averages two models trained within the budget, ``accelerator.py`` runs densify and the bound
on a GPU, ``colonies.py`` densifies a rare membrane (small colonies of touching cells in a wide field);
``run.py --markdown-only`` puts their figures on the page too (``page.py``).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nibabel as nib
import numpy as np

# this folder's modules: a script's folder is first on sys.path
from experiments import DEFAULT_SEED, DENSE_ROWS, HERE, OTHER_ROWS, ROOT, ROWS, VOLUME_TABLES
from page import write_section
from processes import machine_name, run_process, save_json
from volume import (CLASSES, SHAPE, VOLUMES, best_thresholds, iou_per_class, sparse_volume, threshold_classes,
                    write_inputs)


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)


def run_row(name: str, folder: Path, seed: int) -> tuple[dict, Path]:
    """Run one row's densify with ``seed``; the row's record and the written map's path."""
    extra, minutes = ROWS[name]
    output = folder / slug(f"{name} {seed}") / "dense.nii.gz"  # one folder per run: densify locks its output folder
    output.parent.mkdir()
    image, labels = (("other_image.nii.gz", "other_labels.nii.gz") if name in OTHER_ROWS else
                     ("image.nii.gz", "dense.nii.gz" if name in DENSE_ROWS else "sparse.nii.gz"))
    command = [str(ROOT / "scripts" / "densify.py"), "--image", str(folder / image),
               "--labels", str(folder / labels), "--output", str(output), "--max-minutes", str(minutes),
               "--seed", str(seed), "--quiet", *extra]
    began = time.monotonic()
    done = run_process(command, name)
    scores_file = output.with_name("dense_scores.json")
    report = json.loads(scores_file.read_text())
    return {"name": name, "arguments": list(extra), "minutes": minutes, "seconds": round(time.monotonic() - began),
            "steps": report["steps"], "stop_reason": report["stop_reason"], "held_back": report["scores"],
            "log": done.stdout.strip().splitlines()[-8:], "final_decay": True,
            "class_weights": report["class_weights"], "mirror": report["mirror"],
            "window_weighting": report["window_weighting"]}, output


def save_results(path: Path, results: dict, new_rows: dict) -> None:
    """Write ``results`` with ``new_rows`` added, keeping the rows and commands that another run of
    this script wrote to the same file since this one read it (two may run at once, on other rows)."""
    # Each call opens the lock file anew, so the lock also serialises the threads of one run.
    with open(Path(tempfile.gettempdir()) / f"thin_shell_{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        on_disk = json.loads(path.read_text()) if path.exists() else {}
        results["rows"] = {**on_disk.get("rows", results["rows"]), **new_rows}
        results["commands"] = [*on_disk.get("commands", []),
                               *(c for c in results["commands"] if c not in on_disk.get("commands", []))]
        save_json(path, results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="*", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--workers", type=int, default=2, help="densify runs at once (each gets one thread)")
    parser.add_argument("--seed", type=int, nargs="+", default=[DEFAULT_SEED],
                        help=f"densify's seeds, each row run with each (default {DEFAULT_SEED}; rows of other seeds "
                             "are kept apart, as 'NAME [seed N]', and summarised under the table)")
    parser.add_argument("--volume", choices=list(VOLUMES), default="thick",
                        help="thick: two-voxel membranes (results.json); thin: one-voxel, fainter ones "
                             "(results_thin.json); clear: thin ones with a quarter of the noise (results_clear.json); "
                             "edges: two-voxel ones as bright as their cells, a quarter of the noise "
                             "(results_edges.json)")
    parser.add_argument("--markdown-only", action="store_true", help="rewrite the page's section from the results")
    args = parser.parse_args(argv)
    if args.markdown_only:
        write_section()
        return 0
    results_name, _ = VOLUME_TABLES[args.volume]
    results_path = HERE / results_name
    command = "python examples/thin_shell/run.py" + (f" --volume {args.volume}" if args.volume != "thick" else "") + (
        f" --seed {' '.join(map(str, args.seed))}" if args.seed != [DEFAULT_SEED] else "") + (
        " --rows " + " ".join(f'"{r}"' for r in args.rows) if args.rows != list(ROWS) else "")

    image, dense, sparse, never = sparse_volume(args.volume)
    results = json.loads(results_path.read_text()) if results_path.exists() else {"rows": {}}
    commands = results.setdefault("commands", [results.pop("command")] if "command" in results else [])
    if command not in commands:
        commands.append(command)
    results["volume"] = {"shape": list(SHAPE), "class_share": [float(np.mean(dense == c)) for c in range(3)],
                         "annotated_share": float(np.mean(~never)),
                         "annotated_voxels": [int(np.sum(sparse == c)) for c in range(3)]}
    low, high = best_thresholds(image, sparse)
    results["thresholds"] = {"low": low, "high": high,
                             "iou": iou_per_class(threshold_classes(image, low, high), dense, never)}
    results["machine"] = machine_name()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_inputs(folder, VOLUMES[args.volume])

        def one(run: tuple[str, int]) -> None:
            name, seed = run
            row, output = run_row(name, folder, seed)
            predicted = np.asarray(nib.load(output).dataobj)[..., -SHAPE[2]:]  # this volume, after the other one
            row["iou"] = iou_per_class(predicted, dense, never)
            save_results(results_path, results, {name if seed == DEFAULT_SEED else f"{name} [seed {seed}]": row})
            print(f"{name}, seed {seed}: IoU " + ", ".join(f"{c} {v:.3f}" for c, v in zip(CLASSES, row["iou"]))
                  + f" ({row['steps']} steps, {row['stop_reason']})", flush=True)

        with ThreadPoolExecutor(args.workers) as pool:
            list(pool.map(one, [(name, seed) for seed in args.seed for name in args.rows]))
    save_results(results_path, results, {})
    write_section()
    print("thresholds: IoU " + ", ".join(f"{c} {v:.3f}" for c, v in zip(CLASSES, results["thresholds"]["iou"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
