import csv

import pytest

from unet3d_keras.config import ConfigError, load_config
from unet3d_keras.model_from_config import check_model_matches_config
from unet3d_keras.run_state import best_logged_val_loss, config_differences, truncate_log
from unet3d_keras.training import ResumableBackup


def test_model_for_another_input_shape_is_refused_with_both_shapes(tmp_path):
    from unet3d_keras.model import build_unet_3d

    config = load_config(None, ["model.depth=2", "data.image_shape=[16, 16, 16]"])
    model = build_unet_3d((16, 16, 16, 2), n_labels=3, depth=2, n_base_filters=2)
    with pytest.raises(ConfigError) as info:
        check_model_matches_config(model, config, tmp_path / "m.keras")
    assert "takes input (16, 16, 16, 2) (x, y, z, channels) and gives 3 outputs" in str(info.value)
    # model.activation auto: sigmoid (3 outputs) or softmax (background + 3).
    assert "the config needs input (16, 16, 16, 4) and 3 or 4 outputs" in str(info.value)
    check_model_matches_config(build_unet_3d((16, 16, 16, 4), n_labels=3, depth=2, n_base_filters=2), config, "m")
    check_model_matches_config(build_unet_3d((16, 16, 16, 4), n_labels=4, depth=2, n_base_filters=2), config, "m")
    sigmoid = load_config(None, ["model.depth=2", "data.image_shape=[16, 16, 16]", "model.activation=sigmoid"])
    with pytest.raises(ConfigError, match="and 3 outputs"):
        check_model_matches_config(build_unet_3d((16, 16, 16, 4), n_labels=4, depth=2, n_base_filters=2), sigmoid,
                                   "m")


def test_config_differences_name_each_changed_key():
    old = {"seed": 1, "model": {"depth": 4, "n_base_filters": 8}}
    new = {"seed": 1, "model": {"depth": 3, "n_base_filters": 8}}
    assert config_differences(old, new) == ["model.depth: 4 -> 3"]


def test_truncate_log_drops_epochs_that_will_be_redone(tmp_path):
    log = tmp_path / "training.log"
    with open(log, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerows([["epoch", "loss", "val_loss"], [0, -0.1, -0.2], [1, -0.3, -0.5], [2, -0.4, -0.4]])
    truncate_log(log, 2)
    rows = list(csv.DictReader(open(log, newline="")))
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert best_logged_val_loss(log) == -0.5
    assert best_logged_val_loss(tmp_path / "missing.log") is None


def test_backup_without_metadata_restores_nothing(tmp_path):
    assert ResumableBackup.restored_epoch(tmp_path / "none") == 0
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "training_metadata.json").write_text('{"epoch": 3, "weights": "missing.weights.h5"}')
    assert ResumableBackup.restored_epoch(tmp_path / "b") == 0  # weights file gone: no half restore


def test_nan_loss_stops_with_a_message_and_marks_the_run_failed(tmp_path, monkeypatch):
    import json

    from unet3d_keras import pipeline

    config = load_config(None, [f"output_dir={tmp_path / 'run'}", "data.n_demo_subjects=3",
                                "data.demo_shape=[12, 12, 12]", "data.image_shape=[8, 8, 8]", "model.depth=2",
                                "training.mixed_precision=off"])
    monkeypatch.setattr(pipeline, "_fit", lambda *args: (3, float("nan")))
    with pytest.raises(ValueError) as info:
        pipeline.train_from_config(config, show_progress=False)
    assert "training stopped at epoch 3: the loss became nan; the best model so far is kept in" in str(info.value)
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state == {"status": "failed", "reason": "loss is NaN", "epochs": 3}
