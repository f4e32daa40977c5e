"""examples/thin_shell: where tuning.py keeps its runs, and the page's tables of them."""

import json
from pathlib import Path

import numpy as np
import pytest
from example_scripts import load_example

FOLDER = Path(__file__).resolve().parents[1] / "examples" / "thin_shell"


@pytest.fixture
def experiments(monkeypatch):
    return load_example("thin_shell_experiments", FOLDER / "experiments.py", monkeypatch)


@pytest.fixture
def page(monkeypatch):
    return load_example("thin_shell_page", FOLDER / "page.py", monkeypatch)


def test_a_command_with_other_variants_keeps_the_runs_of_the_same_budget(experiments):
    key = experiments.tuning_key(12.0, ["rotations of the cube", "defaults"])
    assert key == "12 min: defaults, rotations of the cube"
    assert experiments.tuning_key(12, ["defaults", "rotations of the cube"]) == key  # the order given does not matter
    assert experiments.tuning_key(12, ["defaults", "batches of 8"]) != key
    assert experiments.tuning_key(5, ["defaults", "rotations of the cube"]) != key
    # every variant heads its table
    assert set(experiments.TUNING_TOPICS) == set(experiments.TUNING_VARIANTS) - {"defaults"}


def budget(minutes: float, membranes: dict[str, list[float]], cells: dict[str, list[float]]) -> dict:
    """tuning.py's record of one command: each variant's runs of seeds 42 and 1."""
    variants = {name: {seed: {"iou": [0.99, cell, membrane], "steps": 100 * (index + 1), "plateaued": index == 0}
                       for index, (seed, membrane, cell) in enumerate(zip(("42", "1"), membranes[name], cells[name]))}
                for name in membranes}
    return {"command": f"python examples/thin_shell/tuning.py --minutes {minutes:g}", "machine": "test machine",
            "minutes": minutes, "variants": variants,
            "defaults": {"initial_learning_rate": 0.002, "patch_shape": [32, 32, 32], "batch_size": 4}}


def test_each_command_gets_a_table_headed_by_what_its_variants_change(experiments, page, tmp_path, monkeypatch):
    tuned = budget(5, {"defaults": [0.40, 0.50], "learning rate 0.001": [0.42, 0.52], "batches of 8": [0.30, 0.56]},
                   {"defaults": [0.80, 0.80], "learning rate 0.001": [0.82, 0.80], "batches of 8": [0.70, 0.80]})
    rotated = budget(12, {"defaults": [0.40, 0.50], "rotations of the cube": [0.38, 0.54]},
                     {"defaults": [0.80, 0.80], "rotations of the cube": [0.82, 0.82]})
    key = experiments.tuning_key
    results = {"commands": [], "runs": {"thin": {key(5, list(tuned["variants"])): tuned,
                                                 key(12, list(rotated["variants"])): rotated}}}
    (tmp_path / "tuning.json").write_text(json.dumps(results))
    monkeypatch.setattr(page, "TUNING_RESULTS", tmp_path / "tuning.json")

    lines = page.tuning_lines()
    first, second = (index for index, line in enumerate(lines) if line.startswith("**"))
    assert lines[first].startswith("**The learning rate and the batch.** `python examples/thin_shell/tuning.py "
                                   "--minutes 5` (test machine, ")
    assert "on `thin` for 5 minutes, seeds 42, 1, in one session" in lines[first]
    assert lines[first + 4:first + 7] == [
        "| defaults | 0.450 / 0.800 | 0.400, 0.500 | 100, 200 | 1 |",
        "| learning rate 0.001 | 0.470 / 0.810 | 0.420, 0.520 | 100, 200 | 1 |",
        "| batches of 8 | 0.430 / 0.750 | 0.300, 0.560 | 100, 200 | 1 |"]
    assert lines[first + 8:first + 10] == [
        "- Against the defaults, the variants moved the membrane by -0.020 to +0.020 and the cells by -0.050 to "
        "+0.010.",
        "- Higher on every seed: learning rate 0.001."]
    assert lines[second].startswith("**Rotations of the training windows.** ")
    assert "on `thin` for 12 minutes" in lines[second]
    assert lines[second + 4:second + 6] == ["| defaults | 0.450 / 0.800 | 0.400, 0.500 | 100, 200 | 1 |",
                                            "| rotations of the cube | 0.460 / 0.820 | 0.380, 0.540 | 100, 200 | 1 |"]
    assert lines[second + 7:second + 9] == [
        # one variant: its change on each seed, 0.38 - 0.40 and 0.54 - 0.50
        "- Against the defaults, rotations of the cube moved the membrane by +0.010 (each seed -0.020, +0.040) and "
        "the cells by +0.020 (each seed +0.020, +0.020).",
        "- None scored the membrane higher than the defaults on every seed: the defaults stay."]


def test_runs_of_smaller_windows_made_before_the_quarter_side_shift_are_noted(experiments, page, tmp_path,
                                                                              monkeypatch):
    old = budget(5, {"defaults": [0.40, 0.50], "24³ windows": [0.38, 0.46]},
                 {"defaults": [0.80, 0.80], "24³ windows": [0.80, 0.80]})
    new = {**budget(12, {"defaults": [0.40, 0.50], "24³ windows": [0.38, 0.46]},
                    {"defaults": [0.80, 0.80], "24³ windows": [0.80, 0.80]}),
           "window_shift": "a quarter of the window's side"}
    key = experiments.tuning_key
    results = {"commands": [], "runs": {"thin": {key(5, list(old["variants"])): old,
                                                 key(12, list(new["variants"])): new}}}
    (tmp_path / "tuning.json").write_text(json.dumps(results))
    monkeypatch.setattr(page, "TUNING_RESULTS", tmp_path / "tuning.json")
    notes = [line for line in page.tuning_lines() if "moved each training window by up to 8 voxels" in line]
    # only the earlier command's runs, which tuning.py did not mark
    assert notes == ["- The runs of 24³ windows moved each training window by up to 8 voxels around the voxel drawn, "
                     "as densify then did for every window (a 16³ window left that voxel out of up to 1 in 6); it now "
                     "moves a window by up to a quarter of its side, so they would not repeat step for step."]


def test_a_move_that_rounds_to_zero_has_no_minus_sign(page):
    # variant x seed x class: IoU less the defaults' of the same seed
    changes = {"depth 4": np.array([[0.0, -0.010, 0.0060], [0.0, -0.006, -0.0066]]),
               "depth 2": np.array([[0.0, -0.020, -0.0510], [0.0, -0.020, -0.0470]])}
    assert page.moved_lines(changes) == ("- Against the defaults, the variants moved the membrane by -0.049 to +0.000 "
                                         "and the cells by -0.020 to -0.008.")
    assert page.moved_lines({"depth 4": changes["depth 4"]}) == (
        "- Against the defaults, depth 4 moved the membrane by +0.000 (each seed +0.006, -0.007) and the cells by "
        "-0.008 (each seed -0.010, -0.006).")
