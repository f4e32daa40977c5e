"""Every public name of the reference exists at its reference module path with the reference's
parameters and defaults; the port may add keyword arguments after them.

The table was read from ellisdg/3DUnetCNN v0.3, folder legacy/ (package unet3dlegacy, scripts in
brats/): one row per public function, ``(module in the port, name, the reference's parameter
list, where it is defined)``. Module-level names that are not functions follow in
``REFERENCE_NAMES``.
"""

from __future__ import annotations

import ast
import importlib
import inspect

import keras
import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

REFERENCE_FUNCTIONS = [
    ("brats.evaluate", "get_whole_tumor_mask", "data", "brats/evaluate.py:11"),
    ("brats.evaluate", "get_tumor_core_mask", "data", "brats/evaluate.py:15"),
    ("brats.evaluate", "get_enhancing_tumor_mask", "data", "brats/evaluate.py:19"),
    ("brats.evaluate", "dice_coefficient", "truth, prediction", "brats/evaluate.py:23"),
    ("brats.evaluate", "main", "", "brats/evaluate.py:27"),
    ("brats.original_unet_train", "fetch_training_data_files", "", "brats/original_unet_train.py:49"),
    ("brats.original_unet_train", "main", "overwrite=False", "brats/original_unet_train.py:59"),
    ("brats.predict", "parse_args", "", "brats/predict.py:13"),
    ("brats.predict", "main", "", "brats/predict.py:26"),
    ("brats.preprocess", "append_basename", "in_file, append", "brats/preprocess.py:18"),
    ("brats.preprocess", "get_background_mask", "in_folder, out_file, truth_name='GlistrBoost_ManuallyCorrected'", "brats/preprocess.py:24"),
    ("brats.preprocess", "convert_image_format", "in_file, out_file", "brats/preprocess.py:45"),
    ("brats.preprocess", "window_intensities", "in_file, out_file, min_percent=1, max_percent=99", "brats/preprocess.py:50"),
    ("brats.preprocess", "correct_bias", "in_file, out_file, image_type=sitk.sitkFloat64", "brats/preprocess.py:59"),
    ("brats.preprocess", "rescale", "in_file, out_file, minimum=0, maximum=20000", "brats/preprocess.py:83"),
    ("brats.preprocess", "get_image", "subject_folder, name", "brats/preprocess.py:89"),
    ("brats.preprocess", "background_to_zero", "in_file, background_file, out_file", "brats/preprocess.py:97"),
    ("brats.preprocess", "check_origin", "in_file, in_file2", "brats/preprocess.py:103"),
    ("brats.preprocess", "normalize_image", "in_file, out_file, bias_correction=True", "brats/preprocess.py:111"),
    ("brats.preprocess", "convert_brats_folder", "in_folder, out_folder, truth_name='seg', no_bias_correction_modalities=None", "brats/preprocess.py:119"),
    ("brats.preprocess", "convert_brats_data", "brats_folder, out_folder, overwrite=False, no_bias_correction_modalities=('flair',)", "brats/preprocess.py:144"),
    ("brats.train", "fetch_brats_2020_files", "modalities, group='Training', include_truth=True, return_subject_ids=False", "brats/train.py:49"),
    ("brats.train", "fetch_training_data_files", "return_subject_ids=False", "brats/train.py:68"),
    ("brats.train", "main", "overwrite=False", "brats/train.py:72"),
    ("unet3d_keras.augment", "scale_image", "image, scale_factor", "augment.py:8"),
    ("unet3d_keras.augment", "flip_image", "image, axis", "augment.py:16"),
    ("unet3d_keras.augment", "random_flip_dimensions", "n_dimensions", "augment.py:26"),
    ("unet3d_keras.augment", "random_scale_factor", "n_dim=3, mean=1, std=0.25", "augment.py:34"),
    ("unet3d_keras.augment", "random_boolean", "", "augment.py:38"),
    ("unet3d_keras.augment", "distort_image", "image, flip_axis=None, scale_factor=None", "augment.py:42"),
    ("unet3d_keras.augment", "augment_data", "data, truth, affine, scale_deviation=None, flip=True", "augment.py:50"),
    ("unet3d_keras.augment", "get_image", "data, affine, nib_class=nib.Nifti1Image", "augment.py:73"),
    ("unet3d_keras.augment", "generate_permutation_keys", "", "augment.py:77"),
    ("unet3d_keras.augment", "random_permutation_key", "", "augment.py:96"),
    ("unet3d_keras.augment", "permute_data", "data, key", "augment.py:104"),
    ("unet3d_keras.augment", "random_permutation_x_y", "x_data, y_data", "augment.py:134"),
    ("unet3d_keras.augment", "reverse_permute_data", "data, key", "augment.py:145"),
    ("unet3d_keras.augment", "reverse_permutation_key", "key", "augment.py:166"),
    ("unet3d_keras.data", "create_data_file", "out_file, n_channels, n_samples, image_shape", "data.py:9"),
    ("unet3d_keras.data", "write_image_data_to_file", "image_files, data_storage, truth_storage, image_shape, n_channels, affine_storage, truth_dtype=np.uint8, crop=True, label_indices=None, save_truth=True", "data.py:23"),
    ("unet3d_keras.data", "add_data_to_storage", "data_storage, truth_storage, affine_storage, subject_data, affine, n_channels, truth_dtype, save_truth=True", "data.py:37"),
    ("unet3d_keras.data", "write_data_to_file", "training_data_files, out_file, image_shape, truth_dtype=np.uint8, subject_ids=None, normalize=True, crop=True, save_truth=True", "data.py:45"),
    ("unet3d_keras.data", "open_data_file", "filename, readwrite='r'", "data.py:88"),
    ("unet3d_keras.generator", "get_training_and_validation_generators", "data_file, batch_size, n_labels, training_keys_file, validation_keys_file, data_split=0.8, overwrite=False, labels=None, augment=False, augment_flip=True, augment_distortion_factor=0.25, patch_shape=None, validation_patch_overlap=0, training_patch_start_offset=None, validation_batch_size=None, skip_blank=True, permute=False", "generator.py:13"),
    ("unet3d_keras.generator", "get_number_of_steps", "n_samples, batch_size", "generator.py:95"),
    ("unet3d_keras.generator", "get_validation_split", "data_file, training_file, validation_file, data_split=0.8, overwrite=False", "generator.py:104"),
    ("unet3d_keras.generator", "split_list", "input_list, split=0.8, shuffle_list=True", "generator.py:127"),
    ("unet3d_keras.generator", "data_generator", "data_file, index_list, batch_size=1, n_labels=1, labels=None, augment=False, augment_flip=True, augment_distortion_factor=0.25, patch_shape=None, patch_overlap=0, patch_start_offset=None, shuffle_index_list=True, skip_blank=True, permute=False", "generator.py:136"),
    ("unet3d_keras.generator", "get_number_of_patches", "data_file, index_list, patch_shape=None, patch_overlap=0, patch_start_offset=None, skip_blank=True", "generator.py:162"),
    ("unet3d_keras.generator", "create_patch_index_list", "index_list, image_shape, patch_shape, patch_overlap, patch_start_offset=None", "generator.py:179"),
    ("unet3d_keras.generator", "add_data", "x_list, y_list, data_file, index, augment=False, augment_flip=False, augment_distortion_factor=0.25, patch_shape=False, skip_blank=True, permute=False", "generator.py:191"),
    ("unet3d_keras.generator", "get_data_from_file", "data_file, index, patch_shape=None", "generator.py:231"),
    ("unet3d_keras.generator", "convert_data", "x_list, y_list, n_labels=1, labels=None", "generator.py:242"),
    ("unet3d_keras.generator", "get_multi_class_labels", "data, n_labels, labels=None", "generator.py:252"),
    ("unet3d_keras.metrics", "dice_coefficient", "y_true, y_pred, smooth=1.0", "metrics.py:6"),
    ("unet3d_keras.metrics", "dice_coefficient_loss", "y_true, y_pred", "metrics.py:13"),
    ("unet3d_keras.metrics", "weighted_dice_coefficient", "y_true, y_pred, axis=(-3, -2, -1), smooth=1e-05", "metrics.py:17"),
    ("unet3d_keras.metrics", "weighted_dice_coefficient_loss", "y_true, y_pred", "metrics.py:32"),
    ("unet3d_keras.metrics", "label_wise_dice_coefficient", "y_true, y_pred, label_index", "metrics.py:36"),
    ("unet3d_keras.metrics", "get_label_dice_coefficient_function", "label_index", "metrics.py:40"),
    ("unet3d_keras.model.isensee2017", "isensee2017_model", "input_shape=(4, 128, 128, 128), n_base_filters=16, depth=5, dropout_rate=0.3, n_segmentation_levels=3, n_labels=4, optimizer=Adam, initial_learning_rate=0.0005, loss_function=weighted_dice_coefficient_loss, activation_name='sigmoid'", "model/isensee2017.py:14"),
    ("unet3d_keras.model.isensee2017", "create_localization_module", "input_layer, n_filters", "model/isensee2017.py:84"),
    ("unet3d_keras.model.isensee2017", "create_up_sampling_module", "input_layer, n_filters, size=(2, 2, 2)", "model/isensee2017.py:90"),
    ("unet3d_keras.model.isensee2017", "create_context_module", "input_layer, n_level_filters, dropout_rate=0.3, data_format='channels_first'", "model/isensee2017.py:96"),
    ("unet3d_keras.model.unet", "unet_model_3d", "input_shape, pool_size=(2, 2, 2), n_labels=1, initial_learning_rate=1e-05, deconvolution=False, depth=4, n_base_filters=32, include_label_wise_dice_coefficients=False, metrics=dice_coefficient, batch_normalization=False, activation_name='sigmoid'", "model/unet.py:17"),
    ("unet3d_keras.model.unet", "create_convolution_block", "input_layer, n_filters, batch_normalization=False, kernel=(3, 3, 3), activation=None, padding='same', strides=(1, 1, 1), instance_normalization=False", "model/unet.py:85"),
    ("unet3d_keras.model.unet", "compute_level_output_shape", "n_filters, depth, pool_size, image_shape", "model/unet.py:114"),
    ("unet3d_keras.model.unet", "get_up_convolution", "n_filters, pool_size, kernel_size=(2, 2, 2), strides=(2, 2, 2), deconvolution=False", "model/unet.py:128"),
    ("unet3d_keras.normalize", "find_downsized_info", "training_data_files, input_shape", "normalize.py:10"),
    ("unet3d_keras.normalize", "get_cropping_parameters", "in_files", "normalize.py:18"),
    ("unet3d_keras.normalize", "reslice_image_set", "in_files, image_shape, out_files=None, label_indices=None, crop=False", "normalize.py:26"),
    ("unet3d_keras.normalize", "get_complete_foreground", "training_data_files", "normalize.py:40"),
    ("unet3d_keras.normalize", "get_foreground_from_set_of_files", "set_of_files, background_value=0, tolerance=1e-05, return_image=False", "normalize.py:51"),
    ("unet3d_keras.normalize", "normalize_data", "data, mean, std", "normalize.py:66"),
    ("unet3d_keras.normalize", "normalize_data_storage", "data_storage", "normalize.py:72"),
    ("unet3d_keras.prediction", "patch_wise_prediction", "model, data, overlap=0, batch_size=1, permute=False", "prediction.py:13"),
    ("unet3d_keras.prediction", "get_prediction_labels", "prediction, threshold=0.5, labels=None", "prediction.py:39"),
    ("unet3d_keras.prediction", "get_test_indices", "testing_file", "prediction.py:52"),
    ("unet3d_keras.prediction", "predict_from_data_file", "model, open_data_file, index", "prediction.py:56"),
    ("unet3d_keras.prediction", "predict_and_get_image", "model, data, affine", "prediction.py:60"),
    ("unet3d_keras.prediction", "predict_from_data_file_and_get_image", "model, open_data_file, index", "prediction.py:64"),
    ("unet3d_keras.prediction", "predict_from_data_file_and_write_image", "model, open_data_file, index, out_file", "prediction.py:68"),
    ("unet3d_keras.prediction", "prediction_to_image", "prediction, affine, label_map=False, threshold=0.5, labels=None", "prediction.py:73"),
    ("unet3d_keras.prediction", "multi_class_prediction", "prediction, affine", "prediction.py:95"),
    ("unet3d_keras.prediction", "run_validation_case", "data_index, output_dir, model, data_file, training_modalities, output_label_map=False, threshold=0.5, labels=None, overlap=16, permute=False, test=False, output_basename='prediction.nii.gz'", "prediction.py:102"),
    ("unet3d_keras.prediction", "run_validation_cases", "validation_keys_file, model_file, training_modalities, labels, hdf5_file, output_label_map=False, output_dir='.', threshold=0.5, overlap=16, permute=False, output_basename='{subject}_prediction.nii.gz', test=False", "prediction.py:145"),
    ("unet3d_keras.prediction", "predict", "model, data, permute=False", "prediction.py:166"),
    ("unet3d_keras.prediction", "predict_with_permutations", "model, data", "prediction.py:176"),
    ("unet3d_keras.training", "step_decay", "epoch, initial_lrate, drop, epochs_drop", "training.py:15"),
    ("unet3d_keras.training", "get_callbacks", "model_file, initial_learning_rate=0.0001, learning_rate_drop=0.5, learning_rate_epochs=None, learning_rate_patience=50, logging_file='training.log', verbosity=1, early_stopping_patience=None", "training.py:19"),
    ("unet3d_keras.training", "load_old_model", "model_file", "training.py:36"),
    ("unet3d_keras.training", "train_model", "model, model_file, training_generator, validation_generator, steps_per_epoch, validation_steps, initial_learning_rate=0.001, learning_rate_drop=0.5, learning_rate_epochs=None, n_epochs=500, learning_rate_patience=20, early_stopping_patience=None", "training.py:57"),
    ("unet3d_keras.utils.nilearn_custom_utils.nilearn_utils", "crop_img", "img, rtol=1e-08, copy=True, return_slices=False", "utils/nilearn_custom_utils/nilearn_utils.py:6"),
    ("unet3d_keras.utils.patches", "compute_patch_indices", "image_shape, patch_size, overlap, start=None", "utils/patches.py:4"),
    ("unet3d_keras.utils.patches", "get_set_of_patch_indices", "start, stop, step", "utils/patches.py:18"),
    ("unet3d_keras.utils.patches", "get_random_patch_index", "image_shape, patch_shape", "utils/patches.py:23"),
    ("unet3d_keras.utils.patches", "get_random_nd_index", "index_max", "utils/patches.py:34"),
    ("unet3d_keras.utils.patches", "get_patch_from_3d_data", "data, patch_shape, patch_index", "utils/patches.py:38"),
    ("unet3d_keras.utils.patches", "fix_out_of_bound_patch_attempt", "data, patch_shape, patch_index, ndim=3", "utils/patches.py:55"),
    ("unet3d_keras.utils.patches", "reconstruct_from_patches", "patches, patch_indices, data_shape, default_value=0", "utils/patches.py:74"),
    ("unet3d_keras.utils.sitk_utils", "calculate_origin_offset", "new_spacing, old_spacing", "utils/sitk_utils.py:5"),
    ("unet3d_keras.utils.sitk_utils", "sitk_resample_to_spacing", "image, new_spacing=(1.0, 1.0, 1.0), interpolator=sitk.sitkLinear, default_value=0.0", "utils/sitk_utils.py:9"),
    ("unet3d_keras.utils.sitk_utils", "sitk_resample_to_image", "image, reference_image, default_value=0.0, interpolator=sitk.sitkLinear, transform=None, output_pixel_type=None", "utils/sitk_utils.py:18"),
    ("unet3d_keras.utils.sitk_utils", "sitk_new_blank_image", "size, spacing, direction, origin, default_value=0.0", "utils/sitk_utils.py:34"),
    ("unet3d_keras.utils.sitk_utils", "resample_to_spacing", "data, spacing, target_spacing, interpolation='linear', default_value=0.0", "utils/sitk_utils.py:42"),
    ("unet3d_keras.utils.sitk_utils", "data_to_sitk_image", "data, spacing=(1.0, 1.0, 1.0)", "utils/sitk_utils.py:56"),
    ("unet3d_keras.utils.sitk_utils", "sitk_image_to_data", "image", "utils/sitk_utils.py:64"),
    ("unet3d_keras.utils.utils", "pickle_dump", "item, out_file", "utils/utils.py:13"),
    ("unet3d_keras.utils.utils", "pickle_load", "in_file", "utils/utils.py:18"),
    ("unet3d_keras.utils.utils", "get_affine", "in_file", "utils/utils.py:23"),
    ("unet3d_keras.utils.utils", "read_image_files", "image_files, image_shape=None, crop=None, label_indices=None", "utils/utils.py:27"),
    ("unet3d_keras.utils.utils", "read_image", "in_file, image_shape=None, interpolation='linear', crop=None", "utils/utils.py:53"),
    ("unet3d_keras.utils.utils", "fix_shape", "image", "utils/utils.py:65"),
    ("unet3d_keras.utils.utils", "resize", "image, new_shape, interpolation='linear'", "utils/utils.py:71"),
    # Imported by the reference into these modules from nilearn (nilearn 0.4 image.py:279 _crop_img_to).
    ("unet3d_keras.utils.nilearn_custom_utils.nilearn_utils", "crop_img_to", "img, slices, copy=True",
     "utils/nilearn_custom_utils/nilearn_utils.py:3"),
    ("unet3d_keras.utils", "crop_img_to", "img, slices, copy=True", "utils/__init__.py:1"),
    ("unet3d_keras.utils", "crop_img", "img, rtol=1e-08, copy=True, return_slices=False", "utils/__init__.py:1"),
    ("unet3d_keras.utils", "pickle_dump", "item, out_file", "utils/__init__.py:2"),
    ("unet3d_keras.utils", "pickle_load", "in_file", "utils/__init__.py:2"),
    ("unet3d_keras.utils", "read_image", "in_file, image_shape=None, interpolation='linear', crop=None",
     "utils/__init__.py:2"),
    ("unet3d_keras.model", "unet_model_3d", "input_shape, pool_size=(2, 2, 2), n_labels=1, "
     "initial_learning_rate=1e-05, deconvolution=False, depth=4, n_base_filters=32, "
     "include_label_wise_dice_coefficients=False, metrics=dice_coefficient, batch_normalization=False, "
     "activation_name='sigmoid'", "model/__init__.py:1"),
]

# Module-level names that are not functions: (module, name, where).
REFERENCE_NAMES = [
    ("brats.train", "config", "brats/train.py:10"),
    ("brats.original_unet_train", "config", "brats/original_unet_train.py:10"),
    ("unet3d_keras.metrics", "dice_coef", "metrics.py:46"),
    ("unet3d_keras.metrics", "dice_coef_loss", "metrics.py:47"),
    ("unet3d_keras.model.isensee2017", "create_convolution_block", "model/isensee2017.py:11"),
    ("unet3d_keras.model", "isensee2017_model", "model/__init__.py:2"),
]

# Defaults that name objects in the reference, and the port's object of the same meaning.
OBJECT_DEFAULTS = {
    "np.uint8": np.uint8,
    "sitk.sitkLinear": sitk.sitkLinear,
    "sitk.sitkFloat64": sitk.sitkFloat64,
    "nib.Nifti1Image": nib.Nifti1Image,
    "Adam": keras.optimizers.Adam,
    "weighted_dice_coefficient_loss": "unet3d_keras.metrics.weighted_dice_coefficient_loss",
    "dice_coefficient": "unet3d_keras.metrics.dice_coefficient",
}

# Defaults the port changes on purpose: {(module, name, parameter): (port default, reason)}.
CHANGED_DEFAULTS = {
    ("unet3d_keras.metrics", "weighted_dice_coefficient", "axis"):
        (None, "the spatial axes of the model's data format (channels_last by default), not channels_first's"),
    ("unet3d_keras.model.isensee2017", "isensee2017_model", "input_shape"):
        ((128, 128, 128, 4), "channels_last, the models' default format (TensorFlow's CPU Conv3D needs it)"),
    ("unet3d_keras.model.isensee2017", "create_context_module", "data_format"):
        (None, "Keras's image data format (channels_last by default)"),
}


def _object(value):
    if isinstance(value, str):
        module, _, name = value.rpartition(".")
        return getattr(importlib.import_module(module), name)
    return value


def _expected_parameters(signature: str) -> list[tuple[str, object]]:
    """``[(name, default or inspect.Parameter.empty)]`` of a Python parameter list."""
    arguments = ast.parse(f"def f({signature}): pass").body[0].args
    names = [a.arg for a in arguments.args]
    defaults = [inspect.Parameter.empty] * (len(names) - len(arguments.defaults))
    for node in arguments.defaults:
        source = ast.unparse(node)
        defaults.append(_object(OBJECT_DEFAULTS[source]) if source in OBJECT_DEFAULTS else ast.literal_eval(node))
    return list(zip(names, defaults))


def _same(a, b) -> bool:
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return list(a) == list(b)
    return a is b or a == b


@pytest.mark.parametrize("module, name, signature, where", REFERENCE_FUNCTIONS,
                         ids=[f"{m}.{n}" for m, n, _, _ in REFERENCE_FUNCTIONS])
def test_reference_function_has_the_reference_parameters(module, name, signature, where):
    function = getattr(importlib.import_module(module), name, None)
    assert callable(function), f"{module}.{name} (reference {where}) is missing"
    parameters = list(inspect.signature(function).parameters.values())
    expected = _expected_parameters(signature)
    assert [p.name for p in parameters[:len(expected)]] == [n for n, _ in expected], where
    for parameter, (pname, default) in zip(parameters, expected):
        assert parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.POSITIONAL_ONLY), (where, pname)
        if (module, name, pname) in CHANGED_DEFAULTS:
            default = CHANGED_DEFAULTS[(module, name, pname)][0]
        assert _same(parameter.default, default), f"{where}: {pname}={parameter.default!r}, expected {default!r}"
    for extra in parameters[len(expected):]:  # the port's additions: optional only
        assert extra.default is not inspect.Parameter.empty or extra.kind in (extra.VAR_POSITIONAL,
                                                                                extra.VAR_KEYWORD), (where, extra)


@pytest.mark.parametrize("module, name, where", REFERENCE_NAMES, ids=[f"{m}.{n}" for m, n, _ in REFERENCE_NAMES])
def test_reference_module_level_name_exists(module, name, where):
    assert hasattr(importlib.import_module(module), name), f"{module}.{name} (reference {where}) is missing"


def test_reference_evaluate_masks_and_dice_give_the_reference_answers():
    from brats.evaluate import dice_coefficient, get_enhancing_tumor_mask, get_tumor_core_mask, get_whole_tumor_mask

    labels = np.array([0, 1, 2, 4, 4, 2, 0])
    np.testing.assert_array_equal(get_whole_tumor_mask(labels), [0, 1, 1, 1, 1, 1, 0])
    np.testing.assert_array_equal(get_tumor_core_mask(labels), [0, 1, 0, 1, 1, 0, 0])
    np.testing.assert_array_equal(get_enhancing_tumor_mask(labels), [0, 0, 0, 1, 1, 0, 0])
    # 2 * |{3, 4}| / (|{1, 3, 4}| + |{3, 4, 5}|) = 4 / 6
    assert dice_coefficient(get_tumor_core_mask(labels), np.array([0, 0, 0, 1, 1, 1, 0])) == pytest.approx(2 / 3)


def test_nilearn_utils_crop_like_the_reference():
    from unet3d_keras.utils.nilearn_custom_utils.nilearn_utils import crop_img, crop_img_to

    data = np.zeros((7, 8, 9), np.float32)
    data[2:4, 3:6, 1:2] = 1.0
    image = nib.Nifti1Image(data, np.eye(4))
    slices = crop_img(image, return_slices=True)
    assert slices == [slice(1, 5), slice(2, 7), slice(0, 3)]  # the non-zero box plus one voxel each side
    cropped = crop_img_to(image, slices)
    assert cropped.shape == (4, 5, 3) and cropped.affine[:3, 3].tolist() == [1.0, 2.0, 0.0]
    assert np.asarray(crop_img(image).dataobj).sum() == data.sum()
