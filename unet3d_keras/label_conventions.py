"""The label conventions of the BraTS releases: label values, evaluation regions and trained regions.

A convention names the label values of the truth, the regions the challenge scores (each a set
of label values) and the nested regions a region-based model is trained on (outer first, see
:mod:`unet3d_keras.regions`). The presets:

* ``brats2017``: the 2017-2021 releases: 1 necrotic / non-enhancing core, 2 oedema,
  4 enhancing tumour; WT {1, 2, 4}, TC {1, 4}, ET {4}.
* ``brats-gli``, ``brats-met``, ``brats-men``, ``brats-ped``, ``brats-goat``, ``brats-men-rt``:
  the 2023+ tasks, with the label groups of the official evaluation package's configurations
  (``BraTS_evaluation``: ``config_gli``, ``config_mets``, ``config_MenPre``, ``config_ped``,
  ``config_GoAT``, ``config_MenRT``). Glioma: NETC 1, SNFH 2, ET 3, RC 4 (resection cavity, in
  the post-treatment data), TC {1, 3}, WT {1, 2, 3}. The pediatric task numbers its labels anew:
  ET 1, NETC 2, CC 3 (cystic component), ED 4, TC {1, 2, 3}, WT {1, 2, 3, 4}.
* ``brats-ssa``: the Sub-Saharan Africa glioma data, labelled as glioma without a cavity.
* ``none``: no preset; labels and regions come from the config alone.

This module imports nothing from the package, so that the config can take its presets from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

__all__ = ["LabelConvention", "CONVENTIONS", "LAYOUT_2017", "LAYOUT_2023", "get_convention",
           "restrict_regions", "convention_for_labels"]

#: Folder layouts of the releases: ``<id>/<id>_t1ce.nii.gz`` (2017-2021) and
#: ``BraTS-GLI-00000-000/BraTS-GLI-00000-000-t1c.nii.gz`` (2023+).
LAYOUT_2017 = "brats2017"
LAYOUT_2023 = "brats2023"


@dataclass(frozen=True)
class LabelConvention:
    """The labels and regions of one BraTS task.

    Attributes:
        name: preset name (``data.convention``).
        labels: label values of the truth (0 is background), in output order.
        regions: the scored regions, ``{name: label values}`` (the official label groups).
        training_regions: the nested regions a region-based model outputs, outer first.
        tissues: label value of each simulated tissue (``necrotic``, ``oedema``, ``enhancing``)
            for the demo data, where the convention has them.
        layout: the release's folder layout (:data:`LAYOUT_2017` or :data:`LAYOUT_2023`).
    """

    name: str
    labels: tuple[int, ...]
    regions: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    training_regions: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    tissues: Mapping[str, int] = field(default_factory=dict)
    layout: str = LAYOUT_2023


_GLIOMA = dict(regions={"NETC": (1,), "SNFH": (2,), "ET": (3,), "RC": (4,), "TC": (1, 3), "WT": (1, 2, 3)},
               training_regions={"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,), "RC": (4,)},
               tissues={"necrotic": 1, "oedema": 2, "enhancing": 3})
_NESTED_3 = dict(training_regions={"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)},
                 tissues={"necrotic": 1, "oedema": 2, "enhancing": 3})

#: The presets, by name.
CONVENTIONS: dict[str, LabelConvention] = {
    "brats2017": LabelConvention(
        "brats2017", (1, 2, 4), {"WT": (1, 2, 4), "TC": (1, 4), "ET": (4,)},
        {"WT": (1, 2, 4), "TC": (1, 4), "ET": (4,)}, {"necrotic": 1, "oedema": 2, "enhancing": 4}, LAYOUT_2017),
    "brats-gli": LabelConvention("brats-gli", (1, 2, 3, 4), **_GLIOMA),
    "brats-ssa": LabelConvention("brats-ssa", (1, 2, 3), {"NETC": (1,), "SNFH": (2,), "ET": (3,), "TC": (1, 3),
                                                          "WT": (1, 2, 3)}, **_NESTED_3),
    "brats-met": LabelConvention(
        "brats-met", (1, 2, 3, 4), {"ET": (3,), "RC": (4,), "TC": (1, 3), "WT": (1, 2, 3)},
        _GLIOMA["training_regions"], _GLIOMA["tissues"]),
    "brats-men": LabelConvention("brats-men", (1, 2, 3), {"ET": (3,), "TC": (1, 3), "WT": (1, 2, 3)}, **_NESTED_3),
    "brats-goat": LabelConvention("brats-goat", (1, 2, 3), {"ET": (3,), "TC": (1, 3), "WT": (1, 2, 3)}, **_NESTED_3),
    "brats-ped": LabelConvention(
        "brats-ped", (1, 2, 3, 4),
        {"ET": (1,), "NETC": (2,), "CC": (3,), "ED": (4,), "TC": (1, 2, 3), "WT": (1, 2, 3, 4)},
        {"WT": (1, 2, 3, 4), "TC": (1, 2, 3), "CC": (3,), "ET": (1,)},
        {"necrotic": 2, "oedema": 4, "enhancing": 1}),
    "brats-men-rt": LabelConvention("brats-men-rt", (1,), {"GTV": (1,)}, {"GTV": (1,)}),
}


def get_convention(name: str) -> LabelConvention:
    """The preset called ``name``.

    Raises:
        ValueError: no such preset (the message lists them).
    """
    try:
        return CONVENTIONS[name]
    except KeyError:
        raise ValueError(f"unknown label convention {name!r}; expected one of {', '.join(CONVENTIONS)}") from None


def restrict_regions(regions: Mapping[str, Sequence[int]], labels: Sequence[int]) -> dict[str, tuple[int, ...]]:
    """``regions`` with each label set cut to ``labels``; regions left empty are dropped.

    E.g. the glioma regions for data without a resection cavity (labels 1, 2, 3) lose RC.
    """
    kept = {name: tuple(v for v in values if v in set(labels)) for name, values in regions.items()}
    return {name: values for name, values in kept.items() if values}


def convention_for_labels(labels: Sequence[int] | None) -> str:
    """The convention ``data.convention: auto`` stands for: ``brats2017`` for the labels 1, 2, 4
    (or none given), else ``none``."""
    return "brats2017" if labels is None or sorted(labels) == [1, 2, 4] else "none"
