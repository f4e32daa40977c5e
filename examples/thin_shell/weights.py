"""Square-root class weights against none at densify's 12-minute budget, in paired runs on one machine.

For each seed, densify's defaults and the same with ``--class-weights sqrt`` are trained side by
side (two processes with one thread each, as ``run.py`` runs its rows; ``--variants`` picks the runs,
among them the weights trained to the end of the budget, ``--patience 1000``) with
``unet3d_keras.densify.fit_sparse`` on one volume of ``run.py`` (two slices per axis annotated), and
both are scored on the never-annotated voxels with either blending of the windows
(``blending.one_volume``). Running each pair at once gives both the same machine and the same load,
so their steps and scores compare within a seed.

    python examples/thin_shell/weights.py [--volume thin] [--seed 42 1 2] [--minutes 12] [--variants none sqrt]

Writes ``results_weights.json`` (``{"commands": [...], "12": {volume: {variant: {seed: run}, ...}}}``, each run
naming its machine and the command that made it); ``run.py --markdown-only`` puts the figures on the page.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from blending import MINUTES, one_volume  # noqa: E402
from run import VOLUMES, WEIGHT_RESULTS, run_seed_variants, start_results  # noqa: E402

#: the runs to pair: name -> the fields of densify's options (DensifyOptions) that differ from its defaults
VARIANTS = {"none": {}, "sqrt": {"class_weighting": "sqrt"},
            # the same weights without the plateau stop (run.py's "new without the plateau stop": --patience 1000)
            "sqrt to the budget": {"class_weighting": "sqrt", "patience_epochs": 1000}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volume", default="thin", choices=list(VOLUMES))
    parser.add_argument("--seed", type=int, nargs="+", default=[42, 1, 2], help="densify's seeds (default 42 1 2)")
    parser.add_argument("--minutes", type=int, choices=MINUTES, default=MINUTES[-1],
                        help="the time budget of each run (default 12)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS)[:2], choices=VARIANTS,
                        help="the runs of each seed, side by side where two (default: none sqrt)")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        volume, seed, minutes, variant = args.child
        print(json.dumps(one_volume(volume, int(seed), int(minutes), changes=VARIANTS[variant])), flush=True)
        os._exit(0)  # TensorFlow's dataset threads can hold up a normal exit

    results, command = start_results(WEIGHT_RESULTS, __file__, argv, {})
    run_seed_variants(__file__, WEIGHT_RESULTS, results, command, args.volume, args.minutes, args.seed, args.variants,
                      lambda result: "; ".join(f"{w} " + " ".join(f"{v:.3f}" for v in result[w])
                                               for w in ("gaussian", "uniform")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
