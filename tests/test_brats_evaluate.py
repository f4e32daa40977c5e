import csv
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _case(folder, subject, truth, prediction, spacing=1.0):
    case = folder / subject
    case.mkdir(parents=True)
    affine = np.diag([spacing, spacing, spacing, 1.0])
    nib.save(nib.Nifti1Image(truth.astype(np.uint8), affine), case / "truth.nii.gz")
    nib.save(nib.Nifti1Image(prediction.astype(np.uint8), affine), case / f"{subject}_prediction.nii.gz")


def test_evaluate_writes_csv_and_two_pngs(tmp_path):
    truth = np.zeros((16, 16, 16), np.uint8)
    truth[4:12, 4:12, 4:12] = 2
    truth[6:10, 6:10, 6:10] = 4
    truth[7:9, 7:9, 7:9] = 1
    _case(tmp_path / "pred", "perfect", truth, truth)
    shifted = np.roll(truth, 1, axis=0)
    _case(tmp_path / "pred", "shifted", truth, shifted, spacing=2.0)
    log = tmp_path / "training.log"
    log.write_text("epoch,loss,val_loss\n0,-0.1,-0.2\n1,-0.3,-0.4\n")
    done = subprocess.run([sys.executable, str(ROOT / "brats" / "evaluate.py"), str(tmp_path / "pred"),
                           "--training-log", str(log)], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {r["subject"]: r for r in csv.DictReader(open(tmp_path / "pred" / "brats_scores.csv"))}
    assert list(rows) == ["perfect", "shifted", "mean"]
    assert float(rows["perfect"]["WT_dice"]) == 1.0 and float(rows["perfect"]["ET_hd95"]) == 0.0
    # A one-voxel shift of an 8-voxel cube: Dice 2 * 7 / 16; HD95 one voxel of 2 mm.
    assert float(rows["shifted"]["WT_dice"]) == pytest.approx(14 / 16)
    assert float(rows["shifted"]["WT_hd95"]) == pytest.approx(2.0)
    assert float(rows["mean"]["WT_dice"]) == pytest.approx((1 + 14 / 16) / 2)
    for name in ("brats_scores_boxplot.png", "loss_graph.png"):
        assert (tmp_path / "pred" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "2 subjects: WT Dice" in done.stdout


def test_evaluate_on_an_empty_folder_is_one_error_line(tmp_path):
    (tmp_path / "empty").mkdir()
    done = subprocess.run([sys.executable, str(ROOT / "brats" / "evaluate.py"), str(tmp_path / "empty")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path / 'empty'}: no subject folder holds truth.nii.gz and one *prediction.nii.gz label map")
    assert list((tmp_path / "empty").iterdir()) == []
