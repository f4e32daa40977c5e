"""A small class: densify on three small lesions among vessels, two slices per axis annotated.

The volume (64 x 64 x 48 voxels): tissue with a smooth texture, eight vessels (tubes 3 voxels wide) and three
lesions (balls of radius 5.5 to 6 voxels, 2529 voxels in all) a little brighter than the vessels, blurred and
noisy. Class 1 is the lesions, 0 all the rest; two slices per axis are annotated (206 lesion voxels). For each
class weighting and seed, ``scripts/densify.py`` runs with ``--max-minutes``, as a user runs it, one thread each,
two at a time; the lesion's IoU on the never-annotated voxels, its held-back score and whether densify warned
about it are kept.

    python examples/thin_shell/lesion.py [--seed 1 3 5] [--class-weights none sqrt] [--minutes 5]

Writes ``results_lesion.json``: ``{"runs": {weighting: {seed: run}}, "machine": ..., "commands": [...]}`` (a
later command replaces the runs of its weightings and seeds) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from experiments import ROOT  # noqa: E402
from processes import machine_name, run_process, run_two_at_a_time, start_results  # noqa: E402
from volume import IGNORE, iou_per_class, sparse_labels  # noqa: E402

RESULTS = HERE / "results_lesion.json"
SHAPE = (64, 64, 48)
LESIONS = (((16, 30, 22), 6.0), ((40, 30, 36), 5.5), ((30, 42, 24), 6.0))  # centre, radius


def make_lesion_volume(seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """The image (float32) and its labels (uint8: 1 the lesions, 0 the rest), both ``SHAPE``."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    grid = np.indices(SHAPE).astype(float)
    centre, radii = np.array([32, 32, 24.0]), np.array([28, 28, 21.0])
    tissue = ((((grid - centre[:, None, None, None]) / radii[:, None, None, None]) ** 2).sum(0) < 1)
    lesion = np.zeros(SHAPE, bool)
    for at, radius in LESIONS:
        lesion |= ((grid - np.array(at, float)[:, None, None, None]) ** 2).sum(0) < radius ** 2
    vessel = np.zeros(SHAPE, bool)
    for _ in range(8):
        start = rng.uniform([12, 12, 8], [52, 52, 40])
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        offset = grid - start[:, None, None, None]
        along = np.tensordot(direction, offset, 1)
        vessel |= (np.sqrt(np.maximum((offset ** 2).sum(0) - along ** 2, 0)) < 1.6) & (np.abs(along) < 25)
    vessel &= tissue & ~lesion
    texture = ndimage.gaussian_filter(rng.normal(0, 1, SHAPE), 3) * 0.6
    image = 0.2 + (0.4 + texture) * tissue + 0.6 * lesion + 0.35 * vessel
    image = ndimage.gaussian_filter(image, 1) + rng.normal(0, 0.15, SHAPE)
    return image.astype(np.float32), lesion.astype(np.uint8)


def one_run(folder: Path, weighting: str, seed: int, minutes: float, dense: np.ndarray, sparse: np.ndarray) -> dict:
    """Run ``scripts/densify.py`` on the volume in ``folder``; its steps, held-back lesion score and the lesion's
    IoU on the never-annotated voxels."""
    import nibabel as nib

    output = folder / f"{weighting}_{seed}" / "dense.nii.gz"
    run_process([str(ROOT / "scripts" / "densify.py"), "--image", str(folder / "image.nii.gz"),
                 "--labels", str(folder / "sparse.nii.gz"), "--output", str(output), "--seed", str(seed),
                 "--max-minutes", str(minutes),
                 "--class-weights", weighting, "--quiet"], f"lesion, {weighting}, seed {seed}")
    report = json.loads(output.with_name("dense_scores.json").read_text())
    predicted = np.asarray(nib.load(output).dataobj)
    return {"steps": report["steps"], "stop_reason": report["stop_reason"],
            "lesion_iou": iou_per_class(predicted, dense, sparse == IGNORE)[1],
            "held_back": report["scores"]["1"], "warned": 1 in report["low_classes"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, nargs="+", default=[1, 3, 5], help="densify's seeds (default 1 3 5)")
    parser.add_argument("--class-weights", nargs="+", default=["none", "sqrt"], choices=["none", "sqrt", "balanced"])
    parser.add_argument("--minutes", type=float, default=5.0, help="densify's --max-minutes (default 5)")
    args = parser.parse_args(argv)

    import nibabel as nib

    image, dense = make_lesion_volume()
    sparse = sparse_labels(dense)
    results, _ = start_results(RESULTS, __file__, argv, {"runs": {}})
    results["machine"] = machine_name()
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        nib.save(nib.Nifti1Image(image, np.eye(4)), folder / "image.nii.gz")
        nib.save(nib.Nifti1Image(sparse, np.eye(4)), folder / "sparse.nii.gz")

        def keep(job: tuple[str, int], result: dict) -> str:
            weighting, seed = job
            results["runs"].setdefault(weighting, {})[str(seed)] = result
            held = result["held_back"]["iou"]
            return (f"{weighting}, seed {seed}: {result['steps']} steps, lesion IoU {result['lesion_iou']:.3f} on the "
                    f"never-annotated voxels, held back {'-' if held is None else f'{held:.3f}'}"
                    f"{', warned' if result['warned'] else ''}")

        jobs = [(weighting, seed) for seed in args.seed for weighting in args.class_weights]
        run_two_at_a_time(jobs, lambda job: one_run(folder, *job, args.minutes, dense, sparse), keep, results,
                          RESULTS)
    print("| class weights | lesion IoU, each seed | held-back lesion IoU, each seed | warned |")
    print("|---|---|---|---|")
    for weighting in args.class_weights:
        runs = [results["runs"][weighting][str(seed)] for seed in args.seed]
        lesion = ", ".join(f"{r['lesion_iou']:.3f}" for r in runs)
        held = ", ".join("-" if r["held_back"]["iou"] is None else f"{r['held_back']['iou']:.3f}" for r in runs)
        print(f"| `{weighting}` | {lesion} | {held} | {sum(r['warned'] for r in runs)} of {len(runs)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
