"""Performance benchmark suite of unet3d_keras: one command, one JSON file, one Markdown table.

Every figure is a ratio of two measurements taken in the same run on the same machine (medians
over several repetitions after warm-up; the implementations compared are interleaved round by
round, so that load from other processes hits them alike):

1. ``train_step_ratio_vs_raw_keras``: the compiled ``unet_model_3d`` (its weighted Dice loss and
   Dice metric) / a minimal hand-written Keras model of the same architecture (target <= 1.05).
2. ``train_step_ratio_vs_torch``, ``predict_ratio_vs_torch``: project / the identical PyTorch
   network (``channels_last_3d``, float32; targets <= 1.0 and <= 0.9).
3. ``predict_gflops``, ``predict_fraction_of_peak``: analytic forward FLOPs (see
   ``bench_models.conv_flops``) / prediction time, against the measured float32 matrix-multiply
   peak (the best of NumPy, the Keras backend and PyTorch; target >= 0.8).
4. ``bf16_train_speedup``, ``bf16_predict_speedup``: float32 / the project's ``bfloat16`` setting
   (``unet3d_keras.precision``; target >= 1.8 where the CPU has AVX512-BF16 or AMX).
5. ``sliding_window_overhead``: share of ``patch_wise_prediction`` of a 4x240x240x155 volume
   (64^3 windows, overlap 16) spent outside the model's calls (target <= 0.03); MONAI's
   ``sliding_window_inference`` with the same network in PyTorch as a comparison row.
6. ``pipeline_efficiency``: ``fit`` steps/s from the HDF5 PyDataset with flip + elastic
   augmentation / from in-memory batches (target >= 0.95).
7. Peak memory (RSS) of predicting that volume and of writing subjects to HDF5.

    python benchmarks/run.py --quick --output benchmarks/results.json --markdown docs/benchmarks.md
    python benchmarks/run.py                                  # more repetitions, 20 subjects of 128^3
    python benchmarks/run.py --quick --dry-run --output /tmp/bench.json   # tiny sizes, seconds
    python benchmarks/run.py --only models                    # one section (models, sliding_window,
                                                              # pipeline, hdf5_memory)
    KERAS_BACKEND=jax python benchmarks/run.py --gpu          # GPU: see benchmarks/device_check.sh
    python benchmarks/run.py --from-json benchmarks/results.json --markdown docs/benchmarks.md  # re-render

``--gpu`` measures training and prediction only (128^3, batch 2, the U-Net and the Isensee 2017
network, float32 and bfloat16, Keras on the active backend and PyTorch on CUDA) and imports
nothing TensorFlow-specific, so it runs under ``KERAS_BACKEND=jax`` without TensorFlow.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time
from typing import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)
for _path in (BENCH_DIR, REPO_ROOT):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from unet3d_keras.onednn import enable_onednn  # noqa: E402

enable_onednn()  # measure the kernels that the programs run on (TensorFlow leaves them off on AVX2-only CPUs)

SECTIONS = ("models", "sliding_window", "pipeline", "hdf5_memory")

# Headline keys of the JSON: (key, target as text, comparison, threshold). None where no target.
TARGETS: list[tuple[str, str, str | None, float | None]] = [
    ("train_step_ratio_vs_raw_keras", "<= 1.05", "<=", 1.05),
    ("predict_ratio_vs_raw_keras", "", None, None),
    ("train_step_ratio_vs_torch", "<= 1.0", "<=", 1.0),
    ("predict_ratio_vs_torch", "<= 0.9", "<=", 0.9),
    ("predict_gflops", "", None, None),
    ("predict_fraction_of_peak", ">= 0.8", ">=", 0.8),
    ("train_gflops", "", None, None),
    ("matmul_peak_gflops", "", None, None),
    ("bf16_train_speedup", ">= 1.8 (AVX512-BF16/AMX)", ">=", 1.8),
    ("bf16_predict_speedup", ">= 1.8 (AVX512-BF16/AMX)", ">=", 1.8),
    ("bf16_train_ratio_vs_torch", "", None, None),
    ("bf16_predict_ratio_vs_torch", "", None, None),
    ("sliding_window_overhead", "<= 0.03", "<=", 0.03),
    ("monai_sliding_window_overhead", "", None, None),
    ("pipeline_efficiency", ">= 0.95", ">=", 0.95),
    ("prediction_peak_rss_mib", "", None, None),
    ("prediction_peak_rss_increase_mib", "", None, None),
    ("monai_prediction_peak_rss_increase_mib", "", None, None),
    ("hdf5_write_peak_rss_mib", "", None, None),
    ("hdf5_write_peak_rss_ratio", "<= 1.5", "<=", 1.5),
]

ANCHOR = ("NVIDIA's TensorFlow 2 nnU-Net (DeepLearningExamples) trains 29.3 volumes/s on one A100 "
          "(AMP, 128^3, batch 2)")


@dataclasses.dataclass
class Settings:
    """Sizes and repetitions of one mode (full, quick, dry-run, gpu)."""

    mode: str
    patch: int = 64
    base_filters: int = 32
    depth: int = 4
    batch_size: int = 1
    n_labels: int = 3
    warmup: int = 2
    repeats: int = 7
    models: tuple[str, ...] = ("unet",)
    precisions: tuple[str, ...] = ("float32", "bfloat16")
    matmul_size: int = 4096
    volume: tuple[int, int, int, int] = (4, 240, 240, 155)
    window: int = 64
    overlap: int = 16
    window_batch_size: int = 2
    isensee_base_filters: int = 16
    isensee_depth: int = 5
    pipeline: dict = dataclasses.field(default_factory=lambda: dict(
        rounds=3, steps=3, warmup=1, subjects=6, shape=(72, 72, 68), patch=(64, 64, 64)))
    hdf5: dict = dataclasses.field(default_factory=lambda: dict(many=20, few=2, shape=128))
    device: str = "cpu"


def settings_for(mode: str) -> Settings:
    """The sizes of a mode: ``full``, ``quick``, ``dry-run`` or ``gpu``."""
    if mode == "full":
        return Settings(mode)
    if mode == "quick":
        return Settings(mode, warmup=1, repeats=3,
                        pipeline=dict(rounds=6, steps=3, warmup=1, subjects=6, shape=(72, 72, 68), patch=(64,) * 3),
                        hdf5=dict(many=8, few=2, shape=96))
    if mode == "dry-run":
        return Settings(mode, patch=16, base_filters=4, depth=3, warmup=1, repeats=2, matmul_size=256,
                        volume=(4, 40, 36, 30), window=16, overlap=4, isensee_base_filters=4, isensee_depth=3,
                        pipeline=dict(rounds=1, steps=1, warmup=1, subjects=3, shape=(26, 26, 24), patch=(16,) * 3),
                        hdf5=dict(many=2, few=1, shape=16))
    if mode == "gpu":
        return Settings(mode, patch=128, batch_size=2, warmup=2, repeats=5, models=("unet", "isensee2017"),
                        matmul_size=8192, device="cuda")
    if mode == "gpu-dry-run":  # the --gpu code path at dry-run sizes (checks device_check.sh on a CPU)
        return Settings(mode, patch=16, base_filters=4, depth=3, batch_size=2, warmup=1, repeats=1,
                        models=("unet", "isensee2017"), matmul_size=256, isensee_base_filters=4, isensee_depth=3,
                        device="cuda")
    raise ValueError(f"unknown mode {mode!r}")


# ---------------------------------------------------------------------------------------------
# Machine and timing helpers


def machine_info() -> dict:
    """CPU model, cores, flags that matter, memory, library versions and the Keras backend."""
    import keras

    from unet3d_keras.cpu import cpu_flags, cpu_name, cpu_supports_bfloat16

    flags = cpu_flags()
    info = {
        "cpu": cpu_name(), "cpus": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)),
        "cpu_flags": sorted(flags & {"avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_fp16"}),
        "bf16_cpu": cpu_supports_bfloat16(flags),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "platform": platform.platform(), "python": platform.python_version(),
        "keras": keras.__version__, "backend": keras.backend.backend(), "numpy": np.__version__,
    }
    for name in ("tensorflow", "jax", "torch", "monai"):
        info[name] = _version(name)
    info["gpu"] = _gpu_name()
    return info


def _gpu_name() -> str | None:
    """The CUDA GPU's name and memory from ``nvidia-smi``, or None without one."""
    try:
        output = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=30, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return output.splitlines()[0] if output else None


def _version(module: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(module)
    except metadata.PackageNotFoundError:
        return None


class CpuShare:
    """CPU time used by other processes while a block runs (from /proc/stat; Linux only).

    ``other_cpus`` is the average number of CPUs busy with work that is not this process or its
    waited-for children: 0 on a quiet machine, up to the CPU count on a fully busy one.
    """

    def __enter__(self):
        self.start = (_machine_busy_seconds(), _own_cpu_seconds(), time.perf_counter())
        return self

    def __exit__(self, *exc):
        busy, own, wall = (_machine_busy_seconds(), _own_cpu_seconds(), time.perf_counter())
        elapsed = max(wall - self.start[2], 1e-9)
        self.other_cpus = None
        if busy is not None and self.start[0] is not None:
            self.other_cpus = max(0.0, (busy - self.start[0]) - (own - self.start[1])) / elapsed
        self.wall_s = elapsed
        return False


def _machine_busy_seconds() -> float | None:
    try:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    self_usage, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return self_usage.ru_utime + self_usage.ru_stime + children.ru_utime + children.ru_stime


def interleaved(
    functions: dict[str, Callable[[], object]], warmup: int, repeats: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall and CPU seconds of each function, called round-robin (order reversed every other round).

    Round ``i`` of every function runs within one pass, so ratios of round ``i`` compare
    measurements taken under the same load. CPU seconds are those of the whole process (all
    threads): with one hardware thread per core they hardly change when other processes compete
    for the cores, which makes them a cross-check of wall-time ratios on a busy machine.

    Args:
        functions: Name -> function doing one complete, synchronised unit of work.
        warmup: Untimed calls of each function first (tracing, caches).
        repeats: Timed calls of each function.

    Returns:
        (wall, cpu): name -> list of ``repeats`` durations each.
    """
    for _ in range(warmup):
        for function in functions.values():
            function()
    wall: dict[str, list[float]] = {name: [] for name in functions}
    cpu: dict[str, list[float]] = {name: [] for name in functions}
    names = list(functions)
    for round_ in range(repeats):
        for name in names if round_ % 2 == 0 else reversed(names):
            start, start_cpu = time.perf_counter(), time.process_time()
            functions[name]()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return wall, cpu


def median(values: list[float]) -> float:
    return float(np.median(values))


def ratio(numerator: list[float] | None, denominator: list[float] | None) -> float | None:
    """Median of the per-round ratios (paired, see :func:`interleaved`); None if not measured."""
    if not numerator or not denominator:
        return None
    return float(np.median(np.asarray(numerator) / np.asarray(denominator)))


def peak_rss() -> dict:
    """Current and peak resident memory of this process in MiB (VmRSS, VmHWM)."""
    values = {}
    try:
        with open("/proc/self/status") as status:
            for line in status:
                key = line.split(":", 1)[0]
                if key in ("VmRSS", "VmHWM"):
                    values[key] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return values


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux: ``5 > /proc/self/clear_refs``); False if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------
# Section 1-4: training steps and predictions of the models


def matmul_peak(size: int, device: str, repeats: int = 5) -> dict:
    """Best float32 matrix-multiply rate (GFLOP/s) of NumPy, the Keras backend and PyTorch.

    On ``device="cuda"`` only the accelerator's rates (Keras backend, PyTorch CUDA) count.
    """
    import keras

    flops = 2 * size**3
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    rates: dict[str, float] = {}
    cpu_rates: dict[str, float] = {}  # GFLOP per second of process CPU time (all threads)

    def best(function) -> float:
        function()
        wall, cpu = [], []
        for _ in range(repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            function()
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        cpu_rates[name] = flops / max(min(cpu), 1e-9) / 1e9
        return flops / min(wall) / 1e9

    name = "numpy"
    if device == "cpu":
        rates["numpy"] = best(lambda: a @ a)
    tensor = keras.ops.convert_to_tensor(a)
    name = f"keras_{keras.backend.backend()}"
    # Reading one element back forces the computation (JAX and CUDA are asynchronous).
    rates[f"keras_{keras.backend.backend()}"] = best(
        lambda: keras.ops.convert_to_numpy(keras.ops.matmul(tensor, tensor)[0, 0]))
    torch = _import_torch()
    if torch is not None and (device == "cpu" or torch.cuda.is_available()):
        torch_a = torch.from_numpy(a).to(device)
        name = "torch"
        rates["torch"] = best(lambda: float(torch.matmul(torch_a, torch_a)[0, 0]))
    best_cpu = max(cpu_rates, key=cpu_rates.get)
    return {"size": size, "gflops": rates, "peak_gflops": max(rates.values()), "gflops_per_cpu_second": cpu_rates,
            "peak_gflops_per_cpu_second": cpu_rates[best_cpu]}


def _seconds(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def _import_torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def _policy_for(precision: str) -> str:
    """Keras dtype policy of a precision, through the project's mixed-precision setting."""
    from unet3d_keras.precision import resolve_mixed_precision

    return resolve_mixed_precision("off" if precision == "float32" else precision)


def _keras_model(name: str, settings: Settings, policy: str):
    """The project's compiled model (``unet_model_3d`` or ``isensee2017_model``) under ``policy``."""
    import keras

    from unet3d_keras.model import isensee2017_model, unet_model_3d

    shape = (settings.patch,) * 3 + (4,)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        if name == "unet":
            return unet_model_3d(shape, n_labels=settings.n_labels, deconvolution=True,
                                 n_base_filters=settings.base_filters, depth=settings.depth)
        return isensee2017_model(shape, n_labels=settings.n_labels, n_base_filters=settings.isensee_base_filters,
                                 depth=settings.isensee_depth,
                                 n_segmentation_levels=min(3, settings.isensee_depth - 1))
    finally:
        keras.config.set_dtype_policy(previous)


def _torch_model(name: str, settings: Settings, keras_model, device: str):
    """The identical PyTorch network with the Keras model's weights, in channels_last_3d memory."""
    import torch

    from bench_models import TorchIsensee2017, TorchUNet, copy_keras_weights

    if name == "unet":
        network = TorchUNet(4, settings.n_labels, settings.base_filters, settings.depth)
    else:
        network = TorchIsensee2017(4, settings.isensee_base_filters, settings.isensee_depth, 0.3,
                                   min(3, settings.isensee_depth - 1), settings.n_labels)
    copy_keras_weights(keras_model, network)
    return network.to(device=device, memory_format=torch.channels_last_3d)


def _torch_functions(network, x: np.ndarray, y: np.ndarray, device: str, bfloat16: bool, learning_rate: float):
    """(train step, prediction) closures taking the same NumPy batches as the Keras calls."""
    import torch

    from bench_models import torch_dice_loss

    optimizer = torch.optim.Adam(network.parameters(), lr=learning_rate)

    def to_device(array):
        # (b, x, y, z, c) -> (b, c, x, y, z) view: exactly the channels_last_3d layout.
        return torch.from_numpy(array).to(device).permute(0, 4, 1, 2, 3)

    def train():
        network.train()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bfloat16):
            prediction = network(to_device(x))
        loss = torch_dice_loss(prediction, to_device(y))
        loss.backward()
        optimizer.step()
        value = loss.item()  # synchronises, as Keras's train_on_batch returning its logs
        if device == "cuda":
            torch.cuda.synchronize()
        return value

    def predict():
        network.eval()
        with torch.inference_mode(), torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bfloat16):
            prediction = network(to_device(x))
        return prediction.permute(0, 2, 3, 4, 1).float().cpu().numpy()  # NumPy, as predict_on_batch

    return train, predict


def run_models(settings: Settings, notes: list[str]) -> dict:
    """Training steps and predictions of every implementation, interleaved per model.

    Returns:
        ``{"timings": {"<impl>/<model>/<precision>": {"train_s": [...], "predict_s": [...]}},
        "flops": {model: forward FLOPs per item}, "matmul": {...}, "agreement": {...}}``.
    """
    import keras

    torch = _import_torch()
    device = settings.device
    if torch is None:
        notes.append("PyTorch is not installed: the comparisons with PyTorch were skipped.")
    elif device == "cuda" and not torch.cuda.is_available():
        if settings.mode == "gpu":
            notes.append("PyTorch sees no CUDA device: the comparisons with PyTorch were skipped.")
            torch = None
        else:
            device = "cpu"  # gpu-dry-run: the same code path on the CPU

    if torch is not None and device == "cuda":
        # Let cuDNN pick its fastest algorithms, as XLA autotunes the Keras side under JAX.
        torch.backends.cudnn.benchmark = True
    result: dict = {"timings": {}, "flops": {}, "agreement": {}, "batch_size": settings.batch_size,
                    "torch_device": device if torch is not None else None}
    print(f"matmul peak ({settings.matmul_size}^2, float32) ...", flush=True)
    result["matmul"] = matmul_peak(settings.matmul_size, "cpu" if device == "cpu" else "cuda")
    print(f"  {json.dumps({k: round(v, 1) for k, v in result['matmul']['gflops'].items()})} GFLOP/s", flush=True)

    rng = np.random.default_rng(0)
    shape = (settings.batch_size,) + (settings.patch,) * 3
    x = rng.standard_normal(shape + (4,), dtype=np.float32)
    y = (rng.random(shape + (settings.n_labels,)) < 0.3).astype(np.float32)

    for name in settings.models:
        # One function per model, so that its networks (and on a GPU their memory) go on return.
        _time_one_model(name, settings, x, y, torch, device, result)
        keras.backend.clear_session()
        if torch is not None and device == "cuda":
            torch.cuda.empty_cache()  # the next model's JAX buffers need the memory PyTorch cached
    return result


def _time_one_model(name: str, settings: Settings, x: np.ndarray, y: np.ndarray, torch, device: str,
                    result: dict) -> None:
    """Build every implementation of one model, time them interleaved, add to ``result``."""
    from bench_models import conv_flops, raw_keras_unet

    train_fns: dict[str, Callable] = {}
    predict_fns: dict[str, Callable] = {}
    for precision in settings.precisions:
        model = _keras_model(name, settings, _policy_for(precision))
        learning_rate = float(model.optimizer.learning_rate)
        key = f"project/{name}/{precision}"
        train_fns[key] = lambda m=model: m.train_on_batch(x, y)
        predict_fns[key] = lambda m=model: m.predict_on_batch(x)
        if precision == "float32":
            result["flops"][name] = conv_flops(model)
        if name == "unet" and precision == "float32":
            raw = raw_keras_unet(model.input_shape[1:], settings.n_labels, settings.base_filters,
                                 settings.depth, learning_rate=learning_rate)
            raw.set_weights(model.get_weights())  # same layer order: the same network
            result["agreement"]["raw_keras_max_abs_difference"] = float(
                np.max(np.abs(raw.predict_on_batch(x) - model.predict_on_batch(x))))
            train_fns[f"raw_keras/{name}/{precision}"] = lambda m=raw: m.train_on_batch(x, y)
            predict_fns[f"raw_keras/{name}/{precision}"] = lambda m=raw: m.predict_on_batch(x)
        if torch is not None:
            network = _torch_model(name, settings, model, device)
            train, predict = _torch_functions(network, x, y, device, precision != "float32", learning_rate)
            if precision == "float32":
                difference = np.max(np.abs(predict() - np.asarray(model.predict_on_batch(x))))
                result["agreement"][f"torch_{name}_max_abs_difference"] = float(difference)
            train_fns[f"torch/{name}/{precision}"] = train
            predict_fns[f"torch/{name}/{precision}"] = predict
    print(f"{name}: timing {', '.join(train_fns)} "
          f"({settings.warmup} warm-up + {settings.repeats} rounds) ...", flush=True)
    with CpuShare() as share:
        train_times, train_cpu = interleaved(train_fns, settings.warmup, settings.repeats)
        predict_times, predict_cpu = interleaved(predict_fns, settings.warmup, settings.repeats)
    result.setdefault("other_cpus", {})[name] = share.other_cpus
    for key in train_fns:
        result["timings"][key] = {"train_s": train_times[key], "predict_s": predict_times[key],
                                  "train_cpu_s": train_cpu[key], "predict_cpu_s": predict_cpu[key]}
        print(f"  {key:<28} train {median(train_times[key]):7.3f} s  predict {median(predict_times[key]):7.3f} s"
              f"  (train {np.round(train_times[key], 2).tolist()}, predict "
              f"{np.round(predict_times[key], 2).tolist()})", flush=True)


def device_is_cpu(models: dict) -> bool:
    """Whether the models section ran on the CPU (CPU time says nothing about GPU work)."""
    return models.get("torch_device") in (None, "cpu") and "numpy" in models["matmul"]["gflops"]


def summarise_models(models: dict, settings: Settings) -> dict:
    """The headline ratios of section 1-4 from the raw timings."""
    timings = models["timings"]

    def times(key: str, kind: str) -> list[float] | None:
        return timings.get(key, {}).get(kind)

    fp32, bf16 = "project/unet/float32", "project/unet/bfloat16"
    flops = models["flops"].get("unet")
    predict_s = times(fp32, "predict_s")
    train_s = times(fp32, "train_s")
    predict_gflops = flops * settings.batch_size / median(predict_s) / 1e9 if flops and predict_s else None
    peak = models["matmul"]["peak_gflops"]
    summary = {
        "train_step_ratio_vs_raw_keras": ratio(train_s, times("raw_keras/unet/float32", "train_s")),
        "predict_ratio_vs_raw_keras": ratio(predict_s, times("raw_keras/unet/float32", "predict_s")),
        "train_step_ratio_vs_torch": ratio(train_s, times("torch/unet/float32", "train_s")),
        "predict_ratio_vs_torch": ratio(predict_s, times("torch/unet/float32", "predict_s")),
        "predict_gflops": predict_gflops,
        "predict_fraction_of_peak": predict_gflops / peak if predict_gflops else None,
        "train_gflops": 3 * flops * settings.batch_size / median(train_s) / 1e9 if flops and train_s else None,
        "matmul_peak_gflops": peak,
        "bf16_train_speedup": ratio(train_s, times(bf16, "train_s")),
        "bf16_predict_speedup": ratio(predict_s, times(bf16, "predict_s")),
        "bf16_train_ratio_vs_torch": ratio(times(bf16, "train_s"), times("torch/unet/bfloat16", "train_s")),
        "bf16_predict_ratio_vs_torch": ratio(times(bf16, "predict_s"), times("torch/unet/bfloat16", "predict_s")),
    }
    # The same ratios from process CPU time: a cross-check that other load hardly affects.
    pairs = {
        "train_step_ratio_vs_raw_keras": (fp32, "raw_keras/unet/float32", "train"),
        "predict_ratio_vs_raw_keras": (fp32, "raw_keras/unet/float32", "predict"),
        "train_step_ratio_vs_torch": (fp32, "torch/unet/float32", "train"),
        "predict_ratio_vs_torch": (fp32, "torch/unet/float32", "predict"),
        "bf16_train_speedup": (fp32, bf16, "train"),
        "bf16_predict_speedup": (fp32, bf16, "predict"),
    }
    summary["cpu_time_ratios"] = {} if not device_is_cpu(models) else {
        name: ratio(times(a, f"{kind}_cpu_s"), times(b, f"{kind}_cpu_s")) for name, (a, b, kind) in pairs.items()
    }
    predict_cpu = times(fp32, "predict_cpu_s")
    if flops and predict_cpu and device_is_cpu(models):
        summary["cpu_time_ratios"]["predict_fraction_of_peak"] = (
            flops * settings.batch_size / median(predict_cpu) / 1e9 / models["matmul"]["peak_gflops_per_cpu_second"])
    # Volumes (batch items) per second of every implementation, the unit of the GPU anchor.
    summary["volumes_per_second"] = {
        key: {"train": settings.batch_size / median(value["train_s"]),
              "predict": settings.batch_size / median(value["predict_s"])}
        for key, value in timings.items()
    }
    return summary


# ---------------------------------------------------------------------------------------------
# Section 5 and 7: sliding-window prediction of a BraTS-size volume (child processes)


def _child_sliding_window(arguments: dict) -> dict:
    """Our ``patch_wise_prediction``: overhead share and peak RSS (runs in a fresh process)."""
    import keras

    from prediction_overhead import measure_overhead
    from unet3d_keras.model import build_unet_3d
    from unet3d_keras.precision import resolve_mixed_precision

    policy = resolve_mixed_precision(arguments["mixed_precision"])
    keras.config.set_dtype_policy(policy)
    window, batch = arguments["window"], arguments["batch_size"]
    model = build_unet_3d((window,) * 3 + (4,), n_labels=3, deconvolution=True,
                          n_base_filters=arguments["base_filters"], depth=arguments["depth"])
    volume = np.random.default_rng(0).standard_normal(tuple(arguments["volume"]), dtype=np.float32)
    model.predict_on_batch(np.zeros((batch,) + (window,) * 3 + (4,), np.float32))  # warm-up (tracing)
    before = peak_rss()
    reset = reset_peak_rss()
    result = measure_overhead(model, volume, overlap=arguments["overlap"], batch_size=batch)
    after = peak_rss()
    result.update(policy=policy, rss_before_mib=before.get("VmRSS"), peak_rss_mib=after.get("VmHWM"),
                  peak_rss_reset=reset, peak_rss_before_mib=before.get("VmHWM"))
    result["peak_rss_increase_mib"] = (after.get("VmHWM", 0) - before.get("VmRSS", 0)) if reset else None
    return result


def _child_monai(arguments: dict) -> dict:
    """MONAI's ``sliding_window_inference`` with the same network in PyTorch (fresh process)."""
    import torch
    from monai.inferers import sliding_window_inference

    from bench_models import TorchUNet
    from unet3d_keras.cpu import cpu_supports_bfloat16

    bfloat16 = arguments["mixed_precision"] == "auto" and cpu_supports_bfloat16()
    window, batch = arguments["window"], arguments["batch_size"]
    torch.manual_seed(0)
    network = TorchUNet(4, 3, arguments["base_filters"], arguments["depth"]).eval()
    network = network.to(memory_format=torch.channels_last_3d)
    volume = np.random.default_rng(0).standard_normal(tuple(arguments["volume"]), dtype=np.float32)
    model_seconds, windows = [], []

    def predictor(batch_tensor):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16):
            output = network(batch_tensor.contiguous(memory_format=torch.channels_last_3d)).float()
        model_seconds.append(time.perf_counter() - start)
        windows.append(len(batch_tensor))
        return output

    with torch.inference_mode():
        predictor(torch.zeros((batch, 4) + (window,) * 3))  # warm-up
        model_seconds.clear()
        windows.clear()
        before = peak_rss()
        reset = reset_peak_rss()
        start = time.perf_counter()
        inputs = torch.from_numpy(volume)[None].contiguous(memory_format=torch.channels_last_3d)
        output = sliding_window_inference(
            inputs, roi_size=(window,) * 3, sw_batch_size=batch, predictor=predictor,
            overlap=arguments["overlap"] / window, mode="constant")
        output = np.ascontiguousarray(output[0].float().numpy())
        total = time.perf_counter() - start
    after = peak_rss()
    inside = float(np.sum(model_seconds))
    return {
        "total_s": total, "model_s": inside, "outside_model_s": total - inside,
        "sliding_window_overhead": (total - inside) / total, "windows": int(np.sum(windows)),
        "model_calls": len(model_seconds), "bfloat16_autocast": bfloat16, "output_shape": list(output.shape),
        "overlap_fraction": arguments["overlap"] / window, "rss_before_mib": before.get("VmRSS"),
        "peak_rss_mib": after.get("VmHWM"),
        "peak_rss_increase_mib": (after.get("VmHWM", 0) - before.get("VmRSS", 0)) if reset else None,
    }


CHILDREN = {"sliding_window": _child_sliding_window, "monai": _child_monai}


def run_child(name: str, arguments: dict) -> dict:
    """Run one ``CHILDREN`` entry in a fresh Python process; its peak memory is its own."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [REPO_ROOT, os.environ.get("PYTHONPATH")])))
    completed = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", name, json.dumps(arguments)],
        capture_output=True, text=True, env=env, check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"child {name} failed:\n{completed.stderr[-4000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def run_sliding_window(settings: Settings, notes: list[str]) -> dict:
    """Overhead share and peak memory of our sliding window and of MONAI's, same volume and network."""
    arguments = {"volume": list(settings.volume), "window": settings.window, "overlap": settings.overlap,
                 "batch_size": settings.window_batch_size, "base_filters": settings.base_filters,
                 "depth": settings.depth, "mixed_precision": "auto"}
    result = {"settings": arguments}
    print(f"sliding window over {tuple(settings.volume)} ({settings.window}^3 windows, overlap "
          f"{settings.overlap}, batch {settings.window_batch_size}) ...", flush=True)
    with CpuShare() as share:
        result["project"] = run_child("sliding_window", arguments)
    result["project"]["other_cpus"] = share.other_cpus
    _print_window_result("project", result["project"])
    if _version("monai") is None or _import_torch() is None:
        notes.append("MONAI (or PyTorch) is not installed: the sliding_window_inference comparison was skipped "
                      "(pip install monai).")
    else:
        with CpuShare() as share:
            result["monai"] = run_child("monai", arguments)
        result["monai"]["other_cpus"] = share.other_cpus
        _print_window_result("monai", result["monai"])
    return result


def _print_window_result(name: str, result: dict) -> None:
    print(f"  {name:<8} {result['windows']} windows: total {result['total_s']:.2f} s, model {result['model_s']:.2f} s, "
          f"outside {result['outside_model_s']:.2f} s = {result['sliding_window_overhead']:.4f}; "
          f"peak RSS {result['peak_rss_mib']:.0f} MiB (+{result['peak_rss_increase_mib'] or float('nan'):.0f})",
          flush=True)


# ---------------------------------------------------------------------------------------------
# Section 6 and 7: input pipeline and HDF5 writing


def run_pipeline(settings: Settings) -> dict:
    """``benchmarks/pipeline_efficiency.py`` at this mode's sizes, in the project's precision."""
    import pipeline_efficiency

    from unet3d_keras.precision import resolve_mixed_precision

    config = settings.pipeline
    args = argparse.Namespace(
        warmup=config["warmup"], steps=config["steps"], rounds=config["rounds"], workers=1, multiprocessing=False,
        queue=4, subjects=config["subjects"], shape=config["shape"], patch=config["patch"],
        base_filters=settings.base_filters, depth=settings.depth, policy=resolve_mixed_precision("auto"),
        load=os.getloadavg()[0],
    )
    with CpuShare() as share:
        result = pipeline_efficiency.run(args)
    result["other_cpus"] = share.other_cpus
    return result


def run_hdf5_memory(settings: Settings) -> dict:
    """``benchmarks/hdf5_write_memory.py`` at this mode's sizes."""
    import hdf5_write_memory

    config = settings.hdf5
    return hdf5_write_memory.measure(config["many"], config["few"], config["shape"])


# ---------------------------------------------------------------------------------------------
# Report


def headline(results: dict) -> dict:
    """The flat dictionary of headline figures (every key of ``TARGETS``; None where not measured)."""
    values: dict = {key: None for key, *_ in TARGETS}
    values.update({k: v for k, v in results.get("models_summary", {}).items() if k in values})
    window = results.get("sliding_window", {})
    if "project" in window:
        values["sliding_window_overhead"] = window["project"]["sliding_window_overhead"]
        values["prediction_peak_rss_mib"] = window["project"]["peak_rss_mib"]
        values["prediction_peak_rss_increase_mib"] = window["project"]["peak_rss_increase_mib"]
    if "monai" in window:
        values["monai_sliding_window_overhead"] = window["monai"]["sliding_window_overhead"]
        values["monai_prediction_peak_rss_increase_mib"] = window["monai"]["peak_rss_increase_mib"]
    if "pipeline" in results:
        values["pipeline_efficiency"] = results["pipeline"]["ratio"]
    if "hdf5_memory" in results:
        memory = results["hdf5_memory"]
        values["hdf5_write_peak_rss_mib"] = memory["cases"][str(memory["many"])]["vm_hwm_mib"]
        values["hdf5_write_peak_rss_ratio"] = memory["ratio"]
    return values


def target_status(values: dict, bf16_cpu: bool, mode: str) -> dict:
    """key -> {"target": text, "met": True/False/None}; the bf16 targets apply to bf16 CPUs only."""
    status = {}
    for key, text, comparison, threshold in TARGETS:
        if comparison is None:
            continue
        value = values.get(key)
        applies = not (key.startswith("bf16_") and (not bf16_cpu or mode.startswith("gpu")))
        met = None
        if value is not None and applies:
            met = bool(value <= threshold) if comparison == "<=" else bool(value >= threshold)
        status[key] = {"target": text, "met": met, "applies": applies}
    return status


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def markdown(report: dict) -> str:
    """The Markdown page of one report (docs/benchmarks.md)."""
    machine = report["machine"]
    lines = [
        "# Benchmarks: GPU check" if report["mode"].startswith("gpu") else "# Benchmarks",
        "",
        f"Written by `{report['command']}` on {report['finished'][:16].replace('T', ' ')} UTC "
        f"(mode `{report['mode']}`, wall time {report['wall_time_s'] / 60:.1f} min). "
        "Benchmarks are not tests: CI does not run them. Each figure is a ratio of two measurements taken in the "
        "same run, medians over repetitions after warm-up, implementations interleaved round by round. "
        "How each is measured: the docstring of `benchmarks/run.py`; the raw timings: the JSON file.",
        "",
        f"**Machine:** {machine['cpu']}, {machine['cpus']} CPUs ({', '.join(machine['cpu_flags'])}), "
        f"{machine['memory_gib']} GiB; Python {machine['python']}, Keras {machine['keras']} "
        f"({machine['backend']}), TensorFlow {machine['tensorflow']}, PyTorch {machine['torch']}, "
        f"JAX {machine['jax']}, MONAI {machine['monai']}."
        + (f" **GPU:** {machine['gpu']}." if machine.get("gpu") else ""),
        "",
        f"**Load from other processes during the run:** {_load_text(report)}",
        "",
    ]
    if report["mode"].startswith("gpu"):
        lines += ["The targets are those of the CPU suite, shown for comparison; the bfloat16 targets apply to CPUs "
                  "only. Keras runs on JAX (XLA) here, PyTorch on CUDA with cuDNN.", ""]
    else:
        lines += ["The GPU check (`benchmarks/device_check.sh`) has its own page: `docs/benchmarks_gpu.md`.", ""]
    busy = [value for value in report.get("other_cpus", {}).values() if value is not None and value > 0.25]
    if busy:
        lines += [f"**Warning: the machine was busy** (up to {max(busy):.1f} CPUs of other work): wall-time figures "
                  "are unreliable. The column *from CPU time* repeats the ratios with the process CPU time of each "
                  "call, which other work hardly changes when each core runs one thread.", ""]
    lines += [
        "| figure | value | from CPU time | target | met |",
        "|---|---|---|---|---|",
    ]
    cpu_ratios = report["details"].get("models_summary", {}).get("cpu_time_ratios", {})
    for key, text, *_ in TARGETS:
        status = report["targets"].get(key, {})
        met = status.get("met")
        met_text = "—" if met is None else ("yes" if met else "**no**")
        if status and not status.get("applies", True):
            met_text = "n/a"
        lines.append(f"| `{key}` | {_fmt(report.get(key))} | {_fmt(cpu_ratios.get(key))} | {text} | {met_text} |")
    models = report["details"].get("models")
    if models:
        lines += ["", f"Seconds per call (median; batch {models['batch_size']}, {report['settings']['patch']}^3 "
                  f"patches, 4 channels, {report['settings']['n_labels']} labels) and volumes per second:", "",
                  "| implementation | train step (s) | prediction (s) | train vol/s | predict vol/s |",
                  "|---|---|---|---|---|"]
        per_second = report["details"]["models_summary"]["volumes_per_second"]
        for key, value in models["timings"].items():
            lines.append(f"| {key} | {median(value['train_s']):.3f} | {median(value['predict_s']):.3f} | "
                         f"{per_second[key]['train']:.3f} | {per_second[key]['predict']:.3f} |")
        flops = ", ".join(f"{name} {value / 1e9:.1f}" for name, value in models["flops"].items())
        lines += ["", f"Forward GFLOP per volume (2 x multiply-accumulates of the convolutions): {flops}. "
                  f"Matrix-multiply peak, float32 GFLOP/s: "
                  + ", ".join(f"{k} {v:.0f}" for k, v in models["matmul"]["gflops"].items()) + "."]
    window, pipeline = report["details"].get("sliding_window", {}), report["details"].get("pipeline")
    if "project" in window:
        project = window["project"]
        lines += ["", f"Sliding window: {project['windows']} windows of {window['settings']['window']}^3 over "
                  f"{tuple(window['settings']['volume'])}, batch {project['batch_size']}, policy {project['policy']}: "
                  f"{project['total_s']:.1f} s end to end, {project['outside_model_s']:.2f} s outside the model"
                  + (f"; MONAI {window['monai']['windows']} windows, {window['monai']['total_s']:.1f} s, "
                     f"{window['monai']['outside_model_s']:.2f} s outside" if "monai" in window else "") + "."]
    if pipeline:
        lines += ["", f"Pipeline: {pipeline['settings']['model']}, policy {pipeline['settings']['policy']}, "
                  f"{pipeline['settings']['rounds']} rounds of {pipeline['settings']['steps_per_round']} steps: "
                  f"{pipeline['in_memory_steps_per_s']:.3f} steps/s in memory, {pipeline['dataset_steps_per_s']:.3f} "
                  f"from HDF5 with flip + elastic; the pipeline's CPU time per batch ({pipeline['pipeline_batch_cpu_s']:.3f}"
                  f" s) predicts a ratio of {pipeline['expected_ratio_from_cpu_share']:.3f}."]
        if "sample_process_cpu_s" in pipeline:
            lines[-1] += (f" Reading and augmenting one sample alone: {pipeline['sample_read_augment_s']:.3f} s, "
                          f"{pipeline['sample_thread_cpu_s']:.3f} CPU-s in the loading thread, "
                          f"{pipeline['sample_process_cpu_s']:.3f} in the whole process.")
    if report["notes"]:
        lines += ["", "Notes:", ""] + [f"- {note}" for note in report["notes"]]
    lines += ["", f"Published anchor for GPU runs (`benchmarks/device_check.sh`): {ANCHOR}.", ""]
    return "\n".join(lines)


def _load_text(report: dict) -> str:
    shares = report.get("other_cpus", {})
    parts = [f"{name} {value:.2f}" for name, value in shares.items() if value is not None]
    text = ("average CPUs busy with other work: " + ", ".join(parts)) if parts else "not measured"
    return text + f" (load average before the run {report['load_average_before']:.2f})."


def collect_other_cpus(details: dict) -> dict:
    shares = {}
    for name, value in details.get("models", {}).get("other_cpus", {}).items():
        shares[f"models/{name}"] = value
    for name in ("project", "monai"):
        if name in details.get("sliding_window", {}):
            shares[f"sliding_window/{name}"] = details["sliding_window"][name].get("other_cpus")
    if "pipeline" in details:
        shares["pipeline"] = details["pipeline"].get("other_cpus")
    return shares


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and a smaller HDF5 case (< 10 min)")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes: checks that everything runs (seconds)")
    parser.add_argument("--gpu", action="store_true",
                        help="training and prediction only, 128^3 batch 2, both models, PyTorch on CUDA; "
                             "backend-agnostic (KERAS_BACKEND=jax)")
    parser.add_argument("--warmup", type=int, help="warm-up calls per implementation (overrides the mode's)")
    parser.add_argument("--repeats", type=int, help="timed rounds per implementation (overrides the mode's)")
    parser.add_argument("--only", help=f"comma-separated sections to run ({', '.join(SECTIONS)})")
    parser.add_argument("--output", default="benchmarks/results.json", help="JSON file (default %(default)s)")
    parser.add_argument("--markdown", help="also write the Markdown table to this file (e.g. docs/benchmarks.md)")
    parser.add_argument("--from-json", metavar="JSON", help="measure nothing: write --markdown from this report")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(CHILDREN[args.child[0]](json.loads(args.child[1]))))
        return 0
    if args.from_json:
        if not args.markdown:
            parser.error("--from-json needs --markdown")
        with open(args.from_json, encoding="utf-8") as handle:
            page = markdown(json.load(handle))
        with open(args.markdown, "w", encoding="utf-8") as handle:
            handle.write(page)
        return 0

    mode = ("gpu-dry-run" if args.dry_run else "gpu") if args.gpu else (
        "dry-run" if args.dry_run else "quick" if args.quick else "full")
    settings = settings_for(mode)
    if args.warmup is not None:
        settings.warmup = args.warmup
    if args.repeats is not None:
        settings.repeats = args.repeats
    sections = SECTIONS if not args.only else tuple(s.strip() for s in args.only.split(","))
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    if args.gpu:
        sections = tuple(s for s in sections if s == "models")

    started, start_time = datetime.datetime.now(datetime.timezone.utc), time.perf_counter()
    load_before = os.getloadavg()[0]
    machine = machine_info()
    print(f"mode {mode}; {machine['cpu']}, {machine['cpus']} CPUs, bf16 {machine['bf16_cpu']}; "
          f"Keras {machine['keras']} ({machine['backend']}); load average {load_before:.2f}", flush=True)
    if load_before > 0.5 * (os.cpu_count() or 1):
        print(f"warning: load average {load_before:.2f}: other work competes for the CPUs", file=sys.stderr)

    notes: list[str] = []
    details: dict = {}
    for section in sections:
        section_start = time.perf_counter()
        print(f"== {section}", flush=True)
        if section == "models":
            details["models"] = run_models(settings, notes)
            details["models_summary"] = summarise_models(details["models"], settings)
        elif section == "sliding_window":
            details["sliding_window"] = run_sliding_window(settings, notes)
        elif section == "pipeline":
            details["pipeline"] = run_pipeline(settings)
        elif section == "hdf5_memory":
            details["hdf5_memory"] = run_hdf5_memory(settings)
        details.setdefault("section_seconds", {})[section] = time.perf_counter() - section_start
    if args.gpu:
        notes.append("--gpu: the sliding-window, pipeline and memory sections were skipped (CPU measurements).")
    for section in SECTIONS:
        if section not in sections and not args.gpu:
            notes.append(f"section {section} was not run (--only).")

    values = headline(details)
    report = {
        "command": "python benchmarks/run.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "mode": mode, "started": started.isoformat(timespec="seconds"),
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "wall_time_s": time.perf_counter() - start_time, "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0], "machine": machine,
        "settings": dataclasses.asdict(settings), **values,
        "targets": target_status(values, machine["bf16_cpu"], mode), "notes": notes,
        "other_cpus": collect_other_cpus(details), "anchor": ANCHOR, "details": details,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=1, default=_json_default)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as handle:
            handle.write(markdown(report))

    print("== results")
    for key, text, *_ in TARGETS:
        status = report["targets"].get(key, {})
        met = status.get("met")
        print(f"{key:<42}{_fmt(values[key]):>10}  {text}{'' if met is None else ('  met' if met else '  MISSED')}")
    for note in notes:
        print(f"note: {note}")
    print(f"wall time {report['wall_time_s']:.0f} s; wrote {args.output}"
          + (f" and {args.markdown}" if args.markdown else ""))
    return 0


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (tuple, set)):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value)}")


if __name__ == "__main__":
    sys.exit(main())
