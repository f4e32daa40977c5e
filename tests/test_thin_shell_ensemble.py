"""examples/thin_shell/ensemble.py: two models averaged within densify's budget, and the page's lines on it."""

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from example_scripts import load_example

FOLDER = Path(__file__).resolve().parents[1] / "examples" / "thin_shell"


@pytest.fixture
def ensemble(monkeypatch):
    return load_example("thin_shell_ensemble", FOLDER / "ensemble.py", monkeypatch)


@pytest.fixture
def page(monkeypatch):
    return load_example("thin_shell_page", FOLDER / "page.py", monkeypatch)


def test_the_average_of_the_probabilities_decides_and_names_the_class_values(ensemble):
    first = np.array([[0.6, 0.2], [0.3, 0.5], [0.1, 0.3]])[:, :, None, None]  # (classes, 2, 1, 1)
    second = np.array([[0.2, 0.1], [0.3, 0.2], [0.5, 0.7]])[:, :, None, None]
    # voxel 0: means 0.4, 0.3, 0.3 (each model alone would say 0 and 2); voxel 1: 0.15, 0.35, 0.5
    np.testing.assert_array_equal(ensemble.averaged_classes([0, 3, 7], [first, second]).ravel(), [0, 7])
    np.testing.assert_array_equal(ensemble.averaged_classes([0, 3, 7], [first]).ravel(), [0, 3])


class Clock:
    """time.monotonic for one_run: each fit_sparse spends ``spent`` of the seconds to its deadline."""

    def __init__(self):
        self.now = 0.0

    def monotonic(self):
        return self.now


@pytest.mark.parametrize("variant, spent, first_deadline, second", [
    ("second model", 0.5, 720, True),  # the plateau ends the first model at 360 s: a second trains to 720 s
    ("second model", 0.95, 720, False),  # 36 s left: no second model, the defaults' own scores
    ("two halves", 1.0, 360, True)])
def test_one_run_gives_the_second_model_the_time_left(ensemble, monkeypatch, variant, spent, first_deadline, second):
    import unet3d_keras.densify as densify

    clock, fits = Clock(), []
    monkeypatch.setattr(ensemble, "time", clock)
    dense = sys.modules["volume"].sparse_volume("thin")[1]

    def fit_sparse(image, sparse, ignore, deadline, seed, show_progress):
        fits.append((deadline, seed))
        clock.now += spent * (deadline - clock.now)
        return SimpleNamespace(classes=[0, 1, 2], steps=100 * len(fits), stop_reason=f"model {len(fits)}")

    def predict_classes(fitted, image):
        # the first model right everywhere, the second calls every voxel background; their mean follows the first
        probabilities = np.stack([dense == c for c in range(3)]).astype(np.float32)
        if fitted.steps == 200:
            probabilities = np.stack([np.full(dense.shape, 0.4), np.zeros(dense.shape), np.zeros(dense.shape)])
        return np.argmax(probabilities, axis=0), probabilities

    monkeypatch.setattr(densify, "fit_sparse", fit_sparse)
    monkeypatch.setattr(densify, "predict_classes", predict_classes)
    record = ensemble.one_run("thin", 5, 12, variant)
    assert fits[0] == (first_deadline, 5)
    assert record["first_iou"] == [1.0, 1.0, 1.0] and record["first_steps"] == 100
    assert record["first_stop_reason"] == "model 1"
    if second:
        assert fits[1] == (720, 1005)
        assert record["second_steps"] == 200 and record["second_stop_reason"] == "model 2" and record["steps"] == 300
        assert record["second_iou"][1:] == [0.0, 0.0] and record["iou"] == [1.0, 1.0, 1.0]
    else:
        assert len(fits) == 1 and record["second_steps"] == 0 and record["steps"] == 100
        assert record["iou"] == record["first_iou"]


def runs(first: float, second: float | None, averaged: float, cells: tuple[float, float] = (0.82, 0.82)) -> dict:
    """One run of ensemble.py on thin: the membrane (and cell) IoU of its first model, its second (None: no time
    left for one) and their average."""
    run = {"first_iou": [0.99, cells[0], first], "first_steps": 3000, "first_seconds": 600,
           "iou": [0.99, cells[1], averaged], "second_steps": 0}
    if second is not None:
        run.update(second_iou=[0.99, 0.8, second], second_steps=400)
    return run


def write_record(path: Path, seeds: dict[str, dict[str, dict]]) -> None:
    record = {}
    for seed, variants in seeds.items():
        for variant, one in variants.items():
            record.setdefault(variant, {})[seed] = one
    path.write_text(json.dumps({"commands": ["python examples/thin_shell/ensemble.py"], "12": {"thin": record}}))


def test_the_bullet_and_the_table_pair_each_way_with_the_defaults_of_its_seed(page, tmp_path, monkeypatch):
    path = tmp_path / "results_ensemble.json"
    monkeypatch.setattr(page, "ENSEMBLE_RESULTS", path)
    write_record(path, {
        "42": {"second model": runs(0.49, 0.43, 0.47, (0.83, 0.83)), "two halves": runs(0.44, 0.45, 0.44)},
        "1": {"second model": runs(0.48, None, 0.48)},  # no time left: nothing averaged, no change
        "7": {"two halves": runs(0.40, 0.41, 0.46)}})  # no defaults of its seed: left out
    head, second, halves, verdict = page.ensemble_lines({"thin": [0.99, 0.8, 0.39], "clear": None})
    assert head.startswith("- **Two models averaged.** Averaging the probabilities of models trained from other seeds")
    assert "(`python examples/thin_shell/ensemble.py`; each run one thread" in head
    assert "the second model's seed is the first's plus 1000" in head
    assert second == (
        "  - Averaging densify's defaults and a second model trained in the time that their plateau left: `thin`, "
        "12 minutes: seed 42 0.470 (cell 0.830) against 0.490 (0.830); its first model 0.490 after 3000 steps in "
        "600 s, its second 0.430 after 400 steps; seed 1 0.480 (cell 0.820) against 0.480 (0.820); its first model "
        "0.480 after 3000 steps in 600 s, no time left for a second (twice the old IoU: 0.780). The membrane moved "
        "by -0.020 to +0.000 and the cells by +0.000 to +0.000: a model trained for part of the budget scored the "
        "membrane below densify's defaults in 1 of 1 cases, and averaging with it lowered the membrane in 1 of the 1 "
        "runs that averaged two models.")
    assert halves.startswith("  - Averaging two models, each trained for half the budget: `thin`, 12 minutes: seed 42 "
                             "0.440 (cell 0.820) against 0.490 (0.830); its first model 0.440")
    assert "seed 7" not in halves
    # both half-budget models of seed 42 below its defaults (0.44, 0.45 against 0.49)
    assert halves.endswith("The membrane moved by -0.050 to -0.050 and the cells by -0.010 to -0.010: a model trained "
                           "for part of the budget scored the membrane below densify's defaults in 2 of 2 cases, and "
                           "averaging with it lowered the membrane in 1 of the 1 runs that averaged two models.")
    assert verdict == "  - Densify does not average models."
    assert page.ensemble_note() == (
        "\n  - A second model, trained in the time that the plateau leaves and averaged with the first, moved the "
        "membrane by -0.020 to +0.000 against the first alone (`thin`, 2 runs; under \"Two models averaged\" below).")

    for name in ("WEIGHT_RESULTS", "TUNING_RESULTS", "OFFSET_RESULTS", "WATERSHED_RESULTS", "SELF_TRAINING_RESULTS",
                 "NEXT_SLICE_RESULTS"):  # the table of what was tried, from these runs alone
        monkeypatch.setattr(page, name, tmp_path / "absent.json")
    lines = page.tried_lines({})
    assert ("| a second model in the time the plateau leaves, the two averaged | `ensemble.py` | -0.010 / +0.000 (2) "
            "| not offered |") in lines
    assert ("| two models of half the budget each, averaged | `ensemble.py` | -0.050 / -0.010 (1) | not offered |"
            in lines)


def test_the_bullet_says_when_averaging_pays(page, tmp_path, monkeypatch):
    path = tmp_path / "results_ensemble.json"
    monkeypatch.setattr(page, "ENSEMBLE_RESULTS", path)
    write_record(path, {"42": {"second model": runs(0.49, 0.47, 0.52)}})
    _, second, verdict = page.ensemble_lines({"thin": [0.99, 0.8, 0.39]})
    assert second.endswith(": it paid on every seed.")
    assert verdict == "  - second model paid on every seed; densify does not offer it yet."
    assert page.ensemble_lines({"thin": None}) == []
    write_record(path, {"42": {"second model": runs(0.49, 0.47, 0.45)},
                             "1": {"second model": runs(0.5, 0.4, 0.48)}})
    assert page.ensemble_note().endswith("moved the membrane by -0.040 to -0.020 against the first alone, lower on "
                                        "every run (`thin`, 2 runs; under \"Two models averaged\" below).")
    # no time left for a second model: nothing averaged, no cause claimed
    write_record(path, {"1": {"second model": runs(0.48, None, 0.48)}})
    assert page.ensemble_lines({"thin": [0.99, 0.8, 0.39]})[1].endswith(
        "The membrane moved by +0.000 to +0.000 and the cells by +0.000 to +0.000.")
    path.unlink()
    assert page.ensemble_note() == "" and page.ensemble_lines({"thin": [0.99, 0.8, 0.39]}) == []
