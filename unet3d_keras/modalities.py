"""The BraTS image names: modalities in channel order, their other names, and the truth names.

The 2017-2021 releases name the modalities ``t1``, ``t1ce`` (``t1Gd`` in 2017), ``t2`` and
``flair``; the 2023+ releases ``t1n``, ``t1c``, ``t2w`` and ``t2f``. Each name finds the files
of the others, so a model trained on one release's names segments the other's cases.

This module imports nothing, so that any module (settings included) can take its defaults from it.
"""

__all__ = ["BRATS_MODALITIES", "BRATS_2023_NAMES", "BRATS_MODALITY_ALIASES", "BRATS_TRUTH_NAMES",
           "brats_modality_names"]

#: The four BraTS modalities in the reference's channel order.
BRATS_MODALITIES = ("t1", "t1ce", "flair", "t2")
#: The 2023+ name of each modality.
BRATS_2023_NAMES = {"t1": "t1n", "t1ce": "t1c", "t2": "t2w", "flair": "t2f"}
# Names of one modality across the releases, the reference's first.
_SAME_MODALITY = (("t1", "t1n"), ("t1ce", "t1Gd", "t1c"), ("t2", "t2w"), ("flair", "t2f"))
#: Other names a BraTS modality has had, tried in order after the name itself.
BRATS_MODALITY_ALIASES = {name: tuple(n for n in names if n != name) for names in _SAME_MODALITY for name in names}
#: Truth names, in order of preference (``seg`` from 2018 on).
BRATS_TRUTH_NAMES = ("seg", "GlistrBoost_ManuallyCorrected", "GlistrBoost")


def brats_modality_names(modality: str) -> tuple[str, ...]:
    """The names a file of ``modality`` may carry, in order of preference (the name itself first)."""
    return (modality,) + BRATS_MODALITY_ALIASES.get(modality, ())
