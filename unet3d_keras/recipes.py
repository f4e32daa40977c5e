"""The reference's two BraTS recipes as run configs, and a run config seen as the reference's ``config`` dict.

``configs/brats2020_isensee2017.yaml`` holds the settings of the reference's ``brats/train.py``
(Isensee et al. 2017 on whole 128^3 images) and ``configs/brats2020_unet.yaml`` those of its
``brats/original_unet_train.py`` (the U-Net on 64^3 patches of 144^3 images). The reference's
scripts exposed their settings as a module-level dict ``config``; :func:`reference_config` gives
that dict for any run config, for code that reads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import Config

__all__ = ["CONFIG_DIR", "ISENSEE2017_RECIPE", "UNET_RECIPE", "reference_config"]

#: The repository's folder of ready run configs.
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
#: The reference's brats/train.py.
ISENSEE2017_RECIPE = CONFIG_DIR / "brats2020_isensee2017.yaml"
#: The reference's brats/original_unet_train.py.
UNET_RECIPE = CONFIG_DIR / "brats2020_unet.yaml"


def reference_config(config: Config) -> dict[str, Any]:
    """The reference scripts' ``config`` dict (same keys and meanings) of a run config.

    Shapes are tuples, ``input_shape`` is channels first as in the reference, and the file
    paths are the run's absolute paths. The dict is a view: changing it changes no run (use a
    YAML file or ``--set``).
    """
    data, model, train, augment = config.data, config.model, config.training, config.augment
    spatial = tuple(train.patch_shape) if train.patch_shape else tuple(data.image_shape)
    n_channels = len(data.training_modalities)
    augmenting = bool(augment.flip or augment.distortion_factor)
    return {
        "pool_size": tuple(model.pool_size),
        "image_shape": tuple(data.image_shape),
        "patch_shape": tuple(train.patch_shape) if train.patch_shape else None,
        "labels": tuple(data.labels),
        "n_base_filters": model.n_base_filters,
        "n_labels": config.n_labels,
        "all_modalities": list(data.all_modalities),
        "training_modalities": list(data.training_modalities),
        "nb_channels": n_channels,
        "input_shape": (n_channels, *spatial),
        "truth_channel": n_channels,
        "deconvolution": model.deconvolution,
        "batch_size": train.batch_size,
        "validation_batch_size": train.validation_batch_size,
        "n_epochs": train.n_epochs,
        "patience": train.learning_rate_patience,
        "early_stop": train.early_stopping_patience,
        "initial_learning_rate": train.initial_learning_rate,
        "learning_rate_drop": train.learning_rate_drop,
        "validation_split": config.split.data_split,
        "flip": augment.flip,
        "permute": augment.permute,
        "distort": augment.distortion_factor,
        "augment": augmenting,
        "validation_patch_overlap": train.validation_patch_overlap,
        "training_patch_start_offset": (tuple(train.training_patch_start_offset)
                                        if train.training_patch_start_offset else None),
        "skip_blank": train.skip_blank,
        "data_file": str(config.run_path(data.data_file)),
        "model_file": str(config.run_path(train.model_file)),
        "training_file": str(config.run_path(config.split.training_file)),
        "validation_file": str(config.run_path(config.split.validation_file)),
        "overwrite": False,
    }
