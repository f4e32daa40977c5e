"""examples/thin_shell/self_training.py: the pseudo-labels, and the page's bullet on its paired runs."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from example_scripts import load_example

FOLDER = Path(__file__).resolve().parents[1] / "examples" / "thin_shell"


@pytest.fixture
def self_training(monkeypatch):
    return load_example("thin_shell_self_training", FOLDER / "self_training.py", monkeypatch)


@pytest.fixture
def page(monkeypatch):
    return load_example("thin_shell_page", FOLDER / "page.py", monkeypatch)


def test_pseudo_labels_keep_the_annotation_and_label_only_confident_voxels(self_training):
    ignore = sys.modules["volume"].IGNORE
    sparse = np.full((2, 3, 1), ignore, np.uint8)
    sparse[0, 0, 0] = 1
    classes = np.array([[2, 0, 1], [1, 2, 0]])[..., None]
    probabilities = np.full((3, 2, 3, 1), 0.4)
    probabilities[2, 0, 0] = 0.99  # annotated: the annotation wins
    probabilities[0, 0, 1] = 0.95
    probabilities[1, 0, 2] = 0.9  # the threshold itself counts
    probabilities[2, 1, 1] = 0.89
    labels = self_training.pseudo_labels(sparse, classes, probabilities, threshold=0.9)
    assert labels.dtype == np.uint8
    np.testing.assert_array_equal(labels[..., 0], [[1, 0, 1], [ignore, ignore, ignore]])
    assert sparse[0, 1, 0] == ignore  # the input is not changed



def test_balanced_pseudo_labels_label_the_surest_share_of_each_predicted_class(self_training):
    ignore = sys.modules["volume"].IGNORE
    sparse = np.full((10, 1, 1), ignore, np.uint8)
    sparse[9] = 2
    classes = np.array([0, 0, 0, 0, 2, 2, 2, 2, 1, 1])[:, None, None]
    probabilities = np.zeros((3, 10, 1, 1))
    # background sure everywhere, the membrane far less: a threshold would label background only
    probabilities[0, :4] = [[[0.99]], [[0.98]], [[0.97]], [[0.96]]]
    probabilities[2, 4:8] = [[[0.6]], [[0.8]], [[0.5]], [[0.7]]]
    probabilities[1, 8:] = [[[0.9]], [[0.95]]]
    np.testing.assert_array_equal(self_training.pseudo_labels(sparse, classes, probabilities).ravel(),
                                  [0, 0, 0, 0, ignore, ignore, ignore, ignore, 1, 2])
    balanced = self_training.pseudo_labels(sparse, classes, probabilities, balanced_share=0.5)
    # the surest half of each predicted class; the annotated voxel keeps its label
    np.testing.assert_array_equal(balanced.ravel(), [0, 0, ignore, ignore, ignore, 2, ignore, 2, 1, 2])
    # ties (most background voxels reach 1.0): still the share, drawn at random among them, the same for one seed
    probabilities[0, :4] = 1.0
    tied = [self_training.pseudo_labels(sparse, classes, probabilities, balanced_share=0.5,
                                        rng=np.random.default_rng(seed)).ravel() for seed in (3, 3, 4)]
    assert [np.sum(labels[:4] == 0) for labels in tied] == [2, 2, 2]
    np.testing.assert_array_equal(tied[0], tied[1])
    np.testing.assert_array_equal(tied[0][4:], balanced.ravel()[4:])
    draws = {tuple(self_training.pseudo_labels(sparse, classes, probabilities, balanced_share=0.5,
                                               rng=np.random.default_rng(seed)).ravel()[:4]) for seed in range(20)}
    assert len(draws) > 1


def pair(membranes: tuple[float, float], cells: tuple[float, float], recall: float = 0.3,
         unlabelled: float = 0.4, way: str = "self-training", first: float = 0.44) -> dict:
    """One seed's runs: densify's defaults, then ``way``."""
    base = {"iou": [0.99, cells[0], membranes[0]]}
    new = {"iou": [0.99, cells[1], membranes[1]], "first_iou": [0.99, 0.81, first], "labelled_share": 0.88,
           "membrane_precision": 0.95, "membrane_recall": recall, "unlabelled_membrane_share": unlabelled,
           "membrane_share": 0.08}
    return {"defaults": base, way: new}


def record_of(seeds: dict[str, dict]) -> dict:
    """self_training.py's record of thin at 12 minutes from each seed's runs (a seed may lack one)."""
    runs = {}
    for seed, variants in seeds.items():
        for variant, run in variants.items():
            runs.setdefault(variant, {})[seed] = run
    return {"commands": ["python examples/thin_shell/self_training.py"], "12": {"thin": runs}}


def test_the_variants_are_the_ways_that_the_page_describes(self_training):
    assert list(self_training.VARIANTS) == ["defaults", *sys.modules["experiments"].SELF_TRAINING_WAYS]


def test_the_bullet_gives_each_seed_and_why_self_training_fails(page, tmp_path, monkeypatch):
    path = tmp_path / "self.json"
    monkeypatch.setattr(page, "SELF_TRAINING_RESULTS", path)
    balanced = pair((0.48, 0.45), (0.82, 0.8), recall=0.6, unlabelled=0.07, way="balanced self-training",
                    first=0.455)
    path.write_text(json.dumps(record_of({"1": {**pair((0.48, 0.38), (0.82, 0.83)), **balanced},
                                          "42": pair((0.47, 0.37), (0.83, 0.82)),
                                          "7": {"defaults": pair((0.4, 0.4), (0.8, 0.8))["defaults"]}})))
    head, plain, balanced, verdict = page.self_training_lines({"thin": [0.99, 0.8, 0.39], "thick": None})
    assert head.startswith("- **Self-training.** A common way to learn from few annotations: the model trained for "
                           "the first 50% of the budget labels")
    assert "(`python examples/thin_shell/self_training.py`; each run one thread" in head
    # seed 42 first, seed 7 left out (no self-training run)
    assert plain.startswith(
        "  - Self-training, labelling each never-annotated voxel whose probability of its class is at least 0.9: "
        "`thin`, 12 minutes: seed 42 0.370 (cell 0.820) against 0.470 (0.830), the first model's own 0.440 "
        "(0.810); it labelled 88% of the never-annotated voxels, its membrane labels were 95% right and held 30% of "
        "their membrane, and of the voxels it left unlabelled 40% are membrane (8% of all); seed 1 0.380 (cell "
        "0.830) against 0.480 (0.820), the first model's own")
    assert "seed 7" not in plain
    assert plain.endswith("(twice the old IoU: 0.780). The membrane moved by -0.100 to -0.100 and the cells by -0.010 "
                          "to +0.010: the sure labels hold the membranes that the first model already finds and leave "
                          "out most of those it misses, so the new model sees less membrane than the image holds; the "
                          "new model scores the membrane at most 0.01 above the first model whose labels it learns "
                          "(-0.070 to -0.060 on the seeds).")
    # one seed; the labels held most of the membrane, and the new model scored as its first (0.45 against 0.455)
    assert balanced.startswith("  - Balanced self-training, labelling the surest 50% of the never-annotated voxels "
                               "predicted as each class: `thin`, 12 minutes: seed 1 0.450 (cell 0.800) against 0.480")
    assert balanced.endswith("The membrane moved by -0.030 to -0.030 and the cells by -0.020 to -0.020: the new model "
                             "scores the membrane as the first did, within 0.01 on every seed; it learns back those "
                             "labels, with half the budget of the defaults.")
    assert verdict == "  - Densify does not offer self-training."


def test_the_bullet_claims_no_cause_that_its_figures_do_not_show(page, tmp_path, monkeypatch):
    path = tmp_path / "self.json"
    monkeypatch.setattr(page, "SELF_TRAINING_RESULTS", path)
    # membrane 1.5 times its share among the unlabelled voxels (not twice), the new model 0.02 above its first
    path.write_text(json.dumps(record_of({"42": pair((0.47, 0.40), (0.83, 0.83), unlabelled=0.12, first=0.38)})))
    _, plain, _ = page.self_training_lines({"thin": [0.99, 0.8, 0.39]})
    assert plain.endswith("The membrane moved by -0.070 to -0.070 and the cells by +0.000 to +0.000.")


def test_the_bullet_says_when_it_pays(page, tmp_path, monkeypatch):
    path = tmp_path / "self.json"
    monkeypatch.setattr(page, "SELF_TRAINING_RESULTS", path)
    path.write_text(json.dumps(record_of({"42": pair((0.47, 0.50), (0.83, 0.825))})))
    _, plain, verdict = page.self_training_lines({"thin": [0.99, 0.8, 0.39]})
    assert plain.endswith(": it paid on every seed.")
    assert verdict == "  - self-training paid on every seed; densify does not offer it yet."
    assert page.self_training_lines({"thin": None}) == []
    monkeypatch.setattr(page, "SELF_TRAINING_RESULTS", tmp_path / "absent.json")
    assert page.self_training_lines({"thin": [0.99, 0.8, 0.39]}) == []


def test_seed_variants_run_in_child_processes_and_are_filed_by_variant_and_seed(self_training, tmp_path, capsys):
    processes = sys.modules["processes"]
    child = tmp_path / "child.py"
    child.write_text("import json, os, sys\n"
                     "_, _, volume, seed, minutes, variant = sys.argv\n"
                     "print('noise first')\n"
                     "print(json.dumps({'steps': int(seed) + len(variant), 'volume': volume, 'minutes': minutes,\n"
                     "                  'threads': os.environ['TF_NUM_INTRAOP_THREADS']}))\n")
    path = tmp_path / "results.json"
    results = {"commands": ["the command"], "5": {"thin": {"defaults": {"9": {"steps": 0}}}}}
    processes.run_seed_variants(str(child), path, results, "the command", "thin", 12, [42, 1], ["a", "bb"],
                                lambda result: f"volume {result['volume']}")
    machine = processes.machine_name()
    expected = {variant: {str(seed): {"steps": seed + len(variant), "volume": "thin", "minutes": "12", "threads": "1",
                                      "machine": machine, "command": "the command"} for seed in (42, 1)}
                for variant in ("a", "bb")}
    assert results["12"] == {"thin": expected}
    assert results["5"] == {"thin": {"defaults": {"9": {"steps": 0}}}}  # other budgets are kept
    assert json.loads(path.read_text()) == results
    printed = sorted(capsys.readouterr().out.splitlines())
    assert printed == sorted(f"thin, 12 min, seed {seed} ({variant}): {seed + len(variant)} steps; volume thin"
                             for seed in (42, 1) for variant in ("a", "bb"))
