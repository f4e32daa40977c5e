"""examples/thin_shell/lesion.py: the lesion volume, and how a densify run is scored and tabled."""

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from example_scripts import load_example

FOLDER = Path(__file__).resolve().parents[1] / "examples" / "thin_shell"


@pytest.fixture
def lesion(monkeypatch):
    return load_example("thin_shell_lesion", FOLDER / "lesion.py", monkeypatch)


def test_the_lesions_are_three_balls_a_little_brighter_than_the_vessels(lesion):
    image, dense = lesion.make_lesion_volume()
    assert image.shape == dense.shape == lesion.SHAPE and image.dtype == np.float32
    grid = np.indices(lesion.SHAPE)
    balls = np.zeros(lesion.SHAPE, bool)
    for at, radius in lesion.LESIONS:
        balls |= ((grid - np.array(at)[:, None, None, None]) ** 2).sum(0) < radius ** 2
    np.testing.assert_array_equal(dense, balls)
    assert dense.sum() == 2529
    np.testing.assert_array_equal(lesion.make_lesion_volume()[0], image)  # the same volume every time
    # the tissue around the lesions: dimmer than them on average, yet some of it (the vessels) as bright
    tissue = image[(dense == 0) & (image > 0.45)]
    assert image[dense == 1].mean() > tissue.mean() and np.sum(tissue > np.median(image[dense == 1])) > 100


def test_a_run_is_scored_on_the_never_annotated_voxels_and_tabled(lesion, tmp_path, monkeypatch, capsys):
    dense = np.zeros((4, 4, 4), np.uint8)
    dense[1:3, 1:3, 1:3] = 1  # 8 lesion voxels
    sparse = np.full(dense.shape, 255, np.uint8)
    sparse[0] = dense[0]  # one annotated slice, no lesion in it

    def densify(arguments, what, threads=1):
        output = Path(arguments[arguments.index("--output") + 1])
        output.parent.mkdir(parents=True)
        predicted = dense.copy()
        predicted[1, 1, 1] = 0  # a lesion voxel missed
        predicted[3, 3, 3] = 1  # a background voxel given to the lesion
        nib.save(nib.Nifti1Image(predicted, np.eye(4)), output)
        held = {"iou": None, "dice": None, "voxels": 0} if "sqrt" in arguments else {"iou": 0.5, "dice": 0.6,
                                                                                    "voxels": 9}
        output.with_name("dense_scores.json").write_text(json.dumps({
            "steps": 12, "stop_reason": "budget", "scores": {"0": {}, "1": held},
            "low_classes": [] if "sqrt" in arguments else [1]}))

    monkeypatch.setattr(lesion, "run_process", densify)
    result = lesion.one_run(tmp_path, "none", 3, 0.5, dense, sparse)
    assert result == {"steps": 12, "stop_reason": "budget", "lesion_iou": 7 / 9,
                      "held_back": {"iou": 0.5, "dice": 0.6, "voxels": 9}, "warned": True}

    monkeypatch.setattr(lesion, "RESULTS", tmp_path / "results.json")
    monkeypatch.setattr(lesion, "make_lesion_volume", lambda: (dense.astype(np.float32), dense))
    assert lesion.main(["--seed", "3", "--class-weights", "none", "sqrt", "--minutes", "0.5"]) == 0
    out = capsys.readouterr().out
    # main annotates two slices per axis, x, y and z 1 and 3 here: both voxels changed lie on them
    assert "none, seed 3: 12 steps, lesion IoU 1.000 on the never-annotated voxels, held back 0.500, warned\n" in out
    assert "sqrt, seed 3: 12 steps, lesion IoU 1.000 on the never-annotated voxels, held back -\n" in out
    assert out.endswith("| `none` | 1.000 | 0.500 | 1 of 1 |\n| `sqrt` | 1.000 | - | 0 of 1 |\n")
    saved = json.loads((tmp_path / "results.json").read_text())
    assert set(saved["runs"]) == {"none", "sqrt"} and saved["runs"]["none"]["3"] == {**result, "lesion_iou": 1.0}
