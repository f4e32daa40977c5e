"""TensorFlow's oneDNN kernels against its Eigen kernels, side by side in one run.

``unet3d_keras.onednn`` has the programs set ``TF_ENABLE_ONEDNN_OPTS=1``, which TensorFlow leaves off
on CPUs without AVX-512 VNNI/BF16 or AMX. This times, in a new process for each setting (TensorFlow
reads the variable once, when it loads), a training step and a prediction of one batch of the model
that ``python scripts/train.py`` builds from ``config.yaml`` (random data of its input shape, float32),
``--repeats`` times each after one untimed call, the two alternating (``run.interleaved``), and
prints the median seconds and the ratio Eigen / oneDNN (above 1: oneDNN is faster). Densify's model
is timed by ``densify_backends.py`` (``tensorflow`` against ``tensorflow_eigen``).

    python benchmarks/onednn_kernels.py [--config config.yaml] [--repeats 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

from densify_backends import vector_flags  # this folder is on the path of a script

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {"eigen": "0", "onednn": "1"}


def one_setting(config_path: str, repeats: int) -> dict:
    """Median seconds of a training step and of a batch's prediction under the current setting."""
    import numpy as np

    from run import interleaved  # the child sets TF_ENABLE_ONEDNN_OPTS itself: run.py's enable_onednn keeps it
    from unet3d_keras.config import load_config
    from unet3d_keras.model_from_config import build_model

    config = load_config(config_path)
    model = build_model(config)
    shape = (config.training.batch_size, *model.input_shape[1:])
    rng = np.random.default_rng(0)
    x = rng.random(shape, dtype=np.float32)
    y = (rng.random((shape[0], *model.output_shape[1:]), dtype=np.float32) > 0.5).astype(np.float32)
    wall, _ = interleaved({"train_step": lambda: model.train_on_batch(x, y),
                           "predict_batch": lambda: model.predict_on_batch(x)}, warmup=1, repeats=repeats)
    return {"cpu_flags": vector_flags(), "input": list(shape), **{k: float(np.median(v)) for k, v in wall.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config.yaml", help="the model's config (default config.yaml)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls of each (default 5)")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, received {args.repeats}")
    if args.child:
        print(json.dumps(one_setting(args.config, args.repeats)), flush=True)
        os._exit(0)  # TensorFlow's threads can hold up a normal exit

    results = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "config": args.config, "settings": {}}
    for name, value in SETTINGS.items():
        done = subprocess.run([sys.executable, __file__, "--child", "--config", args.config, "--repeats",
                               str(args.repeats)], capture_output=True, text=True,
                              env=dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2",
                                       TF_ENABLE_ONEDNN_OPTS=value))
        if done.returncode:
            print(f"{name}: failed: {done.stderr[-1500:]}", flush=True)
            return 1
        results["settings"][name] = json.loads(done.stdout.strip().splitlines()[-1])
        results.setdefault("cpu_flags", results["settings"][name].pop("cpu_flags"))
    eigen, onednn = results["settings"]["eigen"], results["settings"]["onednn"]
    print(f"model of {args.config}, input {onednn['input']}")
    for what in ("train_step", "predict_batch"):
        print(f"{what}: Eigen {eigen[what]:.3f} s, oneDNN {onednn[what]:.3f} s, "
              f"ratio {eigen[what] / onednn[what]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
