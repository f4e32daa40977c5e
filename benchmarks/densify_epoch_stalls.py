"""Stalls of densify's training: its own step loop against ``model.fit`` on a Keras dataset of one epoch.

Densify trains with ``unet3d_keras.step_loop.fit_steps``. Until 2026-12-07 it called ``model.fit`` on its
sampler as a ``keras.utils.PyDataset`` of one epoch, which TensorFlow reads through a tf.data generator
iterator, a new one each epoch. Dropping one while its prefetch thread was inside the generator waited
about 5 s: at epoch boundaries, and for the last iterator whenever the garbage collector reached it.
Runs of each kind alternate in this process, on the same draws; each trains a fixed number of steps, its
steps longer than ``--stall`` seconds are counted (the first, which traces the training function, is left
out), and a full garbage collection after it is timed.

    python benchmarks/densify_epoch_stalls.py [--runs 6] [--epochs 6] [--stall 2]
"""

from __future__ import annotations

import argparse
import gc
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
    from unet3d_keras.step_loop import fit_steps

    gaps: list[float] = []

    class StepGaps(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.last = None

        def on_train_batch_end(self, batch, logs=None):
            now = time.monotonic()
            if self.last is not None:
                gaps.append(now - self.last)
            self.last = now

    class OneEpoch(keras.utils.PyDataset):
        """The batches as a Keras dataset of one epoch, as densify fitted on before."""

        def __init__(self, batch, steps_per_epoch):
            super().__init__(workers=1)
            self.batch, self.steps_per_epoch, self.epoch = batch, steps_per_epoch, -1  # fit counts one first

        def __len__(self):
            return self.steps_per_epoch

        def on_epoch_end(self):
            self.epoch += 1

        def __getitem__(self, index):
            return self.batch(self.epoch * self.steps_per_epoch + int(index))

    def step_loop(model, batch, epochs, steps_per_epoch, callbacks):
        fit_steps(model, batch, epochs, steps_per_epoch, [*callbacks, StepGaps()])

    def keras_fit(model, batch, epochs, steps_per_epoch, callbacks):
        model.fit(OneEpoch(batch, steps_per_epoch), epochs=epochs, callbacks=[*callbacks, StepGaps()], verbose=0,
                  shuffle=False)

    # a 64 x 64 x 32 ball in a ball, in noise, two slices per axis annotated
    shape = np.asarray((64, 64, 32))
    radius = np.sqrt(((np.indices(shape) - shape[:, None, None, None] / 2) ** 2
                      / (shape[:, None, None, None] / 3) ** 2).sum(0))
    dense = (radius < 1).astype(np.uint8) + (radius < 0.5)
    image = (dense + np.random.default_rng(4).normal(0, 0.3, dense.shape)).astype(np.float32)
    sparse = make_sparse_annotation(dense, (2, 2, 2))
    kinds = {"step loop": step_loop, "model.fit": keras_fit}
    results = {kind: {"stalls": [], "step_seconds": [], "longest_step": [], "gc_seconds": []} for kind in kinds}
    try:
        for run in range(args.runs):
            for kind, loop in kinds.items():
                densify.fit_steps = loop  # a benchmark's own process: restored below
                gaps.clear()
                densify.fit_sparse(image, sparse, 255, steps=args.epochs * densify.STEPS_PER_EPOCH, seed=run,
                                   show_progress=False, options=DensifyOptions(mirror=False))
                start = time.monotonic()
                gc.collect()
                collected = time.monotonic() - start
                result = results[kind]
                result["stalls"].append(sum(gap > args.stall for gap in gaps))
                result["longest_step"].append(max(gaps))
                result["gc_seconds"].append(collected)
                result["step_seconds"].append(sum(gaps))
                print(f"run {run + 1} {kind:9s}: steps 2 on {sum(gaps):5.1f} s, longest {max(gaps):4.1f} s, "
                      f"{result['stalls'][-1]} stalls, garbage collection after it {collected:4.1f} s", flush=True)
    finally:
        densify.fit_steps = fit_steps
    for kind, result in results.items():
        median = statistics.median(result["step_seconds"])
        print(f"{kind:9s}: stalls in {sum(n > 0 for n in result['stalls'])} of {args.runs} runs "
              f"({sum(result['stalls'])} in all), median time of steps 2 on {median:.1f} s, "
              f"longest step {max(result['longest_step']):.1f} s, longest garbage collection "
              f"{max(result['gc_seconds']):.1f} s")
    ratio = statistics.median(results["model.fit"]["step_seconds"]) / statistics.median(
        results["step loop"]["step_seconds"])
    print(f"median time of steps 2 on, model.fit / step loop: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
