"""Does the HDF5 input pipeline keep up with training? Rate of ``fit`` on the PyDataset (flip +
elastic augmentation, prefetched by Keras) divided by the rate of ``fit`` on the same number of
batches held in memory.

Model: the reference U-Net, ``unet_model_3d((64, 64, 64, 4), n_labels=3, deconvolution=True)``
(depth 4, 32 base filters), batch 1, 64^3 patches cut from synthetic 4-channel subjects stored
in a temporary HDF5 file. After one warm-up fit of each kind (tracing, first reads), short fits
of the two kinds alternate for ``--rounds`` rounds, so that load from other processes hits both
alike; the first step of every fit is left out and the rates are the inverse mean step times.

    python benchmarks/pipeline_efficiency.py                # 3 rounds of 3 measured steps per kind
    python benchmarks/pipeline_efficiency.py --quick        # 2 rounds of 2
    python benchmarks/pipeline_efficiency.py --json out.json --workers 2

Prints both rates and their ratio (target >= 0.95), the per-round ratios, the time to read and
augment one sample, and the pipeline's CPU time per batch as a share of a training step's (the
slowdown to expect when the pipeline overlaps the step). A training step takes 5-10 s on the
2-core development machine and varies by 10-30% with other load: check ``uptime`` first and
prefer several rounds; the ratio of one short run is only good to about +-10%.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

PATCH = (64, 64, 64)


def write_subjects(path: str, n_subjects: int, shape: tuple[int, int, int], seed: int = 0) -> None:
    """Smooth 4-channel subjects with labels 1, 2, 4 in a blob, in the contract's HDF5 layout."""
    import tables
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(-1, 1, s, dtype=np.float32) for s in shape], indexing="ij", sparse=True)
    filters = tables.Filters(complevel=5, complib="blosc")
    with tables.open_file(path, mode="w") as hdf5:
        data = hdf5.create_earray(hdf5.root, "data", tables.Float32Atom(), (0, 4) + shape, filters=filters,
                                  expectedrows=n_subjects)
        truth = hdf5.create_earray(hdf5.root, "truth", tables.UInt8Atom(), (0, 1) + shape, filters=filters,
                                   expectedrows=n_subjects)
        affine = hdf5.create_earray(hdf5.root, "affine", tables.Float32Atom(), (0, 4, 4), filters=filters,
                                    expectedrows=n_subjects)
        for _ in range(n_subjects):
            centre = rng.uniform(-0.3, 0.3, 3)
            blob = np.exp(-sum((g - c) ** 2 for g, c in zip(grids, centre)) * 4)
            texture = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), 3) * 5
            channels = np.stack([blob * (1 + c) + texture * 0.1 * (c + 1) for c in range(4)])
            label = (blob > 0.3).astype(np.uint8) + (blob > 0.6) + 2 * (blob > 0.85)
            data.append(channels[None].astype(np.float32))
            truth.append(label[None, None])
            affine.append(np.eye(4, dtype=np.float32)[None])


class StepTimes:
    """A Keras callback recording when each training step ends."""

    def __new__(cls):
        import keras

        class _Recorder(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.times: list[float] = []
                self.cpu_times: list[float] = []  # CPU seconds of the whole process (all threads)

            def on_train_batch_end(self, batch, logs=None):
                self.times.append(time.perf_counter())
                self.cpu_times.append(time.process_time())

        return _Recorder()


def timed_dataset_class():
    """HDF5Dataset that records the wall and CPU time (of the calling thread) of each batch."""
    from unet3d_keras.dataset import HDF5Dataset

    class TimedHDF5Dataset(HDF5Dataset):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.batch_times: list[tuple[float, float]] = []

        def __getitem__(self, index):
            wall, cpu = time.perf_counter(), time.thread_time()
            batch = super().__getitem__(index)
            self.batch_times.append((time.perf_counter() - wall, time.thread_time() - cpu))
            return batch

    return TimedHDF5Dataset


def run(args: argparse.Namespace) -> dict:
    import keras

    from unet3d_keras.augmentation.params import AugmentationParams
    from unet3d_keras.dataset import HDF5Dataset
    from unet3d_keras.generator import load_sample
    from unet3d_keras.model import unet_model_3d

    n_steps = max(args.warmup, args.steps) + 1
    patch = tuple(getattr(args, "patch", PATCH))
    base_filters, depth = getattr(args, "base_filters", 32), getattr(args, "depth", 4)
    policy = getattr(args, "policy", None) or keras.config.dtype_policy().name
    folder = tempfile.mkdtemp(prefix="pipeline_efficiency_")
    path = os.path.join(folder, "data.h5")
    started = time.perf_counter()
    write_subjects(path, args.subjects, tuple(args.shape))
    print(f"wrote {args.subjects} subjects of 4x{tuple(args.shape)} in {time.perf_counter() - started:.1f} s")

    augmentation = AugmentationParams(flip=True, elastic=True)
    dataset = timed_dataset_class()(
        path, list(range(args.subjects)), batch_size=1, n_labels=3, labels=(1, 2, 4), patch_shape=patch,
        patch_start_offset=(8, 8, 8), augmentation=augmentation, seed=0, workers=args.workers,
        use_multiprocessing=args.multiprocessing, max_queue_size=args.queue,
    )
    if len(dataset) < n_steps:
        raise SystemExit(f"only {len(dataset)} batches per epoch; use more --subjects")

    # Cost of one sample on its own (read + flip + elastic), to compare with a training step.
    handle = dataset._handle()
    items = dataset.epoch_items()
    rng = np.random.default_rng(0)
    load_sample(handle, items[0], patch, augmentation, rng)
    started, thread_cpu, process_cpu = time.perf_counter(), time.thread_time(), time.process_time()
    for row in items[:5]:
        load_sample(handle, row, patch, augmentation, rng)
    sample_seconds = (time.perf_counter() - started) / 5
    # CPU time that other threads spend on the sample's behalf (a multithreaded BLAS's workers
    # spinning after a product, for example) competes with training without showing in the
    # loader thread's own time.
    sample_thread_cpu = (time.thread_time() - thread_cpu) / 5
    sample_process_cpu = (time.process_time() - process_cpu) / 5
    print(f"read + flip + elastic of one 4x{patch} sample: {sample_seconds:.3f} s, CPU {sample_thread_cpu:.3f} s in "
          f"this thread and {sample_process_cpu:.3f} s in the whole process")

    # The same number of batches, in memory (from the un-augmented plan: content does not matter).
    plain = HDF5Dataset(path, list(range(args.subjects)), batch_size=1, n_labels=3, labels=(1, 2, 4),
                        patch_shape=patch, seed=0)
    batches = [plain[i] for i in range(n_steps)]
    x = np.concatenate([b[0] for b in batches])
    y = np.concatenate([b[1] for b in batches])
    del batches

    keras.utils.set_random_seed(0)
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        model = unet_model_3d(patch + (4,), n_labels=3, deconvolution=True, n_base_filters=base_filters, depth=depth)
    finally:
        keras.config.set_dtype_policy(previous_policy)

    # Alternate short fits of both kinds, so that load from other processes on the machine hits
    # both alike. The first fit of each kind warms up (tracing, first reads); in later fits the
    # first step is left out (it waits for the pipeline to start).
    step_seconds: dict[str, list[list[float]]] = {"in_memory": [], "dataset": []}
    cpu_seconds: dict[str, list[list[float]]] = {"in_memory": [], "dataset": []}
    fits = {
        "in_memory": lambda n, callback: model.fit(x[:n], y[:n], batch_size=1, epochs=1, shuffle=False, verbose=0,
                                                   callbacks=[callback]),
        "dataset": lambda n, callback: model.fit(dataset, epochs=1, steps_per_epoch=n, shuffle=False, verbose=0,
                                                 callbacks=[callback]),
    }
    for kind, fit in fits.items():
        recorder = StepTimes()
        fit(args.warmup + 1, recorder)
        print(f"warm-up {kind}: {np.round(np.diff(recorder.times), 2).tolist()} s", flush=True)
    dataset.batch_times.clear()
    for round_ in range(args.rounds):
        for kind, fit in fits.items():
            recorder = StepTimes()
            fit(args.steps + 1, recorder)
            step_seconds[kind].append(np.round(np.diff(recorder.times), 3).tolist())
            cpu_seconds[kind].append(np.round(np.diff(recorder.cpu_times), 3).tolist())
            print(f"round {round_} {kind}: {step_seconds[kind][-1]} s/step, load {os.getloadavg()[0]:.2f}",
                  flush=True)

    mean_step = {kind: float(np.mean(np.concatenate(times))) for kind, times in step_seconds.items()}
    median_step = {kind: float(np.median(np.concatenate(times))) for kind, times in step_seconds.items()}
    mean_cpu = {kind: float(np.mean(np.concatenate(times))) for kind, times in cpu_seconds.items()}
    in_memory, from_dataset = 1 / mean_step["in_memory"], 1 / mean_step["dataset"]
    pipeline_cpu = mean_cpu["dataset"] - mean_cpu["in_memory"]
    print(f"CPU seconds per step (all threads): in memory {mean_cpu['in_memory']:.2f}, "
          f"HDF5 PyDataset {mean_cpu['dataset']:.2f} (difference {pipeline_cpu:+.2f})")
    batch_wall, batch_cpu = (float(v) for v in np.mean(dataset.batch_times, axis=0))
    # If the pipeline overlaps the step perfectly, it can only slow training by taking CPU away.
    cpu_share = batch_cpu / (mean_cpu["in_memory"])
    print(f"pipeline per batch (in the worker): {batch_wall:.3f} s wall, {batch_cpu:.3f} s CPU = "
          f"{100 * cpu_share:.1f}% of the CPU time of a training step -> expected ratio ~{1 - cpu_share:.3f}")
    ratio = from_dataset / in_memory
    # Neighbouring fits share the machine's state best: the median of per-round ratios is the
    # figure least affected by load that changes during the run.
    round_ratios = [
        float(np.mean(a) / np.mean(b)) for a, b in zip(step_seconds["in_memory"], step_seconds["dataset"])
    ]
    print(f"in memory {in_memory:.4f} steps/s ({mean_step['in_memory']:.2f} s/step), HDF5 PyDataset with flip + "
          f"elastic {from_dataset:.4f} steps/s ({mean_step['dataset']:.2f} s/step): ratio {ratio:.3f} "
          f"(target >= 0.95); ratio of medians {median_step['in_memory'] / median_step['dataset']:.3f}; "
          f"per-round ratios {np.round(round_ratios, 3).tolist()} (median {np.median(round_ratios):.3f})")
    dataset.close()
    plain.close()
    os.remove(path)
    os.rmdir(folder)
    return {
        "in_memory_steps_per_s": in_memory,
        "dataset_steps_per_s": from_dataset,
        "ratio": ratio,
        "target_ratio": 0.95,
        "ratio_of_median_steps": median_step["in_memory"] / median_step["dataset"],
        "round_ratios": round_ratios,
        "median_round_ratio": float(np.median(round_ratios)),
        "step_seconds": step_seconds,
        "cpu_seconds_per_step": mean_cpu,
        "pipeline_batch_wall_s": batch_wall,
        "pipeline_batch_cpu_s": batch_cpu,
        "expected_ratio_from_cpu_share": 1 - cpu_share,
        "cpu_step_seconds": cpu_seconds,
        "sample_read_augment_s": sample_seconds,
        "sample_thread_cpu_s": sample_thread_cpu,
        "sample_process_cpu_s": sample_process_cpu,
        "settings": {
            "model": f"unet_model_3d({patch + (4,)}, n_labels=3, deconvolution=True), depth {depth}, "
                     f"{base_filters} base filters", "policy": policy,
            "batch_size": 1, "warmup_steps": args.warmup, "steps_per_round": args.steps, "rounds": args.rounds,
            "workers": args.workers, "use_multiprocessing": args.multiprocessing, "max_queue_size": args.queue,
            "subjects": args.subjects, "subject_shape": list(args.shape), "augmentation": "flip + elastic",
        },
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_average_before": args.load,
                    "keras": keras.__version__, "backend": keras.backend.backend()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds of 2 measured steps per kind")
    parser.add_argument("--warmup", type=int, default=1, help="warm-up steps per kind (first fit)")
    parser.add_argument("--steps", type=int, default=3, help="measured steps per fit")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of both kinds of fit")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--multiprocessing", action="store_true")
    parser.add_argument("--queue", type=int, default=4, help="max_queue_size")
    parser.add_argument("--subjects", type=int, default=6)
    parser.add_argument("--shape", type=int, nargs=3, default=(72, 72, 68))
    parser.add_argument("--patch", type=int, nargs=3, default=PATCH, help="patch shape (default 64 64 64)")
    parser.add_argument("--base-filters", type=int, default=32, help="U-Net base filters (default 32)")
    parser.add_argument("--depth", type=int, default=4, help="U-Net depth (default 4)")
    parser.add_argument("--policy", default="float32", help="Keras dtype policy (float32, mixed_bfloat16)")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.steps = 2, 2
    args.load = os.getloadavg()[0]
    if args.load > 1.5:
        print(f"warning: load average {args.load:.2f}: other work competes for the CPUs", file=sys.stderr)
    result = run(args)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as stream:
            json.dump(result, stream, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
