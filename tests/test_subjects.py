"""unet3d_keras.subjects: BraTS (2017-2021) and generic layouts, and their errors."""

import os

import numpy as np
import pytest

from unet3d_keras.errors import DataError
from unet3d_keras.subjects import find_brats_subjects, find_generic_subjects, find_subjects

try:
    from data_helpers import MODALITIES, make_brats_folder, make_generic_folder
except ImportError:  # tests imported as a package
    from tests.data_helpers import MODALITIES, make_brats_folder, make_generic_folder


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def test_brats_2020_nested_folders_sorted(tmp_path, rng):
    root = tmp_path / "brats"
    ids = ["BraTS20_Training_002", "BraTS20_Training_001"]
    make_brats_folder(str(root), ids, rng, group="MICCAI_BraTS2020_TrainingData", shape=(4, 4, 4))
    (root / "MICCAI_BraTS2020_TrainingData" / "name_mapping.csv").write_text("x")
    subject_ids, files = find_brats_subjects(str(root))
    assert subject_ids == sorted(ids)
    folder = root / "MICCAI_BraTS2020_TrainingData" / "BraTS20_Training_001"
    assert files[0] == tuple(
        str(folder / f"BraTS20_Training_001_{name}.nii.gz") for name in ("t1", "t1ce", "flair", "t2", "seg")
    )


def test_brats_2017_names_prefer_manually_corrected(tmp_path, rng):
    root = tmp_path / "brats17"
    make_brats_folder(str(root), ["TCGA-02-0001", "TCGA-02-0002"], rng, convention="2017",
                      group="Pre-operative_TCGA_GBM_NIfTI_and_Segmentations", shape=(4, 4, 4))
    only_auto = root / "Pre-operative_TCGA_GBM_NIfTI_and_Segmentations" / "TCGA-02-0002"
    os.remove(only_auto / "TCGA-02-0002_GlistrBoost_ManuallyCorrected.nii.gz")
    subject_ids, files = find_brats_subjects(str(root))
    assert subject_ids == ["TCGA-02-0001", "TCGA-02-0002"]
    assert files[0][1].endswith("TCGA-02-0001_t1Gd.nii.gz")
    assert files[0][4].endswith("TCGA-02-0001_GlistrBoost_ManuallyCorrected.nii.gz")
    assert files[1][4].endswith("TCGA-02-0002_GlistrBoost.nii.gz")


def test_brats_without_truth_and_other_modalities(tmp_path, rng):
    make_brats_folder(str(tmp_path), ["a", "b"], rng, shape=(4, 4, 4))
    subject_ids, files = find_brats_subjects(str(tmp_path), modalities=["flair", "t1ce"], include_truth=False)
    assert subject_ids == ["a", "b"]
    assert [os.path.basename(f) for f in files[1]] == ["b_flair.nii.gz", "b_t1ce.nii.gz"]


def test_brats_missing_modality_names_subject_and_file(tmp_path, rng):
    folders = make_brats_folder(str(tmp_path), ["Brats18_1", "Brats18_2"], rng, shape=(4, 4, 4))
    os.remove(os.path.join(folders[1], "Brats18_2_t2.nii.gz"))
    with pytest.raises(DataError, match=r"Subject Brats18_2: missing modality 't2': no file Brats18_2_t2.nii.gz"):
        find_brats_subjects(str(tmp_path))


def test_brats_missing_truth(tmp_path, rng):
    folders = make_brats_folder(str(tmp_path), ["Brats18_1"], rng, shape=(4, 4, 4))
    os.remove(os.path.join(folders[0], "Brats18_1_seg.nii.gz"))
    with pytest.raises(DataError, match="Subject Brats18_1: missing truth"):
        find_brats_subjects(str(tmp_path))
    assert find_brats_subjects(str(tmp_path), include_truth=False)[0] == ["Brats18_1"]


def test_brats_duplicate_subject_names(tmp_path, rng):
    make_brats_folder(str(tmp_path), ["x"], rng, group="HGG", shape=(4, 4, 4))
    make_brats_folder(str(tmp_path), ["x"], rng, group="LGG", shape=(4, 4, 4))
    with pytest.raises(DataError, match="Two subject folders are named 'x'"):
        find_brats_subjects(str(tmp_path))


def test_brats_no_subjects_says_what_was_looked_for(tmp_path):
    (tmp_path / "empty_subject").mkdir()
    with pytest.raises(DataError, match=r"No BraTS subjects found below .*'<subject>_<name>.nii.gz'.*'t1ce'"):
        find_brats_subjects(str(tmp_path))


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="Data folder not found: .*nope"):
        find_brats_subjects(str(tmp_path / "nope"))
    with pytest.raises(DataError, match="Data folder not found"):
        find_generic_subjects(str(tmp_path / "nope"), MODALITIES)


def test_generic_layout(tmp_path, rng):
    ids, expected = make_generic_folder(str(tmp_path), ["s10", "s02", "s01"], rng, shape=(4, 4, 4))
    (tmp_path / "not_a_subject").mkdir()
    subject_ids, files = find_generic_subjects(str(tmp_path), MODALITIES)
    assert subject_ids == ["s01", "s02", "s10"]
    assert files[0] == tuple(str(tmp_path / "s01" / f"{m}.nii.gz") for m in MODALITIES + ("truth",))
    _, t2_only = find_generic_subjects(str(tmp_path), ["t2"], include_truth=False)
    assert t2_only[2] == (str(tmp_path / "s10" / "t2.nii.gz"),)


def test_generic_pattern_and_truth_name(tmp_path):
    for subject in ("a", "b"):
        (tmp_path / subject).mkdir()
        for name in ("ct", "label"):
            (tmp_path / subject / f"{subject}-{name}.nii").write_bytes(b"")
    subject_ids, files = find_generic_subjects(
        str(tmp_path), ["ct"], truth_name="label", pattern="{subject}-{modality}.nii"
    )
    assert subject_ids == ["a", "b"]
    assert files[1] == (str(tmp_path / "b" / "b-ct.nii"), str(tmp_path / "b" / "b-label.nii"))


def test_generic_missing_file(tmp_path, rng):
    make_generic_folder(str(tmp_path), ["s1", "s2"], rng, shape=(4, 4, 4))
    os.remove(tmp_path / "s2" / "flair.nii.gz")
    with pytest.raises(DataError, match=r"Subject s2: missing file\(s\) \[.*s2/flair.nii.gz'\]"):
        find_generic_subjects(str(tmp_path), MODALITIES)


def test_generic_no_subjects(tmp_path):
    (tmp_path / "x").mkdir()
    expected = r"No subjects found in .*<subject>/<modality>.nii.gz with <modality> in \['t1'"
    with pytest.raises(DataError, match=expected):
        find_generic_subjects(str(tmp_path), MODALITIES)


def test_find_subjects_detects_layout(tmp_path, rng):
    make_generic_folder(str(tmp_path / "generic"), ["g1"], rng, shape=(4, 4, 4))
    make_brats_folder(str(tmp_path / "brats"), ["b1"], rng, shape=(4, 4, 4))
    assert find_subjects(str(tmp_path / "generic"))[0] == ["g1"]
    assert find_subjects(str(tmp_path / "brats"))[0] == ["b1"]
    assert find_subjects(str(tmp_path / "brats"), layout="brats")[1][0][-1].endswith("b1_seg.nii.gz")
    with pytest.raises(ValueError, match="layout"):
        find_subjects(str(tmp_path), layout="bids")
