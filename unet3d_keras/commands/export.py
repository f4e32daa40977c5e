"""Export a trained model for deployment: a float32 SavedModel or ONNX folder with its prediction metadata.

    unet3d-export --model model.keras --format saved_model|onnx --output DIR [--config FILE]
        [--data-file FILE] [--set section.key=value ...]
    python scripts/export.py [same arguments]

DIR gets the model (saved_model/ or model.onnx) in float32, whatever policy it trained in, and
unet3d_export.json: the modalities in order, the data file's normalisation statistics, labels,
patch shape, overlap, data layout and the project's version. `unet3d-predict --model DIR` runs
it with TensorFlow or ONNX Runtime, without the .keras file. The data file (default: the run's
data.data_file) is needed for `data.normalization: dataset`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from ..cli import base_parser, run
from ..config import Config, config_from_args
from ..errors import DataError
from ..exported_models import FORMATS
from ..hdf5_store import check_data_file


def export_attributes(config: Config, data_file: Path) -> dict:
    """The data file's attributes, or the config's normalisation when it needs no stored statistics.

    Raises:
        DataError: the data file is missing while ``data.normalization`` is ``dataset``.
    """
    if data_file.exists():
        return check_data_file(data_file)
    if config.data.normalization == "dataset":
        raise DataError(f"{data_file}: data file not found; its normalisation statistics go into the export "
                        "(give --data-file, or train first with the same --config)")
    return {"normalization": config.data.normalization}


def export_settings(config: Config) -> dict:
    """The prediction settings of a run's config, as recorded in an export."""
    data, prediction = config.data, config.prediction
    return {"modalities": list(data.training_modalities), "labels": data.labels, "overlap": prediction.overlap,
            "batch_size": prediction.batch_size, "threshold": prediction.threshold,
            "image_shape": data.image_shape, "crop": data.crop, "ignore_label": data.ignore_label}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="the trained model file (.keras)")
    parser.add_argument("--format", required=True, choices=FORMATS, help="export format")
    parser.add_argument("--output", required=True, help="export folder to create (must not exist or be empty)")
    parser.add_argument("--data-file", default=None, help="the training data file (default: the run's data.data_file)")
    return parser.parse_args(argv)


def work(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    model_file = Path(args.model)
    if not model_file.is_file():
        raise DataError(f"{model_file}: model file not found")
    output = Path(args.output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise DataError(f"{output}: exists and is not an empty folder; choose a new output folder")
    attributes = export_attributes(config, Path(args.data_file) if args.data_file else
                                   config.run_path(config.data.data_file))
    # why: these load Keras, which only pays once the inputs are known to be usable
    from ..export import export_model
    from ..training import load_old_model

    model = load_old_model(model_file, compile=False)
    export_model(model, output, args.format, attributes, export_settings(config))
    print(f"Exported {model_file} as {args.format} to {output}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The ``unet3d-export`` command; returns its exit status."""
    return run(work, parse_args(argv))
