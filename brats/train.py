#!/usr/bin/env python
"""Train on a BraTS folder (2017-2021 naming), as the reference's brats/train.py does.

    python brats/train.py BRATS_FOLDER [--config FILE] [--set section.key=value ...] [--overwrite]

BRATS_FOLDER is the unpacked data set, e.g. MICCAI_BraTS2020_TrainingData; its
subject folders hold {id}_{t1,t1ce,flair,t2,seg}.nii.gz (2017: t1Gd and
GlistrBoost[_ManuallyCorrected]). Everything else comes from the config.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

from unet3d_keras.cli import base_parser, run
from unet3d_keras.commands.train import train_and_report
from unet3d_keras.config import load_config
from unet3d_keras.subjects import find_brats_subjects

DEFAULT_DATA_DIR = Path(__file__).resolve().parent / "data"


def fetch_brats_2020_files(
    modalities: Sequence[str],
    group: str = "Training",
    include_truth: bool = True,
    return_subject_ids: bool = False,
    data_dir: str | os.PathLike = DEFAULT_DATA_DIR,
):
    """Subject file tuples of the BraTS folders whose path contains ``group``.

    Args:
        modalities: Modalities in channel order, e.g. ``("t1", "t1ce", "flair", "t2")``.
        group: ``Training`` or ``Validation``: only subject folders whose path
            (relative to ``data_dir``) contains it are kept, as in the reference.
        include_truth: Append the ``seg`` file to each tuple.
        return_subject_ids: Also return the subject ids.
        data_dir: The folder holding the unpacked BraTS data sets (the
            reference's ``brats/data``).

    Returns:
        The list of file tuples, and the subject ids when asked.
    """
    subject_ids, files = find_brats_subjects(data_dir, modalities=modalities, include_truth=include_truth)
    keep = [i for i, tuple_ in enumerate(files)
            if group in os.path.relpath(os.path.dirname(tuple_[0]), os.fspath(data_dir))]
    subject_ids = [subject_ids[i] for i in keep]
    files = [files[i] for i in keep]
    return (files, subject_ids) if return_subject_ids else files


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("brats_folder", help="folder of BraTS subjects (searched recursively)")
    parser.add_argument("--overwrite", action="store_true", help="delete the run's previous outputs and start afresh")
    return parser.parse_args(argv)


def work(args: argparse.Namespace) -> int:
    folder = os.path.abspath(args.brats_folder)
    config = load_config(args.config, ["data.source=brats", f"data.data_dir={folder!r}", *args.overrides])
    return train_and_report(config, args.overwrite, args.quiet)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``brats-train`` command; returns its exit status."""
    return run(work, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
