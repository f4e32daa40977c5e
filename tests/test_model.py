import keras
import numpy as np
import pytest

from unet3d_keras.model import build_isensee2017, build_unet_3d, isensee2017_model, unet_model_3d
from unet3d_keras.model.unet import (
    compute_level_output_shape,
    create_convolution_block,
    get_up_convolution,
    validate_input_shape,
)
from unet3d_keras.training import load_old_model


def unet_weight_count(n_channels, n_labels, depth, n_base_filters, deconvolution, pool=2):
    """Weights of the reference U-Net, derived from its definition."""

    def conv(c_in, c_out, kernel=3):
        return kernel**3 * c_in * c_out + c_out

    total = 0
    c_in = n_channels
    skip_channels = []
    for level in range(depth):
        n = n_base_filters * 2**level
        total += conv(c_in, n) + conv(n, 2 * n)
        c_in = 2 * n
        skip_channels.append(2 * n)
    for level in range(depth - 2, -1, -1):
        if deconvolution:
            total += conv(c_in, c_in, kernel=pool)
        skip = skip_channels[level]
        total += conv(c_in + skip, skip) + conv(skip, skip)
        c_in = skip
    return total + conv(c_in, n_labels, kernel=1)


def test_reference_unet_has_the_reference_weight_count():
    expected = unet_weight_count(4, 3, depth=4, n_base_filters=32, deconvolution=True)
    assert expected == 19_071_715
    model = unet_model_3d(input_shape=(64, 64, 64, 4), n_labels=3, deconvolution=True)
    assert model.count_params() == 19_071_715
    assert model.output_shape == (None, 64, 64, 64, 3)
    assert model.loss.__name__ == "weighted_dice_coefficient_loss"
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-5)


def test_up_sampling_unet_weight_count_matches_formula():
    model = build_unet_3d((16, 16, 24, 2), n_labels=2, depth=3, n_base_filters=4)
    assert model.count_params() == unet_weight_count(2, 2, depth=3, n_base_filters=4, deconvolution=False)


def test_layer_names_are_deterministic():
    names = [layer.name for layer in build_unet_3d((16, 16, 16, 1), depth=2, n_base_filters=2).layers]
    again = [layer.name for layer in build_unet_3d((16, 16, 16, 1), depth=2, n_base_filters=2).layers]
    assert names == again
    assert names == [
        "input", "enc0_conv1", "enc0_conv1_act", "enc0_conv2", "enc0_conv2_act", "enc0_pool",
        "enc1_conv1", "enc1_conv1_act", "enc1_conv2", "enc1_conv2_act",
        "dec0_upconv", "dec0_concat", "dec0_conv1", "dec0_conv1_act", "dec0_conv2", "dec0_conv2_act",
        "head", "head_activation",
    ]


def test_batch_normalization_follows_every_3x3x3_convolution():
    model = unet_model_3d(
        input_shape=(16, 16, 16, 1), depth=3, deconvolution=True, metrics=[], batch_normalization=True
    )
    convolutions = [
        layer for layer in model.layers
        if type(layer) is keras.layers.Conv3D and tuple(layer.kernel_size) == (3, 3, 3)
    ]
    assert len(convolutions) == 2 * 3 + 2 * 2
    for conv in convolutions:
        bn = model.get_layer(f"{conv.name}_bn")
        assert isinstance(bn, keras.layers.BatchNormalization)
        assert bn.input is conv.output
        assert bn.axis in (-1, 4)
    assert all(
        not isinstance(layer, keras.layers.BatchNormalization)
        for layer in model.layers
        if layer.name.startswith("head")
    )


def test_final_activation_is_float32_under_mixed_precision():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = build_unet_3d((8, 8, 8, 1), depth=2, n_base_filters=2)
    finally:
        keras.config.set_dtype_policy(previous)
    assert model.get_layer("enc0_conv1").compute_dtype == "bfloat16"
    assert model.get_layer("head_activation").compute_dtype == "float32"
    output = model(np.zeros((1, 8, 8, 8, 1), "float32"))
    assert keras.backend.standardize_dtype(output.dtype) == "float32"


@pytest.mark.parametrize(
    "shape, message",
    [
        ((60, 64, 64, 4), "spatial size 60 (axis x) is not divisible by 8"),
        ((64, 64, 36, 4), "such as 32 or 40"),
        ((64, 64, 64, 0), "channel count must be a positive integer"),
        ((64, 64, 64), "must have 4 entries"),
    ],
)
def test_invalid_input_shape_is_rejected_with_its_reason(shape, message):
    with pytest.raises(ValueError) as info:
        unet_model_3d(shape)
    assert message in str(info.value)


def test_isensee_input_shape_is_validated():
    with pytest.raises(ValueError, match="not divisible by 16"):
        build_isensee2017((120, 128, 128, 4))


def test_unknown_spatial_sizes_are_allowed():
    validate_input_shape((None, None, None, 2), depth=4, pool_size=(2, 2, 2))
    model = build_unet_3d((None, None, None, 1), depth=2, n_base_filters=2)
    assert model(np.zeros((1, 8, 12, 16, 1), "float32")).shape == (1, 8, 12, 16, 1)


def test_compute_level_output_shape_follows_data_format(channels_first):
    assert compute_level_output_shape(64, 2, (2, 2, 2), (64, 32, 16)) == (None, 64, 16, 8, 4)


def test_compute_level_output_shape_channels_last():
    assert compute_level_output_shape(64, 2, (2, 2, 2), (64, 32, 16)) == (None, 16, 8, 4, 64)


def test_get_up_convolution_kinds():
    assert isinstance(get_up_convolution(4, (2, 2, 2), deconvolution=True), keras.layers.Conv3DTranspose)
    up = get_up_convolution(4, (2, 2, 2))
    assert isinstance(up, keras.layers.UpSampling3D)
    assert up(np.zeros((1, 2, 3, 4, 1), "float32")).shape == (1, 4, 6, 8, 1)


def test_convolution_block_instance_normalization_and_activation_class():
    inputs = keras.Input((8, 8, 8, 3))
    output = create_convolution_block(
        inputs, 5, instance_normalization=True, activation=keras.layers.LeakyReLU, name="blk"
    )
    model = keras.Model(inputs, output)
    norm = model.get_layer("blk_in")
    assert isinstance(norm, keras.layers.GroupNormalization) and norm.groups == 5  # one group per channel
    assert isinstance(model.get_layer("blk_act"), keras.layers.LeakyReLU)
    # Instance normalisation: every channel of every item has mean 0 after the norm layer.
    normed = keras.Model(inputs, norm.output)(np.random.default_rng(0).normal(size=(2, 8, 8, 8, 3)))
    means = keras.ops.convert_to_numpy(normed).mean(axis=(1, 2, 3))
    assert np.allclose(means, 0, atol=1e-4)


def test_isensee_with_reference_defaults_builds_for_128_cubed():
    model = isensee2017_model(input_shape=(128, 128, 128, 4))
    assert model.output_shape == (None, 128, 128, 128, 4)
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.GroupNormalization)]
    convs = [layer for layer in model.layers if type(layer) is keras.layers.Conv3D and not layer.name.startswith("seg")]
    assert len(norms) == len(convs) > 0
    assert all(layer.groups == layer.input.shape[-1] for layer in norms)
    assert sum(isinstance(layer, keras.layers.SpatialDropout3D) for layer in model.layers) == 5
    assert [layer.name for layer in model.layers if layer.name.startswith("seg") and "_" not in layer.name] == [
        "seg2", "seg1", "seg0"
    ]
    assert float(model.optimizer.learning_rate) == pytest.approx(5e-4)


def test_isensee_deep_supervision_sums_segmentation_levels():
    model = build_isensee2017((16, 16, 16, 2), n_base_filters=2, depth=3, n_segmentation_levels=2, n_labels=3)
    add = model.get_layer("seg0_add")
    assert {tensor.shape[1] for tensor in add.input} == {16}
    with pytest.raises(ValueError, match="n_segmentation_levels"):
        build_isensee2017((16, 16, 16, 2), depth=3, n_segmentation_levels=3)


def _round_trip(model, tmp_path, suffix):
    x = np.random.default_rng(1).normal(size=(2,) + model.input_shape[1:]).astype("float32")
    expected = model.predict(x, verbose=0)
    path = tmp_path / f"model{suffix}"
    model.save(path)
    loaded = keras.models.load_model(path)  # no custom_objects
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), expected)
    np.testing.assert_array_equal(load_old_model(path).predict(x, verbose=0), expected)
    return loaded


def test_unet_keras_round_trip_with_label_metrics(tmp_path):
    model = unet_model_3d(
        (16, 16, 16, 2), n_labels=3, depth=3, n_base_filters=4, deconvolution=True,
        batch_normalization=True, include_label_wise_dice_coefficients=True,
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 16, 16, 16, 2)).astype("float32")
    y = (rng.random((1, 16, 16, 16, 3)) > 0.5).astype("float32")
    model.fit(x, y, epochs=1, verbose=0)
    loaded = _round_trip(model, tmp_path, ".keras")
    logs = loaded.evaluate(x, y, verbose=0, return_dict=True)
    assert {"loss", "dice_coefficient", "label_0_dice_coef", "label_2_dice_coef"} <= set(logs)


def test_isensee_keras_and_h5_round_trip(tmp_path):
    model = isensee2017_model((16, 16, 16, 4), n_base_filters=2, depth=3, n_segmentation_levels=2, n_labels=3)
    _round_trip(model, tmp_path, ".keras")
    _round_trip(model, tmp_path, ".h5")


def test_load_old_model_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.keras: model file not found"):
        load_old_model(tmp_path / "missing.keras")


def _data_formats(model):
    return {layer.data_format for layer in model.layers if hasattr(layer, "data_format")}


@pytest.mark.parametrize("deconvolution, batch_normalization", [(False, False), (True, True)])
def test_unet_builds_channels_first_by_argument_while_the_global_format_stays(deconvolution, batch_normalization):
    assert keras.config.image_data_format() == "channels_last"
    model = unet_model_3d((2, 16, 12, 8), n_labels=3, depth=3, n_base_filters=4, deconvolution=deconvolution,
                          batch_normalization=batch_normalization, data_format="channels_first")
    assert model.output_shape == (None, 3, 16, 12, 8)
    assert _data_formats(model) == {"channels_first"}
    assert model.get_layer("dec0_concat").axis in (1, -4)
    if batch_normalization:
        assert model.get_layer("enc0_conv1_bn").axis in (1, -4)
    assert keras.config.image_data_format() == "channels_last"
    # Same weights as the channels_last model: only the axes move.
    last = unet_model_3d((16, 12, 8, 2), n_labels=3, depth=3, n_base_filters=4, deconvolution=deconvolution,
                         batch_normalization=batch_normalization)
    assert model.count_params() == last.count_params()


def test_isensee_builds_channels_first_by_argument_while_the_global_format_stays():
    model = build_isensee2017((4, 16, 16, 16), n_base_filters=2, depth=3, n_segmentation_levels=2, n_labels=3,
                              data_format="channels_first")
    assert model.output_shape == (None, 3, 16, 16, 16)
    assert _data_formats(model) == {"channels_first"}
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.GroupNormalization)]
    assert all(layer.groups == layer.input.shape[1] for layer in norms)  # one group per channel
    assert keras.config.image_data_format() == "channels_last"


def test_model_helpers_take_data_format():
    assert compute_level_output_shape(64, 2, (2, 2, 2), (64, 32, 16), data_format="channels_first") == (
        None, 64, 16, 8, 4)
    up = get_up_convolution(4, (2, 2, 2), data_format="channels_first")
    assert up.data_format == "channels_first"
    validate_input_shape((2, 16, 16, 16), depth=3, pool_size=2, data_format="channels_first")
    with pytest.raises(ValueError, match="spatial size 12 \\(axis y\\) is not divisible by 8"):
        validate_input_shape((2, 16, 12, 16), depth=4, pool_size=2, data_format="channels_first")
    with pytest.raises(ValueError, match="data_format must be 'channels_last' or 'channels_first'"):
        build_unet_3d((16, 16, 16, 1), depth=2, data_format="NCDHW")


def test_channels_first_model_round_trips_through_a_keras_file(tmp_path):
    model = build_unet_3d((1, 8, 8, 8), depth=2, n_base_filters=2, data_format="channels_first")
    model.save(tmp_path / "first.keras")
    loaded = keras.models.load_model(tmp_path / "first.keras")
    assert loaded.output_shape == (None, 1, 8, 8, 8) and _data_formats(loaded) == {"channels_first"}
