"""brats/preprocess.py: both BraTS naming conventions, N4, helpers and the command line."""

import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from brats.preprocess import (
    append_basename,
    background_to_zero,
    check_origin,
    convert_brats_data,
    convert_brats_folder,
    correct_bias,
    get_background_mask,
    get_image,
    main,
    rescale,
    window_intensities,
)
from unet3d_keras.data import check_data_file, write_data_to_file
from unet3d_keras.errors import DataError
from unet3d_keras.subjects import find_generic_subjects

try:
    from data_helpers import MODALITIES, make_brats_folder, write_nifti
except ImportError:  # tests imported as a package
    from tests.data_helpers import MODALITIES, make_brats_folder, write_nifti

REPO_ROOT = Path(__file__).resolve().parents[1]
FAST_N4 = dict(n_iterations=(10, 10), shrink_factor=2)
OUTPUT_FILES = ["flair.nii.gz", "t1.nii.gz", "t1ce.nii.gz", "t2.nii.gz", "truth.nii.gz"]


def _data(path):
    return np.asanyarray(nib.load(str(path)).dataobj)


def test_convert_2018_naming(tmp_path):
    rng = np.random.default_rng(0)
    brats = tmp_path / "MICCAI_BraTS_2018_Data_Training"
    folders = make_brats_folder(str(brats), ["Brats18_TCIA_1", "Brats18_TCIA_2"], rng, group="HGG")
    out = tmp_path / "preprocessed"
    written = convert_brats_data(str(brats), str(out), **FAST_N4)
    assert written == [str(out / "Brats18_TCIA_1"), str(out / "Brats18_TCIA_2")]
    assert sorted(os.listdir(out)) == ["Brats18_TCIA_1", "Brats18_TCIA_2"]  # no temporary folders left
    subject_out = out / "Brats18_TCIA_1"
    assert sorted(os.listdir(subject_out)) == OUTPUT_FILES
    source = Path(folders[0])
    # FLAIR is not bias-corrected by default: copied byte for byte.
    assert (subject_out / "flair.nii.gz").read_bytes() == (source / "Brats18_TCIA_1_flair.nii.gz").read_bytes()
    np.testing.assert_array_equal(_data(subject_out / "truth.nii.gz"), _data(source / "Brats18_TCIA_1_seg.nii.gz"))
    corrected = nib.load(str(subject_out / "t1.nii.gz"))
    original = nib.load(str(source / "Brats18_TCIA_1_t1.nii.gz"))
    assert corrected.get_data_dtype() == np.float32
    assert corrected.shape == original.shape
    np.testing.assert_allclose(corrected.affine, original.affine, atol=1e-5)
    np.testing.assert_array_equal(np.asanyarray(corrected.dataobj) == 0, np.asanyarray(original.dataobj) == 0)

    # The output is the generic layout, and goes straight into an HDF5 file.
    subject_ids, files = find_generic_subjects(str(out), MODALITIES)
    assert subject_ids == ["Brats18_TCIA_1", "Brats18_TCIA_2"]
    write_data_to_file(files, str(tmp_path / "data.h5"), (8, 8, 8), subject_ids=subject_ids, show_progress=False)
    assert check_data_file(tmp_path / "data.h5")["n_subjects"] == 2


def test_convert_2017_naming(tmp_path):
    rng = np.random.default_rng(1)
    brats = tmp_path / "brats17"
    folders = make_brats_folder(
        str(brats), ["TCGA-02-0003"], rng, convention="2017", group="Pre-operative_TCGA_GBM_NIfTI_and_Segmentations"
    )
    # The 2017 truth files came with another origin than the images.
    truth_file = os.path.join(folders[0], "TCGA-02-0003_GlistrBoost_ManuallyCorrected.nii.gz")
    truth = nib.load(truth_file)
    shifted = truth.affine.copy()
    shifted[:3, 3] += 3.0
    write_nifti(truth_file, np.asanyarray(truth.dataobj), shifted)
    out = tmp_path / "out"
    convert_brats_data(str(brats), str(out), no_bias_correction_modalities=("flair", "t1ce"), **FAST_N4)
    subject_out = out / "TCGA-02-0003"
    assert sorted(os.listdir(subject_out)) == OUTPUT_FILES
    assert (subject_out / "t1ce.nii.gz").read_bytes() == Path(folders[0], "TCGA-02-0003_t1Gd.nii.gz").read_bytes()
    truth_out = nib.load(str(subject_out / "truth.nii.gz"))
    assert set(np.unique(np.asanyarray(truth_out.dataobj))) == {0, 1, 2}  # ManuallyCorrected, not GlistrBoost
    np.testing.assert_allclose(truth_out.affine, nib.load(str(subject_out / "t1.nii.gz")).affine, atol=1e-5)


def test_existing_subjects_are_skipped_unless_overwrite(tmp_path):
    rng = np.random.default_rng(2)
    brats = tmp_path / "brats"
    make_brats_folder(str(brats), ["a"], rng, shape=(8, 8, 8))
    out = tmp_path / "out"
    convert_brats_data(str(brats), str(out), bias_correction=False)
    marker = out / "a" / "marker"
    marker.write_text("old")
    convert_brats_data(str(brats), str(out), bias_correction=False)
    assert marker.exists()
    convert_brats_data(str(brats), str(out), overwrite=True, bias_correction=False)
    assert sorted(os.listdir(out / "a")) == OUTPUT_FILES
    assert sorted(os.listdir(out)) == ["a"]


def test_missing_modality_fails_before_writing(tmp_path):
    rng = np.random.default_rng(3)
    brats = tmp_path / "brats"
    folders = make_brats_folder(str(brats), ["a", "b"], rng, shape=(8, 8, 8))
    os.remove(os.path.join(folders[1], "b_t1ce.nii.gz"))
    with pytest.raises(DataError, match="Subject b: missing modality 't1ce'"):
        convert_brats_data(str(brats), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_failed_subject_leaves_no_partial_folder(tmp_path, monkeypatch):
    import brats.preprocess as preprocess

    rng = np.random.default_rng(4)
    brats = tmp_path / "brats"
    make_brats_folder(str(brats), ["a"], rng, shape=(8, 8, 8))

    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(preprocess, "check_origin", fail)
    with pytest.raises(DataError, match="Subject a: disk full"):  # SimpleITK's RuntimeError, named
        convert_brats_data(str(brats), str(tmp_path / "out"), bias_correction=False)
    assert not (tmp_path / "out").exists()  # made by this run, which wrote nothing


def test_bias_correction_flattens_a_smooth_field(tmp_path):
    shape = (32, 32, 24)
    grids = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    brain = sum(g**2 for g in grids) < 0.8
    rng = np.random.default_rng(5)
    tissue = np.where(brain, 100.0 + rng.normal(0, 1.0, shape), 0.0)
    biased = (tissue * np.exp(0.4 * grids[0] + 0.2 * grids[1])).astype(np.float32)
    in_file = write_nifti(str(tmp_path / "t1.nii.gz"), biased)
    out_file = str(tmp_path / "t1_n4.nii.gz")
    assert correct_bias(in_file, out_file, n_iterations=(20, 20), shrink_factor=2) == os.path.abspath(out_file)
    corrected = _data(out_file)

    def variation(values):
        return values[brain].std() / values[brain].mean()

    assert variation(corrected) < 0.5 * variation(biased)


def test_bias_correction_of_blank_image_is_a_copy(tmp_path):
    in_file = write_nifti(str(tmp_path / "blank.nii.gz"), np.zeros((6, 6, 6), dtype=np.int16))
    correct_bias(in_file, str(tmp_path / "out.nii.gz"))
    np.testing.assert_array_equal(_data(tmp_path / "out.nii.gz"), 0)


def test_convert_brats_folder_none_means_correct_everything(tmp_path, monkeypatch):
    import brats.preprocess as preprocess

    rng = np.random.default_rng(6)
    folders = make_brats_folder(str(tmp_path / "in"), ["a"], rng, shape=(8, 8, 8))
    corrected = []
    monkeypatch.setattr(preprocess, "correct_bias", lambda in_file, out_file, **kw: corrected.append(in_file) or
                        sitk.WriteImage(sitk.ReadImage(in_file), out_file))
    (tmp_path / "out").mkdir()
    convert_brats_folder(folders[0], str(tmp_path / "out"))
    assert len(corrected) == 4


def test_intensity_helpers(tmp_path):
    data = np.zeros((10, 10, 10), dtype=np.float32)
    data[2:8, 2:8, 2:8] = np.linspace(1, 1000, 216).reshape(6, 6, 6)
    in_file = write_nifti(str(tmp_path / "a.nii.gz"), data)
    windowed = _data(window_intensities(in_file, str(tmp_path / "w.nii.gz"), 1, 99))
    assert windowed.min() >= data.min() and windowed.max() <= data.max() + 1e-3
    rescaled = _data(rescale(in_file, str(tmp_path / "r.nii.gz"), 0, 20000))
    assert rescaled.min() == 0 and np.isclose(rescaled.max(), 20000)
    background = np.zeros((10, 10, 10), dtype=np.uint8)
    background[:5] = 1
    background_file = write_nifti(str(tmp_path / "bg.nii.gz"), background)
    masked = _data(background_to_zero(in_file, background_file, str(tmp_path / "m.nii.gz")))
    np.testing.assert_array_equal(masked[:5], 0)
    np.testing.assert_array_equal(masked[5:], data[5:])
    assert append_basename("/x/a.nii.gz", "_n4") == "/x/a_n4.nii.gz"


def test_background_mask_and_origin(tmp_path):
    rng = np.random.default_rng(8)
    folders = make_brats_folder(str(tmp_path / "in"), ["Brats17_1"], rng, convention="2017", shape=(8, 8, 8))
    folder = folders[0]
    assert get_image(folder, "t1Gd").endswith("Brats17_1_t1Gd.nii.gz")
    with pytest.raises(DataError, match="seg"):
        get_image(folder, "seg")
    mask = _data(get_background_mask(folder, str(tmp_path / "bg.nii.gz")))
    flair = _data(os.path.join(folder, "Brats17_1_flair.nii.gz"))
    assert mask.dtype == np.uint8
    assert np.all(mask[flair != 0] == 0) and mask.sum() > 0

    moved = write_nifti(str(tmp_path / "moved.nii.gz"), flair, np.diag([-1.0, -1.0, 1.0, 1.0]))
    check_origin(moved, os.path.join(folder, "Brats17_1_flair.nii.gz"))
    reference_origin = nib.load(os.path.join(folder, "Brats17_1_flair.nii.gz")).affine[:3, 3]
    np.testing.assert_allclose(nib.load(moved).affine[:3, 3], reference_origin)


def test_cli(tmp_path, capsys):
    rng = np.random.default_rng(9)
    make_brats_folder(str(tmp_path / "brats"), ["a"], rng, shape=(8, 8, 8))
    assert main([str(tmp_path / "brats"), str(tmp_path / "out"), "--no-bias-correction"]) == 0
    assert sorted(os.listdir(tmp_path / "out" / "a")) == OUTPUT_FILES

    capsys.readouterr()
    assert main([str(tmp_path / "missing"), str(tmp_path / "out2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: Data folder not found")
    assert not (tmp_path / "out2").exists()


def test_cli_as_a_script(tmp_path):
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # the script must find the package by itself from a checkout
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "brats" / "preprocess.py"), str(tmp_path / "nope"), str(tmp_path / "out")],
        capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=120,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "error: Data folder not found" in lines[0]
