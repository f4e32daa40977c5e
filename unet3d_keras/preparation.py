"""The data of a training run: find its subjects, draw the split, write (or reuse) its HDF5 file."""

from __future__ import annotations

from pathlib import Path

from . import data as data_module
from .config import Config, ConfigError
from .demo import write_demo_dataset
from .errors import DataError
from .label_conventions import CONVENTIONS, LAYOUT_2023
from .run_state import DEMO_DIR, RunPaths
from .seeds import split_rng
from .splits import get_validation_split, save_split, split_list
from .subjects import find_subjects


def discover_subjects(config: Config, show_progress: bool = True) -> tuple[list[str], list[tuple[str, ...]]]:
    """Subject ids and file tuples (training modalities, then the truth) of the configured data.

    The demo subjects are generated into ``<output_dir>/demo_data`` on first use, in the 2023+
    layout and labels when ``data.convention`` is a 2023+ task's.
    """
    data = config.data
    if data.source == "demo":
        folder = config.run_dir / DEMO_DIR
        convention = CONVENTIONS.get(config.label_convention)
        style = {}
        if convention is not None and convention.layout == LAYOUT_2023 and convention.tissues:
            style = dict(layout=LAYOUT_2023, tissues=convention.tissues, task=convention.name.split("-")[1].upper())
        write_demo_dataset(folder, n_subjects=data.n_demo_subjects, shape=data.demo_shape, seed=config.seed,
                           show_progress=show_progress, **style)
        return find_subjects(folder, modalities=data.training_modalities, layout="brats")
    folder = config.input_path(data.data_dir)
    if not folder.is_dir():
        raise DataError(
            f"data.data_dir: no folder at {folder} (looked for {data.source} subjects there); "
            "point data.data_dir at your subjects, or set data.source: demo to train on the embedded demo data"
        )
    # A BraTS folder converted by brats/preprocess.py has the generic layout: "auto" finds both.
    layout = "auto" if data.source == "brats" else "generic"
    return find_subjects(folder, modalities=data.training_modalities, layout=layout, truth_name=data.truth_name)


def prepare_data(config: Config, show_progress: bool = True) -> tuple[Path, list[int], list[int]]:
    """Make (or reuse) the split and the HDF5 data file of a run.

    The split is drawn first, so that the normalisation statistics come from
    the training subjects only.

    Returns:
        ``(data_file, training_indices, validation_indices)``.
    """
    paths = RunPaths.from_config(config)
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    if not paths.data_file.exists():
        subject_ids, files = discover_subjects(config, show_progress=show_progress)
        if len(files) < 2:
            raise DataError(f"at least 2 subjects are needed to train and validate, found {len(files)}")
        training, validation = split_list(list(range(len(files))), split=config.split.data_split,
                                          rng=split_rng(config.seed))
        if not training or not validation:
            raise ConfigError(
                f"split.data_split {config.split.data_split} leaves no "
                f"{'training' if not training else 'validation'} subject among {len(files)}"
            )
        common = dict(subject_ids=subject_ids, seed=config.seed, data_split=config.split.data_split,
                      n_subjects=len(files))
        try:
            save_split(paths.validation_file, validation, role="validation", **common)
            save_split(paths.training_file, training, role="training", **common)
            data_module.write_data_to_file(
                files, paths.data_file, image_shape=config.data.image_shape, subject_ids=subject_ids,
                crop=config.data.crop, modalities=config.data.training_modalities, labels=config.data.labels,
                normalization=config.data.normalization, normalization_indices=training,
                show_progress=show_progress, ignore_label=config.data.ignore_label, strict_labels=True,
                clip_outliers=config.data.clip_outliers,
            )
        except BaseException:
            # The split was drawn for this data file; a failed conversion leaves neither behind.
            for path in (paths.training_file, paths.validation_file):
                path.unlink(missing_ok=True)
            raise
    data_module.check_data_file(paths.data_file)
    check_data_matches_config(config, paths.data_file)
    with data_module.open_data_file(paths.data_file) as data_file:
        training, validation = get_validation_split(
            data_file, paths.training_file, paths.validation_file, data_split=config.split.data_split,
            seed=config.seed,
        )
    return paths.data_file, training, validation


def check_data_matches_config(config: Config, path: Path) -> None:
    """Raise if a data file was written for another image shape or channel set than the config's."""
    with data_module.open_data_file(path) as data_file:
        shape = tuple(int(s) for s in data_file.root.data.shape[1:])
    expected = (config.n_channels, *config.data.image_shape)
    if shape != expected:
        raise DataError(
            f"{path} holds subjects of shape {shape} (channels, x, y, z) but the config asks for {expected} "
            "(data.training_modalities, data.image_shape); rerun with --overwrite to rebuild it"
        )
