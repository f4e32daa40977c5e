"""The BraTS image names: modalities in channel order, their other names, and the truth names.

This module imports nothing, so that any module (settings included) can take its defaults from it.
"""

__all__ = ["BRATS_MODALITIES", "BRATS_MODALITY_ALIASES", "BRATS_TRUTH_NAMES", "brats_modality_names"]

#: The four BraTS modalities in the reference's channel order.
BRATS_MODALITIES = ("t1", "t1ce", "flair", "t2")
#: Other names a BraTS modality has had (``t1Gd`` in 2017), tried in order after the name itself.
BRATS_MODALITY_ALIASES = {"t1ce": ("t1Gd",), "t1Gd": ("t1ce",)}
#: Truth names, in order of preference (``seg`` from 2018 on).
BRATS_TRUTH_NAMES = ("seg", "GlistrBoost_ManuallyCorrected", "GlistrBoost")


def brats_modality_names(modality: str) -> tuple[str, ...]:
    """The names a file of ``modality`` may carry, in order of preference (the name itself first)."""
    return (modality,) + BRATS_MODALITY_ALIASES.get(modality, ())
