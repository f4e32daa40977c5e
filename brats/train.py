#!/usr/bin/env python
"""Train on a BraTS folder (2017-2021 or 2023+ naming) with the reference's brats/train.py recipe.

    python brats/train.py BRATS_FOLDER [--config FILE] [--set section.key=value ...]
                          [--overwrite | --continue-training]

BRATS_FOLDER is the unpacked data set, e.g. MICCAI_BraTS2020_TrainingData; its
subject folders hold {id}_{t1,t1ce,flair,t2,seg}.nii.gz (2017: t1Gd and
GlistrBoost[_ManuallyCorrected]); 2023+ case folders hold
BraTS-GLI-00000-000-{t1n,t1c,t2f,t2w,seg}.nii.gz (configs/brats2023_glioma.yaml
sets their labels and trains region-based). The config defaults to
configs/brats2020_isensee2017.yaml: the reference's settings (Isensee 2017 network,
128^3 whole images, 500 epochs). --continue-training starts from the weights of an
existing model file, as the reference did when its model file existed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

from unet3d_keras.cli import base_parser, run
from unet3d_keras.commands.train import add_continue_argument, continue_overrides, train_and_report
from unet3d_keras.config import load_config
from unet3d_keras.recipes import ISENSEE2017_RECIPE, reference_config
from unet3d_keras.subjects import find_brats_subjects

DEFAULT_DATA_DIR = Path(__file__).resolve().parent / "data"

#: The recipe's settings under the reference's keys (read-only view: change a run with --config/--set).
config = reference_config(load_config(ISENSEE2017_RECIPE))


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


def fetch_training_data_files(return_subject_ids: bool = False):
    """The training subjects' file tuples (modalities of :data:`config`, then ``seg``) under ``brats/data``.

    Returns:
        The list of file tuples, and the subject ids when asked.
    """
    return fetch_brats_2020_files(modalities=config["training_modalities"], return_subject_ids=return_subject_ids)


def parse_args(argv: Sequence[str] | None = None, recipe: Path = ISENSEE2017_RECIPE,
               doc: str | None = None) -> argparse.Namespace:
    parser = base_parser((doc or __doc__).splitlines()[0])
    parser.add_argument("brats_folder", help="folder of BraTS subjects (searched recursively)")
    parser.add_argument("--overwrite", action="store_true", help="delete the run's previous outputs and start afresh")
    add_continue_argument(parser)
    parser.set_defaults(recipe=recipe)
    return parser.parse_args(argv)


def work(args: argparse.Namespace) -> int:
    folder = os.path.abspath(args.brats_folder)
    run_config = load_config(args.config or args.recipe,
                             ["data.source=brats", f"data.data_dir={folder!r}", *continue_overrides(args)])
    return train_and_report(run_config, args.overwrite, args.quiet)


def main(overwrite: bool = False, argv: Sequence[str] | None = None) -> int:
    """The ``brats-train`` command; returns its exit status.

    Args:
        overwrite: Start afresh, as the reference's ``main(overwrite=True)`` (or ``--overwrite``).
        argv: The command line (default: ``sys.argv[1:]``).
    """
    args = parse_args(argv)
    args.overwrite = args.overwrite or overwrite
    return run(work, args)


if __name__ == "__main__":
    sys.exit(main())
