"""The fast paths against what they replace, side by side in one run: up-convolution and sliding window.

1. ``upconv_train_ratio``, ``upconv_predict_ratio``: the U-Net with its up-convolutions as
   ``MatmulConv3DTranspose`` (matrix product + depth-to-space) / the same network and weights
   with ``keras.layers.Conv3DTranspose`` (training step and prediction of one batch; < 1 is faster),
   and the largest output difference of the two.
2. ``window_time_ratio``: the on-device sliding window (``unet3d_keras.sliding_window``) / the
   NumPy loop it replaced (``numpy_sliding_window``) on a 4x240x240x155 volume, 64^3 windows,
   overlap 16, a tiny U-Net (target <= 1.0), and their largest difference (uniform and Gaussian);
   ``window_peak_rss_increase_ratio``: the peak resident memory each adds while predicting,
   measured in a fresh process each (target <= 1.0).

    python benchmarks/fast_paths.py [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

VOLUME = (4, 240, 240, 155)
WINDOW = (64, 64, 64)


def run_up_convolution(size: int, base: int, repeats: int) -> dict:
    import keras

    from run import interleaved, ratio
    from unet3d_keras.model import build_unet_3d
    from unet3d_keras.model.up_convolution import with_plain_up_convolutions

    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, size, size, size, 4)).astype(np.float32)
    y = (rng.random((1, size, size, size, 3)) > 0.5).astype(np.float32)
    fast = build_unet_3d((size, size, size, 4), n_labels=3, deconvolution=True, n_base_filters=base)
    plain = with_plain_up_convolutions(fast)
    for model in (fast, plain):
        model.compile(optimizer=keras.optimizers.SGD(1e-6), loss="mse")
    difference = float(np.abs(fast.predict_on_batch(x) - plain.predict_on_batch(x)).max())
    predict_wall, _ = interleaved({"matmul": lambda: fast.predict_on_batch(x),
                                   "transpose": lambda: plain.predict_on_batch(x)}, warmup=1, repeats=repeats)
    train_wall, _ = interleaved({"matmul": lambda: fast.train_on_batch(x, y),
                                 "transpose": lambda: plain.train_on_batch(x, y)}, warmup=1, repeats=repeats)
    return {
        "upconv_shape": [1, size, size, size, 4], "upconv_n_base_filters": base,
        "upconv_train_s": {k: float(np.median(v)) for k, v in train_wall.items()},
        "upconv_predict_s": {k: float(np.median(v)) for k, v in predict_wall.items()},
        "upconv_train_ratio": ratio(train_wall["matmul"], train_wall["transpose"]),
        "upconv_predict_ratio": ratio(predict_wall["matmul"], predict_wall["transpose"]),
        "upconv_max_abs_difference": difference,
    }


def tiny_window_model(base: int):
    from unet3d_keras.model import build_unet_3d

    return build_unet_3d(WINDOW + (VOLUME[0],), n_labels=3, deconvolution=True, depth=3, n_base_filters=base)


def predictors(model):
    """``{"device": volume -> probabilities, "numpy": ...}`` for uniform 64^3 windows, overlap 16, batch 2."""
    from numpy_sliding_window import numpy_sliding_window_inference
    from unet3d_keras.predict_functions import device_predict_fn
    from unet3d_keras.sliding_window import sliding_window_inference

    device_fn = device_predict_fn(model)
    numpy_fn = lambda batch: np.asarray(model.predict_on_batch(batch), dtype=np.float32)  # noqa: E731
    return {
        "device": lambda volume, weighting="uniform": sliding_window_inference(
            device_fn, volume, WINDOW, 16, 2, weighting),
        "numpy": lambda volume, weighting="uniform": numpy_sliding_window_inference(
            numpy_fn, volume, WINDOW, 16, 2, weighting),
    }


def memory_child(which: str, base: int) -> dict:
    """Peak RSS this process adds while predicting the volume with one of the loops (run in a fresh process)."""
    from run import peak_rss, reset_peak_rss

    model = tiny_window_model(base)
    volume = np.random.default_rng(0).normal(size=VOLUME).astype(np.float32)
    predict = predictors(model)[which]
    predict(volume[:, :64, :64, :64])  # warm-up: tracing and kernels are not the loop's memory
    reset = reset_peak_rss()
    before = peak_rss()
    predict(volume)
    after = peak_rss()
    return {"peak_rss_mib": after.get("VmHWM"),
            "peak_rss_increase_mib": after.get("VmHWM", 0) - (before.get("VmRSS", 0) if reset else 0)}


def run_sliding_window(base: int, repeats: int) -> dict:
    from run import interleaved, ratio

    model = tiny_window_model(base)
    volume = np.random.default_rng(0).normal(size=VOLUME).astype(np.float32)
    predict = predictors(model)
    differences = {weighting: float(np.abs(predict["device"](volume, weighting) - predict["numpy"](volume, weighting))
                                    .max()) for weighting in ("uniform", "gaussian")}
    wall, _ = interleaved({name: (lambda f=f: f(volume)) for name, f in predict.items()}, warmup=0, repeats=repeats)
    memory = {}
    for which in ("device", "numpy"):
        done = subprocess.run([sys.executable, __file__, "--memory-child", which, "--base", str(base)],
                              capture_output=True, text=True, check=True)
        memory[which] = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "window_volume": list(VOLUME), "window_n_base_filters": base,
        "window_s": {k: float(np.median(v)) for k, v in wall.items()},
        "window_time_ratio": ratio(wall["device"], wall["numpy"]),
        "window_max_abs_difference": differences,
        "window_memory": memory,
        "window_peak_rss_increase_ratio": memory["device"]["peak_rss_increase_mib"]
        / max(memory["numpy"]["peak_rss_increase_mib"], 1e-9),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="32^3 U-Net, fewer repetitions")
    parser.add_argument("--json", default=None)
    parser.add_argument("--memory-child", choices=("device", "numpy"), default=None, help=argparse.SUPPRESS)
    parser.add_argument("--base", type=int, default=4, help="base filters of the sliding-window model")
    args = parser.parse_args(argv)
    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child, args.base)))
        return 0
    size, base, repeats = (32, 8, 3) if args.quick else (64, 16, 5)
    result = run_up_convolution(size, base, repeats)
    print(f"up-convolution, U-Net {size}^3 base {base}: matmul / Conv3DTranspose = "
          f"train {result['upconv_train_ratio']:.3f} ({result['upconv_train_s']['matmul']:.3f} s vs "
          f"{result['upconv_train_s']['transpose']:.3f} s), predict {result['upconv_predict_ratio']:.3f} "
          f"({result['upconv_predict_s']['matmul']:.3f} s vs {result['upconv_predict_s']['transpose']:.3f} s); "
          f"max |difference| {result['upconv_max_abs_difference']:.2e}")
    window = run_sliding_window(args.base, 2 if args.quick else 3)
    result.update(window)
    memory = window["window_memory"]
    print(f"sliding window {VOLUME}, 64^3 windows, overlap 16: device / NumPy = time {window['window_time_ratio']:.3f} "
          f"({window['window_s']['device']:.2f} s vs {window['window_s']['numpy']:.2f} s, target <= 1.0); "
          f"peak RSS increase {memory['device']['peak_rss_increase_mib']:.0f} MiB vs "
          f"{memory['numpy']['peak_rss_increase_mib']:.0f} MiB = {window['window_peak_rss_increase_ratio']:.3f} "
          f"(target <= 1.0); max |difference| uniform {window['window_max_abs_difference']['uniform']:.1e}, "
          f"gaussian {window['window_max_abs_difference']['gaussian']:.1e}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
