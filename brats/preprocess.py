"""Converting, bias-correcting and fixing the BraTS data.

``convert_brats_data(brats_folder, out_folder)`` finds every subject below ``brats_folder``
(any BraTS release from 2017 on: ``t1Gd``/``GlistrBoost[_ManuallyCorrected]`` or
``t1ce``/``seg`` names) and writes ``out_folder/<subject>/{t1,t1ce,flair,t2,truth}.nii.gz``,
the layout :func:`unet3d_keras.subjects.find_generic_subjects` reads. Modalities are N4
bias-corrected with SimpleITK (except those in ``no_bias_correction_modalities``); the truth is
copied and its origin set to that of the first modality.

Command line::

    python brats/preprocess.py BRATS_FOLDER OUT_FOLDER [--overwrite] [--no-bias-correction]

Differences from the reference (``legacy/brats/preprocess.py``):

* N4 runs in SimpleITK (no ANTs/nipype), on an image shrunk by ``shrink_factor`` for speed; the
  bias field is then evaluated at full resolution. Corrected images are written as float32.
* Output goes to ``out_folder/<subject>`` (the reference added the grouping folder, e.g.
  ``HGG/``). Each subject is written into a temporary folder and renamed when complete, so an
  interrupted run never leaves a half-converted subject that a later run would skip.
* ``convert_brats_folder(no_bias_correction_modalities=None)`` corrects every modality; the
  reference corrected none (its test was ``None and ...``).
* Helper functions take the modality list as an argument instead of reading a global config.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import sys
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from unet3d_keras.errors import DataError
from unet3d_keras.fileio import check_writable_folder, made_folder, remove_stale_temporary_files, temporary_path
from unet3d_keras.modalities import BRATS_MODALITIES, BRATS_TRUTH_NAMES, brats_modality_names
from unet3d_keras.run_lock import run_folder_lock
from unet3d_keras.subject_images import check_subject_geometry, read_subject_images
from unet3d_keras.subjects import find_brats_subjects, find_subject_file
from unet3d_keras.utils.utils import read_image, read_image_header

logger = logging.getLogger(__name__)

__all__ = [
    "MODALITIES",
    "append_basename",
    "get_background_mask",
    "convert_image_format",
    "window_intensities",
    "correct_bias",
    "rescale",
    "get_image",
    "background_to_zero",
    "check_origin",
    "normalize_image",
    "convert_brats_folder",
    "convert_brats_data",
    "main",
]

#: Output modalities, in the reference's channel order.
MODALITIES = BRATS_MODALITIES
#: N4 fitting iterations per resolution level (ITK's default).
DEFAULT_N4_ITERATIONS = (50, 50, 50, 50)


def append_basename(in_file: str, append: str) -> str:
    """``/a/b.nii.gz``, ``"_x"`` -> ``/a/b_x.nii.gz``."""
    dirname, basename = os.path.split(in_file)
    base, ext = basename.split(".", 1)
    return os.path.join(dirname, base + append + "." + ext)


def get_image(subject_folder: str, name: str) -> str:
    """The file of ``subject_folder`` whose name ends with ``name.nii.gz`` (or ``.nii``).

    Raises:
        DataError: no file matches (the reference raised RuntimeError).
    """
    matches = sorted(
        glob.glob(os.path.join(glob.escape(subject_folder), "*" + name + ".nii.gz"))
        + glob.glob(os.path.join(glob.escape(subject_folder), "*" + name + ".nii"))
    )
    if not matches:
        raise DataError(f"Could not find a file matching *{name}.nii.gz in {subject_folder}")
    return matches[0]


def _modality_file(in_folder: str, name: str) -> str:
    names = brats_modality_names(name)
    path = find_subject_file(in_folder, names)
    if path is None:
        raise DataError(
            f"Subject {os.path.basename(os.path.normpath(in_folder))}: missing modality {name!r} "
            f"(no *_{'/'.join(names)}.nii.gz in {in_folder})"
        )
    return path


def get_background_mask(
    in_folder: str, out_file: str, truth_name: str = "GlistrBoost_ManuallyCorrected",
    modalities: Sequence[str] = MODALITIES,
) -> str:
    """Writes a mask that is 1 where every image of a subject (modalities and truth) is 0.

    Args:
        in_folder: a BraTS subject folder.
        out_file: the mask file.
        truth_name: name of the truth file (other BraTS truth names are tried after it).
        modalities: modality names.

    Returns:
        The absolute path of ``out_file``.
    """
    background_image = None
    files = [_modality_file(in_folder, name) for name in modalities]
    truth_file = find_subject_file(in_folder, (truth_name,) + tuple(n for n in BRATS_TRUTH_NAMES if n != truth_name))
    if truth_file is None:
        raise DataError(f"No truth file ({truth_name}) in {in_folder}")
    for index, path in enumerate(files + [truth_file]):
        image = sitk.ReadImage(path)
        if background_image is None:
            background_image = image == 0
            continue
        if index == len(files) and image.GetOrigin() != background_image.GetOrigin():
            # The 2017 truth files have a different origin than the images they label.
            image.SetOrigin(background_image.GetOrigin())
        background_image = sitk.And(image == 0, background_image)
    sitk.WriteImage(background_image, out_file)
    return os.path.abspath(out_file)


def convert_image_format(in_file: str, out_file: str) -> str:
    """Rewrites an image in the format given by ``out_file``'s extension."""
    sitk.WriteImage(sitk.ReadImage(in_file), out_file)
    return out_file


def window_intensities(in_file: str, out_file: str, min_percent: float = 1, max_percent: float = 99) -> str:
    """Clips intensities to the ``min_percent``..``max_percent`` percentiles and rescales them to
    0..255 (``sitk.IntensityWindowing``'s default output range, as in the reference)."""
    image = sitk.ReadImage(in_file)
    image_data = sitk.GetArrayViewFromImage(image)
    out_image = sitk.IntensityWindowing(
        image, float(np.percentile(image_data, min_percent)), float(np.percentile(image_data, max_percent))
    )
    sitk.WriteImage(out_image, out_file)
    return os.path.abspath(out_file)


def rescale(in_file: str, out_file: str, minimum: float = 0, maximum: float = 20000) -> str:
    """Linearly rescales intensities to ``minimum``..``maximum``."""
    image = sitk.ReadImage(in_file)
    sitk.WriteImage(sitk.RescaleIntensity(image, minimum, maximum), out_file)
    return os.path.abspath(out_file)


def background_to_zero(in_file: str, background_file: str, out_file: str) -> str:
    """Sets the voxels where ``background_file`` is non-zero to 0."""
    sitk.WriteImage(
        sitk.Mask(sitk.ReadImage(in_file), sitk.ReadImage(background_file, sitk.sitkUInt8) == 0), out_file
    )
    return out_file


def check_origin(in_file: str, in_file2: str) -> None:
    """Gives ``in_file`` the origin of ``in_file2`` (rewriting it) if they differ."""
    image = sitk.ReadImage(in_file)
    image2 = sitk.ReadImage(in_file2)
    if image.GetOrigin() != image2.GetOrigin():
        logger.info("Setting the origin of %s to that of %s", in_file, in_file2)
        image.SetOrigin(image2.GetOrigin())
        sitk.WriteImage(image, in_file)


def _foreground_mask(image: sitk.Image, mask: str) -> sitk.Image:
    if mask == "nonzero":
        return sitk.Cast(image > 0, sitk.sitkUInt8)
    if mask == "otsu":
        return sitk.OtsuThreshold(image, 0, 1, 200)
    raise ValueError(f"mask must be 'nonzero' or 'otsu'; got {mask!r}")


def correct_bias(
    in_file: str,
    out_file: str,
    image_type: int = sitk.sitkFloat64,
    *,
    shrink_factor: int = 4,
    n_iterations: Sequence[int] = DEFAULT_N4_ITERATIONS,
    mask: str = "nonzero",
) -> str:
    """N4 bias field correction with SimpleITK.

    The field is fitted on the image shrunk by ``shrink_factor`` per axis (never below 8 voxels
    along an axis) inside a foreground mask, then evaluated at full resolution and divided
    out. An image without foreground is copied unchanged.

    Args:
        in_file: input image.
        out_file: output image, written as float32 (as ANTs' N4 writes).
        image_type: pixel type the computation runs in.
        shrink_factor: downsampling factor for fitting the field.
        n_iterations: maximum iterations per fitting level (one level per entry).
        mask: ``"nonzero"`` (voxels > 0, the reference's mask) or ``"otsu"``.

    Returns:
        The absolute path of ``out_file``.
    """
    image = sitk.ReadImage(in_file, image_type)
    foreground = _foreground_mask(image, mask)
    statistics = sitk.StatisticsImageFilter()
    statistics.Execute(foreground)
    if statistics.GetSum() == 0:
        logger.warning("%s has no foreground; bias correction skipped", in_file)
        sitk.WriteImage(sitk.Cast(image, sitk.sitkFloat32), out_file)
        return os.path.abspath(out_file)
    factors = [max(1, min(int(shrink_factor), size // 8)) for size in image.GetSize()]
    small_image = sitk.Shrink(image, factors)
    small_mask = sitk.Shrink(foreground, factors)
    corrector = sitk.N4BiasFieldCorrectionImageFilter()
    corrector.SetMaximumNumberOfIterations([int(n) for n in n_iterations])
    corrector.Execute(small_image, small_mask)
    log_bias_field = sitk.Cast(corrector.GetLogBiasFieldAsImage(image), image.GetPixelID())
    corrected = image / sitk.Exp(log_bias_field)
    sitk.WriteImage(sitk.Cast(corrected, sitk.sitkFloat32), out_file)
    return os.path.abspath(out_file)


def _copy_image(in_file: str, out_file: str) -> None:
    if in_file.endswith(".nii.gz") and out_file.endswith(".nii.gz"):
        shutil.copyfile(in_file, out_file)
    else:
        convert_image_format(in_file, out_file)


def normalize_image(in_file: str, out_file: str, bias_correction: bool = True, **n4_options) -> str:
    """Bias-corrects ``in_file`` into ``out_file``, or copies it when ``bias_correction`` is False."""
    if bias_correction:
        correct_bias(in_file, out_file, **n4_options)
    else:
        _copy_image(in_file, out_file)
    return out_file


def convert_brats_folder(
    in_folder: str,
    out_folder: str,
    truth_name: str = "seg",
    no_bias_correction_modalities: Sequence[str] | None = None,
    *,
    modalities: Sequence[str] = MODALITIES,
    bias_correction: bool = True,
    require_truth: bool = True,
    **n4_options,
) -> None:
    """Converts one BraTS subject folder into ``out_folder/{modality}.nii.gz`` and ``truth.nii.gz``.

    Args:
        in_folder: the subject's BraTS folder.
        out_folder: existing folder the files are written to.
        truth_name: preferred truth name; the other BraTS names are tried next
            (``seg``, ``GlistrBoost_ManuallyCorrected``, ``GlistrBoost``).
        no_bias_correction_modalities: modalities copied without bias correction.
        modalities: output modalities (``t1ce`` also matches the 2017 ``t1Gd``).
        bias_correction: set False to copy every modality.
        require_truth: raise if there is no truth file (else skip it with a warning).
        **n4_options: ``shrink_factor``, ``n_iterations``, ``mask`` for :func:`correct_bias`.

    Raises:
        DataError: a modality or the truth file is missing (naming the subject and file).
    """
    skip = set(no_bias_correction_modalities or ())
    inputs = {name: _modality_file(in_folder, name) for name in modalities}
    truth_names = (truth_name,) + tuple(n for n in BRATS_TRUTH_NAMES if n != truth_name)
    truth_file = find_subject_file(in_folder, truth_names)
    if truth_file is None and require_truth:
        raise DataError(
            f"Subject {os.path.basename(os.path.normpath(in_folder))}: missing truth (no *_{{{','.join(truth_names)}}}"
            f".nii.gz in {in_folder})"
        )
    for name, image_file in inputs.items():
        out_file = os.path.abspath(os.path.join(out_folder, name + ".nii.gz"))
        normalize_image(image_file, out_file, bias_correction=bias_correction and name not in skip, **n4_options)
    if truth_file is None:
        logger.warning("No truth file in %s; only the modalities were converted", in_folder)
        return
    out_file = os.path.abspath(os.path.join(out_folder, "truth.nii.gz"))
    _copy_image(truth_file, out_file)
    check_origin(out_file, inputs[modalities[0]])


def check_subject_headers(subject_id: str, files: Sequence[str]) -> None:
    """From the headers: every file readable and 3D, the modalities on one grid, the truth of the same shape.

    The truth's affine is not compared: the 2017 truth files have another origin (fixed on conversion).

    Raises:
        DataError: naming the subject and the file.
    """

    headers = []
    for path in files:
        try:
            headers.append(read_image_header(path))
        except DataError as error:
            raise DataError(f"Subject {subject_id}: {error}") from error
    shapes = [shape for shape, _ in headers]
    affines = [affine for _, affine in headers]
    n = len(MODALITIES)
    check_subject_geometry(files[:n], shapes[:n], affines[:n], subject_id=subject_id)
    if len(files) > n:
        check_subject_geometry([files[0], files[n]], [shapes[0], shapes[n]], [affines[0], affines[0]],
                               subject_id=subject_id)


def check_subject_images(subject_id: str, files: Sequence[str]) -> None:
    """Read every file of a subject in full: not truncated, finite intensities (N4 would spread a NaN).

    Raises:
        DataError: naming the subject and the file.
    """

    read_subject_images(files[: len(MODALITIES)], subject_id=subject_id)
    for path in files[len(MODALITIES):]:
        try:
            read_image(path, interpolation="nearest")
        except DataError as error:
            raise DataError(f"Subject {subject_id}: {error}") from error


def convert_brats_data(
    brats_folder: str,
    out_folder: str,
    overwrite: bool = False,
    no_bias_correction_modalities: Sequence[str] | None = ("flair",),
    *,
    bias_correction: bool = True,
    require_truth: bool = True,
    **n4_options,
) -> list[str]:
    """Preprocesses a BraTS data set into ``out_folder/<subject>/``.

    All subjects are found (and checked for missing files) before anything is written.
    Subjects already converted are skipped unless ``overwrite``.

    Args:
        brats_folder: the unpacked BraTS data (subject folders at any depth).
        out_folder: created if needed.
        overwrite: redo subjects that already have an output folder.
        no_bias_correction_modalities: modalities not bias-corrected (bias correction can reduce
            the signal of some, e.g. FLAIR).
        bias_correction: set False to copy every modality unchanged.
        require_truth: every subject must have a truth file.
        **n4_options: ``shrink_factor``, ``n_iterations``, ``mask`` for :func:`correct_bias`.

    Returns:
        The output subject folders, sorted by subject id.

    Raises:
        DataError: the BraTS folder is missing, holds no subjects, or a subject lacks a file or has
            a broken one (unreadable, truncated, not 3D, NaN, images on different grids).
    """

    subject_ids, file_tuples = find_brats_subjects(brats_folder, MODALITIES, include_truth=require_truth)
    for subject_id, files in zip(subject_ids, file_tuples):  # headers only: fast, before anything is written
        check_subject_headers(subject_id, files)
    check_writable_folder(out_folder)  # or, where it is still to be made, its nearest existing parent
    # a run that wrote nothing leaves no folder; a second run would convert the same subjects
    with made_folder(out_folder), run_folder_lock(out_folder, "output folder"):
        return _convert_subjects(subject_ids, file_tuples, out_folder, overwrite,
                                 no_bias_correction_modalities, bias_correction, require_truth, **n4_options)


def _convert_subjects(subject_ids, file_tuples, out_folder, overwrite, no_bias_correction_modalities,
                      bias_correction, require_truth, **n4_options) -> list[str]:

    written = []
    for subject_id, files in zip(subject_ids, file_tuples):
        subject_folder = os.path.dirname(files[0])
        new_subject_folder = os.path.join(out_folder, subject_id)
        written.append(os.path.abspath(new_subject_folder))
        remove_stale_temporary_files(new_subject_folder)  # left by a killed run
        if os.path.exists(new_subject_folder) and not overwrite:
            logger.info("Skipping %s: %s exists", subject_id, new_subject_folder)
            continue
        logger.info("Converting %s", subject_id)
        check_subject_images(subject_id, files)
        # Both named .{id}.tmp-{pid}*, the pattern remove_stale_temporary_files recognises.
        temp_folder = os.fspath(temporary_path(os.path.join(out_folder, subject_id)))
        old_folder = os.fspath(temporary_path(os.path.join(out_folder, subject_id), ".old"))
        shutil.rmtree(temp_folder, ignore_errors=True)
        os.makedirs(temp_folder)
        try:
            try:
                convert_brats_folder(
                    subject_folder, temp_folder, no_bias_correction_modalities=no_bias_correction_modalities,
                    bias_correction=bias_correction, require_truth=require_truth, **n4_options,
                )
            except RuntimeError as error:  # SimpleITK's errors: keep the line that says what went wrong
                reason = str(error).split("sitk::ERROR:")[-1]
                raise DataError(f"Subject {subject_id}: {' '.join(reason.split())}") from error
            except OSError as error:
                # A failed write (disk full) names the temporary copy, or nothing: name the output.
                written_to = error.filename2 or error.filename
                if error.errno is not None and (written_to is None or str(written_to).startswith(temp_folder)):
                    target = os.path.join(new_subject_folder, os.path.basename(written_to or ""))
                    raise OSError(error.errno, error.strerror, target.rstrip(os.sep)) from error
                raise
            if os.path.exists(new_subject_folder):
                os.replace(new_subject_folder, old_folder)
            os.replace(temp_folder, new_subject_folder)
        except BaseException:
            shutil.rmtree(temp_folder, ignore_errors=True)
            if os.path.exists(old_folder) and not os.path.exists(new_subject_folder):
                os.replace(old_folder, new_subject_folder)
            raise
        shutil.rmtree(old_folder, ignore_errors=True)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status (2 with one ``error:`` line on bad input)."""
    from unet3d_keras.cli import base_parser, run

    parser = base_parser(
        "Bias-correct a BraTS data set and write OUT_FOLDER/<subject>/{t1,t1ce,flair,t2,truth}.nii.gz",
        with_config=False,
    )
    parser.prog = "preprocess.py"
    parser.add_argument("brats_folder", help="the unpacked BraTS data (subject folders at any depth)")
    parser.add_argument("out_folder", help="where the preprocessed subjects are written")
    parser.add_argument("--overwrite", action="store_true", help="redo subjects that were already converted")
    parser.add_argument("--no-bias-correction", action="store_true", help="copy the images without N4 correction")
    parser.add_argument("--shrink-factor", type=int, default=4, help="N4 fitting downsampling factor (default 4)")
    parser.add_argument(
        "--iterations", type=int, nargs="+", default=list(DEFAULT_N4_ITERATIONS),
        help="N4 iterations per level (default 50 50 50 50)",
    )
    args = parser.parse_args(argv)

    def work(args) -> int:
        convert_brats_data(
            args.brats_folder, args.out_folder, overwrite=args.overwrite,
            bias_correction=not args.no_bias_correction, shrink_factor=args.shrink_factor,
            n_iterations=args.iterations,
        )
        return 0

    return run(work, args)


if __name__ == "__main__":
    sys.exit(main())
