"""Make a sparse label map from a dense one: keep k full slices per axis, the rest unannotated.

    unet3d-make-sparse-labels DENSE SPARSE [--slices KX KY KZ] [--random | --nested]
        [--seed N] [--ignore-label 255]
    python scripts/make_sparse_labels.py DENSE SPARSE ...

Mimics the paper's annotators, who labelled a few orthogonal slices of each volume. The
slices are evenly spread (or drawn at random with --random, or with --nested placed so that a
larger count keeps every slice of a smaller one, as when slices are added to an annotation);
every other voxel gets the ignore value. SPARSE keeps DENSE's shape, affine and header.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import nibabel as nib
import numpy as np

from ..checks import require_integer_values
from ..cli import base_parser, run
from ..errors import DataError
from ..fileio import made_folder
from ..inference_io import check_nifti_output, save_image_atomically
from ..sparse import make_sparse_annotation
from ..utils.utils import read_image


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = base_parser(__doc__.splitlines()[0], with_config=False)
    parser.add_argument("dense", help="dense label map (NIfTI)")
    parser.add_argument("sparse",
                        help="sparse label map to write (.nii or .nii.gz; its folder is made if missing)")
    parser.add_argument("--slices", type=int, nargs=3, default=(4, 4, 4), metavar=("KX", "KY", "KZ"),
                        help="slices kept across the x, y and z axes (default 4 4 4)")
    placement = parser.add_mutually_exclusive_group()
    placement.add_argument("--random", action="store_true", help="draw the slices at random instead of evenly")
    placement.add_argument("--nested", action="store_true",
                           help="1/2, 1/4, 3/4, 1/8, ... of each axis: more slices keep those of fewer")
    parser.add_argument("--seed", type=int, default=42, help="seed of --random (default 42)")
    parser.add_argument("--ignore-label", type=int, default=255, help="value of unannotated voxels (default 255)")
    return parser.parse_args(argv)


def work(args: argparse.Namespace) -> int:
    output = check_nifti_output(args.sparse)
    if output.resolve() == Path(args.dense).resolve():
        raise DataError(f"{output}: the output would overwrite the dense input; choose another name")
    image = read_image(args.dense, interpolation="nearest")
    dense = np.asanyarray(image.dataobj)
    if dense.ndim != 3:
        raise DataError(f"{args.dense}: expected a 3D label map, found shape {dense.shape}")
    require_integer_values(dense, f"{args.dense}: the label map", DataError)
    if dense.dtype.kind == "f":
        dense = dense.astype(np.int32)
    for axis, (count, size) in enumerate(zip(args.slices, dense.shape)):
        if not 0 <= count <= size:
            raise DataError(f"--slices: {count} slices do not fit axis {axis} of {args.dense} ({size} voxels)")
    rng = np.random.default_rng(args.seed) if args.random else None
    try:
        sparse = make_sparse_annotation(dense, args.slices, rng=rng, ignore_label=args.ignore_label,
                                        nested=args.nested)
    except ValueError as error:
        raise DataError(f"{args.dense}: {error}") from None
    original = nib.load(args.dense)
    dtype = np.uint8 if sparse.max() <= 255 and sparse.min() >= 0 else np.int32
    out = nib.Nifti1Image(sparse.astype(dtype), original.affine, original.header)
    out.set_data_dtype(dtype)
    with made_folder(output.parent):
        save_image_atomically(out, output)
    print(f"wrote {output}: {np.mean(sparse != args.ignore_label) * 100:.2f}% of the voxels annotated "
          f"({args.slices[0]}, {args.slices[1]}, {args.slices[2]} slices across x, y, z)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The ``unet3d-make-sparse-labels`` command; returns its exit status."""
    return run(work, parse_args(argv))
