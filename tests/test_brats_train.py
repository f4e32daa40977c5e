import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

from brats.train import fetch_brats_2020_files

ROOT = Path(__file__).resolve().parent.parent


def _subject(folder, subject, names=("t1", "t1ce", "flair", "t2", "seg")):
    folder.mkdir(parents=True)
    for name in names:
        nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), np.eye(4)), folder / f"{subject}_{name}.nii.gz")


def test_fetch_brats_2020_files_keeps_the_group(tmp_path):
    _subject(tmp_path / "MICCAI_BraTS2020_TrainingData" / "BraTS20_Training_001", "BraTS20_Training_001")
    _subject(tmp_path / "MICCAI_BraTS2020_TrainingData" / "BraTS20_Training_002", "BraTS20_Training_002")
    _subject(tmp_path / "MICCAI_BraTS2020_ValidationData" / "BraTS20_Validation_001", "BraTS20_Validation_001",
             names=("t1", "t1ce", "flair", "t2"))
    files, ids = fetch_brats_2020_files(("t1", "t2"), group="Training", return_subject_ids=True,
                                        include_truth=False, data_dir=tmp_path)
    assert ids == ["BraTS20_Training_001", "BraTS20_Training_002"]
    assert [Path(f).name for f in files[0]] == ["BraTS20_Training_001_t1.nii.gz", "BraTS20_Training_001_t2.nii.gz"]
    validation = fetch_brats_2020_files(("t1",), group="Validation", include_truth=False, data_dir=tmp_path)
    assert [Path(f[0]).name for f in validation] == ["BraTS20_Validation_001_t1.nii.gz"]


def test_brats_train_on_a_missing_folder_is_one_error_line(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "brats" / "train.py"), str(tmp_path / "nothing"),
         "--set", f"output_dir={tmp_path / 'run'}"],
        capture_output=True, text=True, timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: data.data_dir: no folder at") and "nothing" in last
    assert "Traceback" not in done.stderr
