"""Share of sliding-window prediction time spent outside the model's own calls.

A 4x240x240x155 volume (BraTS size) predicted with 64^3 windows and overlap 16
by ``patch_wise_prediction``; the model's ``predict_on_batch`` calls are timed
and everything else (padding, window extraction, batching, layout changes,
accumulation, normalisation) is overhead. Target: <= 0.03 of the total.

    python benchmarks/prediction_overhead.py [--quick] [--policy mixed_bfloat16] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 base filters instead of the reference's 32")
    parser.add_argument("--policy", default="mixed_bfloat16", help="Keras dtype policy (float32, mixed_bfloat16)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    import keras
    import numpy as np

    keras.config.set_dtype_policy(args.policy)
    from unet3d_keras.model import build_unet_3d
    from unet3d_keras.utils.patches import compute_patch_indices

    base = 8 if args.quick else 32
    model = build_unet_3d((64, 64, 64, 4), n_labels=3, deconvolution=True, n_base_filters=base)
    volume = np.random.default_rng(0).normal(size=(4, 240, 240, 155)).astype(np.float32)
    n_windows = len(compute_patch_indices(volume.shape[1:], (64, 64, 64), 16))
    model.predict_on_batch(np.zeros((args.batch_size, 64, 64, 64, 4), np.float32))  # warm-up

    result = measure_overhead(model, volume, overlap=16, batch_size=args.batch_size)
    total, inside, share = result["total_s"], result["model_s"], result["sliding_window_overhead"]
    prediction_shape = result.pop("output_shape")
    result.update({"volume": list(volume.shape), "window": [64, 64, 64], "n_base_filters": base,
                   "policy": args.policy, "target": 0.03, "output_shape": prediction_shape})
    print(f"{n_windows} windows of 64^3 over {volume.shape}: total {total:.2f} s, model {inside:.2f} s, "
          f"outside the model {total - inside:.2f} s = {share:.4f} of the total (target <= 0.03)")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=1)
    return 0


def measure_overhead(model, volume, overlap: int = 16, batch_size: int = 2) -> dict:
    """Time ``patch_wise_prediction`` of a channels-first volume, inside and outside the model.

    The model's ``predict_on_batch`` is wrapped (on the instance) by a timer; everything else
    counts as overhead. Warm the model up with a batch of ``batch_size`` windows first.

    Returns:
        ``total_s``, ``model_s``, ``outside_model_s``, ``sliding_window_overhead`` (share of the
        total outside the model), ``windows``, ``model_calls``, ``overlap``, ``batch_size``,
        ``output_shape``.
    """
    import numpy as np

    from unet3d_keras.prediction import patch_wise_prediction

    model_seconds, window_counts = [], []
    original = model.predict_on_batch

    def timed(batch):
        start = time.perf_counter()
        result = np.asarray(original(batch))
        model_seconds.append(time.perf_counter() - start)
        window_counts.append(len(batch))
        return result

    model.predict_on_batch = timed
    try:
        start = time.perf_counter()
        prediction = patch_wise_prediction(model, volume, overlap=overlap, batch_size=batch_size)
        total = time.perf_counter() - start
    finally:
        del model.predict_on_batch  # back to the class's method
    inside = float(np.sum(model_seconds))
    return {
        "total_s": total, "model_s": inside, "outside_model_s": total - inside,
        "sliding_window_overhead": (total - inside) / total, "model_calls": len(model_seconds),
        "windows": int(np.sum(window_counts)), "overlap": overlap, "batch_size": batch_size, "output_shape": list(prediction.shape),
    }


if __name__ == "__main__":
    raise SystemExit(main())
