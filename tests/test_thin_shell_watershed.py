"""examples/thin_shell/watershed.py: the faces between regions and the membrane drawn on one side of each."""

import sys
from pathlib import Path

import numpy as np
import pytest
from example_scripts import load_example

FOLDER = Path(__file__).resolve().parents[1] / "examples" / "thin_shell"


@pytest.fixture
def watershed(monkeypatch):
    return load_example("thin_shell_watershed", FOLDER / "watershed.py", monkeypatch)


def test_face_sides_are_the_voxels_of_each_region_that_touch_the_other(watershed):
    regions = np.zeros((7, 6, 5), np.int32)
    regions[1:3, 1:5, 1:4] = 1
    regions[3:6, 1:5, 1:4] = 2
    regions[3:6, 1:5, 4] = 3  # touches 2 along z, 1 only along an edge
    sides = watershed.face_sides(regions)
    assert sorted(sides) == [(1, 2), (2, 3)]
    flat = np.arange(regions.size).reshape(regions.shape)
    one, two = sides[(1, 2)]
    np.testing.assert_array_equal(np.sort(one), np.sort(flat[2, 1:5, 1:4].ravel()))
    np.testing.assert_array_equal(np.sort(two), np.sort(flat[3, 1:5, 1:4].ravel()))
    two, three = sides[(2, 3)]
    np.testing.assert_array_equal(np.sort(two), np.sort(flat[3:6, 1:5, 3].ravel()))
    np.testing.assert_array_equal(np.sort(three), np.sort(flat[3:6, 1:5, 4].ravel()))


def test_redraw_from_the_true_cells_gives_back_the_volume(watershed):
    volume = sys.modules["volume"]
    image, dense = volume.make_volume(**volume.VOLUMES["thin"])
    cells = volume.make_tissue(np.random.default_rng(0), 1)[0]
    unannotated = np.full(dense.shape, volume.IGNORE, np.uint8)
    # Fortran order, as NIfTI arrays are read: ravel copies them
    foreground = np.asfortranarray(cells > 0)
    # no preference: each face on the side of the lower-numbered cell, as make_volume draws it
    np.testing.assert_array_equal(watershed.redraw(cells, foreground, np.zeros(dense.shape), unannotated), dense)
    # the side with the higher mean boundary wins...
    flipped = watershed.redraw(cells, foreground, (cells.astype(float) / cells.max()), unannotated)
    assert np.array_equal(flipped == 0, dense == 0) and not np.array_equal(flipped, dense)
    upper = watershed.face_sides(cells)
    for lower_side, upper_side in upper.values():
        assert np.all(flipped.ravel()[upper_side] == 2)
    # ...unless the annotation marks the other: the two slices per axis set the faces they cross back
    sparse = volume.sparse_labels(dense)
    annotated = watershed.redraw(cells, foreground, (cells.astype(float) / cells.max()), sparse)
    marked = sparse.ravel()

    def clean(side, value):  # annotated somewhere, and everywhere annotated with value
        return np.any(marked[side] != volume.IGNORE) and np.all(marked[side][marked[side] != volume.IGNORE] == value)

    crossed = [pair for pair, (a, b) in upper.items() if clean(a, 2) and clean(b, 1)]
    assert len(crossed) >= 30  # of the 183 faces
    for pair in crossed:
        lower_side, upper_side = upper[pair]
        assert np.all(annotated.ravel()[lower_side] == 2)
