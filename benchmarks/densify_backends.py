"""Seconds per densify training step under each Keras backend, side by side in one run.

Densify's defaults (32^3 windows in batches of 4, 8 base filters) on the one-voxel membranes of
``examples/thin_shell`` (``--volume thin``), with ``--steps`` fixed: each backend trains in a process of its
own, ``--short`` and then ``--long`` steps, and the difference of their training times over the difference
of their steps is its time per step (tracing, compilation and the first evaluation cancel out). Backends
that are not installed are skipped. ``tensorflow`` runs with oneDNN's kernels, as the programs ask for them
(``unet3d_keras.onednn``); ``tensorflow_eigen`` with ``TF_ENABLE_ONEDNN_OPTS=0``, TensorFlow's own
default on CPUs without AVX-512 VNNI/BF16 or AMX. The ratio is TensorFlow's time per step over each
run's: how many more steps a densify budget buys with it.

    python benchmarks/densify_backends.py [--backends tensorflow tensorflow_eigen jax torch] [--policy off]
        [--json FILE]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Each run: its Keras backend and its TF_ENABLE_ONEDNN_OPTS (None: left as it is).
RUNS = {"tensorflow": ("tensorflow", "1"), "tensorflow_eigen": ("tensorflow", "0"), "jax": ("jax", None),
        "torch": ("torch", None)}
#: The CPU flags that decide TensorFlow's default kernels (oneDNN or Eigen) and densify's dtype.
VECTOR_FLAGS = {"avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile"}


def vector_flags() -> list[str]:
    """Those of :data:`VECTOR_FLAGS` that this CPU has."""
    from unet3d_keras.cpu import cpu_flags

    return sorted(cpu_flags() & VECTOR_FLAGS)


def one_backend(short: int, long: int, policy: str) -> dict:
    """Training seconds of densify's ``short`` and ``long`` step runs under the active backend."""
    sys.path.insert(0, str(ROOT / "examples" / "thin_shell"))
    import keras
    from volume import IGNORE, VOLUMES, make_volume, sparse_labels

    from unet3d_keras.densify import fit_sparse

    image, dense = make_volume(**VOLUMES["thin"])
    sparse = sparse_labels(dense)
    seconds = {}
    for steps in (short, long):
        fitted = fit_sparse(image, sparse, IGNORE, [f"training.mixed_precision={policy}"], steps=steps, seed=42,
                            show_progress=False)
        seconds[steps] = fitted.train_seconds
    return {"backend": keras.backend.backend(), "policy": keras.config.dtype_policy().name,
            "cpu_flags": vector_flags(),
            "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
            "train_seconds": seconds, "seconds_per_step": (seconds[long] - seconds[short]) / (long - short)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", choices=list(RUNS), default=list(RUNS))
    parser.add_argument("--short", type=int, default=16, help="steps of the first run (default 16)")
    parser.add_argument("--long", type=int, default=48, help="steps of the second run (default 48)")
    parser.add_argument("--policy", default="off", choices=["off", "auto", "bfloat16"],
                        help="training.mixed_precision (default off: float32 on every backend)")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.long <= args.short:
        parser.error(f"--long ({args.long}) must be above --short ({args.short})")
    if args.child:
        print(json.dumps(one_backend(args.short, args.long, args.policy)), flush=True)
        os._exit(0)  # TensorFlow's dataset threads can hold up a normal exit

    import platform

    results = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "short": args.short, "long": args.long,
               "backends": {}}
    for name in args.backends:
        backend, onednn = RUNS[name]
        if importlib.util.find_spec(backend) is None:
            print(f"{name}: {backend} not installed, skipped", flush=True)
            continue
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
        if onednn is not None:
            env["TF_ENABLE_ONEDNN_OPTS"] = onednn
        done = subprocess.run([sys.executable, __file__, "--child", "--short", str(args.short), "--long",
                               str(args.long), "--policy", args.policy], capture_output=True, text=True, env=env)
        if done.returncode:
            print(f"{name}: failed: {done.stderr[-1500:]}", flush=True)
            continue
        results["backends"][name] = json.loads(done.stdout.strip().splitlines()[-1])
        results.setdefault("cpu_flags", results["backends"][name].pop("cpu_flags"))
    reference = results["backends"].get("tensorflow", {}).get("seconds_per_step")
    for name, result in results["backends"].items():
        ratio = f", {reference / result['seconds_per_step']:.2f}x TensorFlow's steps" if reference else ""
        print(f"{name} ({result['policy']}): {result['seconds_per_step']:.3f} s per step{ratio}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
