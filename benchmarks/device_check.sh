#!/usr/bin/env bash
# GPU check of the models: training steps and predictions at 128^3 (batch 2) of the U-Net and the
# Isensee 2017 network, float32 and bfloat16, Keras on JAX against the identical PyTorch networks
# on CUDA, reported in volumes per second (benchmarks/run.py --gpu).
#
# For a machine with JAX and PyTorch built for CUDA but no TensorFlow: Keras runs with
# KERAS_BACKEND=jax and nothing TensorFlow-specific is imported. Run from anywhere:
#
#     bash benchmarks/device_check.sh                 # writes $OUT/gpu_results.{json,md}
#     REPEATS=3 bash benchmarks/device_check.sh       # fewer timed rounds (default 5, warm-up 2)
#
# Expect a few minutes: most of it is XLA compiling the 10 Keras functions (train and predict of
# 5 models). Published anchor: NVIDIA's TensorFlow 2 nnU-Net trains 29.3 volumes/s on one A100
# (AMP, 128^3, batch 2).
set -euo pipefail

cd "$(dirname "$0")/.."
export KERAS_BACKEND=jax
# JAX would otherwise reserve 75% of the GPU memory up front and starve PyTorch in the same process.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
export TF_CPP_MIN_LOG_LEVEL=2
OUT="${OUT:-benchmarks}"
mkdir -p "$OUT"
# Some CUDA images have python3 only.
PYTHON="${PYTHON:-$(command -v python || command -v python3)}"

# Fail in seconds, not after compiling, when a GPU or a library is missing.
"$PYTHON" - <<'EOF'
import importlib.util
import sys

missing = [name for name in ("keras", "jax", "torch", "numpy") if importlib.util.find_spec(name) is None]
if missing:
    sys.exit(f"device_check: missing Python packages: {', '.join(missing)}")
import jax
import torch

gpus = [d for d in jax.devices() if d.platform == "gpu"]
print(f"jax {jax.__version__}: {jax.devices()}")
print(f"torch {torch.__version__}: cuda {torch.cuda.is_available()}"
      + (f" ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else ""))
if not gpus or not torch.cuda.is_available():
    sys.exit("device_check: JAX and PyTorch must both see a CUDA GPU")
EOF
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv || true

"$PYTHON" benchmarks/run.py --gpu --warmup "${WARMUP:-2}" --repeats "${REPEATS:-5}" \
    --output "$OUT/gpu_results.json" --markdown "$OUT/gpu_results.md"
cat "$OUT/gpu_results.md"
