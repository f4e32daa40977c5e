"""The typed run configuration: one dataclass per section of the YAML file, with their defaults.

``config.yaml`` at the top of the repository documents every key; :mod:`unet3d_keras.config`
loads and validates a file into these types.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

from .augmentation.params import AugmentationParams
from .label_conventions import convention_for_labels, get_convention, restrict_regions
from .modalities import BRATS_MODALITIES

__all__ = [
    "ConfigError",
    "DataConfig",
    "SplitConfig",
    "ModelConfig",
    "TrainingConfig",
    "PredictionConfig",
    "Config",
]


class ConfigError(ValueError):
    """A configuration value is unknown, of the wrong type or inconsistent."""


@dataclass
class DataConfig:
    source: Literal["demo", "brats", "folder"] = "demo"
    data_dir: Optional[str] = None
    data_file: str = "data.h5"
    n_demo_subjects: int = 24
    demo_shape: tuple[int, int, int] = (64, 64, 64)
    image_shape: tuple[int, int, int] = (64, 64, 64)
    all_modalities: tuple[str, ...] = BRATS_MODALITIES
    training_modalities: tuple[str, ...] = BRATS_MODALITIES
    truth_name: str = "truth"
    convention: Literal["auto", "none", "brats2017", "brats-gli", "brats-ssa", "brats-met", "brats-men", "brats-ped",
                        "brats-goat", "brats-men-rt"] = "auto"
    labels: tuple[int, ...] = (1, 2, 4)
    regions: Optional[dict[str, tuple[int, ...]]] = None
    ignore_label: int = 255
    crop: bool = True
    normalization: Literal["dataset", "zscore", "none"] = "dataset"
    clip_outliers: bool = False


@dataclass
class SplitConfig:
    data_split: float = 0.8
    training_file: str = "training_ids.json"
    validation_file: str = "validation_ids.json"


@dataclass
class ModelConfig:
    name: Literal["unet", "isensee2017"] = "unet"
    output: Literal["labels", "regions"] = "labels"
    n_labels: Optional[int] = None
    depth: int = 4
    n_base_filters: int = 8
    pool_size: tuple[int, int, int] = (2, 2, 2)
    deconvolution: bool = True
    batch_normalization: bool = False
    instance_normalization: bool = False
    activation: Literal["auto", "sigmoid", "softmax"] = "auto"
    dropout_rate: float = 0.3
    n_segmentation_levels: int = 3
    include_label_wise_dice_coefficients: bool = True


@dataclass
class TrainingConfig:
    patch_shape: Optional[tuple[int, int, int]] = None
    batch_size: int = 1
    validation_batch_size: int = 2
    n_epochs: int = 60
    initial_learning_rate: float = 5e-4
    learning_rate_drop: float = 0.5
    learning_rate_patience: int = 8
    learning_rate_epochs: Optional[int] = None
    early_stopping_patience: Optional[int] = 15
    validation_patch_overlap: int = 0
    training_patch_start_offset: Optional[tuple[int, int, int]] = None
    skip_blank: bool = True
    loss: Literal["auto", "dice", "cross_entropy", "cross_entropy_dice"] = "auto"
    class_weights: Optional[Union[Literal["balanced"], tuple[float, ...]]] = "balanced"
    workers: int = 1
    model_file: str = "model.keras"
    log_file: str = "training.log"
    continue_from_model_file: bool = False
    mixed_precision: Literal["auto", "off", "bfloat16", "float16"] = "auto"
    distribution: Literal["none", "mirrored", "multi_worker"] = "none"


@dataclass
class PredictionConfig:
    output_dir: str = "predictions"
    overlap: int = 16
    batch_size: int = 1
    permute: bool = False
    threshold: float = 0.5
    output_label_map: bool = True


@dataclass
class Config:
    output_dir: str = "runs/demo"
    seed: int = 42
    data: DataConfig = field(default_factory=DataConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    # The run config flips by default, as the reference's generator does (augment_flip=True).
    augment: AugmentationParams = field(default_factory=lambda: AugmentationParams(flip=True))
    prediction: PredictionConfig = field(default_factory=PredictionConfig)
    # Run files (data.data_file, split files, model, log, predictions) may lie outside output_dir.
    allow_outside_output_dir: bool = False
    # Folder that relative paths are resolved against; not a YAML key.
    base_dir: str = field(default=".", metadata={"internal": True})

    @property
    def n_labels(self) -> int:
        """Output channels of the model: ``model.n_labels`` or the number of labels."""
        return self.model.n_labels if self.model.n_labels is not None else len(self.data.labels)

    @property
    def label_convention(self) -> str:
        """The label convention of the run: ``data.convention``, with ``auto`` resolved (``brats2017``
        for the labels 1, 2, 4, else ``none``)."""
        convention = self.data.convention
        return convention_for_labels(self.data.labels) if convention == "auto" else convention

    @property
    def evaluation_regions(self) -> dict[str, tuple[int, ...]]:
        """The scored regions, ``{name: label values}``: ``data.regions``, else the convention's
        (without the labels the run leaves out)."""
        if self.data.regions is not None:
            return dict(self.data.regions)
        if self.label_convention == "none":
            return {}
        return restrict_regions(get_convention(self.label_convention).regions, self.data.labels)

    @property
    def output_regions(self) -> dict[str, tuple[int, ...]] | None:
        """The regions of a region-based model (``model.output: regions``), outer first; None for
        ``model.output: labels``. The convention's nested regions, or ``data.regions`` without one."""
        if self.model.output != "regions":
            return None
        if self.label_convention == "none":
            return dict(self.data.regions or {})
        return restrict_regions(get_convention(self.label_convention).training_regions, self.data.labels)

    @property
    def n_channels(self) -> int:
        return len(self.data.training_modalities)

    @property
    def spatial_input_shape(self) -> tuple[int, int, int]:
        """The model's spatial input: the patch shape, or the whole image shape."""
        return tuple(self.training.patch_shape or self.data.image_shape)

    @property
    def run_dir(self) -> Path:
        return (Path(self.base_dir) / self.output_dir).resolve()

    def run_path(self, name: str) -> Path:
        """Path of a run file (``data.data_file``, ``training.model_file``...) in ``output_dir``."""
        return self.run_dir / name

    def input_path(self, name: str) -> Path:
        """An input path from the config, resolved against the config file's folder."""
        return (Path(self.base_dir) / os.path.expanduser(name)).resolve()

    def to_dict(self) -> dict:
        """The YAML-ready mapping of every key (tuples become lists)."""
        return _to_plain(self)


def _to_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {
            f.name: _to_plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if not f.metadata.get("internal")
        }
    if isinstance(value, (tuple, list)):
        return [_to_plain(v) for v in value]
    return value
