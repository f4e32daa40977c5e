"""How much of the one-voxel membranes the image shows: readers told every cell.

On the one-voxel volumes of ``volume.py`` (``thin``, ``clear``) the membrane between two cells lies on
the side of the cell with the smaller number, which nothing but the image shows. These readers are
told everything else: every cell, and so where each face between two cells lies, each cell's
brightness, the membrane's, the blur and the noise. For each face they only choose the side that
carries its membrane, by the likelihood of the image (the noise is Gaussian: the side whose image,
drawn without noise, is nearer to the image in squared differences), every other face as it truly is:

- **the whole face**: one choice per face, from all of the image (the likeliest side given more than
  any model is given: about as well as the image lets anyone choose);
- **a box of w voxels**: each voxel of the face chooses on its own, from the w x w x w voxels around
  it: how much of the image around a voxel a reader needs.

Scored as the tables are: IoU per class on the never-annotated voxels (two slices per axis annotated).
No training; seconds.

    python examples/thin_shell/oracle.py [--volume thin clear] [--boxes 1 3 5 7 9]

Writes ``results_oracle.json`` (``{"volumes": {volume: result}, "commands": [...]}``); ``run.py
--markdown-only`` puts it on the page.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from experiments import ORACLE_RESULTS  # noqa: E402
from processes import save_json, start_results  # noqa: E402
from volume import (IGNORE, ONE_VOXEL, VOLUMES, draw_image, face_sides, iou_per_class, make_tissue,  # noqa: E402
                    make_volume, membrane_mask, sparse_labels)


def read(volume: str, boxes: list[int]) -> dict:
    """The readers' IoU per class on ``volume``'s never-annotated voxels, the whole face's and each box's, and
    how many faces the whole-face reader put on the wrong side.

    A face whose every voxel is membrane through other faces or the background, whichever side carries it, is
    neither counted nor chosen.
    """
    arguments = dict(VOLUMES[volume])
    image, dense = make_volume(**arguments)
    never = sparse_labels(dense) == IGNORE
    # make_volume's own draws, repeated: the cells and brightness behind that image
    cells, membrane, brightness = make_tissue(np.random.default_rng(arguments.pop("seed", 0)),
                                              arguments.get("thickness", 2),
                                              arguments.get("brightness_range", (0.7, 1.1)))
    if not np.array_equal(membrane, dense == 2):
        raise RuntimeError(f"{volume}: the cells drawn again do not give the volume's membrane")
    value, blur = arguments["membrane_value"], arguments.get("blur", 1.0)
    count = cells.max() + 1
    carrier = np.minimum.outer(np.arange(count), np.arange(count))
    residual = (image - draw_image(cells, brightness, membrane, value, blur)) ** 2
    # the membrane against the background is not in question: every reader starts from it
    chosen = {key: membrane_mask(cells, 1, np.full_like(carrier, -1)) for key in ["face", *boxes]}
    wrong = counted = 0
    for (a, b), sides in face_sides(cells).items():
        flipped = carrier.copy()
        flipped[a, b] = flipped[b, a] = b
        other_side = membrane_mask(cells, 1, flipped)
        if np.array_equal(other_side, membrane):  # every voxel of the face is membrane through another face
            continue
        counted += 1
        # > 0 where the image is nearer the truth (a carries the membrane) than the flipped face
        evidence = (image - draw_image(cells, brightness, other_side, value, blur)) ** 2 - residual
        side_a, side_b = np.zeros((2, *cells.shape), bool)
        side_a.flat[sides[0]] = side_b.flat[sides[1]] = True
        right = evidence.sum() > 0
        wrong += not right
        chosen["face"] |= side_a if right else side_b
        for box in boxes:
            # the box sum at each voxel; the scale does not change its sign
            local = ndimage.uniform_filter(evidence, box, mode="constant")
            chosen[box] |= (side_a & (local > 0)) | (side_b & (local < 0))

    def score(mask: np.ndarray) -> list[float]:
        return iou_per_class(np.where(mask, 2, np.where(cells > 0, 1, 0)), dense, never)

    return {"faces": counted, "faces_wrong": int(wrong), "whole_face": score(chosen["face"]),
            "boxes": {str(box): score(chosen[box]) for box in boxes}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volume", nargs="+", choices=ONE_VOXEL, default=ONE_VOXEL)
    parser.add_argument("--boxes", nargs="+", type=int, default=[1, 3, 5, 7, 9],
                        help="sides of the boxes that each voxel reads (odd, default 1 3 5 7 9)")
    args = parser.parse_args(argv)
    if any(box < 1 or box % 2 == 0 for box in args.boxes):
        parser.error(f"--boxes: odd sides of 1 or more expected, got {args.boxes}")
    results, _ = start_results(ORACLE_RESULTS, __file__, argv, {"volumes": {}})
    for volume in args.volume:
        result = results["volumes"][volume] = read(volume, args.boxes)
        save_json(ORACLE_RESULTS, results)
        print(f"{volume}: {result['faces_wrong']} of {result['faces']} faces on the wrong side; membrane IoU "
              f"whole face {result['whole_face'][2]:.3f}, "
              + ", ".join(f"box {box} {iou[2]:.3f}" for box, iou in result["boxes"].items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
