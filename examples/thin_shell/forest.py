"""A classic baseline: a random forest on filter responses, as ilastik's pixel classification.

Before deep learning, and still in ilastik, sparse annotation was densified by a random forest
that classifies each voxel from a stack of filter responses of the image, trained on the
annotated voxels. Here: the image itself; Gaussian smoothing, gradient magnitude and Laplacian of
Gaussian at sigma 0.7, 1, 1.6 and 3.5 voxels; the three eigenvalues of the Hessian at sigma 0.7, 1
and 1.6 (22 features, scipy's Gaussian derivatives); scikit-learn's forest of 100 trees (at least 2
voxels a leaf, seeded). Trained on the voxels of two slices per axis, as densify is; scored as the
tables are: IoU per class on the never-annotated voxels. Seconds per volume.

    python examples/thin_shell/forest.py [--volume thick thin clear edges] [--seed 42]

Writes ``results_forest.json`` (``{"volumes": {volume: result}, "commands": [...]}``); ``run.py
--markdown-only`` puts it on the page.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage
from sklearn.ensemble import RandomForestClassifier

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from experiments import DEFAULT_SEED, FOREST_RESULTS  # noqa: E402
from processes import save_json, start_results  # noqa: E402
from volume import IGNORE, VOLUMES, iou_per_class, make_volume, sparse_labels  # noqa: E402

#: sigmas (voxels) of the smoothing, gradient magnitude and Laplacian features, and of the Hessian's
SIGMAS = (0.7, 1.0, 1.6, 3.5)
HESSIAN_SIGMAS = (0.7, 1.0, 1.6)
TREES = 100


def hessian_eigenvalues(image: np.ndarray, sigma: float) -> np.ndarray:
    """The eigenvalues of the Gaussian-smoothed Hessian at each voxel, ascending: ``(x, y, z, 3)``."""
    hessian = np.empty(image.shape + (3, 3), np.float32)
    for i in range(3):
        for j in range(i, 3):
            order = [0, 0, 0]
            order[i] += 1
            order[j] += 1
            hessian[..., i, j] = hessian[..., j, i] = ndimage.gaussian_filter(image, sigma, order=order)
    return np.linalg.eigvalsh(hessian)


def filter_features(image: np.ndarray) -> np.ndarray:
    """The filter responses of an ``(x, y, z)`` image: ``(x, y, z, 22)`` float32."""
    image = image.astype(np.float32)
    features = [image]
    for sigma in SIGMAS:
        features += [ndimage.gaussian_filter(image, sigma), ndimage.gaussian_gradient_magnitude(image, sigma),
                     ndimage.gaussian_laplace(image, sigma)]
    for sigma in HESSIAN_SIGMAS:
        features += list(np.moveaxis(hessian_eigenvalues(image, sigma), -1, 0))
    return np.stack(features, axis=-1)


def classify(volume: str, seed: int) -> dict:
    """Train the forest on ``volume``'s annotated voxels, score its never-annotated ones."""
    image, dense = make_volume(**VOLUMES[volume])
    sparse = sparse_labels(dense)
    annotated = sparse != IGNORE
    began = time.monotonic()
    features = filter_features(image)
    forest = RandomForestClassifier(n_estimators=TREES, min_samples_leaf=2, n_jobs=-1, random_state=seed)
    forest.fit(features[annotated], sparse[annotated])
    predicted = forest.predict(features.reshape(-1, features.shape[-1])).reshape(dense.shape)
    return {"seed": seed, "features": features.shape[-1], "trees": TREES,
            "seconds": round(time.monotonic() - began, 1), "iou": iou_per_class(predicted, dense, ~annotated)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volume", nargs="+", choices=list(VOLUMES), default=list(VOLUMES))
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"the forest's seed (default {DEFAULT_SEED})")
    args = parser.parse_args(argv)
    results, _ = start_results(FOREST_RESULTS, __file__, argv, {"volumes": {}})
    for volume in args.volume:
        result = results["volumes"][volume] = classify(volume, args.seed)
        save_json(FOREST_RESULTS, results)
        print(f"{volume}: IoU on the never-annotated voxels " + " ".join(f"{v:.3f}" for v in result["iou"])
              + f" ({result['seconds']} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
