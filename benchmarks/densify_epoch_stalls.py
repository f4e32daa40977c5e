"""Stalls at densify's epoch boundaries: one endless data iterator against a new one each epoch.

Densify fits on ``ClassFirstPatchSampler``, an endless stream that Keras reads through one iterator for
the whole fit. A finite dataset of one epoch (what the sampler was) makes Keras build a new tf.data
iterator at each epoch; dropping the old one sometimes waited about 5 s for a tf.data thread. Runs of
each kind alternate in this process; each trains a fixed number of steps (the same draws either way) and
its steps that took more than ``--stall`` seconds are counted (the first step, which traces the training
function, is left out).

    python benchmarks/densify_epoch_stalls.py [--runs 6] [--epochs 6] [--stall 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6, help="runs of each kind (default %(default)s)")
    parser.add_argument("--epochs", type=int, default=6, help="epochs of each run (default %(default)s)")
    parser.add_argument("--stall", type=float, default=2.0, help="a step longer than this is a stall (seconds)")
    args = parser.parse_args(argv)

    import keras
    import numpy as np

    from unet3d_keras import densify
    from unet3d_keras.densify_holdout import DensifyOptions
    from unet3d_keras.sparse import make_sparse_annotation
    from unet3d_keras.sparse_sampler import ClassFirstPatchSampler

    class OneEpochSampler(ClassFirstPatchSampler):
        """The sampler as a finite dataset of one epoch, which Keras iterates anew each epoch."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.epoch = -1  # fit moves it on once before the first epoch

        def __len__(self):
            return self.steps_per_epoch

        @property
        def num_batches(self):
            return self.steps_per_epoch

        def on_epoch_end(self):
            self.epoch += 1

        def __getitem__(self, index):
            return super().__getitem__(self.epoch * self.steps_per_epoch + int(index))

    gaps: list[float] = []

    class StepGaps(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.last = None

        def on_train_batch_end(self, batch, logs=None):
            now = time.monotonic()
            if self.last is not None:
                gaps.append(now - self.last)
            self.last = now

    fit = keras.Model.fit

    def fit_with_gaps(model, *fit_args, callbacks=(), **kwargs):
        return fit(model, *fit_args, callbacks=[*callbacks, StepGaps()], **kwargs)

    # a 64 x 64 x 32 ball in a ball, in noise, two slices per axis annotated
    shape = np.asarray((64, 64, 32))
    radius = np.sqrt(((np.indices(shape) - shape[:, None, None, None] / 2) ** 2
                      / (shape[:, None, None, None] / 3) ** 2).sum(0))
    dense = (radius < 1).astype(np.uint8) + (radius < 0.5)
    image = (dense + np.random.default_rng(4).normal(0, 0.3, dense.shape)).astype(np.float32)
    sparse = make_sparse_annotation(dense, (2, 2, 2))
    kinds = {"endless": ClassFirstPatchSampler, "one epoch": OneEpochSampler}
    results = {kind: {"stalls": [], "train_seconds": [], "longest_gap": []} for kind in kinds}
    keras.Model.fit = fit_with_gaps  # a benchmark's own process: restored below
    try:
        for run in range(args.runs):
            for kind, sampler in kinds.items():
                densify.ClassFirstPatchSampler = sampler
                gaps.clear()
                fitted = densify.fit_sparse(image, sparse, 255, steps=args.epochs * densify.STEPS_PER_EPOCH,
                                            seed=run, show_progress=False, options=DensifyOptions(mirror=False))
                results[kind]["stalls"].append(sum(gap > args.stall for gap in gaps))
                results[kind]["train_seconds"].append(fitted.train_seconds)
                results[kind]["longest_gap"].append(max(gaps))
                print(f"run {run + 1} {kind:9s}: {fitted.train_seconds:5.1f} s, longest step {max(gaps):4.1f} s, "
                      f"{results[kind]['stalls'][-1]} stalls", flush=True)
    finally:
        keras.Model.fit = fit
        densify.ClassFirstPatchSampler = ClassFirstPatchSampler
    for kind, result in results.items():
        print(f"{kind:9s}: stalls in {sum(n > 0 for n in result['stalls'])} of {args.runs} runs "
              f"({sum(result['stalls'])} in all), median training {statistics.median(result['train_seconds']):.1f} s, "
              f"longest step {max(result['longest_gap']):.1f} s")
    ratio = statistics.median(results["one epoch"]["train_seconds"]) / statistics.median(
        results["endless"]["train_seconds"])
    print(f"median training time, one epoch / endless: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
