"""examples/thin_shell/volume.py: the membranes of the synthetic tissue, and the files its command line writes."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from example_scripts import load_example

FOLDER = Path(__file__).resolve().parents[1] / "examples" / "thin_shell"


@pytest.fixture
def volume(monkeypatch):
    return load_example("thin_shell_volume", FOLDER / "volume.py", monkeypatch)


def test_membranes_are_the_cell_voxels_beside_another_cell_or_the_background(volume):
    # np.roll wraps, so cell 5 fills the y and z extent without a border: only x meets the background
    cells = np.zeros((6, 3, 3), np.int64)
    cells[1:5] = 5
    cells[3:5, 1, 1] = 4  # two voxels of cell 4 inside cell 5, the second against the background
    one = volume.membrane_mask(cells, thickness=1)
    two = volume.membrane_mask(cells, thickness=2)
    against_background = np.zeros(cells.shape, bool)
    against_background[[1, 4]] = True
    faces = np.zeros(cells.shape, bool)
    faces[3:5, 1, 1] = True  # cell 4's voxels, which touch cell 5
    faces[2, 1, 1] = faces[3:5, 0, 1] = faces[3:5, 2, 1] = faces[3:5, 1, 0] = faces[3:5, 1, 2] = True  # 5's, beside 4
    np.testing.assert_array_equal(two, against_background | faces)
    # one voxel thick: each face between cells lies on the side of the smaller number, 4
    np.testing.assert_array_equal(one, against_background | (cells == 4))
    # a carrier table that names 5 moves it to the other side
    carrier = np.zeros((6, 6), np.int64)
    carrier[4, 5] = carrier[5, 4] = 5
    moved = volume.membrane_mask(cells, thickness=1, carrier=carrier)
    np.testing.assert_array_equal(moved, against_background | (faces & (cells == 5)))


def test_the_command_writes_the_volume_its_annotation_and_the_other_volume(volume, tmp_path, capsys):
    output = tmp_path / "new" / "thin"
    assert volume.main(["--volume", "thin", "--output", str(output)]) == 0
    assert str(output) in capsys.readouterr().out

    def read(name):
        return np.asarray(nib.load(output / name).dataobj)

    image, dense = volume.make_volume(**volume.VOLUMES["thin"])
    np.testing.assert_array_equal(read("image.nii.gz"), image)
    sparse = read("sparse.nii.gz")
    np.testing.assert_array_equal(sparse, volume.sparse_labels(dense))
    annotated = sparse != volume.IGNORE
    assert 0.05 < annotated.mean() < 0.15  # two slices per axis of 64 x 64 x 48
    np.testing.assert_array_equal(sparse[annotated], dense[annotated])
    almost = read("dense.nii.gz")
    assert almost[0, 0, 0] == volume.IGNORE and dense[0, 0, 0] == 0
    np.testing.assert_array_equal(almost.ravel()[1:], dense.ravel()[1:])
    other_image, other_dense = volume.make_volume(seed=volume.OTHER_SEED, **volume.VOLUMES["thin"])
    np.testing.assert_array_equal(read("other_image.nii.gz"), np.concatenate([other_image, image], axis=2))
    labels = read("other_labels.nii.gz")
    np.testing.assert_array_equal(labels[..., :volume.SHAPE[2]], other_dense)
    assert np.all(labels[..., volume.SHAPE[2]:] == volume.IGNORE)


def test_the_command_writes_nothing_into_a_folder_that_holds_one_of_its_files(volume, tmp_path, capsys):
    (tmp_path / "sparse.nii.gz").write_text("my own annotation")
    with pytest.raises(SystemExit) as stopped:
        volume.main(["--output", str(tmp_path)])
    assert stopped.value.code == 2
    assert f"--output {tmp_path}: already holds sparse.nii.gz" in capsys.readouterr().err
    assert (tmp_path / "sparse.nii.gz").read_text() == "my own annotation"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["sparse.nii.gz"]
    with pytest.raises(SystemExit):
        volume.main(["--output", str(tmp_path / "sparse.nii.gz")])
    assert "sparse.nii.gz: not a folder" in capsys.readouterr().err


def test_densify_default_class_weighting_chooses_the_page_s_default_on_every_volume(volume, monkeypatch):
    from unet3d_keras.densify_holdout import DensifyOptions, chosen_weighting

    experiments = load_example("thin_shell_experiments", FOLDER / "experiments.py", monkeypatch)
    for name in volume.VOLUMES:
        _, _, sparse, never = volume.sparse_volume(name)
        counts = np.bincount(sparse[~never])
        assert counts.min() > 0.09 * counts.sum()  # the membranes, the rarest class, at 9% and more
        assert chosen_weighting(counts, DensifyOptions().class_weighting) == experiments.DEFAULT_WEIGHTING == "none"
