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

from unet3d_keras.cli import base_parser, run, train_and_report  # noqa: E402


def parse_args(argv=None):
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--overwrite", action="store_true",
                        help="delete the run's previous outputs (data file, split, model, logs) and start afresh")
    return parser.parse_args(argv)


def work(args) -> int:
    from unet3d_keras.config import config_from_args

    config = config_from_args(args)
    return train_and_report(config, args.overwrite, args.quiet)


def main(argv=None) -> int:
    return run(work, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
