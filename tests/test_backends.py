"""Both models build, predict and take a training step under every installed backend.

Keras picks its backend once per process, so each backend runs in a subprocess.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = r"""
import json, os
import numpy as np
import keras
from unet3d_keras.model import isensee2017_model, unet_model_3d

keras.utils.set_random_seed(0)  # the same initial weights every run: some draws leave a few ReLUs dead at step 1
rng = np.random.default_rng(0)
x = rng.normal(size=(2, 16, 16, 16, 2)).astype("float32")
y = (rng.random((2, 16, 16, 16, 3)) > 0.7).astype("float32")
results = {"backend": keras.backend.backend()}
for name, model in [
    ("unet", unet_model_3d((16, 16, 16, 2), n_labels=3, depth=3, n_base_filters=4, deconvolution=True,
                           initial_learning_rate=1e-2, include_label_wise_dice_coefficients=True)),
    ("isensee2017", isensee2017_model((16, 16, 16, 2), n_base_filters=2, depth=3, n_segmentation_levels=2,
                                      n_labels=3, initial_learning_rate=1e-2)),
]:
    prediction = model.predict(x, verbose=0)
    before = [w.copy() for w in model.get_weights()]
    logs = model.train_on_batch(x, y, return_dict=True)
    changed = sum(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    results[name] = {"shape": list(prediction.shape), "min": float(prediction.min()),
                     "max": float(prediction.max()), "loss": float(logs["loss"]), "changed": changed,
                     "n_weights": len(before)}
print("RESULT " + json.dumps(results))
"""

BACKENDS = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
REQUIRED = ("tensorflow", "jax")  # installed by the package and its test extra: checked, never skipped


@pytest.mark.slow  # a fresh interpreter per backend (JAX compiles for ~20 s)
@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_models_run_under_backend(backend):
    if importlib.util.find_spec(BACKENDS[backend]) is None:
        if backend in REQUIRED:
            pytest.fail(f"{backend} is not installed: pip install -e '.[test]'")
        pytest.skip(f"{backend} is not installed (optional: the bench extra installs it)")
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    root = Path(__file__).resolve().parent.parent
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    line = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")][-1]
    results = json.loads(line[len("RESULT "):])
    assert results["backend"] == backend
    for name in ("unet", "isensee2017"):
        result = results[name]
        assert result["shape"] == [2, 16, 16, 16, 3]
        assert 0.0 <= result["min"] <= result["max"] <= 1.0  # sigmoid output
        assert -1.0 <= result["loss"] <= 0.0  # negative Dice
        # The step changed (nearly) every weight: gradients flow through the whole graph.
        assert result["changed"] >= result["n_weights"] - 1, result
