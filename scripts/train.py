#!/usr/bin/env python
"""Train a 3D U-Net from a config: data, split, model, training, validation Dice.

    python scripts/train.py [--config FILE] [--set section.key=value ...] [--overwrite]

With the default config.yaml it trains on the embedded demo data. Rerunning
resumes an interrupted run at its last completed epoch; --overwrite starts
afresh. All outputs go to the config's output_dir.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from unet3d_keras.cli import base_parser, run  # noqa: E402


def parse_args(argv=None):
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--overwrite", action="store_true",
                        help="delete the run's previous outputs (data file, split, model, logs) and start afresh")
    return parser.parse_args(argv)


def work(args) -> int:
    from unet3d_keras.config import config_from_args
    config = config_from_args(args)
    from unet3d_keras.pipeline import score_report, train_from_config  # imports Keras: after the config is valid

    result = train_from_config(config, overwrite=args.overwrite, show_progress=not args.quiet,
                               verbose=0 if args.quiet else 2)
    print(score_report(result.scores))
    print(f"Run folder: {result.paths.run_dir} ({result.epochs_trained} epochs)")
    return 0


def main(argv=None) -> int:
    return run(work, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
