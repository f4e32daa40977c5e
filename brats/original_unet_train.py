#!/usr/bin/env python
"""Train the original 3D U-Net on BraTS with the reference's brats/original_unet_train.py recipe.

    python brats/original_unet_train.py DATA_FOLDER [--config FILE] [--set section.key=value ...]
                                        [--overwrite | --continue-training]

DATA_FOLDER holds subject folders, either as written by brats/preprocess.py
({t1,t1ce,flair,t2,truth}.nii.gz, the reference's brats/data/preprocessed) or in
BraTS naming. The config defaults to configs/brats2020_unet.yaml: the reference's
settings (U-Net with 32 base filters, 64^3 patches of 144^3 images, batch 6,
learning rate 1e-5). --continue-training starts from the weights of an existing
model file, as the reference did when its model file existed.
"""

from __future__ import annotations

import glob
import os
import sys
from typing import Sequence

from unet3d_keras.cli import run
from unet3d_keras.config import load_config
from unet3d_keras.recipes import UNET_RECIPE, reference_config

from brats.train import DEFAULT_DATA_DIR, parse_args, work

#: The recipe's settings under the reference's keys (read-only view: change a run with --config/--set).
config = reference_config(load_config(UNET_RECIPE))


def fetch_training_data_files() -> list[tuple[str, ...]]:
    """File tuples (modalities of :data:`config`, then ``truth``) of ``brats/data/preprocessed/*/*``, sorted."""
    names = [*config["training_modalities"], "truth"]
    return [tuple(os.path.join(folder, f"{name}.nii.gz") for name in names)
            for folder in sorted(glob.glob(os.path.join(DEFAULT_DATA_DIR, "preprocessed", "*", "*")))]


def main(overwrite: bool = False, argv: Sequence[str] | None = None) -> int:
    """Train with the U-Net recipe; returns the exit status.

    Args:
        overwrite: Start afresh, as the reference's ``main(overwrite=True)`` (or ``--overwrite``).
        argv: The command line (default: ``sys.argv[1:]``).
    """
    args = parse_args(argv, recipe=UNET_RECIPE, doc=__doc__)
    args.overwrite = args.overwrite or overwrite
    return run(work, args)


if __name__ == "__main__":
    sys.exit(main())
