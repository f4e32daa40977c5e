import re
from pathlib import Path

import pytest
import yaml

from unet3d_keras.config import (
    DEFAULT_CONFIG,
    Config,
    ConfigError,
    add_config_arguments,
    config_from_args,
    load_config,
    save_config,
    sets_key,
)


def _write(tmp_path, text, name="config.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_default_config_yaml_equals_the_typed_defaults():
    assert load_config().to_dict() == Config().to_dict()


def test_config_yaml_documents_every_key():
    lines = DEFAULT_CONFIG.read_text().splitlines()
    documented = {}
    section = None
    for line in lines:
        match = re.match(r"^(\s*)([a-z_0-9]+):(.*)$", line)
        if not match:
            continue
        indent, key, rest = match.groups()
        if indent:
            documented[f"{section}.{key}"] = "#" in rest
        elif rest.strip() == "":
            section = key
        else:
            documented[key] = "#" in rest
    expected = set()
    for key, value in Config().to_dict().items():
        expected |= {f"{key}.{sub}" for sub in value} if isinstance(value, dict) else {key}
    assert set(documented) == expected
    assert all(documented.values()), [k for k, v in documented.items() if not v]


def test_reference_brats_keys_are_covered():
    config = load_config()
    # The reference's brats/train.py config dict, key by key.
    assert config.data.image_shape and config.data.labels == (1, 2, 4)
    assert config.data.all_modalities == ("t1", "t1ce", "flair", "t2")
    assert config.n_labels == 3 and config.n_channels == 4
    for name in ("patch_shape", "batch_size", "validation_batch_size", "n_epochs", "learning_rate_patience",
                 "early_stopping_patience", "initial_learning_rate", "learning_rate_drop",
                 "validation_patch_overlap", "training_patch_start_offset", "skip_blank", "model_file"):
        assert hasattr(config.training, name)
    for name in ("flip", "permute", "distortion_factor"):
        assert hasattr(config.augment, name)
    assert config.split.data_split == 0.8 and config.model.deconvolution is True


def test_unknown_key_names_the_key_and_the_closest_valid_one(tmp_path):
    path = _write(tmp_path, "training:\n  batchsize: 2\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: unknown key 'training.batchsize'; did you mean 'training.batch_size'?"


def test_unknown_section_lists_valid_keys(tmp_path):
    path = _write(tmp_path, "optimiser: {}\n")
    with pytest.raises(ConfigError, match="unknown key 'optimiser'; valid keys here: output_dir, seed, data"):
        load_config(path)


@pytest.mark.parametrize(
    "text, message",
    [
        ("training:\n  batch_size: two\n", "training.batch_size: expected integer, received 'two'"),
        ("training:\n  batch_size: 1.5\n", "training.batch_size: expected integer, received 1.5"),
        ("training:\n  skip_blank: 1\n", "training.skip_blank: expected true or false, received 1"),
        ("data:\n  labels: 4\n", "data.labels: expected a list of integer, received 4"),
        ("data:\n  image_shape: [64, 64]\n", "data.image_shape: expected a list of 3 integer, received [64, 64]"),
        ("model:\n  name: vnet\n", "model.name: expected one of 'unet', 'isensee2017', received 'vnet'"),
        ("training:\n  patch_shape: [32, x, 32]\n", "training.patch_shape[1]: expected integer, received 'x'"),
        ("data: [1, 2]\n", "data must be a mapping of keys to values"),
    ],
)
def test_wrong_types_are_rejected(tmp_path, text, message):
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text))
    assert message in str(info.value)


def test_patch_not_divisible_by_the_depth(tmp_path):
    path = _write(tmp_path, "training:\n  patch_shape: [32, 36, 32]\nmodel:\n  depth: 4\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (
        f"{path}: training.patch_shape: [32, 36, 32] has size 36 on axis 1, which is not divisible by "
        "8 = 2**(model.depth - 1) for model.depth 4; use a multiple of 8 such as 32 or 40"
    )


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model.n_labels=2"], "model.n_labels: 2 does not match the 3 values of data.labels [1, 2, 4]"),
        (["augment.permute=true", "training.patch_shape=[16, 32, 32]"],
         "augment.permute: permutation augmentation needs a cubic training.patch_shape, received [16, 32, 32]"),
        (["data.labels=[1, 1]"], "data.labels: values must be unique"),
        (["data.labels=[0, 1]"], "label values must be between 1 and 255"),
        (["data.training_modalities=[t1, dwi]"], "data.training_modalities: ['dwi'] not in data.all_modalities"),
        (["data.source=brats"], "data.data_dir: needed when data.source is 'brats'"),
        (["split.data_split=1.0"], "split.data_split: the training fraction must be between 0 and 1"),
        (["seed=-1"], "seed: expected a whole number from 0 to 4294967295, received -1"),
        (["seed=4294967296"], "seed: expected a whole number from 0 to 4294967295, received 4294967296"),
        (["training.patch_shape=[16, 16, 16]", "training.validation_patch_overlap=16"],
         "training.validation_patch_overlap: 16 must be smaller than the patch size"),
        (["training.patch_shape=[16, 16, 16]", "prediction.overlap=16"],
         "prediction.overlap: 16 must be smaller than the window (training.patch_shape [16, 16, 16])"),
        (["model.name=isensee2017", "model.depth=3"],
         "model.n_segmentation_levels: must be between 1 and model.depth - 1 = 2"),
        (["model.name=isensee2017", "model.depth=5", "data.image_shape=[40, 40, 40]"],
         "data.image_shape: [40, 40, 40] has size 40 on axis 0, which is not divisible by 16"),
    ],
)
def test_inconsistent_values_are_rejected(overrides, message):
    with pytest.raises(ConfigError) as info:
        load_config(None, overrides)
    assert message in str(info.value)


def test_bare_off_in_yaml_means_off():
    assert load_config(None, ["training.mixed_precision=off"]).training.mixed_precision == "off"


def test_overrides_parse_yaml_values():
    config = load_config(None, ["training.batch_size=3", "training.patch_shape=[32, 32, 32]", "model.n_labels=null",
                                "augment.distortion_factor=0.25", "data.data_dir=/tmp/x y"])
    assert config.training.batch_size == 3
    assert config.training.patch_shape == (32, 32, 32)
    assert config.augment.distortion_factor == 0.25 and config.data.data_dir == "/tmp/x y"
    assert config.spatial_input_shape == (32, 32, 32)


@pytest.mark.parametrize("text, message", [
    ("batch_size", "expected section.key=value"),
    ("training.batch_size=[1", "the value is not valid YAML"),
    ("seed.x=1", "'seed' is not a section"),
])
def test_bad_overrides(text, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(None, [text])


def test_sets_key_reads_the_key_of_each_override():
    overrides = ["model.depth=2", " prediction.overlap = 4", "training.class_weights=[1, 2]"]
    assert sets_key(overrides, "prediction.overlap") and sets_key(overrides, "training.class_weights")
    assert not sets_key(overrides, "prediction.batch_size") and not sets_key(overrides, "model")
    assert not sets_key(["training.patch_shape_extra=1"], "training.patch_shape")  # a key, not a prefix
    assert not sets_key([], "model.depth")


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid YAML at line \d+: "):
        load_config(_write(tmp_path, "a: 1\nb: [\n", "bad.yaml"))
    with pytest.raises(ConfigError, match="expected a mapping of sections at the top level, received list"):
        load_config(_write(tmp_path, "- 1\n", "list.yaml"))


def test_yaml_is_loaded_safely(tmp_path):
    path = _write(tmp_path, "seed: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_paths_resolve_against_the_file(tmp_path):
    path = _write(tmp_path, "output_dir: run1\ndata:\n  source: folder\n  data_dir: subjects\n")
    config = load_config(path)
    assert config.run_dir == tmp_path / "run1"
    assert config.run_path(config.training.model_file) == tmp_path / "run1" / "model.keras"
    assert config.input_path(config.data.data_dir) == tmp_path / "subjects"
    assert load_config(_write(tmp_path, "{}\n", "braces.yaml")).to_dict() == Config().to_dict()  # asked for


def test_empty_config_file_is_refused(tmp_path):
    """An empty file or one of comments only is a slip; ``--config`` left out still means the default."""
    for name, text in (("empty.yaml", ""), ("comments.yaml", "# my run\n\n  # nothing yet\n")):
        with pytest.raises(ConfigError, match=rf"{name}: the config file is empty \(or holds only comments\)"):
            load_config(_write(tmp_path, text, name))
    assert load_config(None).to_dict() == Config().to_dict()


def test_resolved_config_round_trips(tmp_path):
    config = load_config(None, ["training.batch_size=2", "model.name=isensee2017", "model.depth=3",
                                "model.n_segmentation_levels=2"])
    out = save_config(config, tmp_path / "resolved.yaml")
    assert yaml.safe_load(out.read_text())["training"]["batch_size"] == 2
    assert load_config(out).to_dict() == config.to_dict()
    assert [p.name for p in tmp_path.iterdir()] == ["resolved.yaml"]


def test_argparse_helpers(tmp_path):
    import argparse

    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    args = parser.parse_args(["--set", "seed=7", "--set", "training.n_epochs=2"])
    config = config_from_args(args)
    assert config.seed == 7 and config.training.n_epochs == 2
    assert Path(config.base_dir) == DEFAULT_CONFIG.parent
