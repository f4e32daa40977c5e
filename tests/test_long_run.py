"""Long runs keep open files and memory flat (a short version of benchmarks/long_run_memory.py)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import long_run_memory  # noqa: E402


@pytest.mark.slow
def test_training_epochs_and_predicted_subjects_leak_no_file_and_little_memory(tmp_path):
    trained = long_run_memory.measure_training(tmp_path, epochs=10, verbose=False)["summary"]
    predicted = long_run_memory.measure_prediction(tmp_path, n_subjects=12, verbose=False)["summary"]
    for summary in (trained, predicted):
        # A file left open per epoch or per subject would show at once; so would a volume kept per subject.
        assert summary["fds_max"] == summary["fds_after_warmup"] == summary["fds_last"], summary
        assert summary["rss_growth_percent"] < 2, summary
