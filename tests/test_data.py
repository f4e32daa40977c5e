"""unet3d_keras.data: the HDF5 layout, attributes, atomic writes, and one test per bad input."""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
import tables

from unet3d_keras.data import (
    DataError,
    add_data_to_storage,
    create_data_file,
    open_data_file,
    write_data_to_file,
)
from unet3d_keras.errors import DataError as SharedDataError
from unet3d_keras.hdf5_store import COMPLETED_ATTRIBUTE, SCHEMA_ATTRIBUTE, check_data_file
from unet3d_keras.subject_images import read_subject_images
from unet3d_keras.subjects import find_brats_subjects

try:
    from data_helpers import MODALITIES, make_brats_folder, make_generic_folder, write_nifti
except ImportError:  # tests imported as a package
    from tests.data_helpers import MODALITIES, make_brats_folder, make_generic_folder, write_nifti

REPO_ROOT = Path(__file__).resolve().parents[1]
IMAGE_SHAPE = (8, 8, 8)


@pytest.fixture
def generic(tmp_path):
    """Three subjects in the generic layout (12x14x10 volumes) and an empty output folder."""
    ids, files = make_generic_folder(str(tmp_path / "subjects"), ["s1", "s2", "s3"], np.random.default_rng(0))
    out_folder = tmp_path / "out"
    out_folder.mkdir()
    return ids, files, out_folder


def _write(files, out_file, **kwargs):
    kwargs.setdefault("show_progress", False)
    return write_data_to_file(files, str(out_file), IMAGE_SHAPE, **kwargs)


def test_data_error_is_shared_and_a_value_error():
    assert DataError is SharedDataError
    assert issubclass(DataError, ValueError)


def test_brats_folder_to_hdf5(tmp_path):
    rng = np.random.default_rng(42)
    brats = tmp_path / "MICCAI_BraTS2020_TrainingData"
    ids = ["BraTS20_Training_003", "BraTS20_Training_001", "BraTS20_Training_002"]
    make_brats_folder(str(brats), ids, rng, group="")
    subject_ids, files = find_brats_subjects(str(brats), MODALITIES)
    out_file = tmp_path / "brats_data.h5"
    result = write_data_to_file(
        files, str(out_file), IMAGE_SHAPE, subject_ids=subject_ids, modalities=list(MODALITIES),
        labels=[1, 2, 4], normalization_indices=[0, 1], show_progress=False,
    )
    assert result == str(out_file)
    assert sorted(os.listdir(tmp_path)) == ["MICCAI_BraTS2020_TrainingData", "brats_data.h5"]

    with tables.open_file(str(out_file)) as hdf5_file:
        data, truth, affine = hdf5_file.root.data, hdf5_file.root.truth, hdf5_file.root.affine
        assert data.shape == (3, 4) + IMAGE_SHAPE and data.dtype == np.float32
        assert truth.shape == (3, 1) + IMAGE_SHAPE and truth.dtype == np.uint8
        assert affine.shape == (3, 4, 4) and affine.dtype == np.float32
        for node in (data, truth, affine):
            assert node.filters.complib == "blosc" and node.filters.complevel == 5
        assert [s.decode("utf-8") for s in hdf5_file.root.subject_ids[:]] == [
            "BraTS20_Training_001", "BraTS20_Training_002", "BraTS20_Training_003",
        ]
        assert set(np.unique(truth[:])) == {0, 1, 2, 4}
        stored_data = data[:]
        stored_affine = affine[:]

    attributes = check_data_file(out_file)
    assert attributes["schema_version"] == 1 and attributes["completed"] is True
    assert attributes["modalities"] == list(MODALITIES)
    assert attributes["labels"] == [1, 2, 4]
    assert attributes["image_shape"] == list(IMAGE_SHAPE) and attributes["n_subjects"] == 3
    assert attributes["normalization"] == "dataset"
    assert attributes["normalization_indices"] == [0, 1]
    mean = np.array(attributes["normalization_mean"])
    std = np.array(attributes["normalization_std"])
    assert mean.shape == std.shape == (4,)

    # Known answer: un-normalising the stored data gives the resliced images, and the statistics
    # are those of the two training subjects only.
    raw = []
    for index, set_of_files in enumerate(files):
        images = read_subject_images(set_of_files, IMAGE_SHAPE, label_indices=4, crop=True)
        raw.append(np.stack([np.asanyarray(image.dataobj) for image in images[:4]]))
        np.testing.assert_allclose(stored_affine[index], images[0].affine, atol=1e-5)
    raw = np.stack(raw).astype(np.float64)
    np.testing.assert_allclose(mean, raw[:2].mean(axis=(0, 2, 3, 4)), rtol=1e-6)
    np.testing.assert_allclose(std, raw[:2].std(axis=(0, 2, 3, 4)), rtol=1e-6)
    np.testing.assert_allclose(stored_data * std[:, None, None, None] + mean[:, None, None, None], raw, atol=1e-3)
    # Canonical (RAS+) orientation, as the reference's resize produced.
    assert np.all(np.diagonal(stored_affine, axis1=1, axis2=2)[:, :3] > 0)


def test_attributes_are_native_hdf5_not_pickled(generic):
    ids, files, out_folder = generic
    out_file = out_folder / "data.h5"
    _write(files, out_file, subject_ids=ids, modalities=list(MODALITIES), labels=[1, 2, 4])
    with h5py.File(out_file, "r") as opened:
        attrs = opened.attrs
        assert attrs[SCHEMA_ATTRIBUTE] == 1
        assert bool(attrs[COMPLETED_ATTRIBUTE]) is True
        assert [m.decode() for m in attrs["modalities"]] == list(MODALITIES)
        assert list(attrs["labels"]) == [1, 2, 4]
        assert attrs["normalization_mean"].dtype == np.float64
        assert opened["subject_ids"][()].tolist() == [b"s1", b"s2", b"s3"]


def test_zscore_and_no_normalisation(generic):
    ids, files, out_folder = generic
    _write(files, out_folder / "z.h5", normalization="zscore")
    attributes = check_data_file(out_folder / "z.h5")
    assert attributes["normalization"] == "zscore"
    assert np.array(attributes["normalization_mean"]).shape == (3, 4)
    _write(files, out_folder / "raw.h5", normalize=False, save_truth=True)
    assert check_data_file(out_folder / "raw.h5")["normalization"] == "none"
    _write(files, out_folder / "raw2.h5", normalization="none")
    with open_data_file(out_folder / "raw2.h5") as opened:
        assert check_data_file(out_folder / "raw2.h5")["normalization"] == "none"
        assert opened.root.data[0].max() > 50  # raw intensities


def test_without_truth(generic):
    ids, files, out_folder = generic
    _write([f[:4] for f in files], out_folder / "d.h5", save_truth=False)
    with open_data_file(out_folder / "d.h5") as opened:
        assert opened.root.data.shape == (3, 4) + IMAGE_SHAPE
        assert opened.root.truth.shape == (0, 1) + IMAGE_SHAPE


def test_progress_bar_can_be_disabled(generic, capfd):
    ids, files, out_folder = generic
    _write(files[:1], out_folder / "a.h5", show_progress=True)
    assert "Writing subjects" in capfd.readouterr().err
    _write(files[:1], out_folder / "b.h5", show_progress=False)
    assert "Writing subjects" not in capfd.readouterr().err


def test_reference_file_is_accepted_with_a_warning(tmp_path):
    out_file = str(tmp_path / "reference.h5")
    hdf5_file, data, truth, affine = create_data_file(out_file, n_channels=2, n_samples=1, image_shape=(4, 4, 4))
    add_data_to_storage(data, truth, affine, [np.ones((4, 4, 4))] * 3, np.eye(4), 2, np.uint8)
    hdf5_file.create_array(hdf5_file.root, "subject_ids", obj=["a"])
    hdf5_file.close()
    # A reference file's first subject with no negative value: written with normalize=False.
    with pytest.warns(UserWarning, match="no unet3d_keras attributes: .* data that were not normalised"):
        assert check_data_file(out_file) == {"normalization": "none"}
    with pytest.warns(UserWarning):
        with open_data_file(out_file) as opened:
            assert opened.root.data.shape == (1, 2, 4, 4, 4)


def test_incomplete_file_is_rejected(tmp_path):
    out_file = str(tmp_path / "partial.h5")
    hdf5_file, *_ = create_data_file(out_file, n_channels=1, n_samples=1, image_shape=(4, 4, 4))
    setattr(hdf5_file.root._v_attrs, SCHEMA_ATTRIBUTE, 1)
    hdf5_file.close()
    with pytest.raises(DataError, match=r"partial.h5 is incomplete.*Delete .*partial.h5 and rebuild"):
        check_data_file(out_file)
    with pytest.raises(DataError, match="incomplete"):
        open_data_file(out_file)
    with open_data_file(out_file, require_complete=False) as opened:  # explicit opt-out
        assert opened.root.data.shape[0] == 0


def test_not_hdf5_is_rejected(tmp_path):
    path = tmp_path / "garbage.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\nbut truncated")
    with pytest.raises(DataError, match="cannot be opened as HDF5.*rebuild"):
        check_data_file(path)
    with pytest.raises(DataError, match="not found"):
        check_data_file(tmp_path / "missing.h5")


# --- Interrupted writes ---------------------------------------------------------------------

_KILLED_WRITER = textwrap.dedent(
    """
    import json, sys, time
    import unet3d_keras.data as data

    files, out_file = json.load(open(sys.argv[1]))
    original = data.add_data_to_storage
    calls = []

    def add_then_stall(*args, **kwargs):
        original(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:
            args[0]._v_file.flush()
            print("WRITING", flush=True)
            time.sleep(600)

    data.add_data_to_storage = add_then_stall
    data.write_data_to_file(files, out_file, (8, 8, 8), show_progress=False)
    """
)


def _kill_writer_midway(tmp_path, files, out_file):
    arguments = tmp_path / "arguments.json"
    arguments.write_text(json.dumps([[list(f) for f in files], str(out_file)]))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    process = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(arguments)], stdout=subprocess.PIPE, env=env, text=True
    )
    try:
        line = process.stdout.readline()
        assert line.strip() == "WRITING", "the writer did not reach the second subject"
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
        process.stdout.close()
    return process.pid


def test_killed_writer_leaves_no_accepted_file(generic, tmp_path):
    ids, files, out_folder = generic
    out_file = out_folder / "data.h5"
    pid = _kill_writer_midway(tmp_path, files, out_file)
    assert not out_file.exists()
    leftovers = os.listdir(out_folder)
    assert leftovers == [f".data.h5.tmp-{pid}"]
    # The leftover is recognisably incomplete: the training code's check rejects it.
    with pytest.raises(DataError, match="incomplete|cannot be opened"):
        check_data_file(out_folder / leftovers[0])
    # Rerunning finishes the job and clears the dead writer's leftover.
    write_data_to_file(files, out_file, (8, 8, 8), show_progress=False)
    assert os.listdir(out_folder) == ["data.h5"]
    assert check_data_file(out_file)["n_subjects"] == len(files)


def test_killed_writer_keeps_previous_complete_file(generic, tmp_path):
    ids, files, out_folder = generic
    out_file = out_folder / "data.h5"
    _write(files[:2], out_file)
    before = out_file.read_bytes()
    _kill_writer_midway(tmp_path, files, out_file)
    assert out_file.read_bytes() == before
    assert check_data_file(out_file)["n_subjects"] == 2


# --- Bad input: a clear DataError naming subject and file, nothing left behind ----------------


def _assert_nothing_written(out_folder, expected=()):
    assert sorted(os.listdir(out_folder)) == sorted(expected)


def test_missing_modality_file(generic):
    ids, files, out_folder = generic
    os.remove(files[1][2])
    with pytest.raises(DataError, match=r"Subject s2: .*not found.*s2/flair.nii.gz"):
        _write(files, out_folder / "d.h5", subject_ids=ids)
    _assert_nothing_written(out_folder)


def test_modalities_with_different_shapes(generic):
    ids, files, out_folder = generic
    write_nifti(files[2][1], np.ones((12, 14, 11), dtype=np.float32))
    with pytest.raises(DataError, match=r"subject s3: .*s3/t1ce.nii.gz has shape \(12, 14, 11\)"):
        _write(files, out_folder / "d.h5", subject_ids=ids)
    _assert_nothing_written(out_folder)


def test_modalities_with_different_affines(generic):
    ids, files, out_folder = generic
    affine = np.diag([-1.0, -1.0, 1.1, 1.0])
    write_nifti(files[0][3], np.ones((12, 14, 10), dtype=np.float32), affine)
    with pytest.raises(DataError, match=r"subject s1: the affine of .*s1/t2.nii.gz differs"):
        _write(files, out_folder / "d.h5", subject_ids=ids)
    _assert_nothing_written(out_folder)


def test_4d_image_is_rejected_but_trailing_singleton_is_fine(generic):
    ids, files, out_folder = generic
    volume = np.asanyarray(nib.load(files[0][0]).dataobj)
    write_nifti(files[0][0], volume[..., np.newaxis])
    _write(files, out_folder / "ok.h5", subject_ids=ids)
    write_nifti(files[0][0], np.stack([volume, volume], axis=-1))
    with pytest.raises(DataError, match=r"s1/t1.nii.gz has shape \(12, 14, 10, 2\); expected a 3D image"):
        _write(files, out_folder / "d.h5", subject_ids=ids)
    _assert_nothing_written(out_folder, ["ok.h5"])


@pytest.mark.parametrize("bad_value", [np.nan, np.inf])
def test_non_finite_voxels(generic, bad_value):
    ids, files, out_folder = generic
    out_file = out_folder / "d.h5"
    _write(files, out_file, subject_ids=ids)
    before = out_file.read_bytes()
    volume = np.asanyarray(nib.load(files[2][3]).dataobj).copy()
    volume[5, 5, 5] = bad_value
    write_nifti(files[2][3], volume)
    with pytest.raises(DataError, match=r"subject s3: .*s3/t2.nii.gz contains 1 NaN or infinite voxels"):
        _write(files, out_file, subject_ids=ids)
    _assert_nothing_written(out_folder, ["d.h5"])
    assert out_file.read_bytes() == before


def test_labels_outside_the_configured_set_warn(generic):
    ids, files, out_folder = generic
    expected = (
        r"values \[4\] are not in the configured labels \[1, 2\] \(values found: \[0, 1, 2, 4\]\); "
        r"in 3 subject\(s\): s1: \[4\]; s2: \[4\]"
    )
    with pytest.warns(UserWarning, match=expected):
        _write(files, out_folder / "d.h5", subject_ids=ids, labels=[1, 2])
    assert check_data_file(out_folder / "d.h5")["labels"] == [1, 2]


def test_labels_that_do_not_fit_uint8(generic):
    ids, files, out_folder = generic
    truth = np.asanyarray(nib.load(files[1][4]).dataobj).astype(np.int16)
    truth[truth == 4] = 300
    write_nifti(files[1][4], truth)
    with pytest.raises(DataError, match=r"Subject s2: .*s2/truth.nii.gz holds label values \[300\] outside 0..255"):
        _write(files, out_folder / "d.h5", subject_ids=ids)
    _assert_nothing_written(out_folder)


def test_truncated_nifti(generic):
    ids, files, out_folder = generic
    content = Path(files[2][0]).read_bytes()
    Path(files[2][0]).write_bytes(content[: len(content) // 2])
    with pytest.raises(DataError, match=r"subject s3: Could not read image file .*s3/t1.nii.gz"):
        _write(files, out_folder / "d.h5", subject_ids=ids)
    _assert_nothing_written(out_folder)


def test_unreadable_nifti(generic):
    ids, files, out_folder = generic
    Path(files[0][1]).write_bytes(b"this is not a NIfTI file")
    with pytest.raises(DataError, match=r"Subject s1: .*s1/t1ce.nii.gz"):
        _write(files, out_folder / "d.h5", subject_ids=ids)
    _assert_nothing_written(out_folder)


def test_empty_subject_list(tmp_path):
    with pytest.raises(DataError, match="empty"):
        _write([], tmp_path / "d.h5")
    _assert_nothing_written(tmp_path)


def test_output_folder_does_not_exist(generic):
    ids, files, out_folder = generic
    with pytest.raises(DataError, match=r"folder .*nowhere does not exist"):
        _write(files, out_folder / "nowhere" / "d.h5")
    _assert_nothing_written(out_folder)


def test_inconsistent_arguments(generic):
    ids, files, out_folder = generic
    with pytest.raises(DataError, match="has 4 files but the first subject has 5"):
        _write([files[0], files[1][:4]], out_folder / "d.h5")
    with pytest.raises(DataError, match="2 subject ids for 3 subjects"):
        _write(files, out_folder / "d.h5", subject_ids=ids[:2])
    with pytest.raises(DataError, match="3 modality names"):
        _write(files, out_folder / "d.h5", modalities=["t1", "t2", "flair"])
    with pytest.raises(DataError, match="normalization_indices"):
        _write(files, out_folder / "d.h5", normalization_indices=[7])
    _assert_nothing_written(out_folder)
