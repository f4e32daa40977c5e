"""What this folder's scripts run and where they keep it: run.py's rows (densify's arguments and budget), the
variants and ways of the other scripts, and the results file of each, which page.py reads."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from unet3d_keras.densify_holdout import DensifyOptions

from volume import MEMBRANE  # this folder's: a script's folder is first on sys.path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
#: --volume NAME -> (results file, heading of its table)
VOLUME_TABLES: dict[str, tuple[str, str]] = {
    "thick": ("results.json", "Membranes two voxels thick between cells (intensity 1.5)"),
    "thin": ("results_thin.json", "Membranes one voxel thick, fainter (intensity 1.3; `--volume thin`)"),
    "clear": ("results_clear.json",
              "Membranes one voxel thick, intensity 1.3, a quarter of the noise (sigma 0.05; `--volume clear`)"),
    "edges": ("results_edges.json",
              "Membranes two voxels thick with no brightness of their own, a quarter of the noise (`--volume edges`)"),
}
DEFAULT_SEED = 42
#: What densify's default class weighting (auto) trains with on these volumes: every class holds 9% or more of
#: the annotated voxels, over unet3d_keras.densify_holdout.RARE_CLASS_SHARE (tests/test_thin_shell_volume.py).
DEFAULT_WEIGHTING = "none"
OLD = ("--steps", "960", "--holdout", "0", "--class-weights", "none", "--no-mirror", "--window-weighting", "uniform",
       "--set", "augment.elastic=true")
DEFAULT_BLENDING = DensifyOptions().window_weighting
#: One model per volume and seed predicted with both blendings of the windows (blending.py).
BLENDING_RESULTS = HERE / "results_blending.json"
WEIGHT_RESULTS = HERE / "results_weights.json"  # weights.py: square-root class weights against none, paired
OFFSET_RESULTS = HERE / "results_offsets.json"
#: bound.py's long trainings on every voxel of several other volumes made alike.
BOUND_RESULTS = HERE / "results_bound.json"
#: bound.py's fully annotated volumes unless --others says otherwise
BOUND_OTHERS = 3
#: accelerator.py's densify, bound and MNI152 runs under Keras's JAX backend on one GPU.
ACCELERATOR_RESULTS = HERE / "results_accelerator.json"
#: oracle.py's readers told every cell, which choose only the side of each face that carries its membrane.
ORACLE_RESULTS = HERE / "results_oracle.json"
#: forest.py's random forest on filter responses (ilastik's classic pixel classification).
FOREST_RESULTS = HERE / "results_forest.json"
#: watershed.py's membrane redrawn between the cells that a watershed of the model's probabilities finds.
WATERSHED_RESULTS = HERE / "results_watershed.json"
#: self_training.py's runs: densify's defaults, and new models trained on the surest predictions of half the budget.
SELF_TRAINING_RESULTS = HERE / "results_self_training.json"
#: the probability from which self_training.py makes a never-annotated voxel's predicted class its label, and the
#: share of the budget that trains the model whose predictions these are
SELF_TRAINING_THRESHOLD = 0.9
SELF_TRAINING_FIRST_SHARE = 0.5
#: balanced self-training labels this share of each class's predicted voxels instead, the surest
SELF_TRAINING_BALANCED_SHARE = 0.5
#: self_training.py's ways of self-training (its variants but the defaults) -> which voxels each labels
SELF_TRAINING_WAYS = {
    "self-training": f"each never-annotated voxel whose probability of its class is at least {SELF_TRAINING_THRESHOLD}",
    "balanced self-training": f"the surest {100 * SELF_TRAINING_BALANCED_SHARE:.0f}% of the never-annotated voxels "
                              "predicted as each class"}
#: ensemble.py's runs: densify's defaults and a second model in the time their plateau leaves, or two models of half
#: the budget, each pair's probabilities averaged; the second model's seed is the first's plus this
ENSEMBLE_RESULTS = HERE / "results_ensemble.json"
ENSEMBLE_SEED_OFFSET = 1000
#: ensemble.py's ways (its variants) -> what each averages
ENSEMBLE_WAYS = {"second model": "densify's defaults and a second model trained in the time that their plateau left",
                 "two halves": "two models, each trained for half the budget"}
#: the models of each way trained for only part of the budget (the fields of their scores)
ENSEMBLE_PARTS = {"second model": ("second_iou",), "two halves": ("first_iou", "second_iou")}
#: how the table of what was tried names them
ENSEMBLE_ROWS = {"second model": "a second model in the time the plateau leaves, the two averaged",
                 "two halves": "two models of half the budget each, averaged"}
#: next_slices.py's runs with one slice more per axis: the slices densify names, the widest gap's, random ones.
NEXT_SLICE_RESULTS = HERE / "results_next_slices.json"
#: next_slices.py's first run of each seed, two slices per axis, and its ways of adding one slice per axis,
#: in the table's order.
FIRST_RUN = "two per axis"
ADDED_WAYS = ("least sure", "widest gap", "random")
#: tuning.py's side-by-side runs of densify's defaults and each variant: name -> its --set overrides.
TUNING_RESULTS = HERE / "results_tuning.json"
TUNING_VARIANTS: dict[str, tuple[str, ...]] = {
    "defaults": (),
    "learning rate 0.001": ("training.initial_learning_rate=0.001",),
    "learning rate 0.005": ("training.initial_learning_rate=0.005",),
    "batches of 8": ("training.batch_size=8",),
    "24³ windows": ("training.patch_shape=[24,24,24]", "prediction.overlap=12"),
    "16³ windows in batches of 8": ("training.patch_shape=[16,16,16]", "training.batch_size=8",
                                    "prediction.overlap=8"),
    # the 48 rotations and reflections of each training window, where the defaults only flip it
    "rotations of the cube": ("augment.permute=true",),
    # the U-Net's levels (densify's: 3): one pooling less or one more
    "depth 2": ("model.depth=2",),
    "depth 4": ("model.depth=4",),
}
#: What each variant of TUNING_VARIANTS changes, for the heading of its table.
TUNING_TOPICS = {"learning rate 0.001": "the learning rate", "learning rate 0.005": "the learning rate",
                 "batches of 8": "the batch", "24³ windows": "the window",
                 "16³ windows in batches of 8": "the window",
                 "rotations of the cube": "rotations of the training windows",
                 "depth 2": "the depth of the U-Net", "depth 4": "the depth of the U-Net"}
#: The training settings (of densify's config) that TUNING_VARIANTS change: tuning.py records their defaults.
TUNED = ("initial_learning_rate", "patch_shape", "batch_size")
#: figure.py's old and today's 12-minute runs of each volume and seed: their scores, and the picture of seed 42's.
FIGURE_RESULTS = HERE / "results_figure.json"
FIGURE = ROOT / "docs" / "thin_shell_slices.png"

#: Rows trained on the dense labels (every voxel annotated): what the model could reach.
DENSE_ROWS = ("every voxel annotated, 5 min", "every voxel annotated, 12 min")
#: Rows trained on every voxel of another volume made alike (seed OTHER_SEED), stacked before this
#: one along the last axis, which is left unannotated: what full annotation gives on voxels that
#: the model never saw (the rows above score voxels that they trained on).
OTHER_ROWS = ("every voxel of another volume annotated, 5 min", "every voxel of another volume annotated, 12 min")
#: name -> (extra densify arguments, minutes)
ROWS: dict[str, tuple[tuple[str, ...], float]] = {  # in the order that keeps two workers busy
    "new, 12 min": ((), 12.0),
    "old, 12 min": (OLD, 12.0),
    "new, 5 min": ((), 5.0),
    "old, 5 min": (OLD, 5.0),
    "new without mirroring, 12 min": (("--no-mirror",), 12.0),
    "new without mirroring, 5 min": (("--no-mirror",), 5.0),
    "new with square-root weights, 5 min": (("--class-weights", "sqrt"), 5.0),
    "new with balanced weights, 5 min": (("--class-weights", "balanced"), 5.0),
    "new with uniform sampling, 5 min": (("--sampling", "uniform"), 5.0),
    "new without the Dice term, 5 min": (("--set", "training.loss=cross_entropy"), 5.0),
    "new without the final decay, 5 min": (("--decay-epochs", "0"), 5.0),
    # a patience longer than the budget: the whole 12 minutes are trained
    "new without the plateau stop, 12 min": (("--patience", "1000"), 12.0),
    "new with 16 base filters, 12 min": (("--set", "model.n_base_filters=16"), 12.0),
    "every voxel annotated, 5 min": (("--predict-annotated",), 5.0),
    "every voxel annotated, 12 min": (("--predict-annotated",), 12.0),
    OTHER_ROWS[0]: ((), 5.0),
    OTHER_ROWS[1]: ((), 12.0),
}
#: Rows that change one option of the defaults (and the every-voxel bounds): after the old, new and
#: new-without-mirroring rows.
OPTION_ROWS = list(ROWS)[6:]
TABLE = ["old, 5 min", "old, 12 min", "new, 5 min", "new, 12 min", "new without mirroring, 5 min",
         "new without mirroring, 12 min", *OPTION_ROWS]


#: How offsets.py chooses the setting of each decision rule for the membrane (an offset, a ridge threshold): the
#: best mean IoU of the classes on the held-back voxels, the best membrane IoU there, and the best membrane IoU on
#: the never-annotated voxels (which no user can choose by).
OFFSET_CHOICES = ("held-back mean", "held-back membrane", "never-annotated membrane")
#: offsets.py's decision rules: each run's field of them, how a setting is named, the table's column of the argmax
DECISION_RULES = {"offsets": ("offset", "no offset"), "ridges": ("threshold", "no ridge decoding")}


def chosen_settings(scores: dict[str, dict]) -> dict[str, str]:
    """The setting (its key in ``scores``, one offsets.py run's ``offsets`` or ``ridges``) chosen each way of
    OFFSET_CHOICES."""
    return dict(zip(OFFSET_CHOICES, (max(scores, key=lambda b: np.mean(scores[b]["held_back"])),
                                     max(scores, key=lambda b: scores[b]["held_back"][MEMBRANE]),
                                     max(scores, key=lambda b: scores[b]["never_annotated"][MEMBRANE]))))


def tuning_key(minutes: float, variants: Sequence[str]) -> str:
    """Where results_tuning.json keeps the runs of one volume made with this budget and these variants: a later
    command with the same budget and variants replaces them, one with others keeps them."""
    return f"{minutes:g} min: " + ", ".join(name for name in TUNING_VARIANTS if name in variants)
