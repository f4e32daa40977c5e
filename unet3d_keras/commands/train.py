"""Train a 3D U-Net from a config: data, split, model, training, validation Dice.

    unet3d-train [--config FILE] [--set section.key=value ...] [--overwrite]
    python scripts/train.py [--config FILE] [--set section.key=value ...] [--overwrite]

With the default config.yaml it trains on the embedded demo data. Rerunning
resumes an interrupted run at its last completed epoch; --overwrite starts
afresh. All outputs go to the config's output_dir.
"""

from __future__ import annotations

import argparse
from typing import Sequence

from ..cli import base_parser, run
from ..config import Config, config_from_args
from ..evaluation import score_report
from ..fileio import check_writable_folder


def train_and_report(config: Config, overwrite: bool, quiet: bool) -> int:
    """Run :func:`~unet3d_keras.pipeline.train_from_config` and print its Dice table and run folder.

    Returns:
        The exit status, 0.
    """
    check_writable_folder(config.run_dir, "output_dir")  # before Keras loads and before hours of work
    # why: the pipeline loads Keras, which only pays once the config is known to be valid
    from ..pipeline import train_from_config

    result = train_from_config(config, overwrite=overwrite, show_progress=not quiet, verbose=0 if quiet else 2)
    print(score_report(result.scores))
    print(f"Run folder: {result.paths.run_dir} ({result.epochs_trained} epochs)")
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--overwrite", action="store_true",
                        help="delete the run's previous outputs (data file, split, model, logs) and start afresh")
    return parser.parse_args(argv)


def work(args: argparse.Namespace) -> int:
    return train_and_report(config_from_args(args), args.overwrite, args.quiet)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``unet3d-train`` command; returns its exit status."""
    return run(work, parse_args(argv))
