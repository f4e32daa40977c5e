#!/usr/bin/env python
"""Segment a BraTS folder (e.g. the validation data, no truth needed) with a trained run.

    python brats/predict.py BRATS_FOLDER [--config FILE] [--model FILE] [--output DIR]
                            [--output_basename NAME] [--no_label_map] [--set ...]

Each subject ({id}_{t1,t1ce,flair,t2}.nii.gz, or the 2023+
BraTS-GLI-00000-000/BraTS-GLI-00000-000-{t1n,t1c,t2f,t2w}.nii.gz of any task) goes
through the run's training preprocessing; <output>/{subject}.nii.gz (the BraTS
submission name: BraTS-GLI-00000-000.nii.gz for 2023+ cases; --output_basename
changes it) has the subject's own shape and affine, with the labels of the run's
data.convention (1, 2 and 4 for brats2017; 1, 2, 3 for the 2023+ glioma data). With --no_label_map each label's probability map is
written instead, as <i>_{subject}.nii.gz. The config defaults to
configs/brats2020_isensee2017.yaml, the recipe of brats/train.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from unet3d_keras.cli import base_parser, run
from unet3d_keras.commands.predict import predict_and_report
from unet3d_keras.config import load_config
from unet3d_keras.errors import DataError
from unet3d_keras.inference_io import output_names
from unet3d_keras.recipes import ISENSEE2017_RECIPE

#: The reference's file name of a subject's prediction (a BraTS submission).
OUTPUT_BASENAME = "{subject}.nii.gz"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("brats_folder", help="folder of BraTS subjects (searched recursively)")
    parser.add_argument("--model", "--model_file", dest="model", default=None,
                        help="model file (default: the run's training.model_file)")
    parser.add_argument("--output", "--prediction_dir", dest="output", default=None,
                        help="output folder (default: <output_dir>/brats_predictions)")
    parser.add_argument("--output_basename", default=OUTPUT_BASENAME,
                        help="file name of each subject's prediction, with {subject} (default: %(default)s)")
    parser.add_argument("--no_label_map", action="store_true",
                        help="write each label's probability map (<i>_<basename>) instead of one label map")
    return parser.parse_args(argv)


def work(args: argparse.Namespace) -> int:
    try:
        output_names(args.output_basename, "subject")
    except ValueError as error:
        raise DataError(f"--output_basename: {error}") from None
    config = load_config(args.config or ISENSEE2017_RECIPE, args.overrides)
    model_file = Path(args.model) if args.model else config.run_path(config.training.model_file)
    data_file = config.run_path(config.data.data_file)
    for path, what in ((model_file, "model"), (data_file, "training data file (for its normalisation)")):
        if not path.exists():
            raise DataError(f"{path}: {what} not found; train first with python brats/train.py (same --config)")
    output = Path(args.output) if args.output else config.run_dir / "brats_predictions"

    return predict_and_report(config, [args.brats_folder], model_file, data_file, output, args.quiet,
                              output_basename=args.output_basename, label_map=not args.no_label_map)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``brats-predict`` command; returns its exit status."""
    return run(work, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
