"""Finding subjects and their image files on disk.

Two layouts:

* **BraTS**: one folder per subject, anywhere below the data folder. The 2017-2021 releases
  (e.g. ``MICCAI_BraTS2020_TrainingData/BraTS20_Training_001/``) hold
  ``{subject}_{modality}.nii.gz`` files: modalities ``t1``, ``t1ce`` (``t1Gd`` in 2017),
  ``flair``, ``t2``; the truth ``seg`` (2018+) or, in 2017, ``GlistrBoost_ManuallyCorrected``
  (preferred) or ``GlistrBoost``. The 2023+ releases (all tasks: ``BraTS-GLI``, ``-MEN``,
  ``-MET``, ``-PED``, ``-SSA``...) hold ``BraTS-GLI-00000-000/BraTS-GLI-00000-000-{t1n,t1c,t2w,t2f,seg}.nii.gz``.
  Files are matched by suffix (``*_{name}.nii[.gz]`` or ``*-{name}.nii[.gz]``) and every name
  of a modality finds the files of its other names (``t1ce`` finds ``-t1c``, ``t2f`` finds
  ``_flair``...), see :mod:`unet3d_keras.modalities`.
* **generic**: one folder per subject directly inside the data folder, one file per modality
  named by a pattern, by default ``{modality}.nii.gz`` with the truth named ``truth`` -- what
  ``brats/preprocess.py`` writes.

Both return ``(subject_ids, file_tuples)`` sorted by subject id, each tuple holding the modality
files in the order asked for and then the truth file if ``include_truth``; this is what
:func:`unet3d_keras.data.write_data_to_file` takes.
"""

from __future__ import annotations

import logging
import os
from typing import Sequence

from .errors import DataError
from .modalities import BRATS_MODALITIES, BRATS_TRUTH_NAMES, brats_modality_names

logger = logging.getLogger(__name__)

__all__ = [
    "find_brats_subjects",
    "find_generic_subjects",
    "find_subjects",
    "find_subject_file",
    "NIFTI_SUFFIXES",
]

PathLike = str | os.PathLike

#: The file names that nibabel reads and writes as NIfTI-1.
NIFTI_SUFFIXES = (".nii", ".nii.gz")
# The separator before the image name: "_" in the 2017-2021 releases, "-" from 2023 on.
_SEPARATORS = ("_", "-")


def _check_folder(folder: PathLike) -> str:
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise DataError(f"Data folder not found: {folder}")
    return folder


def find_subject_file(subject_folder: PathLike, names: Sequence[str]) -> str | None:
    """The file ``*_{name}.nii.gz`` or ``*-{name}.nii.gz`` (or ``.nii``) in ``subject_folder`` for the
    first name that has one.

    Raises:
        DataError: several files match one name.
    """
    subject_folder = os.fspath(subject_folder)
    entries = sorted(os.listdir(subject_folder))
    for name in names:
        matches = [
            entry for entry in entries
            if any(entry.endswith(f"{separator}{name}{suffix}") for suffix in NIFTI_SUFFIXES
                   for separator in _SEPARATORS)
            and os.path.isfile(os.path.join(subject_folder, entry))
        ]
        if len(matches) > 1:
            raise DataError(f"Several files in {subject_folder} match '*[_-]{name}.nii[.gz]': {matches}")
        if matches:
            return os.path.join(subject_folder, matches[0])
    return None


def _separator(subject_id: str) -> str:
    """The separator the subject's files use: "-" for 2023+ ids (``BraTS-GLI-00000-000``), else "_"."""
    return "-" if subject_id.startswith("BraTS-") else "_"


def find_brats_subjects(
    brats_folder: PathLike,
    modalities: Sequence[str] = BRATS_MODALITIES,
    include_truth: bool = True,
    truth_names: Sequence[str] = BRATS_TRUTH_NAMES,
) -> tuple[list[str], list[tuple[str, ...]]]:
    """Finds BraTS subject folders anywhere below ``brats_folder``.

    A subject folder is a folder holding at least one ``*_{name}.nii[.gz]`` (2017-2021) or
    ``*-{name}.nii[.gz]`` (2023+) file for a requested modality (or another name of it) or truth
    name. Its name is the subject id.

    Args:
        brats_folder: the unpacked data set (any depth of grouping folders).
        modalities: modality names, in channel order.
        include_truth: add the truth file (first of ``truth_names`` found) last in each tuple.
        truth_names: truth names in order of preference.

    Returns:
        ``(subject_ids, file_tuples)`` sorted by subject id.

    Raises:
        DataError: the folder is missing, holds no subject, a subject lacks a file, or two
            subject folders have the same name.
    """
    brats_folder = _check_folder(brats_folder)
    wanted = [brats_modality_names(m) for m in modalities]
    all_names = [name for names in wanted for name in names] + (list(truth_names) if include_truth else [])
    found: dict[str, tuple[str, ...]] = {}
    folders: dict[str, str] = {}
    for root, dirs, _ in os.walk(brats_folder):
        dirs.sort()
        try:
            has_any = find_subject_file(root, all_names) is not None
        except DataError:
            has_any = True  # ambiguous files: report them below, with the subject named
        if not has_any:
            continue
        subject_id = os.path.basename(os.path.normpath(root))
        if subject_id in folders:
            raise DataError(f"Two subject folders are named {subject_id!r}: {folders[subject_id]} and {root}")
        files = []
        for modality, names in zip(modalities, wanted):
            try:
                path = find_subject_file(root, names)
            except DataError as error:
                raise DataError(f"Subject {subject_id}: {error}") from error
            if path is None:
                raise DataError(
                    f"Subject {subject_id}: missing modality {modality!r}: no file "
                    f"{' or '.join(f'{subject_id}{_separator(subject_id)}{n}.nii.gz' for n in names)} "
                    f"(matched as '*[_-]{names[0]}.nii[.gz]') in {root}"
                )
            files.append(path)
        if include_truth:
            path = find_subject_file(root, truth_names)
            if path is None:
                raise DataError(
                    f"Subject {subject_id}: missing truth: no file named "
                    f"'*[_-]{{{','.join(truth_names)}}}.nii[.gz]' in {root}"
                )
            files.append(path)
        folders[subject_id] = root
        found[subject_id] = tuple(files)
    if not found:
        raise DataError(
            f"No BraTS subjects found below {brats_folder}: looked for folders holding files named "
            f"'<subject>_<name>.nii.gz' or '<subject>-<name>.nii.gz' with <name> in {all_names}"
        )
    subject_ids = sorted(found)
    logger.info("Found %d BraTS subjects below %s", len(subject_ids), brats_folder)
    return subject_ids, [found[s] for s in subject_ids]


def find_generic_subjects(
    data_folder: PathLike,
    modalities: Sequence[str],
    include_truth: bool = True,
    truth_name: str = "truth",
    pattern: str = "{modality}.nii.gz",
) -> tuple[list[str], list[tuple[str, ...]]]:
    """Finds subjects laid out as ``data_folder/<subject>/<pattern>``.

    Folders holding none of the expected files are skipped (with a log message); a folder
    holding some but not all of them is an error.

    Args:
        data_folder: folder with one sub-folder per subject.
        modalities: modality names, in channel order.
        include_truth: add the truth file last in each tuple.
        truth_name: modality name of the truth file.
        pattern: file name, formatted with ``modality`` and ``subject`` (the folder name).

    Returns:
        ``(subject_ids, file_tuples)`` sorted by subject id.

    Raises:
        DataError: the folder is missing, holds no subject, or a subject lacks a file.
    """
    data_folder = _check_folder(data_folder)
    names = list(modalities) + ([truth_name] if include_truth else [])
    subject_ids: list[str] = []
    file_tuples: list[tuple[str, ...]] = []
    for subject_id in sorted(os.listdir(data_folder)):
        subject_folder = os.path.join(data_folder, subject_id)
        if not os.path.isdir(subject_folder) or subject_id.startswith("."):
            continue
        paths = [os.path.join(subject_folder, pattern.format(modality=name, subject=subject_id)) for name in names]
        present = [os.path.isfile(path) for path in paths]
        if not any(present):
            logger.info("Skipping %s: none of the files %s", subject_folder, [os.path.basename(p) for p in paths])
            continue
        if not all(present):
            missing = [path for path, ok in zip(paths, present) if not ok]
            raise DataError(f"Subject {subject_id}: missing file(s) {missing}")
        subject_ids.append(subject_id)
        file_tuples.append(tuple(paths))
    if not subject_ids:
        example = os.path.join(data_folder, "<subject>", pattern.format(modality="<modality>", subject="<subject>"))
        raise DataError(f"No subjects found in {data_folder}: looked for {example} with <modality> in {names}")
    logger.info("Found %d subjects in %s", len(subject_ids), data_folder)
    return subject_ids, file_tuples


def find_subjects(
    data_folder: PathLike,
    modalities: Sequence[str] = BRATS_MODALITIES,
    include_truth: bool = True,
    layout: str = "auto",
    truth_name: str = "truth",
    pattern: str = "{modality}.nii.gz",
) -> tuple[list[str], list[tuple[str, ...]]]:
    """Finds subjects in either layout.

    Args:
        data_folder: the data folder.
        modalities: modality names, in channel order.
        include_truth: add the truth file last in each tuple.
        layout: ``"brats"``, ``"generic"`` or ``"auto"`` (generic if some sub-folder holds the
            first modality's file as named by ``pattern``, BraTS otherwise).
        truth_name, pattern: for the generic layout.

    Returns:
        ``(subject_ids, file_tuples)`` sorted by subject id.
    """
    if layout not in ("auto", "brats", "generic"):
        raise ValueError(f"layout must be 'auto', 'brats' or 'generic'; got {layout!r}")
    folder = _check_folder(data_folder)
    if layout == "auto":
        layout = "brats"
        for entry in sorted(os.listdir(folder)):
            candidate = os.path.join(folder, entry, pattern.format(modality=modalities[0], subject=entry))
            if os.path.isfile(candidate):
                layout = "generic"
                break
    if layout == "generic":
        return find_generic_subjects(folder, modalities, include_truth, truth_name=truth_name, pattern=pattern)
    return find_brats_subjects(folder, modalities, include_truth)
