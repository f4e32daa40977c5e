"""Semi-automated segmentation: densify the sparse annotation of one volume.

    unet3d-densify --image IMG [--image IMG2 ...] --labels SPARSE --output OUT
        [--ignore-label 255] [--max-minutes M] [--seed N] [--set section.key=value ...]

(or ``python scripts/densify.py`` with the same arguments).

A user annotates a few slices of a volume (every other voxel holds the ignore value); a 3D
U-Net trained on those voxels alone (softmax, weighted cross-entropy plus Dice, elastic
augmentation) writes the dense label map of the same volume, with the same shape and affine
as SPARSE. The label values are those found in SPARSE; the smallest plays the background.
--max-minutes bounds the whole run, prediction included; --set changes the defaults of
unet3d_keras.densify.DENSIFY_DEFAULTS (e.g. --set model.n_base_filters=8).
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
from ..fileio import check_writable_folder
from ..inference_io import save_image_atomically
from ..run_lock import run_folder_lock
from ..sparse import annotated_classes
from ..subject_images import read_subject_images

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = base_parser(__doc__.splitlines()[0], with_config=False)
    parser.add_argument("--image", action="append", required=True, metavar="IMG",
                        help="image of the volume (repeat for several channels, same grid)")
    parser.add_argument("--labels", required=True, metavar="SPARSE", help="sparse label map (NIfTI)")
    parser.add_argument("--output", required=True, metavar="OUT", help="dense label map to write (.nii or .nii.gz)")
    parser.add_argument("--ignore-label", type=int, default=255, help="value of unannotated voxels (default 255)")
    parser.add_argument("--max-minutes", type=float, default=10.0, help="time bound of the whole run (default 10)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: the config's 42)")
    parser.add_argument("--clip-outliers", action="store_true",
                        help="clip intensities beyond 1e4 robust standard deviations of an image's median (with a "
                             "warning) instead of refusing the image")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="change a densify default, e.g. --set training.batch_size=1 (repeatable)")
    return parser.parse_args(argv)


def check_paths(args: argparse.Namespace) -> Path:
    """The output path, checked before any work: a NIfTI name in an existing folder, not an input."""
    output = Path(args.output)
    if not str(output).endswith(NIFTI_SUFFIXES):
        raise DataError(f"{output}: the output must be a NIfTI file name ending in .nii or .nii.gz")
    if not output.parent.resolve().is_dir():
        raise DataError(f"{output}: the output folder {output.parent} does not exist")
    check_writable_folder(output.parent)  # before minutes of training
    inputs = {Path(p).resolve() for p in [*args.image, args.labels]}
    if output.resolve() in inputs:
        raise DataError(f"{output}: the output would overwrite an input file; choose another name")
    if not 1 <= args.ignore_label <= 255:
        raise DataError(f"--ignore-label: expected a value between 1 and 255 (0 is background), "
                        f"received {args.ignore_label}")
    if args.max_minutes <= 0:
        raise DataError(f"--max-minutes: expected a positive number of minutes, received {args.max_minutes}")
    return output


def read_inputs(images: list[str], labels: str, ignore_label: int,
                clip_outliers: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The images ``(C, x, y, z)`` float32 and sparse labels ``(x, y, z)``, checked."""
    read = read_subject_images([*images, labels], label_indices=[len(images)], crop=False,
                               subject_id="densify inputs", clip_outliers=clip_outliers)
    data = np.stack([np.asarray(image.dataobj, dtype=np.float32) for image in read[:-1]])
    sparse = np.asanyarray(read[-1].dataobj)
    require_integer_values(sparse, f"{labels}: the label map", error=DataError)
    sparse = sparse.astype(np.int64) if sparse.dtype.kind == "f" else sparse
    if sparse.min() < 0:
        raise DataError(f"{labels}: label values must not be negative, found {int(sparse.min())}")
    if ignore_label != 255 and np.any(sparse == 255):
        raise DataError(
            f"{labels}: --ignore-label {ignore_label} collides with a real label: the file also holds 255, the usual "
            f"value of unannotated voxels, which would become a class; pass --ignore-label 255 (or relabel the file)"
        )
    if not np.any(sparse == ignore_label):
        raise DataError(
            f"{labels}: no voxel has the ignore value {ignore_label}, so every voxel is already annotated "
            f"(values found: {np.unique(sparse).tolist()[:20]}); pass --ignore-label with the value of the "
            "unannotated voxels"
        )
    return data, sparse


def work(args: argparse.Namespace) -> int:
    output = check_paths(args)
    with run_folder_lock(output.parent, "output folder"):  # one densification at a time writes into a folder
        return _densify_into(args, output)


def _densify_into(args: argparse.Namespace, output: Path) -> int:
    images, sparse = read_inputs(args.image, args.labels, args.ignore_label, args.clip_outliers)
    classes = annotated_classes(sparse, args.ignore_label, args.labels)  # fails fast, before Keras loads
    # why: densify loads Keras, which only pays once the inputs are known to be valid
    from ..densify import densify

    annotated = float(np.mean(sparse != args.ignore_label))
    print(f"{args.labels}: {sparse.shape} voxels, classes {classes}, {100 * annotated:.2f}% annotated")
    result = densify(images, sparse, args.ignore_label, overrides=args.overrides,
                     max_seconds=60 * args.max_minutes, seed=args.seed, show_progress=not args.quiet)
    label_image = nib.load(args.labels)
    dtype = np.uint8 if max(classes) <= 255 else np.int16
    dense = nib.Nifti1Image(result.labels.astype(dtype), label_image.affine, label_image.header)
    dense.set_data_dtype(dtype)
    save_image_atomically(dense, output)
    counts = {c: int(np.sum(result.labels == c)) for c in classes}
    print(f"wrote {output}: {result.epochs} epochs in {result.train_seconds:.0f} s of training, "
          f"{result.total_seconds:.0f} s in all; voxels per class {counts}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``unet3d-densify`` and ``scripts/densify.py``; returns the exit status."""
    return run(work, parse_args(argv))
