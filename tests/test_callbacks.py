"""The crash-safe callbacks: best-model checkpoint and resumable backup, with public Keras APIs only."""

import logging

import keras
import numpy as np
import pytest

from unet3d_keras.callbacks import AtomicModelCheckpoint, ResumableBackup


def tiny_model(seed=3):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="relu"), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    return model


def tiny_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 4)).astype("float32")
    return x, x.sum(axis=1, keepdims=True)


def run_epochs(checkpoint, values, monitor="val_loss"):
    """Drive a checkpoint through epochs whose logs hold ``values``; returns the epochs saved."""
    checkpoint.set_model(tiny_model())
    saved = []
    for epoch, value in enumerate(values):
        before = checkpoint.best
        checkpoint.on_epoch_end(epoch, {} if value is None else {monitor: value})
        if checkpoint.best != before or value is None:
            saved.append(epoch)
    return saved


def test_checkpoint_saves_only_improvements(tmp_path):
    path = tmp_path / "best.keras"
    checkpoint = AtomicModelCheckpoint(path, save_best_only=True)
    assert run_epochs(checkpoint, [0.5, 0.7, 0.4, float("nan"), 0.45, 0.3]) == [0, 2, 5]
    assert checkpoint.best == pytest.approx(0.3)
    assert path.is_file() and [p.name for p in tmp_path.iterdir()] == ["best.keras"]  # no temporary left


def test_checkpoint_starts_from_the_initial_threshold_and_max_mode(tmp_path):
    resumed = AtomicModelCheckpoint(tmp_path / "a.keras", save_best_only=True, initial_value_threshold=0.2)
    assert run_epochs(resumed, [0.3, 0.25, 0.1]) == [2]
    rising = AtomicModelCheckpoint(tmp_path / "b.keras", monitor="val_dice_coefficient", save_best_only=True)
    assert run_epochs(rising, [0.5, 0.4, 0.6], monitor="val_dice_coefficient") == [0, 2]
    with pytest.raises(ValueError, match="pass mode='min' or 'max'"):
        AtomicModelCheckpoint(tmp_path / "c.keras", monitor="val_mse")


def test_checkpoint_fills_the_file_name_and_saves_weights_only(tmp_path):
    checkpoint = AtomicModelCheckpoint(tmp_path / "w-{epoch:02d}-{loss:.1f}.weights.h5", save_weights_only=True)
    run_epochs(checkpoint, [0.5, 0.25], monitor="loss")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w-01-0.5.weights.h5", "w-02-0.2.weights.h5"]
    with pytest.raises(ValueError, match="must end in .weights.h5"):
        AtomicModelCheckpoint(tmp_path / "m.keras", save_weights_only=True)
    with pytest.raises(ValueError, match="must end in .keras or .h5"):
        AtomicModelCheckpoint(tmp_path / "m.txt")


def test_checkpoint_in_fit_keeps_the_best_model(tmp_path):
    x, y = tiny_data()
    model = tiny_model()
    history = model.fit(x, y, validation_data=(x, y), epochs=4, verbose=0,
                        callbacks=[AtomicModelCheckpoint(tmp_path / "best.keras", save_best_only=True)])
    best = min(history.history["val_loss"])
    assert keras.models.load_model(tmp_path / "best.keras").evaluate(x, y, verbose=0) == pytest.approx(best, rel=1e-5)


def test_backup_resumes_like_an_uninterrupted_run(tmp_path, caplog):
    """Keras lets no callback move the first epoch: the caller passes ``initial_epoch`` to ``fit``."""
    x, y = tiny_data()
    uninterrupted = tiny_model()
    uninterrupted.fit(x, y, batch_size=4, epochs=3, shuffle=False, verbose=0)

    backup = tmp_path / "backup"
    tiny_model().fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0,
                     callbacks=[ResumableBackup(backup, delete_on_end=False)])
    start = ResumableBackup.restored_epoch(backup)
    assert start == 2
    resumed = tiny_model(seed=99)  # other initial weights: everything must come from the backup
    callback = ResumableBackup(backup)
    with caplog.at_level(logging.WARNING, logger="unet3d_keras.callbacks"):
        history = resumed.fit(x, y, batch_size=4, epochs=3, shuffle=False, verbose=0, initial_epoch=start,
                              callbacks=[callback])
    assert callback.resumed_epoch == 2 and len(history.history["loss"]) == 1
    assert not [r for r in caplog.records if r.name.startswith("unet3d_keras")]  # TF may warn of retracing
    for got, expected in zip(resumed.get_weights(), uninterrupted.get_weights()):
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)  # optimizer state restored too
    assert not backup.exists()  # removed at the normal end


def test_backup_warns_when_fit_is_not_told_the_resumed_epoch(tmp_path, caplog):
    x, y = tiny_data()
    backup = tmp_path / "backup"
    tiny_model().fit(x, y, epochs=1, verbose=0, callbacks=[ResumableBackup(backup, delete_on_end=False)])
    with caplog.at_level(logging.WARNING, logger="unet3d_keras.callbacks"):
        tiny_model().fit(x, y, epochs=2, verbose=0, callbacks=[ResumableBackup(backup)])
    assert "pass initial_epoch=ResumableBackup.restored_epoch(backup_dir) to fit" in caplog.text
