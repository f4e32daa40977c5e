"""examples/thin_shell/page.py: the page's summary of the class weights, computed from weights.py's paired runs."""

import json
from pathlib import Path

import pytest
from example_scripts import load_example

FOLDER = Path(__file__).resolve().parents[1] / "examples" / "thin_shell"


@pytest.fixture
def page(monkeypatch):
    return load_example("thin_shell_page", FOLDER / "page.py", monkeypatch)


def paired(membranes: list[tuple[float, float]], cells: list[tuple[float, float]], plateaued: list[bool]) -> dict:
    """weights.py's runs of one volume: variant -> seed -> run, for seeds 42, 1, 2, ... in that order."""
    seeds = ["42", "1", "2", "3"][:len(membranes)]
    return {variant: {seed: {"gaussian": [0.99, cell[index], membrane[index]], "plateaued": plateau}
                      for seed, membrane, cell, plateau in zip(seeds, membranes, cells, plateaued)}
            for index, variant in enumerate(("none", "sqrt"))}


def test_the_summary_gives_each_volumes_paired_gains_and_what_the_weights_cost(page, tmp_path, monkeypatch):
    edges = paired([(0.50, 0.49), (0.50, 0.48), (0.50, 0.47)], [(0.80, 0.79), (0.80, 0.79), (0.80, 0.76)],
                   [True, False, True])
    thin = paired([(0.40, 0.42), (0.40, 0.39), (0.40, 0.45)], [(0.80, 0.81)] * 3, [True, True, True])
    thin["sqrt to the budget"] = {"42": {"gaussian": [0.99, 0.8, 0.41]}, "2": {"gaussian": [0.99, 0.8, 0.48]}}
    clear = paired([(0.6, 0.7)], [(0.8, 0.8)], [False])  # one seed: no spread to give
    record = {"commands": [], "12": {"edges": edges, "thin": thin, "clear": clear}}
    (tmp_path / "weights.json").write_text(json.dumps(record))
    monkeypatch.setattr(page, "WEIGHT_RESULTS", tmp_path / "weights.json")

    summary = page.weight_summaries()
    bullets = summary["weights_at_12_minutes"].split("\n")
    assert bullets == [
        # thick has not run; the one-seed clear counts as not measured either
        "  - two-voxel membranes: not measured yet (`python examples/thin_shell/weights.py --volume thick`);",
        # gains +0.02, -0.01, +0.05: standard deviation 0.03, standard error 0.03 / sqrt(3)
        "  - one-voxel membranes (3 seeds): membrane +0.020 (1.2 standard errors; each seed +0.020, -0.010, +0.050), "
        "cells +0.010; the plateau of the held-back score ended 3 of the 3 runs with the weights and 3 of the "
        "defaults before the budget; trained to the end of the budget instead, the weights scored the membrane "
        "+0.010 against those runs (2 seeds);",
        "  - clear membranes: not measured yet (`python examples/thin_shell/weights.py --volume clear`);",
        # gains -0.01, -0.02, -0.03: standard error 0.01 / sqrt(3)
        "  - two-voxel membranes with no brightness of their own (3 seeds): membrane -0.020 (lower on every seed, "
        "3.5 standard errors; each seed -0.010, -0.020, -0.030), cells -0.020; the plateau of the held-back score "
        "ended 2 of the 3 runs with the weights and 2 of the defaults before the budget.",
    ]
    assert summary["weights_why"] == (
        " and up to 0.020 at 12 minutes (mean of 3 seeds), and on the two-voxel membranes with no brightness of "
        "their own they cost the membrane 0.020 too, lower on every one of 3 seeds")
    usage = page.USAGE.read_text(encoding="utf-8").format(**summary, **page.lesion_fields(), ensemble_note="",
                                                          colony_weights="")
    assert "they cost the cells up to 0.025 with each window predicted once (clear membranes, 2 seeds) and up to " \
           "0.020 at 12 minutes" in usage


def test_without_paired_runs_the_summary_names_the_commands_to_run(page, tmp_path, monkeypatch):
    monkeypatch.setattr(page, "WEIGHT_RESULTS", tmp_path / "absent.json")
    summary = page.weight_summaries()
    assert summary["weights_why"] == ""
    assert summary["weights_at_12_minutes"].split("\n")[-1] == (
        "  - two-voxel membranes with no brightness of their own: not measured yet "
        "(`python examples/thin_shell/weights.py --volume edges`).")
