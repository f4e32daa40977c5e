"""A small class: densify on three small lesions among vessels, two slices per axis annotated.

The volume (64 x 64 x 48 voxels): tissue with a smooth texture, eight vessels (tubes 3 voxels wide) and three
lesions (balls of radius 5.5 to 6 voxels, 2529 voxels in all; ``--scale`` multiplies the radii) a little brighter
than the vessels, blurred and noisy. Class 1 is the lesions, 0 all the rest; two slices per axis are annotated
(206 lesion voxels, 1% of the annotated ones). For each class weighting and seed, ``scripts/densify.py`` runs with
``--max-minutes`` (or ``--steps``), as a user runs it, one thread each, two at a time; the lesion's IoU on the
never-annotated voxels, its held-back score and whether densify warned about it are kept.

    python examples/thin_shell/lesion.py [--seed 1 3 5] [--class-weights none sqrt] [--minutes 5 | --steps N]
                                         [--scale 1] [--output-bias prior]
    python examples/thin_shell/lesion.py --logits [--seed 5] [--class-weights none sqrt] [--output-bias prior]

Writes ``results_lesion.json``: ``{"runs": {setting: {weighting: {seed: run}}}, "lesion_share": {setting: share},
"machine": {setting: ...}, "logits": {weighting: {seed: {steps: largest output}}}, "commands": [...]}``, a
setting naming the scale and the length (``setting_key``; a later command replaces the runs of its setting,
weightings and seeds), and prints a table. ``--logits`` trains densify's model for a few steps and keeps the
largest of its outputs before the softmax (the logits) on three windows of the volume, after each length.
``--output-bias prior`` passes densify's option of that name: the runs are kept under their own setting (``"radius
x1, 640 steps, prior output bias"``), the logits under their weighting's name with the same tail.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from experiments import ROOT  # noqa: E402
from processes import machine_name, run_process, run_two_at_a_time, save_json, start_results  # noqa: E402
from volume import IGNORE, iou_per_class, save_arrays, sparse_labels  # noqa: E402

from unet3d_keras.densify_holdout import OUTPUT_BIASES, DensifyOptions  # noqa: E402

RESULTS = HERE / "results_lesion.json"
SHAPE = (64, 64, 48)
LESIONS = (((16, 30, 22), 6.0), ((40, 30, 36), 5.5), ((30, 42, 24), 6.0))  # centre, radius
#: ``--logits``: the lengths (steps) after which the largest logit is read.
LOGIT_STEPS = (1, 4, 16, 64)
#: The page's runs: 5 minutes on the lesions as drawn (the default setting); a fixed length on them and on
#: larger ones (``--scale``), to see how rare a class must be to need weights.
DEFAULT_MINUTES = 5.0
SIZE_STEPS = 640
SIZE_SCALES = (1.0, 1.07, 1.15, 1.3, 1.6, 2.0)


def setting_key(scale: float, minutes: float, steps: int | None, output_bias: str = "zero") -> str:
    """The key of the runs of one volume and length in the results: ``"radius x1, 5 min"``, ``"radius x1.3, 640
    steps"``; :func:`with_bias` of it for another ``output_bias`` than zero."""
    return with_bias(f"radius x{scale:g}, {f'{steps} steps' if steps else f'{minutes:g} min'}", output_bias)


def with_bias(key: str, output_bias: str) -> str:
    """``key`` of the results for densify's ``--output-bias``: itself for zero (the default), ``"KEY, prior output
    bias"`` for prior."""
    return key if output_bias == "zero" else f"{key}, {output_bias} output bias"


def make_lesion_volume(seed: int = 7, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """The image (float32) and its labels (uint8: 1 the lesions, 0 the rest), both ``SHAPE``; the lesions' radii
    times ``scale`` (the rest of the volume is the same for every scale, but for the lesions drawn over it)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    grid = np.indices(SHAPE).astype(float)
    centre, radii = np.array([32, 32, 24.0]), np.array([28, 28, 21.0])
    tissue = ((((grid - centre[:, None, None, None]) / radii[:, None, None, None]) ** 2).sum(0) < 1)
    lesion = np.zeros(SHAPE, bool)
    for at, radius in LESIONS:
        lesion |= ((grid - np.array(at, float)[:, None, None, None]) ** 2).sum(0) < (radius * scale) ** 2
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


def one_run(folder: Path, weighting: str, seed: int, length: list[str], dense: np.ndarray,
            sparse: np.ndarray, output_bias: str = "zero") -> dict:
    """Run ``scripts/densify.py`` on the volume in ``folder`` for ``length`` (``["--max-minutes", "5"]`` or
    ``["--steps", "640"]``) with ``--output-bias output_bias``; its steps, held-back lesion score and the lesion's
    IoU on the never-annotated voxels; the lesion's share of the voxels it trained on and the weighting that
    ``--class-weights auto`` would have chosen for them."""
    import nibabel as nib

    from unet3d_keras.densify_holdout import chosen_weighting

    output = folder / f"{weighting}_{seed}" / "dense.nii.gz"
    run_process([str(ROOT / "scripts" / "densify.py"), "--image", str(folder / "image.nii.gz"),
                 "--labels", str(folder / "sparse.nii.gz"), "--output", str(output), "--seed", str(seed), *length,
                 "--class-weights", weighting, "--output-bias", output_bias, "--quiet"],
                f"lesion, {weighting}, seed {seed}")
    report = json.loads(output.with_name("dense_scores.json").read_text())
    predicted = np.asarray(nib.load(output).dataobj)
    # the voxels it trained on: the annotated ones less those held back, the counts that --class-weights auto weighs
    training = [int(np.sum(sparse == label)) - report["scores"][str(label)]["voxels"] for label in (0, 1)]
    return {"steps": report["steps"], "stop_reason": report["stop_reason"],
            "lesion_iou": iou_per_class(predicted, dense, sparse == IGNORE)[1],
            "held_back": report["scores"]["1"], "warned": 1 in report["low_classes"],
            "training_share": training[1] / sum(training), "auto": chosen_weighting(training, "auto")}


def largest_logits(scale: float, weighting: str, seed: int, steps: Sequence[int],
                   output_bias: str = "zero") -> dict[str, float]:
    """Train densify's model (``unet3d_keras.densify.fit_sparse``, its defaults but ``weighting`` and ``output_bias``)
    for each of ``steps`` steps, from its initial weights each time; the largest magnitude of its outputs before the
    softmax (the layer ``HEAD_LAYER``) on three windows of the volume, after each."""
    import keras

    from unet3d_keras.densify import fit_sparse
    from unet3d_keras.model.unet import HEAD_LAYER

    image, dense = make_lesion_volume(scale=scale)
    sparse = sparse_labels(dense)
    volume = (image - image.mean()) / image.std()  # as densify standardises it
    # three 32^3 windows (densify's) along the diagonal: a corner, the middle, the far corner
    starts = [[round(share * (size - 32)) for size in volume.shape] for share in (0, 0.5, 1)]
    windows = np.stack([volume[x:x + 32, y:y + 32, z:z + 32] for x, y, z in starts])[..., None]
    largest = {}
    for count in steps:
        fitted = fit_sparse(image, sparse, IGNORE, seed=seed, steps=count, show_progress=False,
                            options=DensifyOptions(class_weighting=weighting, output_bias=output_bias))
        head = keras.Model(fitted.model.inputs, fitted.model.get_layer(HEAD_LAYER).output)
        largest[str(count)] = float(np.abs(np.asarray(head.predict(windows, verbose=0), float)).max())
    return largest


def lesion_ious(runs: Iterable[dict]) -> str:
    """The lesion's IoU on the never-annotated voxels in each of ``runs`` (``one_run``'s): '0.880, 0.000'."""
    return ", ".join(f"{run['lesion_iou']:.3f}" for run in runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, nargs="+", default=[1, 3, 5], help="densify's seeds (default 1 3 5)")
    parser.add_argument("--class-weights", nargs="+", default=["none", "sqrt"], choices=["none", "sqrt", "balanced"])
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, default=DEFAULT_MINUTES,
                        help=f"densify's --max-minutes (default {DEFAULT_MINUTES:g})")
    length.add_argument("--steps", type=int, help="densify's --steps: a fixed length instead of --minutes")
    parser.add_argument("--scale", type=float, default=1.0, help="the lesions' radii times this (default 1)")
    parser.add_argument("--output-bias", choices=OUTPUT_BIASES, default=DensifyOptions().output_bias,
                        help=f"densify's --output-bias (default {DensifyOptions().output_bias})")
    parser.add_argument("--logits", action="store_true",
                        help=f"the largest logit after {', '.join(map(str, LOGIT_STEPS))} steps instead of runs")
    args = parser.parse_args(argv)

    results, _ = start_results(RESULTS, __file__, argv, {"runs": {}})
    if args.logits:
        for weighting in args.class_weights:
            for seed in args.seed:
                largest = largest_logits(args.scale, weighting, seed, LOGIT_STEPS, args.output_bias)
                key = with_bias(weighting, args.output_bias)
                results.setdefault("logits", {}).setdefault(key, {})[str(seed)] = largest
                save_json(RESULTS, results)
                after = [f"{count} step{'s' if count != '1' else ''} {value:.3g}" for count, value in largest.items()]
                print(f"{key}, seed {seed}: the largest logit after {', '.join(after)}", flush=True)
        return 0
    image, dense = make_lesion_volume(scale=args.scale)
    sparse = sparse_labels(dense)
    setting = setting_key(args.scale, args.minutes, args.steps, args.output_bias)
    runs = results["runs"].setdefault(setting, {})
    annotated = sparse[sparse != IGNORE]
    results.setdefault("lesion_share", {})[setting] = round(float(np.mean(annotated == 1)), 4)
    results.setdefault("machine", {})[setting] = machine_name()
    length = ["--steps", str(args.steps)] if args.steps else ["--max-minutes", str(args.minutes)]
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        save_arrays(folder, {"image.nii.gz": image, "sparse.nii.gz": sparse})

        def keep(job: tuple[str, int], result: dict) -> str:
            weighting, seed = job
            runs.setdefault(weighting, {})[str(seed)] = result
            held = result["held_back"]["iou"]
            return (f"{weighting}, seed {seed}: {result['steps']} steps, lesion IoU {result['lesion_iou']:.3f} on the "
                    f"never-annotated voxels, held back {'-' if held is None else f'{held:.3f}'}"
                    f"{', warned' if result['warned'] else ''}")

        jobs = [(weighting, seed) for seed in args.seed for weighting in args.class_weights]
        run_two_at_a_time(jobs, lambda job: one_run(folder, *job, length, dense, sparse, args.output_bias), keep,
                          results, RESULTS)
    print(f"{setting}: the lesions hold {results['lesion_share'][setting]:.1%} of the annotated voxels")
    print("| class weights | lesion IoU, each seed | held-back lesion IoU, each seed | warned |")
    print("|---|---|---|---|")
    for weighting in args.class_weights:
        chosen = [runs[weighting][str(seed)] for seed in args.seed]
        held = ", ".join("-" if r["held_back"]["iou"] is None else f"{r['held_back']['iou']:.3f}" for r in chosen)
        warned = sum(r["warned"] for r in chosen)
        print(f"| `{weighting}` | {lesion_ious(chosen)} | {held} | {warned} of {len(chosen)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
