"""Densify's training settings, each changed alone, side by side in one session.

The variants (``experiments.TUNING_VARIANTS``) change the learning rate, the window, the batch or the
U-Net's depth, or rotate the training windows. For a volume of ``volume.py`` (two slices per axis annotated)
and each seed, train densify's defaults and each variant for ``--minutes`` with
``unet3d_keras.densify.fit_sparse``, predict the volume as densify does and score the IoU per class on the
never-annotated voxels. The runs of one command share a machine and a session, so that their steps and scores
compare; the tables' rows come from several sessions.

    python examples/thin_shell/tuning.py [--volume thin] [--seed 42 1] [--minutes 5]

Each training runs in its own process with one thread, two at a time (as ``run.py`` does).
Writes ``results_tuning.json``: ``{"runs": {volume: {key: {"command", "machine", "minutes", "defaults", "variants":
{variant: {seed: run}}}}}, "commands": [...]}``, the key naming the budget and the variants
(``experiments.tuning_key``: a later command with the same ones replaces their runs), "defaults" being
densify's training settings that the variants change;
``run.py --markdown-only`` puts it on the page.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from experiments import TUNED, TUNING_RESULTS, TUNING_VARIANTS, tuning_key  # noqa: E402
from processes import machine_name, reply_to_parent, run_json_process, run_two_at_a_time, start_results  # noqa: E402
from volume import IGNORE, VOLUMES, iou_per_class, sparse_volume  # noqa: E402


def one_run(volume: str, seed: int, minutes: float, variant: str) -> dict:
    """Train ``variant`` of densify's defaults on ``volume`` for ``minutes``; its steps and IoU per class on the
    never-annotated voxels."""
    from unet3d_keras.densify import fit_sparse, predict_classes

    image, dense, sparse, never = sparse_volume(volume)
    began = time.monotonic()
    fitted = fit_sparse(image, sparse, IGNORE, overrides=TUNING_VARIANTS[variant], deadline=began + 60 * minutes,
                        seed=seed, show_progress=False)
    predicted, _ = predict_classes(fitted, image)
    return {"steps": fitted.steps, "stop_reason": fitted.stop_reason, "plateaued": fitted.plateaued,
            "seconds": round(time.monotonic() - began),
            "iou": iou_per_class(predicted, dense, never), "held_back": fitted.scores["iou"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volume", default="thin", choices=list(VOLUMES))
    parser.add_argument("--seed", type=int, nargs="+", default=[42, 1], help="densify's seeds (default 42 1)")
    parser.add_argument("--minutes", type=float, default=5.0, help="time budget of each run (default 5)")
    parser.add_argument("--variants", nargs="+", default=list(TUNING_VARIANTS), choices=list(TUNING_VARIANTS))
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        volume, seed, minutes, variant = args.child
        reply_to_parent(one_run(volume, int(seed), float(minutes), variant))

    from unet3d_keras.densify import DENSIFY_DEFAULTS

    results, command = start_results(TUNING_RESULTS, __file__, argv, {"runs": {}})
    training = DENSIFY_DEFAULTS["training"]
    # a later command's runs replace those of this budget and these variants: runs of two sessions do not compare
    budget = results["runs"].setdefault(args.volume, {})[tuning_key(args.minutes, args.variants)] = {
        "command": command, "machine": machine_name(), "minutes": args.minutes,
        "defaults": {key: training[key] for key in TUNED}, "variants": {},
        # the sampler's rule since it stopped moving every window by up to 8 voxels (the page notes earlier runs)
        "window_shift": "a quarter of the window's side"}

    def what(variant_seed: tuple[str, int]) -> str:
        return f"{args.volume}, {args.minutes:g} min, {variant_seed[0]}, seed {variant_seed[1]}"

    def run(variant_seed: tuple[str, int]) -> dict:
        variant, seed = variant_seed
        return run_json_process([__file__, "--child", args.volume, str(seed), str(args.minutes), variant],
                                what(variant_seed))

    def keep(variant_seed: tuple[str, int], result: dict) -> str:
        variant, seed = variant_seed
        budget["variants"].setdefault(variant, {})[str(seed)] = result
        return (f"{what(variant_seed)}: {result['steps']} steps, background/cell/membrane IoU "
                + " / ".join(f"{v:.3f}" for v in result["iou"]))

    run_two_at_a_time([(variant, seed) for seed in args.seed for variant in args.variants], run, keep, results,
                      TUNING_RESULTS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
