"""Image I/O, resampling and patch helpers."""

from .nilearn_custom_utils.nilearn_utils import crop_img, crop_img_to
from .utils import pickle_dump, pickle_load, read_image

__all__ = ["crop_img", "crop_img_to", "pickle_dump", "pickle_load", "read_image"]
