import nibabel as nib
import numpy as np
import pytest

from unet3d_keras.demo import demo_affine, make_demo_subject, write_demo_dataset
from unet3d_keras.modalities import BRATS_MODALITIES as MODALITIES


def test_subjects_are_deterministic_and_carry_three_tumour_labels():
    images, seg = make_demo_subject(np.random.default_rng([3, 1]), (32, 30, 28))
    again, seg_again = make_demo_subject(np.random.default_rng([3, 1]), (32, 30, 28))
    assert set(images) == set(MODALITIES)
    assert all(np.array_equal(images[m], again[m]) for m in MODALITIES)
    assert np.array_equal(seg, seg_again)
    assert set(np.unique(seg)) == {0, 1, 2, 4}
    assert images["t1"].shape == (32, 30, 28) and images["t1"].dtype == np.int16
    other, _ = make_demo_subject(np.random.default_rng([3, 2]), (32, 30, 28))
    assert not np.array_equal(images["t1"], other["t1"])


def test_tissue_contrast_differs_across_modalities():
    images, seg = make_demo_subject(np.random.default_rng(0), (48, 48, 48))
    # Enhancing rim is brightest in t1ce, oedema in flair, necrotic core dark in t1 and bright in t2.
    mean = {m: {label: images[m][seg == label].mean() for label in (1, 2, 4)} for m in MODALITIES}
    assert mean["t1ce"][4] > mean["t1"][4] * 1.1  # thin rim: partial-volume blur lowers the contrast
    assert mean["flair"][2] > mean["flair"][1]
    assert mean["t2"][1] > mean["t1"][1] * 2


def test_dataset_layout_and_reuse(tmp_path):
    out = tmp_path / "demo"
    folders = write_demo_dataset(out, n_subjects=2, shape=(16, 16, 16), seed=5, show_progress=False)
    assert [f.name for f in folders] == ["Demo_001", "Demo_002"]
    names = sorted(p.name for p in folders[0].iterdir())
    assert names == sorted(f"Demo_001_{m}.nii.gz" for m in (*MODALITIES, "seg"))
    image = nib.load(folders[1] / "Demo_002_seg.nii.gz")
    np.testing.assert_allclose(image.affine, demo_affine((16, 16, 16)))
    mtime = (folders[0] / "Demo_001_t1.nii.gz").stat().st_mtime_ns
    assert write_demo_dataset(out, n_subjects=2, shape=(16, 16, 16), seed=5, show_progress=False) == folders
    assert (folders[0] / "Demo_001_t1.nii.gz").stat().st_mtime_ns == mtime  # reused, not rewritten
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]  # no temporary folder left


def test_existing_foreign_folder_is_not_overwritten(tmp_path):
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="exists but is not a demo dataset"):
        write_demo_dataset(tmp_path / "demo", n_subjects=2, shape=(8, 8, 8), show_progress=False)
    assert (tmp_path / "demo" / "mine.txt").read_text() == "keep"
