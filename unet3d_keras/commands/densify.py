"""Semi-automated segmentation: densify the sparse annotation of one volume.

    unet3d-densify --image IMG [--image IMG2 ...] --labels SPARSE --output OUT
        [--ignore-label 255] [--max-minutes M | --steps N] [--holdout 0.1] [--patience 40]
        [--decay-epochs 20]
        [--class-weights auto|none|balanced|sqrt] [--sampling class_first|uniform] [--seed N]
        [--predict-annotated] [--no-mirror] [--window-weighting gaussian|uniform] [--probabilities]
        [--set section.key=value ...]

(or ``python scripts/densify.py`` with the same arguments).

A user annotates a few slices of a volume (every other voxel holds the ignore value); a 3D
U-Net trained on those voxels alone (softmax, cross-entropy plus per-class Dice, flips;
--class-weights weighs the cross-entropy) writes the dense label map of the same volume, with
the same shape and affine as SPARSE (NIfTI, or any format SimpleITK reads; OUT is NIfTI).
The label values are those found in SPARSE, whole numbers from 0 to 255; the smallest plays
the background.

A share of each annotated slice (--holdout, 10%) is held back from training, in tiles
chosen with the seed. Training runs until --max-minutes (default 10, reading and prediction included) is
spent or the mean foreground IoU of the held-back voxels has not improved for --patience epochs
of 16 steps and a final --decay-epochs epochs have decayed the learning rate to zero, then keeps
the weights of its best evaluation at a decayed learning rate (at most a quarter of the initial
one; the last weights if none); --steps N trains exactly N steps
instead and keeps the last weights (--max-minutes, if given, still bounds it, and may drop the
mirroring). The volume is
predicted as the average over the 8 mirrorings of each window (--no-mirror: once, 8 times
faster; also, with a warning, when mirroring would take more than a quarter of the time left), and
overlapping windows are blended with weights that fall off from each window's centre
(--window-weighting uniform: a plain average). The
per-class IoU and Dice of the held-back voxels (predicted the same way) are printed and written
to OUT's name with ``_scores.json`` for ``.nii(.gz)``, and their course over the epochs, with the
training loss, drawn in ``_scores.png``; a class whose IoU is below half the median of the other
classes' is warned about, naming the slice along each axis, among those less than half annotated,
where the model expects the most errors about it on the unannotated voxels (where to check the map
and annotate next; the JSON names them for every class but the first). ``_check.png`` draws those
slices (the image, and the model's probability of the class) for the classes warned about but the
first (at most 4, those with the most expected errors), or else for the class whose slices hold the
most. --probabilities also writes each class's probability (float32, the model's own on every
voxel, annotated or not, averaged and blended as the labels were; 4 bytes a voxel per class) to
OUT's name with ``_probability_<label value>`` and OUT's suffix (e.g. ``dense_probability_2.nii.gz``),
to overlay in a viewer where the model is unsure; an earlier run's probability files that a run does not
replace are left as they were, and named in a warning. The label map, these files, the scores and the pictures
are written together: a failure while writing them (a full disk) leaves the older files of those names as
they were.
--set changes the defaults of unet3d_keras.densify.DENSIFY_DEFAULTS (e.g. --set model.n_base_filters=8).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import re
import time
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Sequence

import nibabel as nib
import numpy as np

from ..annotation_advice import AXES, MAX_CLASSES_DRAWN, classes_to_check, least_sure_slices, slice_list
from ..checks import require_integer_values
from ..cli import base_parser, run
from ..densify_holdout import (CLASS_WEIGHTINGS, OUTPUT_BIASES, RARE_CLASS_SHARE, SAMPLINGS, DensifyOptions,
                               low_classes)
from ..errors import DataError, NoTimeToTrain
from ..fileio import check_no_folder_in_the_way, made_folder, write_together
from ..inference_io import check_nifti_output, nifti_suffix
from ..run_lock import run_folder_lock
from ..sparse import annotated_classes, check_label_range
from ..subject_images import read_subject_images
from ..subjects import NIFTI_SUFFIXES
from ..utils.patches import WEIGHTINGS

if TYPE_CHECKING:  # why: ..densify loads Keras, which the command only imports once the inputs are valid
    from ..densify import SparseModel


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command's arguments (the module docstring is its help)."""
    parser = base_parser(__doc__.splitlines()[0], with_config=False)
    parser.add_argument("--image", action="append", required=True, metavar="IMG",
                        help="image of the volume (repeat for several channels, same grid)")
    parser.add_argument("--labels", required=True, metavar="SPARSE", help="sparse label map (NIfTI)")
    parser.add_argument("--output", required=True, metavar="OUT",
                        help="dense label map to write (.nii or .nii.gz; its folder is made if missing)")
    parser.add_argument("--ignore-label", type=int, default=255,
                        help="value of unannotated voxels (default 255; with another value, 255 can be a class, as "
                             "in a 0/255 mask, if fewer voxels hold it)")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="time bound of the whole run, from reading the inputs to the prediction; writing the "
                             "files takes seconds more (default 10; with --steps, none)")
    parser.add_argument("--steps", type=int, default=None, metavar="N",
                        help="train exactly N steps (reproducible) instead of until the budget or a plateau")
    defaults = DensifyOptions()
    parser.add_argument("--holdout", type=float, default=defaults.holdout, metavar="SHARE",
                        help=f"share of each annotated slice held back to score and stop training (default "
                             f"{defaults.holdout}; 0: none)")
    # None when not given (timed_options_given): given with --steps, they are warned about
    parser.add_argument("--patience", dest="patience_epochs", type=int, default=None, metavar="EPOCHS",
                        help="stop after this many epochs of 16 steps without a gain on the held-back voxels "
                             f"(default {defaults.patience_epochs}), after a final decay of the learning rate; a "
                             "timed run only: --steps trains its N steps")
    parser.add_argument("--decay-epochs", type=int, default=None, metavar="EPOCHS",
                        help=f"epochs of that final decay to a zero learning rate (default {defaults.decay_epochs}; "
                             "0: stop at once; a timed run only)")
    # %% in the help: argparse %-formats it
    parser.add_argument("--class-weights", choices=CLASS_WEIGHTINGS, default=defaults.class_weighting,
                        help="cross-entropy class weights from the annotated voxel counts: sqrt (the square root "
                             "of inverse-frequency weights), balanced (inverse frequency), none (the Dice term and "
                             "class-first windows already give each class its share) or auto: sqrt when a class "
                             f"holds under {RARE_CLASS_SHARE:.0%}% of the training voxels, else none (default "
                             f"{defaults.class_weighting})")
    parser.add_argument("--sampling", choices=SAMPLINGS, default=defaults.sampling,
                        help="window centres: a class first, then one of its voxels (default), or any annotated "
                             "voxel")
    parser.add_argument("--output-bias", choices=OUTPUT_BIASES, default=defaults.output_bias,
                        help="the biases of the model's last layer start at zero, or at the prior: the log of each "
                             "class's share of the training voxels, so that the first steps do not push every voxel "
                             "towards the largest class (keeps a rare class without class weights) (default "
                             f"{defaults.output_bias})")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: the config's 42)")
    parser.add_argument("--predict-annotated", action="store_true",
                        help="write the model's own labels on the annotated voxels too (default: they keep their "
                             "annotation), e.g. to see where the model disagrees with it")
    parser.add_argument("--no-mirror", dest="mirror", action="store_false",
                        help="predict each window once instead of averaging its 8 mirrorings (8 times faster "
                             "prediction, usually a little lower IoU)")
    parser.add_argument("--window-weighting", choices=WEIGHTINGS, default=defaults.window_weighting,
                        help="blending of the overlapping windows of the prediction: gaussian (weights falling off "
                             "from each window's centre) or uniform (a plain average) (default "
                             f"{defaults.window_weighting})")
    parser.add_argument("--probabilities", action="store_true",
                        help="also write each class's probability next to OUT, one float32 NIfTI per class (4 "
                             "bytes a voxel): OUT's name with _probability_<label value>, e.g. "
                             "dense_probability_2.nii.gz")
    parser.add_argument("--clip-outliers", action="store_true",
                        help="clip intensities beyond 1e4 robust standard deviations of an image's median (with a "
                             "warning) instead of refusing the image")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="change a densify default, e.g. --set training.batch_size=1 (repeatable)")
    return parser.parse_args(argv)


def check_paths(args: argparse.Namespace) -> Path:
    """The output path, checked before any work: a NIfTI name in a folder that can be written (or made), neither an
    input nor a folder, and no file written next to it an input or a folder."""
    output = check_nifti_output(args.output)  # before minutes of training
    inputs = input_paths(args)
    if output.resolve() in inputs:
        raise DataError(f"{output}: the output would overwrite an input file; choose another name")
    if not 1 <= args.ignore_label <= 255:
        raise DataError(f"--ignore-label: expected a value between 1 and 255 (0 is background), "
                        f"received {args.ignore_label}")
    if args.max_minutes is not None and not (math.isfinite(args.max_minutes) and args.max_minutes > 0):
        raise DataError(f"--max-minutes: expected a positive, finite number of minutes, received {args.max_minutes}")
    if args.steps is not None and args.steps < 1:
        raise DataError(f"--steps: expected a positive number of steps, received {args.steps}")
    if args.seed is not None and not 0 <= args.seed < 2**32:
        raise DataError(f"--seed: expected a whole number from 0 to {2**32 - 1}, received {args.seed}")
    for what, path in report_paths(output).items():
        if path.resolve() in inputs:
            raise DataError(f"{path}: the {what} would overwrite an input file; choose another output")
        check_no_folder_in_the_way(path, what)  # in the output's folder, checked above
    return output


def input_paths(args: argparse.Namespace) -> set[Path]:
    """The input files, resolved: no output may replace one of them."""
    return {Path(p).resolve() for p in [*args.image, args.labels]}


#: DensifyOptions field -> the flag that sets it, for the messages of bad values
_OPTION_FLAGS = MappingProxyType({"holdout": "--holdout", "patience_epochs": "--patience",
                                  "decay_epochs": "--decay-epochs", "class_weighting": "--class-weights",
                                  "sampling": "--sampling", "window_weighting": "--window-weighting",
                                  "output_bias": "--output-bias"})


def timed_options_given(args: argparse.Namespace) -> dict[str, int]:
    """The plateau's options that the command line gave (only a timed run stops on a plateau), by field."""
    return {key: getattr(args, key) for key in ("patience_epochs", "decay_epochs") if getattr(args, key) is not None}


def densify_options(args: argparse.Namespace) -> DensifyOptions:
    """The run's :class:`DensifyOptions`; a bad value raises DataError naming its flag."""
    try:
        return DensifyOptions(holdout=args.holdout, **timed_options_given(args),
                              class_weighting=args.class_weights, sampling=args.sampling, mirror=args.mirror,
                              window_weighting=args.window_weighting, output_bias=args.output_bias)
    except ValueError as error:
        field, _, message = str(error).partition(": ")
        raise DataError(f"{_OPTION_FLAGS.get(field, field)}: {message}") from None


def output_sibling(output: Path, tail: str) -> Path:
    """A file next to ``output`` named after it: ``dense.nii.gz`` and ``_scores.json`` -> ``dense_scores.json``."""
    name = output.name
    for known_suffix in NIFTI_SUFFIXES[::-1]:
        if name.endswith(known_suffix):
            name = name[: -len(known_suffix)]
            break
    return output.with_name(name + tail)


def scores_path(output: Path, suffix: str = ".json") -> Path:
    """The file of the held-back scores next to ``output``: ``dense.nii.gz`` -> ``dense_scores.json``
    (``suffix`` ``.png``: ``dense_scores.png``, their picture)."""
    return output_sibling(output, f"_scores{suffix}")


def check_picture_path(output: Path) -> Path:
    """The picture of the slices to check next to ``output``: ``dense.nii.gz`` -> ``dense_check.png``."""
    return output_sibling(output, "_check.png")


def report_paths(output: Path) -> dict[str, Path]:
    """The files every run writes beside ``output``, in this order, under what a message calls them: the scores,
    their picture and the picture of the slices to check."""
    return {"scores file": scores_path(output), "picture of the scores": scores_path(output, ".png"),
            "picture of the slices to check": check_picture_path(output)}


def probability_paths(output: Path, classes: Sequence[int]) -> list[Path]:
    """The probability file of each class next to ``output``: ``dense.nii.gz`` -> ``dense_probability_2.nii.gz``
    (``.nii`` stays ``.nii``)."""
    suffix = ".nii.gz" if output.name.endswith(".nii.gz") else ".nii"
    return [output_sibling(output, f"_probability_{c}{suffix}") for c in classes]


def earlier_probability_files(output: Path, written: Sequence[Path]) -> list[Path]:
    """The probability files next to ``output`` that this run did not write (an earlier run's, of a class or with
    ``--probabilities`` no longer asked for), sorted."""
    # the placeholder is the last "@" of the name: the output's own name may hold one too
    head, _, tail = probability_paths(output, ["@"])[0].name.rpartition("@")
    pattern = re.escape(head) + r"\d+" + re.escape(tail)
    return sorted(path for path in output.parent.glob("*") if re.fullmatch(pattern, path.name) and path not in written)


def read_inputs(images: list[str], labels: str, ignore_label: int,
                clip_outliers: bool = False) -> tuple[np.ndarray, np.ndarray, nib.Nifti1Image]:
    """The images ``(C, x, y, z)`` float32, the sparse labels ``(x, y, z)`` and their image, checked.

    The label image (read from NIfTI or any format SimpleITK reads) gives the output its grid.
    """
    read = read_subject_images([*images, labels], label_indices=[len(images)], crop=False,
                               subject_id="densify inputs", clip_outliers=clip_outliers)
    data = np.stack([np.asarray(image.dataobj, dtype=np.float32) for image in read[:-1]])
    sparse = np.asanyarray(read[-1].dataobj)
    require_integer_values(sparse, f"{labels}: the label map", error=DataError)
    sparse = sparse.astype(np.int64) if sparse.dtype.kind == "f" else sparse
    unique, counts = np.unique(sparse, return_counts=True)  # one pass over the volume for the checks below
    values, count_of = unique.tolist(), dict(zip(unique.tolist(), counts.tolist()))
    check_label_range(values, labels)  # before the advice on --ignore-label, which takes 1-255 only
    # 255 is a class (a 0/255 mask) only where the ignore value is the commoner: unannotated voxels outnumber a class.
    if ignore_label != 255 and count_of.get(255, 0) > count_of.get(ignore_label, 0):
        raise DataError(
            f"{labels}: --ignore-label {ignore_label} collides with a real label: the file holds more voxels of 255, "
            f"the usual value of unannotated voxels, than of {ignore_label} ({count_of[255]} against "
            f"{count_of.get(ignore_label, 0)}), and 255 would become a class; pass --ignore-label 255 (or relabel the "
            "file)"
        )
    if ignore_label not in values:
        raise DataError(
            f"{labels}: no voxel has the ignore value {ignore_label}, so every voxel is already annotated "
            f"(values found: {values[:20]}); pass --ignore-label with the value of the "
            "unannotated voxels"
        )
    return data, sparse, read[-1]


def work(args: argparse.Namespace) -> int:
    """Check the arguments, then densify under the output folder's lock (the folder made if missing, and taken
    back if the run fails); returns the exit status."""
    started = time.monotonic()  # --max-minutes bounds the whole run, reading the inputs and loading Keras too
    output = check_paths(args)
    options = densify_options(args)
    # one densification at a time writes into a folder
    with made_folder(output.parent), run_folder_lock(output.parent, "output folder"):
        return _densify_into(args, output, options, started)


def _densify_into(args: argparse.Namespace, output: Path, options: DensifyOptions, started: float) -> int:
    images, sparse, label_image = read_inputs(args.image, args.labels, args.ignore_label, args.clip_outliers)
    classes = annotated_classes(sparse, args.ignore_label, args.labels)  # fails fast, before Keras loads
    written = probability_paths(output, classes) if args.probabilities else []
    inputs = input_paths(args)
    for path in written:
        if path.resolve() in inputs:
            raise DataError(f"{path}: the probability file would overwrite an input file; choose another output")
        check_no_folder_in_the_way(path, "probability file")
    # why: densify loads Keras, which only pays once the inputs are known to be valid
    from ..densify import densify

    annotated = float(np.mean(sparse != args.ignore_label))
    print(f"{args.labels}: {sparse.shape} voxels, classes {classes}, {100 * annotated:.2f}% annotated")
    if 0 not in classes:  # e.g. only the structure was painted: the map would have no background at all
        print(f"warning: {args.labels}: no voxel is annotated 0, the background: every voxel of the output will get "
              f"one of the annotated classes {classes}; annotate some background too if the volume has any")
    ignored = [_OPTION_FLAGS[key] for key in timed_options_given(args)]
    if ignored and args.steps is not None:
        print(f"warning: --steps {args.steps} trains exactly its steps, with no plateau stop: {', '.join(ignored)} "
              "ignored")
    minutes = args.max_minutes if args.max_minutes is not None or args.steps is not None else 10.0
    try:
        result = densify(images, sparse, args.ignore_label, overrides=args.overrides,
                         max_seconds=None if minutes is None else 60 * minutes - (time.monotonic() - started),
                         seed=args.seed, show_progress=not args.quiet, steps=args.steps, options=options,
                         keep_annotations=not args.predict_annotated)
    except NoTimeToTrain:
        raise DataError(f"--max-minutes {minutes}: the budget left no time to train once the prediction of the volume "
                        f"was set aside ({time.monotonic() - started:.0f} s in all); nothing was written, give it more "
                        "minutes") from None
    predicted = time.monotonic() - started  # what --max-minutes bounds; writing the files comes after it
    dense = nib.Nifti1Image(result.labels.astype(np.uint8), label_image.affine, label_image.header)
    dense.set_data_dtype(np.uint8)  # annotated_classes holds every class to 0-255
    maps = [probability_image(probability, label_image) for probability in result.probabilities] if written else []
    fitted = result.fitted
    annotated_voxels = sparse != args.ignore_label
    # Everything is computed before anything is written (a volume too large for the slice analysis writes no map).
    next_slices = least_sure_slices(result.probabilities, classes, annotated_voxels)
    report = report_scores(fitted, classes, args, next_slices)
    # why: matplotlib is heavy; imported after the run, it delays neither the start nor an argument error
    from ..visualize import close_figure, densify_check_figure, densify_history_figure, write_png

    final_iou = None if fitted.scores is None else fitted.scores["iou"]
    shown, left_out = classes_to_check(classes, report["low_classes"], next_slices)
    names = ", ".join(name for _, name, _ in shown)
    what = (f"the slices where the model is least sure of class {names}" if shown else
            "no slice to check: every slice is at least half annotated, or the model expects no error in the others")
    figures = [densify_history_figure(fitted.score_history, fitted.history, [str(c) for c in classes],
                                      fitted.kept_epoch, final_iou, title=f"{output.name}: {fitted.stop_reason}")]
    try:
        figures.append(densify_check_figure(images[0], result.probabilities, annotated_voxels, shown,
                                            spacing=nib.affines.voxel_sizes(label_image.affine),
                                            title=f"{output.name}: {what}"))
        reports = list(report_paths(output).values())
        scores_file, history_picture, check_picture = reports
        text = json.dumps(report, indent=1) + "\n"
        # all or none: a failure on the last file (a full disk) leaves no new label map beside old probabilities,
        # scores or pictures, which would describe another run
        write_together([output, *written, *reports],
                       [functools.partial(nib.save, image) for image in [dense, *maps]]
                       + [lambda tmp: tmp.write_text(text, encoding="utf-8")]
                       + [functools.partial(write_png, figure) for figure in figures],
                       [nifti_suffix(path) for path in [output, *written]] + [path.suffix for path in reports])
    finally:
        for figure in figures:
            close_figure(figure)
    counts = {c: int(np.sum(result.labels == c)) for c in classes}
    budget = "" if minutes is None else f" (budget {60 * minutes:.0f} s)"
    print(f"wrote {output}: {_count(fitted.steps, 'step')} ({_count(result.epochs, 'epoch')}) in "
          f"{result.train_seconds:.0f} s of training, {predicted:.0f} s to the end of the prediction{budget}, "
          f"{time.monotonic() - started:.0f} s in all, stopped: "
          f"{fitted.stop_reason}; kept the weights of epoch {fitted.kept_epoch}; voxels per class {counts}")
    if written:
        print(f"wrote the probability of each class ({', '.join(map(str, classes))}) to "
              f"{probability_paths(output, ['<label value>'])[0]}")
    earlier = earlier_probability_files(output, written)
    if earlier:  # not removed: they are the user's files, but they would be read as this map's
        remedy = "remove them" if written else "remove them, or pass --probabilities to write this run's"
        print(f"warning: {', '.join(map(str, earlier))}: probability files of an earlier run, left as they were; they "
              f"do not describe this map ({remedy})")
    if args.steps is not None and fitted.steps < args.steps:
        print(f"warning: --max-minutes {minutes} stopped training after {fitted.steps} of the {args.steps} steps")
    print(f"wrote {scores_file}")
    print(f"wrote {history_picture}")
    print(f"wrote {check_picture} ({what})")
    if left_out:
        print(f"  left out of it: class {', '.join(map(str, left_out))} (it shows at most {MAX_CLASSES_DRAWN} of the "
              "classes warned about, those with the most expected errors)")
    return 0


def probability_image(probability: np.ndarray, label_image: nib.Nifti1Image) -> nib.Nifti1Image:
    """A class's probability ``(x, y, z)`` float32 as a NIfTI image on the grid of the label map.

    The label map's header gives the orientation and units; its label intent, display range and
    description, which would make a viewer show the map as labels from 0 to 255, are reset.
    """
    image = nib.Nifti1Image(probability, label_image.affine, label_image.header)
    image.set_data_dtype(np.float32)
    header = image.header
    header.set_intent("none")
    header["cal_min"], header["cal_max"] = 0.0, 1.0
    header["descrip"] = header["aux_file"] = b""
    return image


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def report_scores(fitted: SparseModel, classes: list[int], args: argparse.Namespace,
                  next_slices: dict[int, list[tuple[int | None, float]]]) -> dict:
    """Print the held-back scores (and warnings); return what the JSON file holds.

    Args:
        fitted: the trained model and its scores.
        classes: the label value of each class.
        args: the command's arguments.
        next_slices: per foreground class, the slices to check next (:func:`least_sure_slices`).

    Returns:
        The report: the run, the held-back scores, the classes warned about, and per foreground class
        the slice of each axis where the model is least sure of it (``next_slices``).
    """
    report = {"classes": classes, "steps": fitted.steps, "epochs": fitted.epochs, "kept_epoch": fitted.kept_epoch,
              "stop_reason": fitted.stop_reason, "train_seconds": round(fitted.train_seconds, 1),
              "holdout": args.holdout, "held_out_voxels": fitted.held_out_voxels,
              "class_weights": fitted.class_weighting,
              "class_weight_values": fitted.class_weight_values, "sampling": args.sampling,
              "output_bias": args.output_bias,
              "mirror": fitted.mirror,
              "window_weighting": fitted.window_weighting, "seed": fitted.config.seed,
              "scores": None, "low_classes": [], "history": fitted.score_history,
              "next_slices": {str(c): {axis: {"index": index, "expected_errors": round(errors, 1)}
                                       for axis, (index, errors) in zip(AXES, chosen)}
                              for c, chosen in next_slices.items()}}
    if fitted.scores is None:
        print("no held-back voxels (--holdout 0 or too few annotated tiles): no scores")
        return report
    scores = fitted.scores
    report["scores"] = {str(c): {"iou": i, "dice": d, "voxels": n}
                        for c, i, d, n in zip(classes, scores["iou"], scores["dice"], scores["voxels"])}
    print("held-back annotated voxels: class, voxels, IoU, Dice")
    for c, i, d, n in zip(classes, scores["iou"], scores["dice"], scores["voxels"]):
        print(f"  {c}: {n}, " + (f"{i:.3f}, {d:.3f}" if i is not None else
                                 "-, - (none held back: its voxels lie in too few tiles to spare one)"))
    # Past a plateau, a longer run did not help the never-annotated voxels (docs/sparse_annotation.md).
    remedy = ("annotate more of it (the held-back score had stopped improving: a longer run would not help)"
              if fitted.plateaued else "annotate more of it or train longer")
    # the next step up in weighting, if there is one
    stronger = {"none": ", or try --class-weights sqrt", "sqrt": ", or try --class-weights balanced"}
    for position in low_classes(scores["iou"]):
        report["low_classes"].append(classes[position])
        print(f"warning: class {classes[position]} scores IoU {scores['iou'][position]:.3f} on the held-back voxels, "
              f"below half the median of the other classes: {remedy}" + stronger.get(fitted.class_weighting, ""))
        if position:
            print(f"  where the model is least sure of class {classes[position]}, to check and annotate next: "
                  f"{slice_list(next_slices[classes[position]], classes[position])}")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``unet3d-densify`` and ``scripts/densify.py``; returns the exit status."""
    return run(work, parse_args(argv))
