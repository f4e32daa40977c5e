"""The HDF5 PyDataset: training with fit, reproducibility across epochs and workers, process safety."""

import logging
import os
import pickle

import keras
import numpy as np
import pytest
import tables
from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

from unet3d_keras.augment import AugmentationParams
from unet3d_keras.dataset import HDF5Dataset, get_training_and_validation_datasets
from unet3d_keras.utils.patches import compute_patch_indices

SHAPE = (20, 18, 17)
PATCH = (16, 16, 16)
AUGMENTATION = AugmentationParams(flip=True, elastic=True, elastic_grid_spacing=8, rotation_degrees=10,
                                  intensity_scale=0.1)


@pytest.fixture(scope="module")
def data_path(tmp_path_factory):
    """Six subjects, two channels, labels 1, 2 and 4 in blobs."""
    rng = np.random.default_rng(0)
    grids = np.meshgrid(*[np.linspace(-1, 1, s) for s in SHAPE], indexing="ij")
    data, truth = [], []
    for _ in range(6):
        centre = rng.uniform(-0.3, 0.3, 3)
        blob = np.exp(-sum((g - c) ** 2 for g, c in zip(grids, centre)) * 3)
        data.append(np.stack([blob, blob**2]) + rng.normal(0, 0.05, (2,) + SHAPE))
        truth.append(((blob > 0.3).astype(np.uint8) + (blob > 0.6) + 2 * (blob > 0.8))[None])
    path = str(tmp_path_factory.mktemp("dataset") / "data.h5")
    with tables.open_file(path, mode="w") as hdf5:
        filters = tables.Filters(complevel=5, complib="blosc")
        hdf5.create_earray(hdf5.root, "data", obj=np.asarray(data, dtype=np.float32), filters=filters)
        hdf5.create_earray(hdf5.root, "truth", obj=np.asarray(truth, dtype=np.uint8), filters=filters)
        hdf5.create_earray(hdf5.root, "affine", obj=np.tile(np.eye(4, dtype=np.float32), (6, 1, 1)), filters=filters)
        hdf5.create_array(hdf5.root, "subject_ids", obj=np.array([f"s{i}".encode() for i in range(6)]))
    return path


OPENED = []


@pytest.fixture(autouse=True)
def close_datasets():
    """Close the datasets' file handles after each test (Keras may keep references to them)."""
    yield
    while OPENED:
        OPENED.pop().close()


def make_dataset(path, **kwargs):
    defaults = dict(batch_size=2, n_labels=3, labels=(1, 2, 4), patch_shape=PATCH, patch_start_offset=(4, 2, 1),
                    augmentation=AUGMENTATION, seed=5)
    defaults.update(kwargs)
    OPENED.append(HDF5Dataset(path, [0, 1, 2, 3], **defaults))
    return OPENED[-1]


def all_batches(dataset):
    return [dataset[i] for i in range(len(dataset))]


def assert_same_batches(a, b):
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


def test_fit_trains_a_tiny_model_on_the_dataset(data_path, tmp_path):
    from unet3d_keras.model import unet_model_3d

    training, validation = get_training_and_validation_datasets(
        data_path, 2, 3, str(tmp_path / "training.json"), str(tmp_path / "validation.json"), data_split=0.67,
        labels=(1, 2, 4), patch_shape=PATCH, training_patch_start_offset=(4, 2, 1), augmentation=AUGMENTATION,
        seed=1, workers=2,
    )
    OPENED.extend([training, validation])
    assert 0 < training.n_items <= 4 * 8 and 0 < validation.n_items <= 2 * 8  # blank patches skipped
    x, y = training[0]
    assert x.shape == (2,) + PATCH + (2,) and y.shape == (2,) + PATCH + (3,)
    model = unet_model_3d(PATCH + (2,), n_labels=3, depth=2, n_base_filters=4, initial_learning_rate=1e-3)
    history = model.fit(training, validation_data=validation, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"])) and len(history.history["val_loss"]) == 2
    # Every epoch advanced the plan (Keras also calls on_epoch_end once when fit starts).
    assert training.epoch >= 2
    # The split was saved as JSON and is reused.
    again, _ = get_training_and_validation_datasets(
        data_path, 2, 3, str(tmp_path / "training.json"), str(tmp_path / "validation.json"), labels=(1, 2, 4),
        patch_shape=PATCH, seed=99,
    )
    OPENED.append(again)
    assert again._planner.index_list == training._planner.index_list


def test_same_seed_same_batches_and_epochs_differ(data_path):
    a, b = make_dataset(data_path), make_dataset(data_path)
    epoch0 = all_batches(a)
    assert_same_batches(epoch0, all_batches(b))
    a.on_epoch_end()
    b.set_epoch(1)
    epoch1 = all_batches(a)
    assert_same_batches(epoch1, all_batches(b))
    assert not np.array_equal(epoch0[0][0], epoch1[0][0])
    a.set_epoch(0)
    assert_same_batches(epoch0, all_batches(a))
    assert not np.array_equal(epoch0[0][0], all_batches(make_dataset(data_path, seed=6))[0][0])


@pytest.mark.parametrize("workers, use_multiprocessing", [(2, False), (2, True)])
def test_batches_do_not_depend_on_workers(data_path, workers, use_multiprocessing):
    expected = all_batches(make_dataset(data_path))
    dataset = make_dataset(data_path, workers=workers, use_multiprocessing=use_multiprocessing)
    adapter = PyDatasetAdapter(dataset, shuffle=False)
    adapter.on_epoch_begin()
    got = [tuple(np.asarray(t) for t in batch) for batch in adapter.get_numpy_iterator()]
    adapter.on_epoch_end()
    assert_same_batches(expected, got)
    assert dataset.epoch == 1


def test_an_epoch_visits_every_patch_once(data_path):
    dataset = make_dataset(data_path, patch_start_offset=None, augmentation=None, skip_blank=False)
    per_subject = len(compute_patch_indices(SHAPE, PATCH, 0))
    assert dataset.n_items == 4 * per_subject and len(dataset) == int(np.ceil(4 * per_subject / 2))
    items = dataset.epoch_items()
    assert len({tuple(row) for row in items}) == len(items) == dataset.n_items
    assert sum(dataset[i][0].shape[0] for i in range(len(dataset))) == dataset.n_items


def test_length_is_fixed_with_random_offsets_and_skip_blank(data_path):
    dataset = make_dataset(data_path, augmentation=None, skip_blank=True)
    for epoch in range(4):
        dataset.set_epoch(epoch)
        assert len(dataset.epoch_items()) == dataset.n_items
        assert all(y.any(axis=(1, 2, 3, 4)).all() for _, y in all_batches(dataset))


def test_pickled_dataset_reopens_the_file_and_gives_the_same_batches(data_path):
    dataset = make_dataset(data_path)
    expected = dataset[1]
    clone = pickle.loads(pickle.dumps(dataset))
    assert clone._file is None
    assert_same_batches([expected], [clone[1]])
    clone.close()


def test_handle_is_reopened_in_another_process(data_path):
    dataset = make_dataset(data_path)
    first = dataset._handle()
    dataset._file_pid = -1  # as seen from a forked child
    second = dataset._handle()
    assert second is not first and second.isopen and dataset._file_pid == os.getpid()
    first.close()  # in a real child the parent's handle is left alone


def test_channels_first_batches(data_path, channels_first):
    x, y = make_dataset(data_path)[0]
    assert x.shape == (2, 2) + PATCH and y.shape == (2, 3) + PATCH


# -- bad input ------------------------------------------------------------------------------


def test_batch_size_is_clamped_with_a_warning(data_path, caplog):
    with caplog.at_level(logging.WARNING, logger="unet3d_keras.generator"):
        dataset = make_dataset(data_path, batch_size=100, patch_shape=None, patch_start_offset=None,
                               augmentation=None)
    assert dataset.batch_size == 4 and len(dataset) == 1
    assert "batch_size 100 is larger than the 4 samples" in caplog.text


def test_permute_with_non_cubic_volume_is_refused(data_path):
    with pytest.raises(ValueError, match=r"patch_shape=None.*\(20, 18, 17\)"):
        make_dataset(data_path, patch_shape=None, augmentation=AugmentationParams(permute=True))


def test_subjects_outside_the_file_are_refused(data_path):
    with pytest.raises(ValueError, match=r"\[9\]"):
        HDF5Dataset(data_path, [0, 9], seed=0)


def test_batch_index_out_of_range(data_path):
    dataset = make_dataset(data_path)
    with pytest.raises(IndexError):
        dataset[len(dataset)]


def test_dataset_is_a_keras_py_dataset(data_path):
    dataset = make_dataset(data_path, workers=3, max_queue_size=4)
    assert isinstance(dataset, keras.utils.PyDataset)
    assert (dataset.workers, dataset.use_multiprocessing, dataset.max_queue_size) == (3, False, 4)
