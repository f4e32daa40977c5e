"""The reference's two BraTS recipes as configs: every key against the reference's value.

The reference is ellisdg/3DUnetCNN v0.3, folder legacy/: T = brats/train.py, O =
brats/original_unet_train.py, P = brats/predict.py, E = brats/evaluate.py, and unet.py,
isensee2017.py, training.py, data.py, prediction.py of unet3dlegacy/. Each value below was read
there, at the cited line.
"""

from __future__ import annotations

import pytest

from unet3d_keras.config import load_config
from unet3d_keras.recipes import ISENSEE2017_RECIPE, UNET_RECIPE, reference_config

MODALITIES = ["t1", "t1ce", "flair", "t2"]

# Settings both scripts share, with the line in T and O.
_SHARED = {
    "data.labels": ([1, 2, 4], "T:13 O:14"),
    "model.n_labels": (3, "T:15 O:15 len(labels)"),
    "data.all_modalities": (MODALITIES, "T:16 O:16"),
    "data.training_modalities": (MODALITIES, "T:17 O:17"),
    "model.deconvolution": (True, "T:24 O:24"),
    "training.n_epochs": (500, "T:28 O:28"),
    "training.learning_rate_patience": (10, "T:29 O:29 config['patience']"),
    "training.early_stopping_patience": (50, "T:30 O:30 config['early_stop']"),
    "training.learning_rate_drop": (0.5, "T:32 O:32"),
    "split.data_split": (0.8, "T:33 O:33 config['validation_split']"),
    "augment.flip": (False, "T:34 O:34"),
    "augment.distortion_factor": (None, "T:36 O:36 config['distort']"),
    "training.validation_patch_overlap": (0, "T:38 O:38"),
    "training.training_patch_start_offset": ([16, 16, 16], "T:39 O:39"),
    "training.skip_blank": (True, "T:40 O:40"),
    "data.data_file": ("brats_data.h5", "T:42 O:42"),
    "split.training_file": ("training_ids.json", "T:44 O:44 training_ids.pkl, written as JSON by subject id"),
    "split.validation_file": ("validation_ids.json", "T:45 O:45 validation_ids.pkl, as JSON"),
    "training.learning_rate_epochs": (None, "training.py:58 train_model default: ReduceLROnPlateau"),
    "training.log_file": ("training.log", "training.py:20 get_callbacks default logging_file"),
    "training.loss": ("dice", "unet.py:81, isensee2017.py:16 weighted_dice_coefficient_loss"),
    "data.crop": (True, "data.py:46 write_data_to_file default crop=True"),
    "data.normalization": ("dataset", "data.py:46 normalize=True: per-channel statistics of the subjects"),
    "data.source": ("brats", "T:49-65 O:49-56 BraTS subject folders"),
    "data.convention": ("brats2017", "E:11-20 labels 1, 2, 4; regions WT, TC, ET"),
    "prediction.overlap": (16, "prediction.py:146 run_validation_cases default"),
    "prediction.threshold": (0.5, "prediction.py:146 run_validation_cases default"),
    "prediction.batch_size": (1, "prediction.py:13 patch_wise_prediction default"),
    "prediction.output_label_map": (True, "P:29 label maps unless --no_label_map"),
}

ISENSEE2017 = {
    **_SHARED,
    "data.image_shape": ([128, 128, 128], "T:11"),
    "training.patch_shape": (None, "T:12 whole images"),
    "model.n_base_filters": (16, "T:14"),
    "training.batch_size": (1, "T:26"),
    "training.validation_batch_size": (2, "T:27"),
    "training.initial_learning_rate": (5e-4, "T:31"),
    "augment.permute": (True, "T:35"),
    "training.model_file": ("unet_model.keras", "T:43 unet_model.h5, in Keras 3's format"),
    "model.name": ("isensee2017", "T:85 isensee2017_model"),
    "model.depth": (5, "isensee2017.py:14 default"),
    "model.dropout_rate": (0.3, "isensee2017.py:14 default"),
    "model.n_segmentation_levels": (3, "isensee2017.py:15 default"),
    "model.activation": ("sigmoid", "isensee2017.py:16 default activation_name"),
    "model.instance_normalization": (True, "isensee2017.py:11 every block instance-normalised"),
    "model.pool_size": ([2, 2, 2], "isensee2017.py:49 stride-2 convolutions"),
    "model.include_label_wise_dice_coefficients": (False, "isensee2017.py:80 compiled without metrics"),
    "data.truth_name": ("seg", "T:54 {id}_seg.nii.gz"),
    "prediction.permute": (True, "P:52 permute=config['permute'] of T:35"),
}

UNET = {
    **_SHARED,
    "model.pool_size": ([2, 2, 2], "O:11"),
    "data.image_shape": ([144, 144, 144], "O:12"),
    "training.patch_shape": ([64, 64, 64], "O:13"),
    "training.batch_size": (6, "O:26"),
    "training.validation_batch_size": (12, "O:27"),
    "training.initial_learning_rate": (1e-5, "O:31"),
    "augment.permute": (False, "O:35"),
    "training.model_file": ("tumor_segmentation_model.keras", "O:43 tumor_segmentation_model.h5, Keras 3 format"),
    "model.name": ("unet", "O:71 unet_model_3d"),
    "model.depth": (4, "unet.py:18 default"),
    "model.n_base_filters": (32, "unet.py:18 default"),
    "model.include_label_wise_dice_coefficients": (False, "unet.py:18 default"),
    "model.batch_normalization": (False, "unet.py:19 default"),
    "model.activation": ("sigmoid", "unet.py:19 default activation_name"),
    "model.instance_normalization": (False, "unet.py:85 create_convolution_block default"),
    "data.truth_name": ("truth", "O:53 truth.nii.gz"),
    "prediction.permute": (False, "P:52 permute=config['permute'] of O:35"),
}

# Keys the reference does not have, set to what reproduces its behaviour (value, why).
PORT_ONLY = {
    "seed": (42, "the reference's split was unseeded; any seed"),
    "allow_outside_output_dir": (False, "run files inside output_dir"),
    "data.n_demo_subjects": (24, "unused with data.source brats"),
    "data.demo_shape": ([64, 64, 64], "unused with data.source brats"),
    "data.ignore_label": (255, "BraTS truth is dense: no voxel carries it"),
    "data.regions": (None, "the convention's WT, TC, ET"),
    "data.clip_outliers": (False, "the reference read intensities as they were"),
    "model.output": ("labels", "one sigmoid output per label"),
    "training.class_weights": (None, "not used by the dice loss"),
    "training.workers": (1, "batches read beside training, as the reference's generator"),
    "training.continue_from_model_file": (False, "T:81-82 / O:67-68 continued when the file existed: "
                                                 "--continue-training"),
    "training.mixed_precision": ("off", "the reference trained in float32"),
    "training.distribution": ("none", "one device"),
    "augment.elastic": (False, "not in the reference"),
    "augment.elastic_sigma": (4.0, "unused"),
    "augment.elastic_grid_spacing": (32, "unused"),
    "augment.rotation_degrees": (0.0, "not in the reference"),
    "augment.intensity_scale": (0.0, "not in the reference"),
    "augment.intensity_shift": (0.0, "not in the reference"),
    "augment.gamma_range": (None, "not in the reference"),
    "prediction.output_dir": ("predictions", "run_validation_cases' output_dir"),
}
# Per recipe: where it writes, where the reference looked for data, and the U-Net's unused Isensee keys.
RECIPE_ONLY = {
    ISENSEE2017_RECIPE: {"output_dir": "../runs/brats2020_isensee2017", "data.data_dir": "../brats/data",
                         "model.batch_normalization": False},
    UNET_RECIPE: {"output_dir": "../runs/brats2020_unet", "data.data_dir": "../brats/data/preprocessed",
                  "model.dropout_rate": 0.3, "model.n_segmentation_levels": 3},
}


def _flatten(mapping: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in mapping.items():
        if isinstance(value, dict) and key != "regions":
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


@pytest.mark.parametrize("recipe, reference", [(ISENSEE2017_RECIPE, ISENSEE2017), (UNET_RECIPE, UNET)],
                         ids=["isensee2017", "unet"])
def test_recipe_holds_every_reference_value(recipe, reference):
    config = _flatten(load_config(recipe).to_dict())
    expected = {key: value for key, (value, _) in {**PORT_ONLY, **reference}.items()}
    expected.update(RECIPE_ONLY[recipe])
    assert sorted(config) == sorted(expected), "every key of the config needs its reference value here"
    wrong = {key: (config[key], value) for key, value in expected.items() if config[key] != value}
    assert wrong == {}


def test_the_scripts_config_dicts_hold_the_reference_values():
    from brats import original_unet_train, train

    # The reference's own config dicts, as far as they do not depend on the working folder.
    isensee = {"image_shape": (128, 128, 128), "patch_shape": None, "labels": (1, 2, 4), "n_base_filters": 16,
               "n_labels": 3, "all_modalities": MODALITIES, "training_modalities": MODALITIES, "nb_channels": 4,
               "input_shape": (4, 128, 128, 128), "truth_channel": 4, "deconvolution": True, "batch_size": 1,
               "validation_batch_size": 2, "n_epochs": 500, "patience": 10, "early_stop": 50,
               "initial_learning_rate": 5e-4, "learning_rate_drop": 0.5, "validation_split": 0.8, "flip": False,
               "permute": True, "distort": None, "validation_patch_overlap": 0,
               "training_patch_start_offset": (16, 16, 16), "skip_blank": True, "overwrite": False}
    unet = {**isensee, "pool_size": (2, 2, 2), "image_shape": (144, 144, 144), "patch_shape": (64, 64, 64),
            "input_shape": (4, 64, 64, 64), "batch_size": 6, "validation_batch_size": 12,
            "initial_learning_rate": 1e-5, "permute": False}
    del unet["n_base_filters"]  # not a key of O (unet_model_3d's default 32 applies)
    for module, expected, model_file in ((train, isensee, "unet_model"),
                                         (original_unet_train, unet, "tumor_segmentation_model")):
        assert {key: module.config[key] for key in expected} == expected
        assert not module.config["augment"]  # T:37 / O:37 flip or distort
        assert module.config["data_file"].endswith("brats_data.h5")
        assert module.config["model_file"].rsplit("/", 1)[-1].split(".")[0] == model_file
    assert reference_config(load_config(UNET_RECIPE))["n_base_filters"] == 32


@pytest.mark.slow
def test_brats_train_runs_the_isensee2017_recipe(tmp_path, capsys):
    import numpy as np

    from brats.train import main
    from data_helpers import make_brats_folder

    make_brats_folder(str(tmp_path / "MICCAI_BraTS2020_TrainingData"), [f"BraTS20_Training_00{i}" for i in range(4)],
                      np.random.default_rng(0), group="", shape=(14, 13, 12))
    shrink = ["data.image_shape=[8, 8, 8]", "model.depth=2", "model.n_segmentation_levels=1", "model.n_base_filters=2",
              "training.n_epochs=1", "split.data_split=0.5", "prediction.permute=false", f"output_dir={tmp_path / 'run'}"]
    status = main(argv=[str(tmp_path / "MICCAI_BraTS2020_TrainingData"), "--config", str(ISENSEE2017_RECIPE),
                        "--quiet", *[f"--set={item}" for item in shrink]])
    assert status == 0, capsys.readouterr().err[-2000:]
    saved = load_config(tmp_path / "run" / "config.yaml")
    assert saved.model.name == "isensee2017" and saved.augment.permute and not saved.augment.flip
    assert saved.training.learning_rate_patience == 10 and saved.training.early_stopping_patience == 50
    assert (tmp_path / "run" / "unet_model.keras").is_file() and (tmp_path / "run" / "brats_data.h5").is_file()
