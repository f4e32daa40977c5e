"""Long runs in one process: memory and open files must stay flat.

Two measurements, each through the code path of the scripts:

* training: ``pipeline.train_from_config`` (what ``scripts/train.py`` runs) for many short
  epochs, with a callback added to the run's own callbacks that records, after every epoch,
  the resident memory (``VmRSS``) and the number of open file descriptors (``/proc/self/fd``);
* prediction: ``commands.predict.predict_new_subjects`` (``scripts/predict.py --input``) on many
  subjects, recording the same after each label map is written.

Growth is measured against the state after a few warm-up steps (graph tracing, caches, lazy
imports), and the target is at most 10 % more memory and no more open files at the end.

    python benchmarks/long_run_memory.py                      # 40 epochs, 50 subjects of 32^3
    python benchmarks/long_run_memory.py --epochs 60 --subjects 100 --json out.json

Prints one line per epoch and per subject, then a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def rss_mib() -> float:
    """Resident memory of this process in MiB (``VmRSS``)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def open_files() -> int:
    """Open file descriptors of this process."""
    return len(os.listdir("/proc/self/fd"))


def growth(samples: list[dict], warmup: int) -> dict:
    """Memory and open-file growth from sample ``warmup`` (1-based) to the last."""
    base = samples[min(warmup, len(samples)) - 1]
    last = samples[-1]
    return {
        "rss_after_warmup_mib": round(base["rss_mib"], 1),
        "rss_last_mib": round(last["rss_mib"], 1),
        "rss_max_mib": round(max(s["rss_mib"] for s in samples[warmup - 1:]), 1),
        "rss_growth_percent": round(100 * (last["rss_mib"] - base["rss_mib"]) / base["rss_mib"], 2),
        "fds_after_warmup": base["fds"],
        "fds_last": last["fds"],
        "fds_max": max(s["fds"] for s in samples[warmup - 1:]),
    }


def make_config(folder: Path, n_subjects: int, shape: int, epochs: int, workers: int):
    """A tiny run in ``folder/run``: demo subjects of ``shape``^3 resampled to 16^3, whole-image training."""
    from unet3d_keras.config import load_config

    return load_config(None, [
        f"output_dir={folder / 'run'}", "seed=1", f"data.n_demo_subjects={n_subjects}",
        f"data.demo_shape=[{shape}, {shape}, {shape}]", "data.image_shape=[16, 16, 16]",
        "model.depth=3", "model.n_base_filters=4", f"training.n_epochs={epochs}", "training.batch_size=1",
        "training.validation_batch_size=1", "training.mixed_precision=off", f"training.workers={workers}",
        "training.early_stopping_patience=null", "prediction.overlap=0",
    ])


def measure_training(folder: Path, epochs: int = 40, workers: int = 1, shape: int = 32, n_subjects: int = 8,
                     verbose: bool = True) -> dict:
    """Train ``epochs`` short epochs with ``train_from_config``; samples after each epoch."""
    import keras

    from unet3d_keras import pipeline
    from unet3d_keras.pipeline import train_from_config

    samples: list[dict] = []

    class Probe(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            samples.append({"epoch": epoch + 1, "rss_mib": rss_mib(), "fds": open_files(),
                            "time": time.monotonic()})
            if verbose:
                print(f"epoch {epoch + 1:3d}  RSS {samples[-1]['rss_mib']:8.1f} MiB  open files {samples[-1]['fds']}",
                      flush=True)

    original = pipeline.get_callbacks  # the name the pipeline calls
    pipeline.get_callbacks = lambda *args, **kwargs: original(*args, **kwargs) + [Probe()]
    try:
        config = make_config(folder, n_subjects, shape, epochs, workers)
        train_from_config(config, show_progress=False, verbose=0, evaluate=False)
    finally:
        pipeline.get_callbacks = original
    return {"config": {"epochs": epochs, "subjects": n_subjects, "shape": shape, "workers": workers},
            "samples": samples, "summary": growth(samples, warmup=5)}


def measure_prediction(folder: Path, n_subjects: int = 50, shape: int = 32, verbose: bool = True) -> dict:
    """Predict ``n_subjects`` new subjects with ``predict_new_subjects``; samples after each one.

    Uses the model and data file of :func:`measure_training` in ``folder``.
    """
    from unet3d_keras import predictor as prediction  # predictor.py writes the label maps
    from unet3d_keras.demo import write_demo_dataset
    from unet3d_keras.commands.predict import predict_new_subjects
    from unet3d_keras.pipeline import RunPaths

    config = make_config(folder, 8, shape, 1, 1)
    subjects = folder / "new_subjects"
    write_demo_dataset(subjects, n_subjects=n_subjects, shape=(shape,) * 3, seed=2, show_progress=False)
    paths = RunPaths.from_config(config)
    samples: list[dict] = []
    original = prediction.save_image_atomically

    def save_and_probe(image, path):
        original(image, path)
        samples.append({"subject": len(samples) + 1, "rss_mib": rss_mib(), "fds": open_files(),
                        "time": time.monotonic()})
        if verbose:
            print(f"subject {len(samples):3d}  RSS {samples[-1]['rss_mib']:8.1f} MiB  open files {samples[-1]['fds']}",
                  flush=True)

    prediction.save_image_atomically = save_and_probe
    try:
        written, failures = predict_new_subjects(config, [subjects], paths.model_file, paths.data_file,
                                                 folder / "predictions", show_progress=False)
    finally:
        prediction.save_image_atomically = original
    assert not failures and len(written) == n_subjects, failures
    return {"config": {"subjects": n_subjects, "shape": shape}, "samples": samples,
            "summary": growth(samples, warmup=5)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40, help="short training epochs (default 40)")
    parser.add_argument("--subjects", type=int, default=50, help="subjects to predict (default 50)")
    parser.add_argument("--shape", type=int, default=32, help="voxels per axis of each subject (default 32)")
    parser.add_argument("--workers", type=int, default=1, help="training.workers (default 1)")
    parser.add_argument("--json", default=None, help="also write the samples and summaries here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="long_run_memory_") as tmp:
        folder = Path(tmp)
        print(f"Training {args.epochs} epochs (train_from_config), {args.shape}^3 subjects", flush=True)
        trained = measure_training(folder, args.epochs, args.workers, args.shape)
        print(f"Predicting {args.subjects} subjects (predict_new_subjects), {args.shape}^3", flush=True)
        predicted = measure_prediction(folder, args.subjects, args.shape)
    result = {"training": trained, "prediction": predicted}
    for name, part in result.items():
        s = part["summary"]
        print(f"{name}: RSS {s['rss_after_warmup_mib']} MiB after warm-up (5), {s['rss_last_mib']} MiB at the end "
              f"({s['rss_growth_percent']:+.2f} %), max {s['rss_max_mib']} MiB; open files {s['fds_after_warmup']} -> "
              f"{s['fds_last']} (max {s['fds_max']})")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    ok = all(part["summary"]["rss_growth_percent"] <= 10 and part["summary"]["fds_last"] <= part["summary"]
             ["fds_after_warmup"] for part in result.values())
    print("flat" if ok else "GROWTH beyond the target")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
