"""The benchmark suite runs end to end at tiny sizes; its comparison networks are the project's."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = os.path.join(REPO_ROOT, "benchmarks")
sys.path.insert(0, BENCHMARKS)

import bench_models  # noqa: E402
import run as bench_run  # noqa: E402


@pytest.mark.slow
def test_dry_run_writes_every_key(tmp_path):
    output, page = tmp_path / "bench.json", tmp_path / "bench.md"
    completed = subprocess.run(
        [sys.executable, os.path.join(BENCHMARKS, "run.py"), "--quick", "--dry-run",
         "--output", str(output), "--markdown", str(page)],
        capture_output=True, text=True, cwd=tmp_path, timeout=600, check=False,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    report = json.loads(output.read_text())
    for key, *_ in bench_run.TARGETS:
        assert key in report, key
    assert report["mode"] == "dry-run"
    for key in ("machine", "settings", "targets", "notes", "details", "wall_time_s"):
        assert key in report, key
    assert set(report["details"]) >= {"models", "models_summary", "sliding_window", "pipeline", "hdf5_memory"}
    # Measured, not skipped: these need only the installed test dependencies.
    for key in ("train_step_ratio_vs_raw_keras", "predict_gflops", "bf16_train_speedup",
                "sliding_window_overhead", "pipeline_efficiency", "prediction_peak_rss_mib",
                "hdf5_write_peak_rss_ratio"):
        assert report[key] is not None and report[key] > 0, key
    timings = report["details"]["models"]["timings"]
    assert len(timings["project/unet/float32"]["train_s"]) == report["settings"]["repeats"]
    # The hand-written model is the same network: identical weights give identical outputs.
    assert report["details"]["models"]["agreement"]["raw_keras_max_abs_difference"] < 1e-5
    if report["machine"]["torch"]:
        assert report["details"]["models"]["agreement"]["torch_unet_max_abs_difference"] < 1e-4
        assert report["train_step_ratio_vs_torch"] is not None
    else:
        assert any("PyTorch" in note for note in report["notes"])
    text = page.read_text()
    assert "| `sliding_window_overhead` |" in text and report["machine"]["cpu"] in text


def test_conv_flops_known_answer():
    import keras

    inputs = keras.Input((4, 4, 4, 2))
    x = keras.layers.Conv3D(5, 3, padding="same")(inputs)
    x = keras.layers.Conv3DTranspose(3, 2, strides=2)(x)
    model = keras.Model(inputs, x)
    # Conv3D: 2 * 4^3 output voxels * 27 * 2 * 5; Conv3DTranspose: 2 * 4^3 input voxels * 8 * 5 * 3.
    assert bench_models.conv_flops(model) == 2 * 64 * 27 * 2 * 5 + 2 * 64 * 8 * 5 * 3


def test_torch_isensee_matches_keras():
    torch = pytest.importorskip("torch")
    from unet3d_keras.model import build_isensee2017

    model = build_isensee2017((16, 16, 16, 4), n_base_filters=4, depth=3, n_segmentation_levels=2, n_labels=3)
    rng = np.random.default_rng(0)
    for layer in model.layers:  # non-trivial normalisation weights, so that their copy is checked
        if isinstance(layer, __import__("keras").layers.GroupNormalization):
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in layer.get_weights()])
    network = bench_models.TorchIsensee2017(4, 4, 3, 0.3, 2, 3).eval()
    assert bench_models.copy_keras_weights(model, network) == len(network.keras_names)
    x = rng.standard_normal((2, 16, 16, 16, 4), dtype=np.float32)
    with torch.no_grad():
        expected = network(torch.from_numpy(x).permute(0, 4, 1, 2, 3)).permute(0, 2, 3, 4, 1).numpy()
    np.testing.assert_allclose(np.asarray(model.predict_on_batch(x)), expected, atol=1e-4)


def test_ratio_is_median_of_paired_rounds():
    assert bench_run.ratio([2.0, 4.0, 9.0], [1.0, 4.0, 3.0]) == pytest.approx(2.0)
    assert bench_run.ratio([], [1.0]) is None
