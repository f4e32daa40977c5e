#!/usr/bin/env python
"""Segment a BraTS folder (e.g. the validation data, no truth needed) with a trained run.

    python brats/predict.py BRATS_FOLDER [--config FILE] [--model FILE] [--output DIR] [--set ...]

Each subject ({id}_{t1,t1ce,flair,t2}.nii.gz) goes through the run's training
preprocessing; <output>/<id>_prediction.nii.gz has the subject's own shape and
affine, with labels 1, 2 and 4 (the format BraTS submissions take).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from unet3d_keras.cli import base_parser, run
from unet3d_keras.commands.predict import predict_and_report
from unet3d_keras.config import config_from_args
from unet3d_keras.errors import DataError


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("brats_folder", help="folder of BraTS subjects (searched recursively)")
    parser.add_argument("--model", default=None, help="model file (default: the run's training.model_file)")
    parser.add_argument("--output", default=None, help="output folder (default: <output_dir>/brats_predictions)")
    return parser.parse_args(argv)


def work(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    model_file = Path(args.model) if args.model else config.run_path(config.training.model_file)
    data_file = config.run_path(config.data.data_file)
    for path, what in ((model_file, "model"), (data_file, "training data file (for its normalisation)")):
        if not path.exists():
            raise DataError(f"{path}: {what} not found; train first with python brats/train.py (same --config)")
    output = Path(args.output) if args.output else config.run_dir / "brats_predictions"

    return predict_and_report(config, [args.brats_folder], model_file, data_file, output, args.quiet)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``brats-predict`` command; returns its exit status."""
    return run(work, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
