"""Loading the run configuration from YAML and the command line, validated at load time.

A run is described by one YAML file (``config.yaml`` at the top of the
repository documents every key). It is read with ``yaml.safe_load`` into the
dataclasses of :mod:`unet3d_keras.config_types` (re-exported here); unknown
keys, wrong types and inconsistent values raise :class:`ConfigError` naming
the key, the value and what is allowed. Scripts override any key with
``--set section.key=value`` (the value is parsed as YAML). Relative paths in
``data.data_dir`` and ``output_dir`` are resolved against the folder of the
config file; the run's files (``data.data_file``, ``training.model_file``, ...)
live inside ``output_dir``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from .checks import require_cube
from .config_parsing import build_dataclass
from .config_types import Config, ConfigError, DataConfig, ModelConfig, PredictionConfig, SplitConfig, TrainingConfig
from .fileio import write_text_atomically
from .label_conventions import CONVENTIONS, get_convention
from .regions import paint_labels

__all__ = [
    "DEFAULT_CONFIG", "RUN_PATH_KEYS", "Config", "ConfigError", "DataConfig", "ModelConfig",
    "PredictionConfig", "SplitConfig", "TrainingConfig", "add_config_arguments", "apply_overrides",
    "check_run_paths", "config_from_args", "config_from_dict", "load_config", "parse_override", "save_config",
    "validate",
]

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config.yaml"


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def validate(config: Config) -> Config:
    """Check the relations between keys; raise :class:`ConfigError` naming them.

    Returns:
        ``config`` itself, for chaining.
    """
    data, model, training = config.data, config.model, config.training
    # keras.utils.set_random_seed takes 0 to 2**32 - 1; a run would otherwise fail there, minutes in
    _check(0 <= config.seed < 2**32, f"seed: expected a whole number from 0 to {2**32 - 1}, received {config.seed}")
    labels = data.labels
    _check(len(labels) > 0, "data.labels: at least one label value is needed")
    _check(len(set(labels)) == len(labels), f"data.labels: values must be unique, received {list(labels)}")
    bad = [v for v in labels if not 0 < v < 256]
    _check(not bad, f"data.labels: label values must be between 1 and 255 (0 is background), received {bad}")
    _check(len(data.training_modalities) > 0, "data.training_modalities: at least one modality is needed")
    unknown = [m for m in data.training_modalities if m not in data.all_modalities]
    _check(
        not unknown,
        f"data.training_modalities: {unknown} not in data.all_modalities {list(data.all_modalities)}",
    )
    _check(data.source == "demo" or data.data_dir is not None,
           f"data.data_dir: needed when data.source is {data.source!r} (the folder holding the subjects)")
    _check(data.n_demo_subjects >= 2, f"data.n_demo_subjects: at least 2 are needed, received {data.n_demo_subjects}")
    for name in ("image_shape", "demo_shape"):
        shape = getattr(data, name)
        _check(all(s > 0 for s in shape), f"data.{name}: sizes must be positive, received {list(shape)}")
    _check(0.0 < config.split.data_split < 1.0,
           f"split.data_split: the training fraction must be between 0 and 1, received {config.split.data_split}")

    _check(0 <= data.ignore_label <= 255 and data.ignore_label not in labels and data.ignore_label != 0,
           f"data.ignore_label: {data.ignore_label} must be between 1 and 255 and differ from background (0) "
           f"and from every value of data.labels {list(labels)}")
    if model.n_labels is not None:
        _check(
            model.n_labels == len(labels),
            f"model.n_labels: {model.n_labels} does not match the {len(labels)} values of data.labels "
            f"{list(labels)}; set it to {len(labels)} or null",
        )
    _check(model.depth >= 1, f"model.depth: must be at least 1, received {model.depth}")
    _check(model.n_base_filters >= 1, f"model.n_base_filters: must be at least 1, received {model.n_base_filters}")
    _check(all(p >= 1 for p in model.pool_size), f"model.pool_size: must be positive, received {list(model.pool_size)}")
    _check(0.0 <= model.dropout_rate < 1.0, f"model.dropout_rate: must be in [0, 1), received {model.dropout_rate}")
    if model.name == "isensee2017":
        _check(
            1 <= model.n_segmentation_levels <= model.depth - 1,
            f"model.n_segmentation_levels: must be between 1 and model.depth - 1 = {model.depth - 1}, "
            f"received {model.n_segmentation_levels}",
        )
    pools = model.pool_size if model.name == "unet" else (2, 2, 2)
    shape_key = "training.patch_shape" if training.patch_shape else "data.image_shape"
    shape = config.spatial_input_shape
    for axis, (size, pool) in enumerate(zip(shape, pools)):
        factor = pool ** (model.depth - 1)
        _check(
            size > 0 and size % factor == 0,
            f"{shape_key}: {list(shape)} has size {size} on axis {axis}, which is not divisible by "
            f"{factor} = {pool}**(model.depth - 1) for model.depth {model.depth}; "
            f"use a multiple of {factor} such as "
            + " or ".join(str(s) for s in sorted({size // factor * factor, size // factor * factor + factor}) if s > 0),
        )
    if training.patch_shape:
        larger = [axis for axis, (p, s) in enumerate(zip(training.patch_shape, data.image_shape)) if p > s]
        _check(
            not larger,
            f"training.patch_shape: {list(training.patch_shape)} is larger than data.image_shape "
            f"{list(data.image_shape)} on axis {larger[0] if larger else ''}; use a patch no larger than the "
            "image, or null to train on whole images",
        )
        _check(
            training.validation_patch_overlap < min(training.patch_shape),
            f"training.validation_patch_overlap: {training.validation_patch_overlap} must be smaller than "
            f"the patch size {list(training.patch_shape)}",
        )
    _check(training.validation_patch_overlap >= 0,
           f"training.validation_patch_overlap: must be >= 0, received {training.validation_patch_overlap}")
    for name in ("batch_size", "validation_batch_size", "n_epochs"):
        value = getattr(training, name)
        _check(value >= 1, f"training.{name}: must be at least 1, received {value}")
    _check(training.initial_learning_rate > 0,
           f"training.initial_learning_rate: must be positive, received {training.initial_learning_rate}")
    _check(0 < training.learning_rate_drop <= 1,
           f"training.learning_rate_drop: must be in (0, 1], received {training.learning_rate_drop}")
    if model.activation == "sigmoid":
        _check(training.loss in ("auto", "dice"),
               f"training.loss: {training.loss!r} needs model.activation softmax (or auto); a sigmoid output "
               "trains with the reference's dice loss")
    if isinstance(training.class_weights, tuple):
        n_classes = len(labels) + 1
        _check(len(training.class_weights) == n_classes and all(w >= 0 for w in training.class_weights)
               and sum(training.class_weights) > 0,
               f"training.class_weights: expected {n_classes} non-negative weights (background first, then one "
               f"per value of data.labels {list(labels)}) or 'balanced', received {list(training.class_weights)}")
    _check(training.workers >= 0, f"training.workers: must be >= 0, received {training.workers}")
    if config.augment.permute:
        try:
            require_cube(shape, shape_key, ConfigError)
        except ConfigError:
            raise ConfigError(
                f"augment.permute: permutation augmentation needs a cubic {shape_key}, received {list(shape)}"
            ) from None
    _check(0 <= config.prediction.overlap, f"prediction.overlap: must be >= 0, received {config.prediction.overlap}")
    if training.patch_shape:
        _check(config.prediction.overlap < min(training.patch_shape),
               f"prediction.overlap: {config.prediction.overlap} must be smaller than the window "
               f"(training.patch_shape {list(training.patch_shape)})")
    _check(0 < config.prediction.threshold < 1,
           f"prediction.threshold: must be between 0 and 1, received {config.prediction.threshold}")
    _check(config.prediction.batch_size >= 1,
           f"prediction.batch_size: must be at least 1, received {config.prediction.batch_size}")
    _check_label_convention(config)
    check_run_paths(config)
    return config


def _check_label_convention(config: Config) -> None:
    """``data.labels`` within ``data.convention``, ``data.regions`` within ``data.labels``, and
    region outputs (``model.output: regions``) that paint every label back."""
    data, model = config.data, config.model
    labels = list(data.labels)
    if config.label_convention != "none":
        allowed = get_convention(config.label_convention).labels
        outside = [v for v in labels if v not in allowed]
        _check(not outside, f"data.labels: {outside} are not labels of data.convention {config.label_convention} "
                            f"{list(allowed)}; list some of {list(allowed)}, or set data.convention: none")
    for name, values in (data.regions or {}).items():
        outside = [v for v in values if v not in labels]
        _check(len(values) > 0 and not outside,
               f"data.regions.{name}: {list(values)} must be some of the values of data.labels {labels}")
    if model.output != "regions":
        return
    regions = config.output_regions
    _check(bool(regions), "model.output: regions needs regions: set data.convention (e.g. brats-gli) or data.regions")
    try:
        paint_labels(regions, labels)
    except ValueError as error:
        where = "data.regions" if config.label_convention == "none" else f"data.convention {config.label_convention}"
        raise ConfigError(f"model.output: regions: the regions of {where} cannot be turned back into a label map: "
                          f"{error}") from None
    _check(model.activation in ("auto", "sigmoid"),
           f"model.activation: {model.activation!r} cannot be used with model.output: regions (one sigmoid output "
           "per region, the regions overlap); use auto or sigmoid")
    _check(config.training.loss in ("auto", "dice"),
           f"training.loss: {config.training.loss!r} cannot be used with model.output: regions (sigmoid outputs "
           "train with the dice loss); use auto or dice")


def _labels_from_convention(raw: dict) -> dict:
    """``raw`` with ``data.labels`` taken from a named ``data.convention`` when it is left out (or null)."""
    data = raw.get("data")
    if isinstance(data, dict) and data.get("labels") is None:
        convention = data.get("convention", "auto")
        if convention in CONVENTIONS or convention in ("auto", None):
            labels = CONVENTIONS[convention if convention in CONVENTIONS else "brats2017"].labels
            return {**raw, "data": {**data, "labels": list(labels)}}
    return raw


#: Keys naming files a run writes (or deletes with --overwrite), relative to output_dir.
RUN_PATH_KEYS = ("data.data_file", "split.training_file", "split.validation_file", "training.model_file",
                 "training.log_file", "prediction.output_dir")


def check_run_paths(config: Config) -> None:
    """Refuse run files outside ``output_dir`` (absolute, ``..``) unless ``allow_outside_output_dir``.

    A run writes these files and ``--overwrite`` deletes them, so a config file
    from elsewhere must not be able to point them at arbitrary places.
    """
    if config.allow_outside_output_dir:
        return
    run_dir = config.run_dir
    for key in RUN_PATH_KEYS:
        section, name = key.split(".")
        value = getattr(getattr(config, section), name)
        # Lexical check (normpath, not resolve): a symlink the user placed in the run folder is theirs.
        path = Path(os.path.normpath(run_dir / value))
        inside = path.is_relative_to(run_dir) and (path != run_dir or key == "prediction.output_dir")
        _check(
            value.strip() != "" and inside,
            f"{key}: {value!r} is not a file inside output_dir ({run_dir}); run files must stay in the run "
            "folder (set allow_outside_output_dir: true to allow this path)",
        )


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``section.key=value`` into the key path and the YAML-parsed value."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: expected section.key=value, e.g. training.batch_size=2")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as error:
        raise ConfigError(f"--set {text!r}: the value is not valid YAML ({error.problem})") from None
    return key.strip().split("."), value


def sets_key(overrides: Sequence[str], key: str) -> bool:
    """Whether one of the ``section.key=value`` overrides sets ``key`` (e.g. ``"training.class_weights"``)."""
    return any(parse_override(text)[0] == key.split(".") for text in overrides)


def apply_overrides(raw: Mapping[str, Any], overrides: Sequence[str]) -> dict:
    """Return a copy of the raw mapping (read-only mappings and tuples become dicts and lists)
    with ``--set`` overrides applied."""
    raw = _deep_copy(raw)
    for text in overrides:
        path, value = parse_override(text)
        node = raw
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {text!r}: '{part}' is not a section")
            node = child
        node[path[-1]] = value
    return raw


def _deep_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_deep_copy(v) for v in value]
    return value


def config_from_dict(raw: dict | None, source: str = "config", base_dir: str | os.PathLike = ".") -> Config:
    """Build and validate a :class:`Config` from a plain mapping."""
    try:
        config = build_dataclass(Config, _labels_from_convention(raw) if raw is not None else {}, "")
        config.base_dir = str(Path(base_dir).resolve())
        return validate(config)
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None


def load_config(path: str | os.PathLike | None = None, overrides: Sequence[str] = ()) -> Config:
    """Load, override and validate a YAML config.

    Args:
        path: YAML file; ``None`` loads the repository's ``config.yaml``.
        overrides: ``section.key=value`` strings applied before validation.

    Returns:
        The validated config; its ``base_dir`` is the file's folder.

    Raises:
        ConfigError: The file is missing, empty (or only comments) or not YAML, or a key is
            unknown, of the wrong type or inconsistent with another.
    """
    path = Path(path) if path is not None else DEFAULT_CONFIG
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the config file ({error.strerror})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(error, 'problem', error)}") from None
    if raw is None:  # an empty file is a slip (wrong file, unsaved editor), not a wish for every default
        raise ConfigError(
            f"{path}: the config file is empty (or holds only comments); write the keys to change there "
            "(config.yaml lists them all), or leave out --config to run with the default config"
        )
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level, received {type(raw).__name__}")
    raw = apply_overrides(raw, overrides)
    return config_from_dict(raw, source=str(path), base_dir=path.resolve().parent)


def save_config(config: Config, path: str | os.PathLike) -> Path:
    """Write the resolved config as YAML, atomically (temporary file + rename).

    Returns:
        The path written.
    """
    path = Path(path)
    text = "# Resolved configuration of this run (written by unet3d_keras).\n"
    text += yaml.safe_dump(config.to_dict(), sort_keys=False)
    write_text_atomically(path, text)
    return path


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--config`` and ``--set`` to a script's argument parser."""
    parser.add_argument("--config", default=None, help="YAML config file (default: the repository's config.yaml)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
        help="override a config key, e.g. --set training.batch_size=2 (repeatable)",
    )


def config_from_args(args: argparse.Namespace) -> Config:
    """Load the config named by ``--config`` with the ``--set`` overrides."""
    return load_config(args.config, args.overrides)
