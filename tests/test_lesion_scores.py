"""Lesion-wise BraTS scores against the official package's values, and known answers."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from unet3d_keras.label_conventions import CONVENTIONS
from unet3d_keras.lesion_scores import lesion_report, lesion_scores

try:
    from fixtures.lesion_cases import N_CASES, make_case
except ImportError:  # run from the repository root
    from tests.fixtures.lesion_cases import N_CASES, make_case

OFFICIAL = json.loads((Path(__file__).parent / "fixtures" / "lesion_scores_official.json").read_text())
GLIOMA = CONVENTIONS["brats-gli"].regions


def _same(ours: float, theirs: float, tolerance: float) -> bool:
    if math.isnan(theirs) or math.isinf(theirs):
        return math.isnan(ours) if math.isnan(theirs) else ours == theirs
    return abs(ours - theirs) <= tolerance


def test_fixture_covers_the_cases_asked_for():
    assert len(OFFICIAL["cases"]) == N_CASES >= 20
    descriptions = " ".join(case["description"] for case in OFFICIAL["cases"])
    for words in ("several lesions", "touching", "tiny", "empty truth", "empty prediction", "anisotropic"):
        assert words in descriptions
    assert {case["description"] for case in OFFICIAL["cases"][:13]} == {make_case(i)[3] for i in range(13)}


@pytest.mark.parametrize("index", range(N_CASES))
def test_lesion_scores_equal_the_official_package(index):
    truth, prediction, spacing, _ = make_case(index)
    case = OFFICIAL["cases"][index]
    assert case["spacing"] == list(spacing)
    report = lesion_report(truth, prediction, GLIOMA, spacing)
    # The official package on NIfTI files: spacing paired with the reversed axes (see make_lesion_scores.py).
    files = lesion_report(truth, prediction, GLIOMA, spacing[::-1])
    for region, official in case["regions"].items():
        ours = lesion_scores(np.isin(truth, GLIOMA[region]), np.isin(prediction, GLIOMA[region]), spacing)
        assert _same(ours["lesion_dice"], official["lesion_dice"], 1e-6), (region, ours, official)
        assert _same(ours["lesion_hd95"], official["lesion_hd95"], 1e-3), (region, ours, official)
        assert (ours["tp"], ours["fp"], ours["fn"]) == (official["tp"], official["fp"], official["fn"])
        assert _same(report[f"{region}_lesion_dice"], official["lesion_dice"], 1e-6)
        assert _same(files[f"{region}_lesion_hd95"], official["lesion_hd95_files"], 1e-3)


def test_known_answers_of_matching_and_edge_cases():
    truth = np.zeros((12, 12, 12), bool)
    truth[1:3, 1:3, 1:3] = True   # found exactly
    truth[8:10, 8:10, 8:10] = True  # missed
    prediction = np.zeros_like(truth)
    prediction[1:3, 1:3, 1:3] = True
    prediction[5, 10, 1] = True  # a false positive
    scores = lesion_scores(truth, prediction)
    # Only the matched pair counts (Panoptica's segmentation quality): Dice 1, HD95 0.
    assert scores == {"lesion_dice": 1.0, "lesion_hd95": 0.0, "tp": 1.0, "fp": 1.0, "fn": 1.0}
    empty = np.zeros_like(truth)
    assert lesion_scores(truth, empty)["lesion_dice"] == 0.0 and lesion_scores(truth, empty)["lesion_hd95"] == math.inf
    assert lesion_scores(empty, prediction)["lesion_hd95"] == math.inf
    both_empty = lesion_scores(empty, empty)
    assert math.isnan(both_empty["lesion_dice"]) and math.isnan(both_empty["lesion_hd95"])
    with pytest.raises(ValueError, match="differ"):
        lesion_scores(truth, prediction[:-1])
