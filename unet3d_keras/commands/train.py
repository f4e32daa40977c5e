"""Train a 3D U-Net from a config: data, split, model, training, validation Dice.

    unet3d-train [--config FILE] [--set section.key=value ...] [--overwrite | --continue-training]
    python scripts/train.py [same arguments]

With the default config.yaml it trains on the embedded demo data. Rerunning
resumes an interrupted run at its last completed epoch, and trains a finished
run on when training.n_epochs was raised; --overwrite starts afresh;
--continue-training starts from the weights of an existing model_file. All
outputs go to the config's output_dir.
"""

from __future__ import annotations

import argparse
from typing import Sequence

from ..cli import base_parser, run
from ..config import Config, config_from_args
from ..evaluation import score_report
from ..fileio import check_writable_folder
from ..run_lock import run_folder_lock


def train_and_report(config: Config, overwrite: bool, quiet: bool) -> int:
    """Run :func:`~unet3d_keras.pipeline.train_from_config` and print its Dice table and run folder.

    Returns:
        The exit status, 0.
    """
    check_writable_folder(config.run_dir, "output_dir")  # before Keras loads and before hours of work
    if config.training.distribution == "multi_worker":  # its workers share the folder by design
        return _train(config, overwrite, quiet)
    with run_folder_lock(config.run_dir, "output_dir"):  # a second run is refused before Keras loads
        return _train(config, overwrite, quiet)


def _train(config: Config, overwrite: bool, quiet: bool) -> int:
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
    add_continue_argument(parser)
    return parser.parse_args(argv)


def add_continue_argument(parser: argparse.ArgumentParser) -> None:
    """``--continue-training``: the same as ``--set training.continue_from_model_file=true``."""
    parser.add_argument("--continue-training", action="store_true",
                        help="start from the weights of the existing training.model_file (as the reference did "
                             "when the file existed) instead of new ones; same as "
                             "--set training.continue_from_model_file=true")


def continue_overrides(args: argparse.Namespace) -> list[str]:
    """The ``--set`` overrides of ``args``, with ``--continue-training`` as one of them."""
    return [*args.overrides, *(["training.continue_from_model_file=true"] if args.continue_training else [])]


def work(args: argparse.Namespace) -> int:
    args.overrides = continue_overrides(args)
    return train_and_report(config_from_args(args), args.overwrite, args.quiet)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``unet3d-train`` command; returns its exit status."""
    return run(work, parse_args(argv))
