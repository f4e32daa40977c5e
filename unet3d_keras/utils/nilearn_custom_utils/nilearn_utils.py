"""Cropping an image to its non-negligible voxels: ``crop_img`` and ``crop_img_to``.

The reference kept a modified copy of nilearn's functions here; this module keeps the path and
the names, which live in :mod:`unet3d_keras.utils.utils` (nibabel only, no nilearn).
"""

from ..utils import crop_img, crop_img_to

__all__ = ["crop_img", "crop_img_to"]
