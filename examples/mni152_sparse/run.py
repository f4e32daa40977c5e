#!/usr/bin/env python
"""Learning from sparse annotation on real data: grey and white matter of the MNI152 template.

    pip install -e ".[examples]" && python examples/mni152_sparse/run.py

nilearn ships the MNI152 2009 (symmetric) T1 template with grey- and white-matter probability
maps, so nothing is downloaded. At 2 mm (99 x 117 x 95 voxels) the labels are 0 = other,
1 = grey matter, 2 = white matter (probability above half of the map's maximum).

(a) Semi-automated mode: keep 1, 2, 4 and 8 evenly spread slices per axis, train
    ``unet3d_keras.sparse.fit_sparse`` on the annotated voxels of the volume, and score the
    grey- and white-matter IoU on the voxels that were never annotated, once per seed
    (``--seeds``, default 42 1 2). Also scored: the voxels outside every row's annotation, the
    same for all rows. Then again with nested slices (``--nested-seeds``, default 42 1): each
    count keeps the slices of the smaller ones, as when a user adds slices to an annotation; and
    with random slices (``--random-seeds``, default 42 1 2): each seed draws its slices with
    ``numpy.random.default_rng(seed)``, so that the mean over seeds is the IoU to expect from a
    number of slices wherever they fall.
(b) Fully-automated mode: train on the left hemisphere, once with 4 slices per axis and once
    with every slice annotated, and score the right hemisphere (mirrored), densely (first seed).
Reference rows: T1 intensity thresholds chosen on the same annotated voxels.

Writes ``examples/mni152_sparse/results.json`` (after every training, so ``--resume`` picks up
a stopped run and skips the trainings it holds), ``docs/sparse_annotation.md`` and two pictures
in ``docs/``. ``--epochs`` sets the training length of the semi-automated runs (default 200
epochs of 16 steps), ``--full-epochs`` that of the two hemisphere runs (default 80);
``--workers N`` trains N at once in their own processes, each with its share of the cores (on 2
cores, 2 single-threaded trainings get through about 1.4 times as many steps as one);
``--quick`` (8 epochs, slices 1 and 4, one seed, a quick fully-automated run) checks the machinery.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from unet3d_keras.cpu import cpu_name  # noqa: E402
from unet3d_keras.onednn import enable_onednn  # noqa: E402

enable_onednn()  # the kernels that scripts/densify.py runs on, here and in the workers

CLASSES = {1: "grey matter", 2: "white matter"}
# Elastic deformation interpolates the intensities but not the labels (nearest neighbour), which
# blurs the thin grey-matter ribbon against its labels: with 4 slices per axis and 1280 steps it scored
# GM/WM IoU 0.871/0.856 with elastic deformation and 0.883/0.873 without, so it is off here.
EXTRA_SETTINGS = ("augment.elastic=false",)
# What the settings trials at 4 slices per axis (seed 42, one run each; examples/mni152_sparse/sweep.py)
# and the runs behind the tables showed. Quoted in docs/sparse_annotation.md.
TRIAL_HISTORY = (
    "Training length is what mattered. With 80 epochs (1280 steps) the U-Net reached 0.883/0.873 "
    "(GM/WM, bfloat16 on this CPU) and 0.879/0.868 in float32 on a GPU, where cross-entropy alone "
    "gave 0.874/0.861; on the annotated voxels themselves it scored only 0.891/0.900, so it was "
    "underfitting, not failing to generalise. With 200 epochs (3200 steps) it reached 0.907/0.903 "
    "(annotated voxels 0.923/0.934).",
    "Window centres drawn class first (each annotated class equally likely, then a voxel of it) instead "
    "of uniformly over the annotated voxels, most of which lie in the background of outer slices: at "
    "200 epochs 1 slice per axis went from 0.913/0.914 to 0.919/0.922 and 4 slices from 0.907/0.903 "
    "to 0.922/0.919.",
    "Growth with the number of slices. Three seeds per evenly spread row: 4 to 8 slices barely moves the "
    "IoU, and 2 slices score below 1 in every seed. One slice per axis is the middle plane of each axis; two "
    "are the planes at a quarter and three quarters, which cross less of the brain: they hold more grey-matter "
    "voxels than the middle planes (10010 against 5409) but fewer white-matter ones (3716 against 3992). "
    "Scored on the same voxels for every row (the shared columns), 2 slices stay below 1, and 8 fall below 4.",
    "Random slices (3 seeds each): the mean grows with the count, GM 0.874 -> 0.891 -> 0.922 -> 0.929 and WM "
    "0.852 -> 0.888 -> 0.921 -> 0.932, and the spread over placements shrinks (standard deviation 0.037/0.067 "
    "with 1 slice, 0.004/0.008 with 8). Not every seed grows: seed 1's two random slices per axis include two "
    "coronal planes outside the brain (y = 4 and 110) and two sagittal ones next to each other (x = 46 and 50), "
    "and score 0.847/0.836 against its single slices' 0.913/0.915; seed 42 scores WM 0.930 with 4 slices and "
    "0.927 with 8. With three seeds each step on its own is within "
    "1.6 standard errors of the difference (1 to 2 slices +0.017/+0.036, 2 to 4 +0.031/+0.033, 4 to 8 "
    "+0.008/+0.011), so the means show the order but do not pin down each step; the rise from 1 to 8 slices "
    "(+0.056/+0.080) is 2.6 (GM) and 2.0 (WM) standard errors.",
    "Nested slices (seed 42 only: seed 1 did not fit the session): 1, 2, 4, 8 slices gave GM "
    "0.919, 0.920, 0.914, 0.927 and WM 0.922, 0.922, 0.912, 0.925. The nested 4 slices (voxels 12, 24, 49 "
    "and 74 of 99) leave the last quarter of each axis without one and score below the evenly spread 4 "
    "(seed 42: 0.922/0.919). Where the slices lie matters as much as how many there are: spread them over "
    "the whole structure.",
    "Other trials: 16 base filters for 640 steps 0.853/0.838; batch normalisation much worse (its moving "
    "statistics do not settle in a few hundred steps); elastic deformation about 0.015 worse.",
)
IGNORE = 255
PLACEMENTS = ("even", "nested", "random")


def load_mni152(resolution: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The T1 template ``(x, y, z)`` float32, its label map (0, 1 GM, 2 WM) and affine."""
    try:
        from nilearn import datasets
    except ImportError:
        sys.exit('error: this example needs nilearn: pip install -e ".[examples]"')
    t1 = datasets.load_mni152_template(resolution=resolution)
    grey = datasets.load_mni152_gm_template(resolution=resolution).get_fdata()
    white = datasets.load_mni152_wm_template(resolution=resolution).get_fdata()
    labels = np.zeros(grey.shape, np.uint8)
    is_grey = grey > 0.5 * grey.max()
    is_white = white > 0.5 * white.max()
    labels[is_grey] = 1
    labels[is_white & ~(is_grey & (grey >= white))] = 2  # both above half: the larger wins
    return np.asarray(t1.get_fdata(), np.float32), labels, t1.affine


def iou(prediction: np.ndarray, truth: np.ndarray, label: int) -> float:
    a, b = prediction == label, truth == label
    union = np.sum(a | b)
    return float(np.sum(a & b) / union) if union else float("nan")


def best_thresholds(t1: np.ndarray, labels: np.ndarray, where: np.ndarray) -> tuple[float, float]:
    """T1 thresholds (low, high) that maximise the summed GM/WM IoU on the voxels ``where``:
    other below low, grey matter from low, white matter from high.

    Every pair of 1024 quantiles of the intensities is tried, through cumulative class
    histograms.
    """
    values, truth = t1[where], labels[where]
    levels = np.unique(np.quantile(values, np.linspace(0.0, 1.0, 1025)))
    index = np.clip(np.searchsorted(levels, values, side="right") - 1, 0, len(levels) - 1)
    counts = np.stack([np.bincount(index, weights=truth == c, minlength=len(levels)) for c in (0, 1, 2)])
    before = np.concatenate([np.zeros((3, 1)), np.cumsum(counts, axis=1)], axis=1)  # voxels below level i
    total = before[:, -1]
    low, high = np.meshgrid(np.arange(len(levels) + 1), np.arange(len(levels) + 1), indexing="ij")
    valid = low < high
    grey_hit = before[1][high] - before[1][low]
    grey_predicted = before.sum(0)[high] - before.sum(0)[low]
    white_hit = total[2] - before[2][high]
    white_predicted = total.sum() - before.sum(0)[high]
    with np.errstate(invalid="ignore", divide="ignore"):
        score = grey_hit / (grey_predicted + total[1] - grey_hit) + white_hit / (white_predicted + total[2] - white_hit)
    score = np.where(valid, np.nan_to_num(score), -1)
    i, j = np.unravel_index(np.argmax(score), score.shape)
    edges = np.concatenate([levels, [np.inf]])
    return float(edges[i]), float(edges[j])


def threshold_labels(t1: np.ndarray, low: float, high: float) -> np.ndarray:
    return np.where(t1 >= high, 2, np.where(t1 >= low, 1, 0)).astype(np.uint8)


def train_and_predict(train_image, train_labels, test_image, epochs: int, seed: int,
                      settings: tuple[str, ...] = EXTRA_SETTINGS, show_progress: bool = True):
    from unet3d_keras.densify import fit_sparse, predict_classes

    overrides = [f"training.n_epochs={epochs}", *settings]
    fitted = fit_sparse(train_image, train_labels, IGNORE, overrides=overrides, seed=seed, show_progress=show_progress)
    prediction, _ = predict_classes(fitted, test_image)
    return prediction, fitted


def never_annotated_by_any(shape: tuple[int, ...], slice_counts: Iterable[int], placement: str = "even") -> np.ndarray:
    """Voxels outside the annotation of every slice count: one scoring set shared by all rows."""
    outside = np.ones(shape, bool)
    blank = np.zeros(shape, np.uint8)
    for count in slice_counts:
        outside &= sparse_labels(blank, count, placement) == IGNORE
    return outside


def sparse_labels(labels: np.ndarray, slices: int, placement: str = "even", seed: int = 0) -> np.ndarray:
    """The annotation a semi-automated row trains on: ``slices`` slices per axis of ``labels``,
    placed ``"even"``, ``"nested"`` or ``"random"`` (drawn by ``numpy.random.default_rng(seed)``)."""
    from unet3d_keras.sparse import make_sparse_annotation

    if placement not in PLACEMENTS:
        raise ValueError(f"placement must be one of {PLACEMENTS}, received {placement!r}")
    rng = np.random.default_rng(seed) if placement == "random" else None
    return make_sparse_annotation(labels, (slices,) * 3, rng=rng, ignore_label=IGNORE, nested=placement == "nested")


def annotation_counts(sparse: np.ndarray) -> dict[str, int]:
    """Annotated grey- and white-matter voxels of a sparse label map."""
    return {"annotated_gm": int(np.sum(sparse == 1)), "annotated_wm": int(np.sum(sparse == 2))}


def add_annotation_counts(rows: list[dict], labels: np.ndarray) -> None:
    """Give semi-automated rows that lack them their annotated grey- and white-matter voxel counts."""
    for row in rows:
        if "annotated_gm" not in row:
            row.update(annotation_counts(
                sparse_labels(labels, row["slices_per_axis"], row.get("placement", "even"), row["seed"])))


def semi_automated(t1, labels, slices: int, epochs: int, seed: int,
                   settings: tuple[str, ...] = EXTRA_SETTINGS, shared_slices: Iterable[int] = (),
                   show_progress: bool = True, placement: str = "even") -> tuple[dict, np.ndarray, np.ndarray]:
    """One densification from ``slices`` slices per axis, scored on the voxels it never saw and
    (``shared_slices``, even or nested placement) on the voxels outside the annotation of every
    one of those slice counts.

    ``placement``: ``"even"`` spreads the slices evenly, ``"nested"`` keeps those of every
    smaller count, ``"random"`` draws them with ``numpy.random.default_rng(seed)``.
    """
    sparse = sparse_labels(labels, slices, placement, seed)
    annotated = sparse != IGNORE
    never = ~annotated
    start = time.monotonic()
    prediction, fitted = train_and_predict(t1, sparse, t1, epochs, seed, settings, show_progress)
    seconds = time.monotonic() - start
    low, high = best_thresholds(t1, labels, annotated)
    thresholded = threshold_labels(t1, low, high)
    row = {
        "slices_per_axis": slices, "placement": placement, "seed": seed,
        "annotated_fraction": float(annotated.mean()),
        **annotation_counts(sparse),
        "cnn_gm_iou": iou(prediction[never], labels[never], 1), "cnn_wm_iou": iou(prediction[never], labels[never], 2),
        "threshold_gm_iou": iou(thresholded[never], labels[never], 1),
        "threshold_wm_iou": iou(thresholded[never], labels[never], 2),
        "thresholds": [low, high], "epochs": fitted.epochs, "seconds": seconds,
        # Rows trained since densify holds voxels back and weighs its classes carry these.
        "held_out_voxels": fitted.held_out_voxels, "class_weights": fitted.config.training.class_weights,
        "mirror": fitted.mirror, "window_weighting": fitted.window_weighting,
    }
    shared_slices = sorted(set(shared_slices) | {slices})
    if len(shared_slices) > 1 and placement != "random":
        shared = never_annotated_by_any(labels.shape, shared_slices, placement)
        row.update(shared_slice_counts=shared_slices, shared_fraction=float(shared.mean()),
                   shared_gm_iou=iou(prediction[shared], labels[shared], 1),
                   shared_wm_iou=iou(prediction[shared], labels[shared], 2))
    return row, sparse, prediction


def hemispheres(t1, labels, affine):
    """Left and right hemispheres (world x < 0 and x > 0; the midline dropped), as they are.

    The template is symmetric: the right half is the mirror image of the left one, voxel for
    voxel, so it is scored unmirrored (the training's flips make that no harder).
    """
    # Voxel index of world x = 0 along the first axis (the template is RAS, axis-aligned).
    midline = int(round(-affine[0, 3] / affine[0, 0]))
    width = min(midline, t1.shape[0] - midline - 1)
    left = slice(midline - width, midline) if affine[0, 0] > 0 else slice(midline + 1, midline + 1 + width)
    right = slice(midline + 1, midline + 1 + width) if affine[0, 0] > 0 else slice(midline - width, midline)
    return (t1[left], labels[left]), (t1[right], labels[right])


def fully_automated(t1, labels, affine, slices: int | None, epochs: int, seed: int,
                    show_progress: bool = True) -> dict:
    """Train on the left hemisphere (``slices`` per axis annotated, or every slice for None),
    score the right one densely."""
    from unet3d_keras.sparse import make_sparse_annotation

    (left_image, left_labels), (right_image, right_labels) = hemispheres(t1, labels, affine)
    if slices is None:
        name, truth = "every slice", left_labels
    else:
        name = f"{slices} slices per axis"
        truth = make_sparse_annotation(left_labels, (slices,) * 3, ignore_label=IGNORE)
    start = time.monotonic()
    prediction, fitted = train_and_predict(left_image, truth, right_image, epochs, seed,
                                           show_progress=show_progress)
    annotated = truth != IGNORE
    low, high = best_thresholds(left_image, left_labels, annotated)
    thresholded = threshold_labels(right_image, low, high)
    return {
        "training": name, "seed": seed, "annotated_fraction": float(annotated.mean()),
        "cnn_gm_iou": iou(prediction, right_labels, 1), "cnn_wm_iou": iou(prediction, right_labels, 2),
        "threshold_gm_iou": iou(thresholded, right_labels, 1),
        "threshold_wm_iou": iou(thresholded, right_labels, 2),
        "thresholds": [low, high], "epochs": fitted.epochs, "seconds": time.monotonic() - start,
    }


def add_dense_ratios(rows: list[dict]) -> list[dict]:
    """The sparse hemisphere row gets its IoU as a fraction of the every-slice row's."""
    dense = next(row for row in rows if row["training"] == "every slice")
    for row in rows:
        if row is not dense:
            for key in ("gm", "wm"):
                row[f"{key}_ratio_to_dense"] = row[f"cnn_{key}_iou"] / dense[f"cnn_{key}_iou"]
    return rows


def _run_trial(kind: str, arrays, kwargs: dict, show_progress: bool = True):
    """One ``semi_automated`` or ``fully_automated`` training on the template ``arrays``."""
    t1, labels, affine = arrays["t1"], arrays["labels"], arrays["affine"]
    if kind == "semi":
        return semi_automated(t1, labels, show_progress=show_progress, **kwargs)
    return fully_automated(t1, labels, affine, show_progress=show_progress, **kwargs)


def _trial_in_worker(kind: str, data: str, kwargs: dict):
    """One training in a worker process, on the template saved at ``data``."""
    return _run_trial(kind, np.load(data), kwargs, show_progress=False)


def run_trials(trials: list[tuple[str, dict]], arrays: dict[str, np.ndarray], workers: int,
               on_result: Callable[[tuple[str, dict], object], None], deadline: float = float("inf")) -> list:
    """Run ``semi_automated`` / ``fully_automated`` trials, ``workers`` at a time.

    Args:
        trials: ``(kind, keyword arguments)``, kind ``"semi"`` or ``"full"``.
        arrays: ``t1``, ``labels`` and ``affine`` of the template.
        workers: 1 runs here; more run in spawned processes, each with its share of the cores
            (``TF_NUM_INTRAOP_THREADS``), so that they do not fight over them.
        on_result: called with the trial and its result (or the exception it raised) as each ends.
        deadline: ``time.monotonic()`` after which no trial starts.

    Returns:
        The trials that never started.
    """
    queue = list(trials)
    if workers <= 1:
        while queue and time.monotonic() < deadline:
            trial = queue.pop(0)
            try:
                result = _run_trial(trial[0], arrays, trial[1])
            except Exception as error:  # as in the workers: one failed training must not lose the others
                result = error
            on_result(trial, result)
        return queue
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", threads)  # read by TensorFlow in each new worker
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", threads)
    with tempfile.TemporaryDirectory(prefix="mni152_") as folder:
        data = os.path.join(folder, "mni152.npz")
        np.savez(data, **arrays)
        context = multiprocessing.get_context("spawn")  # a fresh Keras session per training
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context, max_tasks_per_child=1) as pool:
            pending: dict = {}
            while queue or pending:
                while queue and len(pending) < workers and time.monotonic() < deadline:
                    trial = queue.pop(0)
                    pending[pool.submit(_trial_in_worker, trial[0], data, trial[1])] = trial
                if not pending:
                    break
                done, _ = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in done:
                    trial = pending.pop(future)
                    try:
                        result = future.result()
                    except Exception as error:  # one failed training must not lose the others
                        result = error
                    on_result(trial, result)
    return queue


def summarise(rows: list[dict]) -> list[dict]:
    """Semi-automated rows grouped by slice count: mean, sample standard deviation and each
    seed's value of every IoU, sorted by slice count."""
    summary = []
    for slices in sorted({row["slices_per_axis"] for row in rows}):
        group = sorted((row for row in rows if row["slices_per_axis"] == slices), key=lambda row: row["seed"])
        entry = {"slices_per_axis": slices, "annotated_fraction": group[0]["annotated_fraction"],
                 "seeds": [row["seed"] for row in group], "epochs": group[0]["epochs"],
                 "minutes": float(np.mean([row["seconds"] for row in group])) / 60}
        for key in ("cnn_gm_iou", "cnn_wm_iou", "threshold_gm_iou", "threshold_wm_iou",
                    "shared_gm_iou", "shared_wm_iou", "annotated_gm", "annotated_wm"):
            values = [row[key] for row in group if key in row]
            if values:
                entry[f"{key}_seeds"] = [row["seed"] for row in group if key in row]
                entry[key] = float(np.mean(values))
                entry[f"{key}_sd"] = float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")
                entry[f"{key}_each"] = values
        summary.append(entry)
    return summary


def placement_rows(rows: list[dict], placement: str) -> list[dict]:
    """The semi-automated rows of one placement. One slice per axis is the same annotation either
    way, so the nested series starts from the evenly spread 1-slice rows of its seeds."""
    chosen = [row for row in rows if row.get("placement", "even") == placement]
    if placement == "nested" and chosen:
        seeds = {row["seed"] for row in chosen}
        chosen += [row for row in rows if row.get("placement", "even") == "even" and row["slices_per_axis"] == 1
                   and row["seed"] in seeds and not any(r["slices_per_axis"] == 1 for r in chosen)]
    return chosen


def plot_curves(rows: list[dict], path: Path) -> None:
    """IoU against slice count: the mean over seeds (line) and each seed (dots); evenly spread
    slices, and the means of nested and random ones where the results hold them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    others = [(summarise(placement_rows(rows, placement)), style, placement)
              for placement, style in (("nested", "^:"), ("random", "v-."))]
    summary = summarise(placement_rows(rows, "even"))
    slices = [entry["slices_per_axis"] for entry in summary]
    figure, axis = plt.subplots(figsize=(6.5, 5.2))
    for key, colour, name in (("gm", "tab:orange", "grey matter"), ("wm", "tab:blue", "white matter")):
        n_seeds = max(len(entry[f"cnn_{key}_iou_each"]) for entry in summary)
        axis.plot(slices, [entry[f"cnn_{key}_iou"] for entry in summary], "o-", color=colour,
                  label=f"3D U-Net, {name}, evenly spread" + (f" (mean of {n_seeds} seeds)" if n_seeds > 1 else ""))
        for entry in summary:
            values = entry[f"cnn_{key}_iou_each"]
            axis.plot([entry["slices_per_axis"]] * len(values), values, ".", color=colour, alpha=0.5)
        axis.plot(slices, [entry[f"threshold_{key}_iou"] for entry in summary], "s--", color=colour, alpha=0.6,
                  label=f"T1 thresholds, {name}")
        for entries, style, placement in others:
            if entries:
                n_seeds = max(len(entry[f"cnn_{key}_iou_each"]) for entry in entries)
                axis.plot([entry["slices_per_axis"] for entry in entries], [entry[f"cnn_{key}_iou"] for entry in entries],
                          style, color=colour, label=f"3D U-Net, {name}, {placement} slices"
                          + (f" (mean of {n_seeds})" if n_seeds > 1 else ""))
    axis.axhline(0.9, color="grey", linewidth=0.8, linestyle=":")
    axis.set_xscale("log", base=2)
    axis.set_xticks(slices, [str(s) for s in slices])
    axis.set_xlabel("annotated slices per axis")
    axis.set_ylabel("IoU on never-annotated voxels")
    axis.set_title("MNI152 2 mm, semi-automated mode")
    axis.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)  # below: keeps the lines clear
    figure.tight_layout()
    save_figure(figure, path)


def plot_slices(t1, labels, sparse, prediction, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    z = t1.shape[2] // 2 + 5
    colours = ListedColormap(["black", "tab:orange", "tab:blue"])
    shown_sparse = np.ma.masked_equal(sparse[:, :, z], IGNORE)
    panels = (("T1", t1[:, :, z], "gray"), ("truth", labels[:, :, z], colours),
              ("annotated voxels", shown_sparse, colours), ("densified", prediction[:, :, z], colours))
    figure, axes = plt.subplots(1, 4, figsize=(12, 3.4))
    for axis, (title, image, cmap) in zip(axes, panels):
        axis.imshow(np.rot90(image), cmap=cmap, interpolation="nearest", vmin=0, vmax=2 if title != "T1" else None)
        axis.set_title(title)
        axis.axis("off")
    figure.suptitle(f"axial slice z={z} (not one of the annotated slices); orange grey matter, blue white matter")
    figure.tight_layout()
    save_figure(figure, path)


def save_figure(figure, path: Path) -> None:
    from unet3d_keras.visualize import save_figure as save

    save(figure, path)


def targets(results: dict) -> list[str]:
    """The issue's targets, checked against the results (means over seeds), as Markdown list items."""
    summary = summarise(placement_rows(results["semi_automated"], "even"))
    nested = summarise(placement_rows(results["semi_automated"], "nested"))
    random = summarise(placement_rows(results["semi_automated"], "random"))
    by_slices = {entry["slices_per_axis"]: entry for entry in summary}
    n_seeds = max(len(entry["seeds"]) for entry in summary)
    over = f" (mean of {n_seeds} seeds)" if n_seeds > 1 else ""
    lines = []
    if 4 in by_slices:
        entry = by_slices[4]
        met = min(entry["cnn_gm_iou"], entry["cnn_wm_iou"]) >= 0.90
        lines.append(f"- 4 slices per axis: IoU >= 0.90 for both classes{over}: {'met' if met else 'not met'} "
                     f"(GM {entry['cnn_gm_iou']:.3f}, WM {entry['cnn_wm_iou']:.3f}).")
    series = [(summary, "cnn", "evenly spread slices, on each row's never-annotated voxels"),
              (summary, "shared", "evenly spread slices, on the shared voxels"),
              (nested, "cnn", "nested slices, on each row's never-annotated voxels"),
              (random, "cnn", "random slices, on each row's never-annotated voxels")]
    for entries, key, where in series:
        if not entries or not all(f"{key}_gm_iou" in entry for entry in entries):
            continue
        n = max(len(entry[f"{key}_gm_iou_each"]) for entry in entries)
        grows = all(b[f"{key}_{c}_iou"] >= a[f"{key}_{c}_iou"]
                    for a, b in zip(entries, entries[1:]) for c in ("gm", "wm"))
        trend = "; ".join(f"{name} " + " -> ".join(f"{entry[f'{key}_{c}_iou']:.3f}" for entry in entries)
                          for c, name in (("gm", "GM"), ("wm", "WM")))
        lines.append(f"- IoU grows with the number of slices, {where}" + (f" (mean of {n} seeds)" if n > 1 else "")
                     + f": {'met' if grows else 'not met'} ({trend}).")
    full = results["fully_automated"]
    sparse_row = next(row for row in full if "gm_ratio_to_dense" in row)
    met = min(sparse_row["gm_ratio_to_dense"], sparse_row["wm_ratio_to_dense"]) >= 0.95
    lines.append(f"- Fully-automated, sparse at least 95% of dense: {'met' if met else 'not met'}.")
    difference = [entry[f"cnn_{c}_iou"] - entry[f"threshold_{c}_iou"] for entry in summary for c in ("gm", "wm")]
    lines.append(
        f"- U-Net IoU{over} minus threshold IoU (thresholds fit on the same annotated voxels), semi-automated rows: "
        f"{min(difference):+.3f} to {max(difference):+.3f}. The thresholds are close to the best any rule on the "
        "intensity alone can do on these labels."
    )
    lines += [f"- {line}" for line in TRIAL_HISTORY]
    return lines


def _mean_and_each(entry: dict, key: str) -> str:
    """``0.912 ± 0.004 (0.910, 0.917, 0.909)``; a dash where the rows lack ``key``."""
    if key not in entry:
        return "–"
    each = entry[f"{key}_each"]
    if len(each) == 1:
        return f"{entry[key]:.3f}"
    return f"{entry[key]:.3f} ± {entry[f'{key}_sd']:.3f} ({', '.join(f'{v:.3f}' for v in each)})"


def _series_table(entries: list[dict], counts: bool = False) -> list[str]:
    """Markdown table of one placement series; ``counts`` adds each seed's annotated GM / WM voxels."""
    extra = " | annotated GM / WM voxels (seed)" if counts else ""
    lines = [f"| slices per axis | annotated voxels | U-Net GM | U-Net WM | thresholds GM | thresholds WM{extra} "
             "| training |", "|---|---|---|---|---|---|" + ("---|" if counts else "") + "---|"]
    for entry in entries:
        cells = [str(entry["slices_per_axis"]), f"{100 * entry['annotated_fraction']:.1f}%",
                 _mean_and_each(entry, "cnn_gm_iou"), _mean_and_each(entry, "cnn_wm_iou"),
                 f"{entry['threshold_gm_iou']:.3f}", f"{entry['threshold_wm_iou']:.3f}"]
        if counts:
            cells.append(", ".join(f"{gm} / {wm} ({seed})" for seed, gm, wm in zip(
                entry.get("annotated_gm_seeds", []), entry.get("annotated_gm_each", []),
                entry.get("annotated_wm_each", []))) or "–")
        cells.append(f"{entry['epochs']} epochs, {entry['minutes']:.1f} min each")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def markdown(results: dict) -> str:
    semi, full = results["semi_automated"], results["fully_automated"]
    summary = summarise(placement_rows(semi, "even"))
    nested = summarise(placement_rows(semi, "nested"))
    random = summarise(placement_rows(semi, "random"))
    shared_fraction = next((row["shared_fraction"] for row in semi
                            if "shared_fraction" in row and row.get("placement", "even") == "even"), float("nan"))
    lines = [
        "# Learning from sparse annotation: MNI152 grey and white matter",
        "",
        "Produced by `python examples/mni152_sparse/run.py` (after `pip install -e \".[examples]\"`) on "
        f"{results['machine']}; {results['epochs']} epochs of 16 steps per semi-automated training, "
        f"{full[0]['epochs']} per hemisphere training. Raw figures: `examples/mni152_sparse/results.json`. "
        + " ".join(f"{run['date']}: `{run['command']}`, {run['minutes']:.0f} min"
                   + (f" ({run['note']})." if run.get("note") else ".") for run in results["runs"]),
        "",
        "Data: the MNI152 2009 symmetric T1 template shipped with nilearn, 2 mm (99 x 117 x 95 voxels). "
        "Labels: grey matter (1) and white matter (2) where the template's probability map exceeds half its "
        "maximum, 0 elsewhere. Model: `unet3d_keras.densify.DENSIFY_DEFAULTS` (3D U-Net, depth 3, 8 base "
        "filters, softmax, cross-entropy plus Dice on the annotated voxels only, random flips, 32³ windows "
        "centred on annotated voxels of a class drawn at random, in batches of 4, cosine learning-rate "
        "decay from 0.002, bfloat16 on this CPU) with elastic "
        "deformation turned off: it interpolates the intensities but not the labels (nearest neighbour), which blurs the thin "
        "grey-matter ribbon against its labels (4 slices per axis, 1280 steps: IoU 0.871/0.856 with it, "
        "0.883/0.873 without). The T1-threshold rows choose the two intensity "
        "thresholds that maximise the mean IoU on the same annotated voxels; on this template the best "
        "possible thresholds reach about 0.92, so they are a sanity check of the machinery, not a hard "
        "baseline to beat.",
        *([f"Rows of {', '.join(str(n) for n in redone)} slices per axis (evenly placed) were trained again with "
           "the densify defaults described [below](#densify-training-length-held-back-scores-and-thin-classes): "
           "10% of each annotated slice held back (so fewer voxels to train on)"
           + (", square-root class weights" if any(row.get("class_weights") for row in semi) else ", no class weights")
           + (", predicted as the average over the 8 mirrorings of each window"
              if any(row.get("mirror") for row in semi) else "")
           + (", overlapping windows blended uniformly (densify's default when they ran; it now weighs them by "
              "their distance from each window's centre)"
              if not any(row.get("window_weighting") == "gaussian" for row in semi) else "")
           + "; the other rows predate them (no held-back voxels, no class weights, no mirroring).", ""]
          if (redone := sorted({row["slices_per_axis"] for row in semi if "held_out_voxels" in row})) else [""]),
        "## Semi-automated mode (one volume, a few annotated slices)",
        "",
        "IoU on the voxels that were never annotated: the mean over the seeds, ± their standard deviation, "
        "and each seed's value (seeds " + ", ".join(str(seed) for seed in summary[0]["seeds"]) + "). "
        "The last two columns score every row on the same voxels: those outside the annotation of "
        f"every row ({100 * shared_fraction:.1f}% of the volume), so that rows differ only in what they "
        "were trained on, not in what they are scored on"
        + (f" (seeds {', '.join(str(seed) for seed in summary[0]['shared_gm_iou_seeds'])}: runs older than this "
           "score lack it)" if summary[0].get("shared_gm_iou_seeds", summary[0]["seeds"]) != summary[0]["seeds"]
           else "") + ".",
        "",
        "| slices per axis | annotated voxels | U-Net GM | U-Net WM | thresholds GM | thresholds WM "
        "| U-Net GM, shared voxels | U-Net WM, shared voxels | training |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in summary:
        lines.append(
            f"| {entry['slices_per_axis']} | {100 * entry['annotated_fraction']:.1f}% | "
            f"{_mean_and_each(entry, 'cnn_gm_iou')} | {_mean_and_each(entry, 'cnn_wm_iou')} | "
            f"{entry['threshold_gm_iou']:.3f} | {entry['threshold_wm_iou']:.3f} | "
            f"{_mean_and_each(entry, 'shared_gm_iou')} | {_mean_and_each(entry, 'shared_wm_iou')} | "
            f"{entry['epochs']} epochs, {entry['minutes']:.1f} min each |"
        )
    if nested:
        lines += [
            "",
            "### Adding slices to an annotation (nested placement)",
            "",
            "Evenly spread slices move as their number changes: 1 slice per axis is the middle plane, 2 "
            "are the planes at a quarter and three quarters. Here each count keeps the slices of the "
            "smaller ones and adds new ones in the middle of the widest gaps (`make_sparse_annotation(..., "
            "nested=True)`, `make_sparse_labels.py --nested`: 1/2, then 1/4, then 3/4 and 1/8, ... of each "
            "axis), as when a user adds slices to an annotation. The 1-slice row is the same annotation as "
            "above (" + ("seed " if len(nested[0]["seeds"]) == 1 else "seeds ")
            + ", ".join(str(seed) for seed in nested[0]["seeds"]) + ").",
            "",
            *_series_table(nested),
        ]
    if random:
        lines += [
            "",
            "### Random slices (the expected IoU over placements)",
            "",
            "Each seed draws its slices uniformly at random along each axis, without replacement "
            "(`make_sparse_annotation(..., rng=numpy.random.default_rng(seed))`, `make_sparse_labels.py "
            "--random --seed S`), and seeds the training with the same number; the mean over the seeds "
            "estimates the IoU to expect from a given number of slices wherever they fall, so that the "
            "rows differ in the count, not in one chosen placement (seeds "
            + ", ".join(str(seed) for seed in random[0]["seeds"]) + "). Random planes can miss most of "
            "the brain: the annotated grey- and white-matter voxels of each seed are in the last column.",
            "",
            *_series_table(random, counts=True),
        ]
    lines += [
        "",
        "![IoU against annotated slices](sparse_annotation.png)",
        "",
        "![An axial slice densified from 4 slices per axis](sparse_annotation_slices.png)",
        "",
        "## Fully-automated mode (train on the left hemisphere, segment the right)",
        "",
        "Trained on the left hemisphere (49 x 117 x 95 voxels), scored densely on the right hemisphere. "
        "The template is symmetric: the right half is the left half mirrored, voxel for voxel, and the "
        "training flips its windows, so this checks that sparse training reaches what dense training "
        "reaches, not generalisation to another brain.",
        "",
        "| training labels | annotated voxels | U-Net GM | U-Net WM | thresholds GM | thresholds WM | training |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in full:
        lines.append(
            f"| {row['training']} | {100 * row['annotated_fraction']:.1f}% | {row['cnn_gm_iou']:.3f} | "
            f"{row['cnn_wm_iou']:.3f} | {row['threshold_gm_iou']:.3f} | {row['threshold_wm_iou']:.3f} | "
            f"{row['epochs']} epochs, {row['seconds'] / 60:.1f} min |"
        )
    sparse_row = next(row for row in full if "gm_ratio_to_dense" in row)
    lines += [
        "",
        f"Sparse training reaches {100 * sparse_row['gm_ratio_to_dense']:.1f}% (grey matter) and "
        f"{100 * sparse_row['wm_ratio_to_dense']:.1f}% (white matter) of the IoU of training on every slice.",
        "",
        "## Against the targets",
        "",
        *targets(results),
        "",
        "## How to use it",
        "",
        "- Make sparse labels from dense ones: `python scripts/make_sparse_labels.py dense.nii.gz "
        "sparse.nii.gz --slices 4 4 4` (unannotated voxels get 255).",
        "- Semi-automated: `python scripts/densify.py --image t1.nii.gz --labels sparse.nii.gz --output "
        "dense.nii.gz --max-minutes 10`.",
        "- Fully-automated: train with `python scripts/train.py` on truth volumes that contain "
        "`data.ignore_label` (255): the run switches to a softmax output with the masked loss "
        "(`model.activation: auto`), and its validation Dice counts annotated voxels only.",
        "",
    ]
    return "\n".join(lines)


KEPT_FROM = "\n## Densify: training length, held-back scores and thin classes\n"


def kept_sections(docs: Path) -> str:
    """The sections of docs/sparse_annotation.md that this experiment does not write (from
    ``KEPT_FROM`` on: examples/thin_shell/run.py writes them), kept when it rewrites the page."""
    page = docs / "sparse_annotation.md"
    text = page.read_text(encoding="utf-8") if page.exists() else ""
    return text[text.index(KEPT_FROM):] if KEPT_FROM in text else ""


def load_results(path: Path) -> dict | None:
    """The results file, rows keyed by seed (files from single-seed runs carry it at the top)."""
    if not path.exists():
        return None
    results = json.loads(path.read_text())
    for row in results["semi_automated"] + results["fully_automated"]:
        row.setdefault("seed", results.get("seed"))
    if "runs" not in results:  # written by a single-seed run
        results["runs"] = [{"date": results["date"], "command": "python examples/mni152_sparse/run.py",
                            "minutes": results["total_minutes"]}]
    return results


def save_results(path: Path, results: dict) -> None:
    """Write the results file all at once."""
    from unet3d_keras.fileio import write_text_atomically

    write_text_atomically(path, json.dumps(results, indent=2) + "\n")


def write_page(docs: Path, results: dict) -> None:
    """Rewrite docs/sparse_annotation.md from ``results``, keeping the sections that other scripts write."""
    from unet3d_keras.fileio import write_text_atomically

    write_text_atomically(docs / "sparse_annotation.md", markdown(results) + kept_sections(docs))


def _trial_key(kind: str, row_or_kwargs: dict) -> tuple:
    if kind == "semi":
        placement = row_or_kwargs.get("placement", "even")
        return kind, row_or_kwargs.get("slices_per_axis", row_or_kwargs.get("slices")), row_or_kwargs["seed"], placement
    slices = row_or_kwargs.get("slices", row_or_kwargs.get("training"))
    name = "every slice" if slices is None else slices if isinstance(slices, str) else f"{slices} slices per axis"
    return kind, name, row_or_kwargs["seed"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=200, help="epochs of 16 steps per semi-automated training (default 200)")
    parser.add_argument("--slices", type=int, nargs="+", default=[1, 2, 4, 8], help="slices per axis to try")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2],
                        help="one semi-automated training per seed and slice count (the hemisphere runs use the first)")
    parser.add_argument("--nested-seeds", type=int, nargs="*", default=[42, 1],
                        help="seeds of the nested-placement trainings (none: skip them)")
    parser.add_argument("--random-seeds", type=int, nargs="*", default=[42, 1, 2],
                        help="seeds of the random-placement trainings: each draws its slices and seeds its "
                             "training (none: skip them)")
    parser.add_argument("--full-slices", type=int, default=4, help="slices per axis of the sparse hemisphere run")
    parser.add_argument("--full-epochs", type=int, default=80,
                        help="epochs of the two hemisphere runs (default 80: they met their target at that length)")
    parser.add_argument("--workers", type=int, default=1, help="trainings at once, each in its own process")
    parser.add_argument("--resume", action="store_true",
                        help="keep the trainings already in the results file (same slices, seed and epochs)")
    parser.add_argument("--redo", action="store_true",
                        help="retrain only the evenly placed semi-automated trials of --slices and --seeds with "
                             "today's densify defaults, replacing their rows and keeping every other row")
    parser.add_argument("--quick", action="store_true", help="8 epochs, slices 1 and 4, one seed: checks the machinery")
    parser.add_argument("--results", default=str(ROOT / "examples" / "mni152_sparse" / "results.json"))
    parser.add_argument("--docs", default=str(ROOT / "docs"))
    parser.add_argument("--markdown-only", action="store_true",
                        help="rewrite docs/sparse_annotation.md and the IoU plot from the results file, without training")
    args = parser.parse_args(argv)
    results_path, docs = Path(args.results), Path(args.docs)
    if args.markdown_only:
        results = load_results(results_path)
        if results is None:
            sys.exit(f"error: no results file at {results_path}")
        if any("annotated_gm" not in row for row in results["semi_automated"]):
            add_annotation_counts(results["semi_automated"], load_mni152()[1])
            save_results(results_path, results)
        docs.mkdir(parents=True, exist_ok=True)
        plot_curves(results["semi_automated"], docs / "sparse_annotation.png")
        write_page(docs, results)
        return 0
    if args.quick:
        args.epochs, args.full_epochs, args.slices, args.seeds = 8, 8, [1, 4], args.seeds[:1]
        args.nested_seeds, args.random_seeds = args.nested_seeds[:1], args.random_seeds[:1]

    import logging

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    start = time.monotonic()
    t1, labels, affine = load_mni152()
    print(f"MNI152 2 mm: {t1.shape}, voxels per class {np.bincount(labels.ravel()).tolist()}")
    previous = load_results(results_path) if args.resume else None
    kept = {"semi": [], "full": []}
    seeds_of = {"even": args.seeds, "nested": args.nested_seeds, "random": args.random_seeds}
    if previous is not None:
        for kind, section, epochs in (("semi", "semi_automated", args.epochs), ("full", "fully_automated", args.full_epochs)):
            kept[kind] = [row for row in previous[section] if row["epochs"] == epochs
                          and (kind == "full" or row["slices_per_axis"] in args.slices)
                          and row["seed"] in (args.seeds[:1] if kind == "full"
                                              else seeds_of[row.get("placement", "even")])]
    done = {_trial_key(kind, row) for kind, rows in kept.items() for row in rows}
    wanted = [("semi", {"slices": slices, "epochs": args.epochs, "seed": seed, "shared_slices": args.slices})
              for seed in args.seeds for slices in args.slices]
    # One slice per axis is the same annotation either way: the nested series reuses those rows.
    wanted += [("semi", {"slices": slices, "epochs": args.epochs, "seed": seed, "placement": "nested"})
               for seed in args.nested_seeds for slices in args.slices if slices != 1]
    wanted += [("semi", {"slices": slices, "epochs": args.epochs, "seed": seed, "placement": "random"})
               for seed in args.random_seeds for slices in args.slices]
    wanted += [("full", {"slices": slices, "epochs": args.full_epochs, "seed": args.seeds[0]})
               for slices in (args.full_slices, None)]
    trials = [trial for trial in wanted if _trial_key(*trial) not in done]
    if args.redo:
        previous = load_results(results_path)
        if previous is None:
            sys.exit(f"error: --redo: no results file at {results_path}")
        shared = sorted({row["slices_per_axis"] for row in previous["semi_automated"]} | set(args.slices))
        trials = [("semi", {"slices": slices, "epochs": args.epochs, "seed": seed, "shared_slices": shared})
                  for seed in args.seeds for slices in args.slices]
        redone = {_trial_key(*trial) for trial in trials}
        kept = {"semi": [row for row in previous["semi_automated"] if _trial_key("semi", row) not in redone],
                "full": previous["fully_automated"]}
        wanted = trials + [("semi", row) for row in kept["semi"]] + [("full", row) for row in kept["full"]]
    print(f"{len(trials)} trainings to run ({len(wanted) - len(trials)} kept from {results_path}), "
          f"{args.workers} at a time", flush=True)
    runs = (previous or {}).get("runs", [])
    if trials:
        runs.append({"date": time.strftime("%Y-%m-%d"), "minutes": 0.0,
                     "command": " ".join(["python examples/mni152_sparse/run.py", *(argv or sys.argv[1:])])})
    results = {"machine": f"{cpu_name()}, {os.cpu_count()} cores", "epochs": args.epochs,
               "full_epochs": args.full_epochs, "seeds": args.seeds, "nested_seeds": args.nested_seeds,
               "random_seeds": args.random_seeds, "runs": runs,
               "semi_automated": kept["semi"], "fully_automated": kept["full"]}
    if args.redo:  # the series' settings stay those of the rows that were kept
        results.update({key: previous[key] for key in ("epochs", "full_epochs", "seeds", "nested_seeds",
                                                       "random_seeds") if key in previous})
    docs.mkdir(parents=True, exist_ok=True)
    failures = []

    def record(trial: tuple[str, dict], result) -> None:
        kind, kwargs = trial
        if isinstance(result, Exception):
            failures.append(f"{kind} {kwargs}: {result!r}")
            print(f"error: {failures[-1]}", flush=True)
            return
        if kind == "semi":
            row, sparse, prediction = result
            results["semi_automated"].append(row)
            if row["slices_per_axis"] == 4 and row["seed"] == args.seeds[0] and row["placement"] == "even":
                plot_slices(t1, labels, sparse, prediction, docs / "sparse_annotation_slices.png")
        else:
            row = result
            results["fully_automated"].append(row)
        print(f"{kind} {json.dumps(row)}", flush=True)
        runs[-1]["minutes"] = (time.monotonic() - start) / 60
        save_results(results_path, results)  # a stopped run keeps it

    run_trials(trials, {"t1": t1, "labels": labels, "affine": affine}, args.workers, record)
    if failures:
        print(f"error: {len(failures)} trainings failed; the others are in {results_path} (rerun with --resume)")
        return 1
    results["semi_automated"].sort(key=lambda row: (PLACEMENTS.index(row.get("placement", "even")),
                                                    row["slices_per_axis"], row["seed"]))
    results["fully_automated"] = add_dense_ratios(sorted(results["fully_automated"],
                                                         key=lambda row: row["training"] == "every slice"))
    if trials:
        runs[-1]["minutes"] = (time.monotonic() - start) / 60
    add_annotation_counts(results["semi_automated"], labels)
    plot_curves(results["semi_automated"], docs / "sparse_annotation.png")
    save_results(results_path, results)
    write_page(docs, results)
    print(f"wrote {results_path} and {docs / 'sparse_annotation.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
