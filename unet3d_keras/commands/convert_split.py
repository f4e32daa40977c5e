"""Turn the reference's pickled split files into this package's JSON split files, by subject id.

    unet3d-convert-split training_ids.pkl validation_ids.pkl --data-file brats_data.h5 [--output-dir DIR]
    python scripts/convert_split.py [same arguments]

The reference saved its split as pickled lists of indices into its data file. The pickles are
read without running anything (a list of integers or strings only; anything else is refused),
every index is checked against the data file, and each list is written as JSON next to its
pickle (training_ids.json, validation_ids.json; --output-dir elsewhere) with the subject ids
of the data file, so the split still holds when the data file is rebuilt in another order.
Existing JSON files are kept unless --overwrite.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Sequence

from ..cli import base_parser, run
from ..errors import DataError
from ..hdf5_store import check_data_file
from ..samples import open_read_only, read_subject_ids
from ..splits import load_pickled_split, save_split

logger = logging.getLogger(__name__)

ROLES = ("training", "validation")


def resolve_indices(items: Sequence[int | str], n_subjects: int, subject_ids: Sequence[str] | None,
                    source: str) -> list[int]:
    """Indices into the data file of a pickled split's items (indices, or subject ids when strings).

    Raises:
        DataError: naming ``source``: an index outside ``0..n_subjects - 1``, or an id the data
            file does not hold.
    """
    positions = {subject: i for i, subject in enumerate(subject_ids or [])}
    indices = []
    for item in items:
        if isinstance(item, str):
            if item not in positions:
                raise DataError(f"{source}: subject {item!r} is not in the data file"
                                + ("" if subject_ids else " (it has no /subject_ids)"))
            indices.append(positions[item])
        elif not 0 <= item < n_subjects:
            raise DataError(f"{source}: index {item} falls outside the data file, which holds {n_subjects} subjects "
                            f"(0..{n_subjects - 1}); is it the data file this split was drawn for?")
        else:
            indices.append(int(item))
    return indices


def convert_split(training_file: str | Path, validation_file: str | Path, data_file: str | Path,
                  output_dir: str | Path | None = None, overwrite: bool = False) -> list[Path]:
    """Write the JSON split files of two reference split pickles.

    Everything is read and checked before anything is written.

    Returns:
        The two JSON files written (training, validation).

    Raises:
        DataError: a refused or malformed pickle, an index outside the data file, an unusable
            data file, or an existing output without ``overwrite``.
    """
    check_data_file(data_file)
    with open_read_only(data_file) as handle:
        n_subjects = int(handle.root.data.shape[0])
        subject_ids = read_subject_ids(handle)
    parts, outputs = [], []
    for role, source in zip(ROLES, (Path(training_file), Path(validation_file))):
        indices = resolve_indices(load_pickled_split(source), n_subjects, subject_ids, str(source))
        target = Path(output_dir or source.parent) / f"{source.stem}.json"
        if target.exists() and not overwrite:
            raise DataError(f"{target}: already exists; pass --overwrite to replace it")
        parts.append((role, indices))
        outputs.append(target)
    if outputs[0] == outputs[1]:
        raise DataError(f"both splits would be written to {outputs[0]}; give the pickles different names")
    shared = sorted(set(parts[0][1]) & set(parts[1][1]))
    if shared:
        logger.warning("the training and validation splits share %d subjects (indices %s)", len(shared), shared[:10])
    if subject_ids is None:
        logger.warning("%s has no /subject_ids: the JSON splits hold indices only, which fit this data file's "
                       "subject order only", data_file)
    # Validation first: the training file's presence marks a complete pair for a later run.
    for (role, indices), target in reversed(list(zip(parts, outputs))):
        save_split(target, indices, subject_ids, n_subjects=n_subjects, role=role)
    return outputs


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = base_parser(__doc__.splitlines()[0], with_config=False)
    parser.add_argument("training_file", help="the reference's training split (e.g. training_ids.pkl)")
    parser.add_argument("validation_file", help="the reference's validation split (e.g. validation_ids.pkl)")
    parser.add_argument("--data-file", required=True,
                        help="the HDF5 data file the indices refer to (the reference's brats_data.h5)")
    parser.add_argument("--output-dir", default=None, help="folder of the JSON files (default: next to each pickle)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing JSON files")
    return parser.parse_args(argv)


def work(args: argparse.Namespace) -> int:
    written = convert_split(args.training_file, args.validation_file, args.data_file, args.output_dir,
                            args.overwrite)
    for path in written:
        print(f"Wrote {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The ``unet3d-convert-split`` command; returns its exit status."""
    return run(work, parse_args(argv))
