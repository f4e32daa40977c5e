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
        return predict_new_subjects(args, config, model_file, data_file, output)

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
    )
    with open_data_file(data_file) as handle:
        ids = read_subject_ids(handle)
        indices = load_split(validation_file, int(handle.root.data.shape[0]), ids)
    rows = evaluate_validation(config, load_old_model(model_file), data_file, indices, show_progress=False)
    print("Validation Dice")
    print(format_score_table(rows))
    print(f"Wrote {len(written)} files to {output}")
    return 0


def input_subjects(paths, modalities) -> list[tuple[str, tuple[str, ...]]]:
    """``(subject id, modality files)`` for the --input paths."""
    from unet3d_keras.errors import DataError
    from unet3d_keras.subjects import find_subjects

    paths = [Path(p) for p in paths]
    if all(p.is_file() for p in paths):
        if len(paths) != len(modalities):
            raise DataError(f"--input: {len(paths)} files given for the {len(modalities)} modalities "
                            f"{list(modalities)} (one file per modality, in that order)")
        stem = paths[0].name.split(".")[0]
        return [(stem, tuple(str(p) for p in paths))]
    if len(paths) != 1 or not paths[0].is_dir():
        missing = [str(p) for p in paths if not p.exists()]
        raise DataError(f"--input: {missing[0] if missing else paths}: expected image files or one folder")
    folder = paths[0]
    if all((folder / f"{m}.nii.gz").is_file() for m in modalities):  # one subject, generic naming
        return [(folder.name, tuple(str(folder / f"{m}.nii.gz") for m in modalities))]
    ids, files = find_subjects(folder, modalities=modalities, include_truth=False, layout="auto")
    return list(zip(ids, files))


def predict_new_subjects(args, config, model_file, data_file, output) -> int:
    from tqdm.auto import tqdm

    from unet3d_keras.cli import USER_ERRORS, one_line
    from unet3d_keras.data import check_data_file
    from unet3d_keras.prediction import predict_subject_files, save_image_atomically
    from unet3d_keras.training import load_old_model

    subjects = input_subjects(args.input, config.data.training_modalities)
    attributes = check_data_file(data_file)
    model = load_old_model(model_file, compile=False)
    output.mkdir(parents=True, exist_ok=True)
    failed = 0
    pred = config.prediction
    for subject, files in tqdm(subjects, desc="subjects", unit="subject", disable=args.quiet):
        try:
            image = predict_subject_files(
                model, files, config.data.image_shape, attributes, config.data.labels, crop=config.data.crop,
                threshold=pred.threshold, overlap=pred.overlap, batch_size=pred.batch_size, permute=pred.permute,
                subject_id=subject,
            )
            save_image_atomically(image, output / f"{subject}_prediction.nii.gz")
        except USER_ERRORS as error:
            failed += 1
            print(f"error: subject {subject}: {one_line(error)}", file=sys.stderr)
    print(f"Wrote {len(subjects) - failed} label maps to {output}" + (f"; {failed} subjects failed" if failed else ""))
    return 1 if failed else 0


def main(argv=None) -> int:
    return run(work, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
