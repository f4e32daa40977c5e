"""Square-root class weights against none at densify's 12-minute budget, in paired runs on one machine.

For each seed, densify's defaults and the same with ``--class-weights sqrt`` are trained side by
side (two processes with one thread each, as ``run.py`` runs its rows; ``--variants`` picks the runs,
among them the weights trained to the end of the budget, ``--patience 1000``) with
``unet3d_keras.densify.fit_sparse`` on one volume of ``volume.py`` (two slices per axis annotated), and
both are scored on the never-annotated voxels with either blending of the windows
(``blending.one_volume``). Running each pair at once gives both the same machine and the same load,
so their steps and scores compare within a seed.

    python examples/thin_shell/weights.py [--volume thin] [--seed 42 1 2] [--minutes 12] [--variants none sqrt]

Writes ``results_weights.json`` (``{"commands": [...], "12": {volume: {variant: {seed: run}, ...}}}``, each run
naming its machine and the command that made it); ``run.py --markdown-only`` puts the figures on the page.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from blending import MINUTES, one_volume  # noqa: E402
from experiments import WEIGHT_RESULTS  # noqa: E402
from processes import seed_variants_main  # noqa: E402

#: the runs to pair: name -> the fields of densify's options (DensifyOptions) that differ from its defaults
VARIANTS = {"none": {}, "sqrt": {"class_weighting": "sqrt"},
            # the same weights without the plateau stop (run.py's "new without the plateau stop": --patience 1000)
            "sqrt to the budget": {"class_weighting": "sqrt", "patience_epochs": 1000}}


def one_run(volume: str, seed: int, minutes: int, variant: str) -> dict:
    """blending.py's model of ``variant`` (its options, VARIANTS) on ``volume``, scored with both blendings."""
    return one_volume(volume, seed, minutes, changes=VARIANTS[variant])


def main(argv: list[str] | None = None) -> int:
    return seed_variants_main(__file__, __doc__, WEIGHT_RESULTS, list(VARIANTS), list(VARIANTS)[:2], one_run,
                              lambda result: "; ".join(f"{w} " + " ".join(f"{v:.3f}" for v in result[w])
                                                       for w in ("gaussian", "uniform")),
                              argv, default_seeds=(42, 1, 2), budgets=MINUTES)


if __name__ == "__main__":
    sys.exit(main())
