"""Pictures: what densify's history figure and its picture of the slices to check draw, and that they
are written whole."""

import math

import numpy as np
import pytest

from unet3d_keras.visualize import densify_check_figure, densify_history_figure, save_figure

HISTORY = [{"epoch": 1, "mean_foreground_iou": 0.3, "iou": [0.9, 0.5, 0.1]},
           {"epoch": 3, "mean_foreground_iou": 0.45, "iou": [0.95, 0.6, None]},
           {"epoch": 6, "mean_foreground_iou": 0.55, "iou": [0.97, 0.7, 0.4]}]
LOSSES = [1.5, 1.1, 0.9, 0.8, 0.75, 0.7]


def _lines(axis) -> dict:
    return {line.get_label(): line for line in axis.get_lines()}


def test_the_history_figure_draws_each_class_the_loss_and_the_kept_epoch():
    import matplotlib.pyplot as plt

    figure = densify_history_figure(HISTORY, LOSSES, ["0", "1", "4"], kept_epoch=3, final_iou=[None, 0.62, 0.3],
                                    title="dense.nii.gz: done")
    try:
        scores, loss = figure.axes
        lines = _lines(scores)
        for position, name in enumerate(["0", "1", "4"]):
            line = lines[f"class {name}"]
            np.testing.assert_array_equal(line.get_xdata(), [1, 3, 6])
            expected = [math.nan if row["iou"][position] is None else row["iou"][position] for row in HISTORY]
            np.testing.assert_array_equal(line.get_ydata(), expected)  # a class without voxels leaves a gap
        # The kept weights' final scores, starred at the kept epoch in their class's colour (none for class 0).
        stars = [line for line in scores.get_lines() if line.get_marker() == "*"]
        assert [(list(s.get_xdata()), list(s.get_ydata())) for s in stars] == [([3], [0.62]), ([3], [0.3])]
        assert [s.get_color() for s in stars] == [lines["class 1"].get_color(), lines["class 4"].get_color()]
        legend = [text.get_text() for text in scores.get_legend().get_texts()]
        assert legend == ["class 0", "class 1", "class 4", "kept weights, as predicted", "kept weights"]
        np.testing.assert_array_equal(_lines(loss)["loss"].get_xdata(), range(1, 7))
        np.testing.assert_array_equal(_lines(loss)["loss"].get_ydata(), LOSSES)
        for axis in (scores, loss):
            assert list(_lines(axis)["kept weights"].get_xdata()) == [3, 3]
            assert [text.get_text() for text in axis.get_legend().get_texts()][-1] == "kept weights"
        assert figure.texts[0].get_text() == "dense.nii.gz: done"
    finally:
        plt.close(figure)


def test_without_held_back_voxels_the_figure_says_so(tmp_path):
    figure = densify_history_figure([], LOSSES[:2], ["0", "1"], kept_epoch=0)
    scores, loss = figure.axes
    assert [text.get_text() for text in scores.texts] == ["no held-back voxels"]
    assert "kept weights" not in _lines(loss)
    save_figure(figure, tmp_path / "history.png")
    assert (tmp_path / "history.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["history.png"]  # no temporary left


def test_a_figure_that_cannot_be_written_leaves_no_file(tmp_path):
    figure = densify_history_figure(HISTORY, LOSSES, ["0", "1", "4"])
    with pytest.raises(FileNotFoundError):
        save_figure(figure, tmp_path / "missing" / "history.png")
    assert list(tmp_path.iterdir()) == []


def test_the_check_figure_draws_the_image_and_the_probability_of_each_class_at_its_slices():
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    shape = (9, 7, 5)
    image = rng.normal(size=shape).astype(np.float32)
    probabilities = rng.dirichlet(np.ones(3), size=shape).transpose(3, 0, 1, 2).astype(np.float32)
    annotated = np.zeros(shape, bool)
    annotated[:, 3] = True
    shown = [(2, "4", [6, None, 1]), (1, "1", [0, 5, 4])]
    figure = densify_check_figure(image, probabilities, annotated, shown, spacing=(1.0, 2.0, 3.0), title="dense")
    try:
        panels = np.array(figure.axes[:12]).reshape(4, 3)  # the colorbars come after the panels
        assert len(figure.axes) == 12 + 2
        for block, (position, name, chosen) in enumerate(shown):
            for dim, index in enumerate(chosen):
                top, bottom = panels[2 * block, dim], panels[2 * block + 1, dim]
                axis_name = "xyz"[dim]
                if index is None:
                    assert [t.get_text() for t in top.texts] == [f"{axis_name}: no slice\nto check"]
                    assert not top.get_images() and not bottom.get_images()
                    continue
                cut = tuple(index if a == dim else slice(None) for a in range(3))
                picture, tint = top.get_images()
                np.testing.assert_array_equal(picture.get_array(), image[cut].T)
                np.testing.assert_array_equal(tint.get_array().filled(0), annotated[cut].T.astype(float))
                np.testing.assert_array_equal(bottom.get_images()[0].get_array(), probabilities[position][cut].T)
                assert bottom.get_images()[0].get_clim() == (0, 1)
                assert top.get_title() == f"{axis_name} {index}: image"
                assert bottom.get_title() == f"{axis_name} {index}: P(class {name})"
                across, up = [(1.0, 2.0, 3.0)[a] for a in range(3) if a != dim]
                assert top.get_aspect() == bottom.get_aspect() == pytest.approx(up / across)
        assert figure.texts[0].get_text().startswith("dense\nimage: annotated voxels tinted green")
    finally:
        plt.close(figure)


def test_with_no_slice_to_check_the_check_figure_says_so(tmp_path):
    figure = densify_check_figure(np.zeros((4, 5, 6)), np.zeros((2, 4, 5, 6)), np.ones((4, 5, 6), bool), [],
                                  title="dense.nii: no slice to check")
    (axis,) = figure.axes
    assert [t.get_text() for t in axis.texts] == ["no slice to check"] and not axis.get_images()
    assert figure.texts[0].get_text() == "dense.nii: no slice to check"
    save_figure(figure, tmp_path / "check.png")
    assert (tmp_path / "check.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
