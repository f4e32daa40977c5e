"""Which patch and batch sizes fit in 12, 24 and 80 GB of GPU memory: computed from activation sizes.

Not measured: the training memory of one batch is estimated as (sum of every layer's output
elements per volume) x batch x bytes per element x 2 (the activations kept for the backward
pass plus their gradients alive at the peak), plus 16 bytes per parameter (float32 weights,
gradients and Adam's two moments) and 1 GiB for the framework; a size "fits" when the estimate
is at most 90% of the card. float16 (mixed precision) stores activations in 2 bytes, float32 in 4.

    python benchmarks/gpu_memory_estimate.py [--markdown]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CARDS_GB = (12, 24, 80)
PATCHES = (64, 96, 128, 160)
BATCHES = (1, 2, 4, 8)


def activation_elements(model) -> int:
    """Sum of every layer's output elements for one volume (the input included)."""
    import numpy as np

    total = 0
    for layer in model.layers:
        for tensor in (layer.output if isinstance(layer.output, list) else [layer.output]):
            total += int(np.prod(tensor.shape[1:]))
    return total


def networks(patch: int):
    from unet3d_keras.model import build_isensee2017, build_unet_3d

    shape = (patch, patch, patch, 4)
    return {"unet (depth 4, 32 base filters)": build_unet_3d(shape, n_labels=3, deconvolution=True, n_base_filters=32),
            "isensee2017 (depth 5, 16 base filters)": build_isensee2017(shape, n_labels=3, n_base_filters=16)}


def estimate_gib(elements: int, params: int, batch: int, bytes_per_element: int) -> float:
    return (elements * batch * bytes_per_element * 2 + params * 16) / 2**30 + 1.0


def table() -> str:
    rows = ["| network | precision | patch | " + " | ".join(f"largest batch in {gb} GB" for gb in CARDS_GB) + " |",
            "|---|---|---|" + "---|" * len(CARDS_GB)]
    for patch in PATCHES:
        for name, model in networks(patch).items():
            elements, params = activation_elements(model), model.count_params()
            for precision, size in (("float16 (mixed)", 2), ("float32", 4)):
                cells = []
                for gb in CARDS_GB:
                    fits = [b for b in BATCHES if estimate_gib(elements, params, b, size) <= 0.9 * gb * 1e9 / 2**30]
                    cells.append("none" if not fits else f"{max(fits)}+" if max(fits) == BATCHES[-1] else str(max(fits)))
                rows.append(f"| {name} | {precision} | {patch}^3 | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    print(table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
