"""Predict with a trained model: the run's validation subjects, or new images.

    unet3d-predict [--config FILE] [--model FILE] [--input PATH ...] [--output DIR] [--set section.key=value ...]
    python scripts/predict.py [same arguments]

Without --input, each validation subject of the run's HDF5 file gets, in
<output_dir>/<prediction.output_dir>/<subject>/, its input modalities, truth
and prediction (the reference's run_validation_cases with test=True), and the
Dice table is printed; the folder also gets prediction_settings.json. With
--input (modality files of one subject in the order of
data.training_modalities, a subject folder, or a folder of subject folders; no
truth needed), each subject goes through the training preprocessing and gets
<output>/<subject>_prediction.nii.gz on its own grid (same shape and affine as
its input files). The model is loaded once. --model may name an export folder of
unet3d-export (ONNX or SavedModel, run without the .keras file; with --input its metadata
replaces the data file).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

from ..cli import base_parser, one_line, run
from ..config import Config, config_from_args
from ..errors import DataError
from ..evaluation import score_report
from ..fileio import check_writable_folder
from ..inference_io import input_subjects


def load_predictor(config: Config, model_file: str | os.PathLike, data_file: str | os.PathLike,
                   show_progress: bool = True):
    """A :class:`~unet3d_keras.predictor.Predictor` of a run: its model (loaded once and checked
    against the config), its data file's normalisation and the config's prediction settings."""
    # why: these load Keras, which only pays once the inputs are known to be usable
    from ..model_from_config import check_model_matches_config
    from ..predictor import Predictor

    predictor = Predictor.from_files(model_file, data_file, config, show_progress=show_progress)
    if not Path(model_file).is_dir():  # an export folder describes itself (unet3d_export.json)
        check_model_matches_config(predictor.model, config, model_file)
    return predictor


def predict_new_subjects(
    config: Config,
    inputs: Sequence[str | os.PathLike],
    model_file: str | os.PathLike,
    data_file: str | os.PathLike,
    output: str | os.PathLike,
    show_progress: bool = True,
    output_basename: str = "{subject}_prediction.nii.gz",
    label_map: bool = True,
) -> tuple[list[Path], list[tuple[str, str]]]:
    """Segment new subjects (no truth) as in training and write ``<output>/<subject>_prediction.nii.gz``
    (``output_basename``; probability maps per label without ``label_map``).

    A subject that fails (missing or broken file, wrong channels) is skipped and reported;
    the others are still written.

    Returns:
        ``(files written, [(subject, error message), ...])``.
    """
    subjects, failures = input_subjects(inputs, config.data.training_modalities)
    predictor = load_predictor(config, model_file, data_file, show_progress)
    written, errors = predictor.predict_subjects(subjects, output, output_basename, label_map)
    return written, failures + [(subject, one_line(error)) for subject, error in errors]


def predict_and_report(config: Config, inputs: Sequence[str | os.PathLike], model_file: str | os.PathLike,
                       data_file: str | os.PathLike, output: str | os.PathLike, quiet: bool,
                       output_basename: str = "{subject}_prediction.nii.gz", label_map: bool = True) -> int:
    """Run :func:`predict_new_subjects`; one error line per failed subject.

    Returns:
        0, or 1 when some subject failed (the others are still written).
    """
    check_writable_folder(output)
    written, failures = predict_new_subjects(config, inputs, model_file, data_file, output, show_progress=not quiet,
                                             output_basename=output_basename, label_map=label_map)
    for subject, message in failures:
        prefix = f"subject {subject}: "
        if message.lower().startswith(prefix.lower()):  # the reader already named the subject
            message = message[len(prefix):]
        print(f"error: {prefix}{message}", file=sys.stderr)
    what = "label maps" if label_map else "probability maps"
    print(f"Wrote {len(written)} {what} to {output}" + (f"; {len(failures)} subjects failed" if failures else ""))
    return 1 if failures else 0


def predict_validation_and_report(config: Config, model_file: Path, data_file: Path, output: Path,
                                  quiet: bool) -> int:
    """Write the predictions of the run's validation subjects and print their Dice table.

    Returns:
        The exit status, 0.
    """
    check_writable_folder(output)
    predictor = load_predictor(config, model_file, data_file, show_progress=not quiet)
    pred = config.prediction
    written, rows = predictor.predict_validation(
        data_file, config.run_path(config.split.validation_file), output, config.data.training_modalities,
        output_label_map=pred.output_label_map, test=True, picture=pred.output_label_map,
    )
    print(score_report(rows))
    print(f"Wrote {len(written)} files to {output}")
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model file, or an export folder of unet3d-export "
                        "(default: the run's training.model_file)")
    parser.add_argument("--output", default=None, help="output folder (default: <output_dir>/<prediction.output_dir>)")
    parser.add_argument("--input", nargs="+", default=None, metavar="PATH",
                        help="new data: one subject's modality files, a subject folder or a folder of subjects")
    return parser.parse_args(argv)


def work(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    model_file = Path(args.model) if args.model else config.run_path(config.training.model_file)
    data_file = config.run_path(config.data.data_file)
    if model_file.is_dir() and args.input:  # the export's metadata holds the normalisation
        data_file = None
    needed = [(model_file, "model")] + ([(data_file, "data file")] if data_file else [])
    if not args.input:
        needed.append((config.run_path(config.split.validation_file), "validation split"))
    for path, what in needed:
        if not path.exists():
            raise DataError(f"{path}: {what} not found; train first with python scripts/train.py (same --config)")
    output = Path(args.output) if args.output else config.run_dir / config.prediction.output_dir
    if args.input:
        return predict_and_report(config, args.input, model_file, data_file, output, args.quiet)
    return predict_validation_and_report(config, model_file, data_file, output, args.quiet)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``unet3d-predict`` command; returns its exit status."""
    return run(work, parse_args(argv))
