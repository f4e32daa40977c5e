#!/usr/bin/env python
"""Predict with a trained model: the run's validation subjects, or new images.

    python scripts/predict.py [--config FILE] [--model FILE] [--input PATH ...] [--output DIR]
                              [--set section.key=value ...]

Without --input, each validation subject of the run's HDF5 file gets, in
<output_dir>/<prediction.output_dir>/<subject>/, its input modalities, truth
and prediction (the reference's run_validation_cases with test=True), and the
Dice table is printed. With --input (modality files of one subject in the
order of data.training_modalities, a subject folder, or a folder of subject
folders; no truth needed), each subject goes through the training
preprocessing and gets <output>/<subject>_prediction.nii.gz on its own grid
(same shape and affine as its input files).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from unet3d_keras.cli import base_parser, run  # noqa: E402
from unet3d_keras.commands.predict import predict_and_report  # noqa: E402


def parse_args(argv=None):
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model file (default: the run's training.model_file)")
    parser.add_argument("--output", default=None, help="output folder (default: <output_dir>/<prediction.output_dir>)")
    parser.add_argument("--input", nargs="+", default=None, metavar="PATH",
                        help="new data: one subject's modality files, a subject folder or a folder of subjects")
    return parser.parse_args(argv)


def work(args) -> int:
    from unet3d_keras.config import config_from_args
    from unet3d_keras.errors import DataError

    config = config_from_args(args)
    model_file = Path(args.model) if args.model else config.run_path(config.training.model_file)
    data_file = config.run_path(config.data.data_file)
    validation_file = config.run_path(config.split.validation_file)
    needed = [(model_file, "model"), (data_file, "data file")]
    if not args.input:
        needed.append((validation_file, "validation split"))
    for path, what in needed:
        if not path.exists():
            raise DataError(f"{path}: {what} not found; train first with python scripts/train.py (same --config)")
    output = Path(args.output) if args.output else config.run_dir / config.prediction.output_dir

    if args.input:
        return predict_and_report(config, args.input, model_file, data_file, output, args.quiet)
    from unet3d_keras.fileio import check_writable_folder

    check_writable_folder(output)

    from unet3d_keras.evaluation import format_score_table  # imports below load Keras
    from unet3d_keras.pipeline import check_model_matches_config, evaluate_validation
    from unet3d_keras.prediction import run_validation_cases
    from unet3d_keras.training import load_old_model
    from unet3d_keras.generator import load_split, read_subject_ids
    from unet3d_keras.data import open_data_file

    check_model_matches_config(load_old_model(model_file, compile=False), config, model_file)
    pred = config.prediction
    written = run_validation_cases(
        validation_file, model_file, config.data.training_modalities, config.data.labels, data_file,
        output_label_map=pred.output_label_map, output_dir=output, threshold=pred.threshold, overlap=pred.overlap,
        permute=pred.permute, test=True, batch_size=pred.batch_size, show_progress=not args.quiet,
        picture=pred.output_label_map,
    )
    with open_data_file(data_file) as handle:
        ids = read_subject_ids(handle)
        indices = load_split(validation_file, int(handle.root.data.shape[0]), ids)
    rows = evaluate_validation(config, load_old_model(model_file), data_file, indices, show_progress=False)
    print("Validation Dice")
    print(format_score_table(rows))
    print(f"Wrote {len(written)} files to {output}")
    return 0


def main(argv=None) -> int:
    return run(work, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
