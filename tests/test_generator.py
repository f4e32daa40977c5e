"""Generators, split files and batch conversion (ports of the reference's generator tests, plus
known answers and one test per bad input)."""

import json
import logging
import os
import pickle

import numpy as np
import pytest
import tables

from unet3d_keras.augment import AugmentationParams
from unet3d_keras.generator import (
    add_data,
    convert_data,
    create_patch_index_list,
    data_generator,
    get_data_from_file,
    get_multi_class_labels,
    get_number_of_patches,
    get_number_of_steps,
    get_training_and_validation_generators,
    get_validation_split,
    split_list,
)
from unet3d_keras.sampling import SamplingPlan
from unet3d_keras.seeds import item_rng, plan_rng, split_rng
from unet3d_keras.splits import SplitFileError, load_split, save_split


def write_data_file(path, data, truth, affine=None, subject_ids=None):
    """An HDF5 file in the contract's layout, written with PyTables directly."""
    data = np.asarray(data, dtype=np.float32)
    if affine is None:
        affine = np.repeat(np.eye(4, dtype=np.float32)[None], len(data), axis=0)
    with tables.open_file(str(path), mode="w") as hdf5:
        filters = tables.Filters(complevel=5, complib="blosc")
        hdf5.create_earray(hdf5.root, "data", obj=data, filters=filters)
        hdf5.create_earray(hdf5.root, "truth", obj=np.asarray(truth, dtype=np.uint8), filters=filters)
        hdf5.create_earray(hdf5.root, "affine", obj=np.asarray(affine, dtype=np.float32), filters=filters)
        if subject_ids is not None:
            hdf5.create_array(hdf5.root, "subject_ids", obj=np.array([s.encode() for s in subject_ids]))
    return str(path)


def reference_data(n_samples=20, shape=(5, 5, 10), n_channels=1):
    """The reference test's data: consecutive integers; truth marks the voxel holding 3."""
    data = np.arange(n_samples * n_channels * int(np.prod(shape)), dtype=np.float32)
    data = data.reshape((n_samples, n_channels) + tuple(shape))
    truth = (data[:, :1] == 3).astype(np.uint8)
    return data, truth


@pytest.fixture
def open_file(tmp_path):
    handles = []

    def make(data, truth, **kwargs):
        path = write_data_file(tmp_path / f"data{len(handles)}.h5", data, truth, **kwargs)
        handles.append(tables.open_file(path, mode="r"))
        return handles[-1]

    yield make
    for handle in handles:
        handle.close()


def keys(tmp_path, suffix=".json"):
    return str(tmp_path / f"training{suffix}"), str(tmp_path / f"validation{suffix}")


def verify_generator(generator, steps, batch_size, expected_samples):
    """The reference's check: ``steps`` batches, all full but the last, no batch twice."""
    seen = []
    n_samples = 0
    for step in range(steps):
        x, y = next(generator)
        digest = hash(x.tobytes())
        assert digest not in seen
        seen.append(digest)
        n_samples += x.shape[0]
        if step + 1 != steps:
            assert x.shape[0] == batch_size
    assert n_samples == expected_samples


# -- the reference's generator tests ---------------------------------------------------------


def test_multi_class_labels():
    n_labels = 5
    labels = np.arange(1, n_labels + 1)
    label_map = np.asarray([[[np.arange(n_labels + 1)] * 3]])
    binary = get_multi_class_labels(label_map, n_labels, labels)
    assert binary.shape == (1, n_labels, 3, n_labels + 1)
    for label in labels:
        assert np.all(binary[:, label - 1][label_map[:, 0] == label] == 1)
        assert np.all(binary[:, label - 1][label_map[:, 0] != label] == 0)


def test_multi_class_labels_with_brats_values():
    label_map = np.array([0, 1, 2, 4, 3]).reshape((1, 1, 5, 1, 1))
    binary = get_multi_class_labels(label_map, 3, labels=(1, 2, 4))
    assert binary[0, :, :, 0, 0].tolist() == [[0, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 1, 0]]


def test_training_and_validation_generators_cover_every_sample(open_file, tmp_path):
    data_file = open_file(*reference_data())
    training, validation, n_training, n_validation = get_training_and_validation_generators(
        data_file, 3, 1, *keys(tmp_path), data_split=0.8, validation_batch_size=3, skip_blank=False, seed=0
    )
    assert (n_training, n_validation) == (6, 2)
    verify_generator(training, n_training, 3, 16)
    verify_generator(validation, n_validation, 3, 4)


def test_patch_generators(open_file, tmp_path):
    data_file = open_file(*reference_data(shape=(4, 4, 4)))
    training, validation, n_training, n_validation = get_training_and_validation_generators(
        data_file, 10, 1, *keys(tmp_path), data_split=0.8, validation_batch_size=3, patch_shape=(2, 2, 2),
        skip_blank=False, seed=1,
    )
    verify_generator(training, n_training, 10, 16 * 2**3)
    verify_generator(validation, n_validation, 3, 4 * 2**3)


def test_random_patch_start(open_file, tmp_path):
    data_file = open_file(*reference_data(shape=(10, 10, 10)))
    training, validation, n_training, n_validation = get_training_and_validation_generators(
        data_file, 10, 1, *keys(tmp_path), data_split=0.8, validation_batch_size=3, patch_shape=(5, 5, 5),
        training_patch_start_offset=(3, 3, 3), validation_patch_overlap=2, skip_blank=False, seed=2,
    )
    verify_generator(training, n_training, 10, 16 * 2**3)
    verify_generator(validation, n_validation, 3, 4 * 4**3)


def test_generator_with_permutations(open_file, tmp_path):
    data, truth = reference_data(shape=(5, 5, 5), n_channels=5)
    truth[:, :, 2, 2, 2] = 1  # every subject labelled, so no split leaves training blank
    data_file = open_file(data, truth)
    training, _, n_training, _ = get_training_and_validation_generators(
        data_file, 2, 1, *keys(tmp_path), permute=True, seed=3
    )
    x, y = next(training)
    assert x.shape == (2, 5, 5, 5, 5) and y.shape == (2, 5, 5, 5, 1)
    # A permutation moves voxels, never changes their values.
    subjects = {np.sort(d.ravel()).tobytes() for d in data}
    assert all(np.sort(np.moveaxis(sample, -1, 0).ravel()).tobytes() in subjects for sample in x)


# -- epochs, steps and reproducibility -------------------------------------------------------


def test_number_of_steps_is_the_ceiling():
    assert get_number_of_steps(16, 3) == 6
    assert get_number_of_steps(15, 3) == 5
    # The reference returned n_samples here, visiting each sample twice per epoch.
    assert get_number_of_steps(2, 5) == 1
    assert get_number_of_steps(0, 5) == 0


def test_every_epoch_visits_each_patch_once(open_file):
    data, truth = reference_data(n_samples=3, shape=(8, 9, 7))
    data_file = open_file(data, truth)
    generator = data_generator(data_file, [0, 1, 2], batch_size=4, patch_shape=(4, 4, 4), skip_blank=False, rng=5)
    per_epoch = 3 * len(create_patch_index_list([0], (8, 9, 7), (4, 4, 4), 0))
    steps = get_number_of_steps(per_epoch, 4)
    for _ in range(2):
        patches = np.concatenate([next(generator)[0] for _ in range(steps)])
        assert len(patches) == per_epoch
        assert len({p.tobytes() for p in patches}) == per_epoch


def test_generators_are_reproducible_from_the_seed(open_file, tmp_path):
    data_file = open_file(*reference_data(shape=(6, 6, 6)))
    params = AugmentationParams(flip=True, elastic=True, elastic_grid_spacing=4)
    batches = []
    for run in range(2):
        training, *_ = get_training_and_validation_generators(
            data_file, 2, 1, *keys(tmp_path), skip_blank=False, seed=7, augmentation=params, overwrite=True
        )
        batches.append([next(training)[0] for _ in range(3)])
    for a, b in zip(*batches):
        np.testing.assert_array_equal(a, b)


def test_random_streams_are_distinct():
    draws = [plan_rng(4, 0).random(), item_rng(4, 0, 0).random(), split_rng(4).random(), item_rng(4, 0, 1).random()]
    assert len(set(draws)) == 4
    assert plan_rng(4, 1).random() != plan_rng(4, 0).random()


def test_skip_blank_drops_blank_patches(open_file):
    data, truth = reference_data(n_samples=2, shape=(4, 4, 4))
    truth[:] = 0
    truth[0, 0, 0, 0, 0] = 1  # one labelled voxel: one patch of subject 0
    data_file = open_file(data, truth)
    assert get_number_of_patches(data_file, [0, 1], patch_shape=(2, 2, 2), skip_blank=True) == 1
    assert get_number_of_patches(data_file, [0, 1], patch_shape=(2, 2, 2), skip_blank=False) == 16
    # Whole volumes: subject 1 is blank (the reference counted it but its generator skipped it).
    assert get_number_of_patches(data_file, [0, 1], skip_blank=True) == 1


def test_random_offset_with_skip_blank_keeps_a_fixed_epoch_length(open_file):
    data, truth = reference_data(n_samples=2, shape=(12, 12, 12))
    truth[:] = 0
    truth[:, 0, 3:7, 3:7, 3:7] = 1
    data_file = open_file(data, truth)
    plan = SamplingPlan([0, 1], (12, 12, 12), (4, 4, 4), 0, (3, 3, 3), skip_blank=True)
    read = lambda subject: data_file.root.truth[subject, 0]  # noqa: E731
    rng = np.random.default_rng(0)
    lengths = {len(plan.plan(rng, read)) for _ in range(10)}
    assert lengths == {plan.n_items}
    for row in plan.plan(rng, read):  # and every planned patch holds a label
        patch = get_data_from_file(data_file, (row[0], row[1:]), patch_shape=(4, 4, 4))[1]
        assert patch.any()


def test_batches_follow_the_image_data_format(open_file, channels_first):
    data, truth = reference_data(n_samples=2, shape=(4, 5, 6), n_channels=2)
    generator = data_generator(open_file(data, truth), [0, 1], batch_size=2, n_labels=1, skip_blank=False,
                               shuffle_index_list=False)
    x, y = next(generator)
    assert x.shape == (2, 2, 4, 5, 6) and y.shape == (2, 1, 4, 5, 6)
    np.testing.assert_array_equal(x, data)


def test_convert_data_makes_channels_last_batches():
    x_list = [np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)]
    y_list = [np.array([0, 1, 2, 4, 0]).reshape(1, 1, 1, 5).repeat(3, 1).repeat(4, 2)]
    x, y = convert_data(x_list, y_list, n_labels=3, labels=(1, 2, 4), data_format="channels_last")
    assert x.shape == (1, 3, 4, 5, 2) and y.shape == (1, 3, 4, 5, 3)
    assert x.dtype == np.float32 and y.dtype == np.float32
    np.testing.assert_array_equal(x[0, ..., 1], x_list[0][1])
    assert y[0, 0, 0, :, 2].tolist() == [0, 0, 0, 1, 0]
    _, binary = convert_data(x_list, y_list, n_labels=1, data_format="channels_last")
    assert binary[0, 0, 0, :, 0].tolist() == [0, 1, 1, 1, 0]


def test_patches_are_read_with_edge_padding(open_file):
    data, truth = reference_data(n_samples=1, shape=(4, 5, 6), n_channels=2)
    data_file = open_file(data, truth)
    x, y = get_data_from_file(data_file, (0, np.array([-2, 3, 4])), patch_shape=(3, 3, 3))
    expected = np.pad(data[0], [(0, 0), (2, 0), (0, 1), (0, 1)], mode="edge")[:, 0:3, 3:6, 4:7]
    np.testing.assert_array_equal(x, expected)
    assert y.shape == (3, 3, 3)


def test_add_data_skips_blank_samples(open_file):
    data, truth = reference_data(n_samples=2, shape=(4, 4, 4))
    data_file = open_file(data, truth)
    x_list, y_list = [], []
    assert add_data(x_list, y_list, data_file, 0) is True  # subject 0 holds the value 3
    assert add_data(x_list, y_list, data_file, 1) is False
    assert add_data(x_list, y_list, data_file, 1, skip_blank=False, augment=True, augment_flip=True, rng=0)
    assert [x.shape for x in x_list] == [(1, 4, 4, 4)] * 2 and y_list[0].shape == (1, 4, 4, 4)


# -- split files ----------------------------------------------------------------------------


def test_split_list_is_seeded_and_does_not_mutate():
    items = list(range(20))
    first = split_list(items, 0.8, rng=3)
    assert first == split_list(items, 0.8, rng=3)
    assert items == list(range(20))
    assert len(first[0]) == 16 and sorted(first[0] + first[1]) == items
    assert len(split_list(list(range(100)), 0.29)[0]) == 29  # no floating-point loss


def test_split_is_saved_as_json_and_reused(open_file, tmp_path):
    ids = [f"sub{i:02d}" for i in range(10)]
    data_file = open_file(*reference_data(n_samples=10), subject_ids=ids)
    training_file, validation_file = keys(tmp_path)
    training, validation = get_validation_split(data_file, training_file, validation_file, seed=11)
    content = json.loads(open(training_file).read())
    assert content["indices"] == training and content["seed"] == 11
    assert content["subject_ids"] == [ids[i] for i in training]
    assert sorted(training + validation) == list(range(10))
    assert [name for name in os.listdir(tmp_path) if name.endswith(".tmp")] == []
    # Reused (whatever the seed) unless overwrite.
    assert get_validation_split(data_file, training_file, validation_file, seed=12) == (training, validation)
    again = get_validation_split(data_file, training_file, validation_file, seed=12, overwrite=True)
    assert again == get_validation_split(data_file, training_file, validation_file)
    assert again != (training, validation)


def test_split_follows_subject_ids_when_the_file_is_rebuilt(open_file, tmp_path):
    ids = [f"sub{i}" for i in range(6)]
    training_file, validation_file = keys(tmp_path)
    save_split(training_file, [0, 5], subject_ids=ids)
    save_split(validation_file, [1], subject_ids=ids)
    rebuilt = open_file(*reference_data(n_samples=6), subject_ids=ids[::-1])
    assert get_validation_split(rebuilt, training_file, validation_file) == ([5, 0], [4])
    save_split(validation_file, [0], subject_ids=["sub9"])
    with pytest.raises(SplitFileError, match=r"validation\.json.*sub9"):
        get_validation_split(rebuilt, training_file, validation_file)


def test_split_with_indices_beyond_the_data_file_is_refused(open_file, tmp_path):
    data_file = open_file(*reference_data(n_samples=4))
    training_file, validation_file = keys(tmp_path)
    save_split(training_file, [0, 1, 25])
    save_split(validation_file, [2])
    with pytest.raises(SplitFileError, match=r"training\.json.*\[25\].*4 subjects"):
        get_validation_split(data_file, training_file, validation_file)


def test_unreadable_split_file_is_named(open_file, tmp_path):
    data_file = open_file(*reference_data(n_samples=4))
    training_file, validation_file = keys(tmp_path)
    open(training_file, "w").write("{not json")
    open(validation_file, "w").write("[1]")
    with pytest.raises(SplitFileError, match="training.json"):
        get_validation_split(data_file, training_file, validation_file)


def test_pickle_split_names_are_refused_without_opt_in(open_file, tmp_path):
    data_file = open_file(*reference_data(n_samples=4))
    training_file, validation_file = keys(tmp_path, ".pkl")
    with pytest.raises(SplitFileError, match=r"\.json"):
        get_validation_split(data_file, training_file, validation_file)
    assert not os.path.exists(training_file)
    for path, indices in ((training_file, [0, 1, 2]), (validation_file, [3])):
        with open(path, "wb") as stream:
            pickle.dump(indices, stream)
    with pytest.raises(SplitFileError, match="allow_pickle=True") as error:
        get_validation_split(data_file, training_file, validation_file)
    # The hint converts by subject id (an indices-only conversion would point at other subjects once the
    # data file is rebuilt in another order).
    assert "scripts/convert_split.py" in str(error.value) and "by subject id" in str(error.value)
    assert get_validation_split(data_file, training_file, validation_file, allow_pickle=True) == ([0, 1, 2], [3])


def test_plain_json_list_from_a_converted_pickle_loads(tmp_path):
    path = tmp_path / "converted.json"
    path.write_text("[3, 1, 2]")
    assert load_split(path, 4) == [3, 1, 2]


# -- bad input ------------------------------------------------------------------------------


def test_batch_size_larger_than_the_samples_is_clamped_with_a_warning(open_file, caplog):
    data_file = open_file(*reference_data(n_samples=3, shape=(4, 4, 4)))
    with caplog.at_level(logging.WARNING, logger="unet3d_keras.generator"):
        generator = data_generator(data_file, [0, 1, 2], batch_size=8, skip_blank=False, rng=0)
    assert "batch_size 8 is larger than the 3 samples" in caplog.text
    assert next(generator)[0].shape[0] == 3


def test_permute_with_non_cubic_samples_names_both_shapes(open_file, tmp_path):
    data_file = open_file(*reference_data(n_samples=5, shape=(4, 4, 6)))
    with pytest.raises(ValueError, match=r"patch_shape=None.*\(4, 4, 6\)"):
        get_training_and_validation_generators(data_file, 1, 1, *keys(tmp_path), permute=True, seed=0)
    with pytest.raises(ValueError, match=r"patch_shape=\(2, 2, 3\).*\(4, 4, 6\)"):
        data_generator(data_file, [0], patch_shape=(2, 2, 3), permute=True, skip_blank=False)


def test_patch_larger_than_the_image_is_padded_with_one_warning(open_file, caplog):
    data, truth = reference_data(n_samples=2, shape=(4, 5, 6))
    with caplog.at_level(logging.WARNING, logger="unet3d_keras.generator"):
        generator = data_generator(open_file(data, truth), [0, 1], batch_size=2, patch_shape=(8, 5, 4),
                                   skip_blank=False, rng=0)
        x, _ = next(generator)
        next(generator)
    assert caplog.text.count("larger than the image shape") == 1
    assert x.shape[1:4] == (8, 5, 4)


def test_labels_that_never_occur_are_reported(open_file, tmp_path, caplog):
    data, truth = reference_data(n_samples=5, shape=(4, 4, 4))
    truth[:] = 0
    truth[:, 0, 0, 0, 0] = 2
    data_file = open_file(data, truth)
    with caplog.at_level(logging.WARNING, logger="unet3d_keras.generator"):
        get_training_and_validation_generators(data_file, 1, 2, *keys(tmp_path), labels=(1, 2), seed=0)
    assert "labels [1] never occur" in caplog.text


def test_labels_must_match_n_labels(open_file, tmp_path):
    data_file = open_file(*reference_data(n_samples=5, shape=(4, 4, 4)))
    with pytest.raises(ValueError, match=r"has 2 values but n_labels is 3"):
        get_training_and_validation_generators(data_file, 1, 3, *keys(tmp_path), labels=(1, 2), seed=0)


def test_all_blank_training_samples_are_an_error_not_a_hang(open_file):
    data, truth = reference_data(n_samples=2, shape=(4, 4, 4))
    truth[:] = 0
    with pytest.raises(ValueError, match="No samples"):
        data_generator(open_file(data, truth), [0, 1], skip_blank=True)


def test_no_validation_subjects_gives_no_validation_generator(open_file, tmp_path):
    data_file = open_file(*reference_data(n_samples=4, shape=(4, 4, 4)))
    training, validation, n_training, n_validation = get_training_and_validation_generators(
        data_file, 2, 1, *keys(tmp_path), data_split=1.0, skip_blank=False, seed=0
    )
    assert validation is None and n_validation == 0 and n_training == 2
