"""Convert a model trained with the reference (Keras 2 HDF5) into the port's ``.keras`` model.

    unet3d-convert-model REFERENCE_MODEL.h5 MODEL.keras [--overwrite] [--no-compile]
    python scripts/convert_model.py REFERENCE_MODEL.h5 MODEL.keras

Reads the reference's file as data (nothing in it is run), recognises the network (U-Net or
Isensee 2017) and its settings, rebuilds it ``channels_last`` with the same weights, prints what it
recognised and writes the ``.keras`` file (atomically). ``--model`` of the prediction programs
accepts the reference's file directly too; converting once saves the conversion at every start.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from ..cli import base_parser, run
from ..errors import DataError
from ..fileio import atomic_path, check_output_file
from ..reference_files import hdf5_keras_major_version
from ..reference_models import read_reference_model


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = base_parser(__doc__.splitlines()[0], with_config=False)
    parser.add_argument("reference_model", help="model file written by the reference (Keras 2 .h5)")
    parser.add_argument("output", help="the port's model file to write (.keras)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    parser.add_argument("--no-compile", action="store_true",
                        help="write the model without the reference's loss, metrics and optimizer")
    return parser.parse_args(argv)


def work(args: argparse.Namespace) -> int:
    source, output = Path(args.reference_model), Path(args.output)
    if not source.is_file():
        raise FileNotFoundError(f"{source}: model file not found")
    if output.suffix != ".keras":
        raise DataError(f"{output}: the output must be a Keras model file name ending in .keras")
    check_output_file(output)
    if output.exists() and not args.overwrite:
        raise FileExistsError(f"{output}: exists; pass --overwrite to replace it")
    if not output.parent.resolve().is_dir():
        raise DataError(f"{output}: the output folder {output.parent} does not exist")
    version = hdf5_keras_major_version(source)
    if version is None or version >= 3:
        raise DataError(f"{source}: not a Keras 2 HDF5 model file as the reference wrote it"
                        + ("" if version is None else f" (written by Keras {version}; load it as it is)"))
    model, architecture = read_reference_model(source, compile=not args.no_compile)
    if model.optimizer is not None:  # saved with its (zero) slots, so that loading matches them without a warning
        model.optimizer.build(model.trainable_variables)
    with atomic_path(output, suffix=".keras") as temporary:
        model.save(temporary)
    for line in architecture.describe():
        print(line)
    print(f"wrote {output}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The ``unet3d-convert-model`` command; returns its exit status."""
    return run(work, parse_args(argv))
