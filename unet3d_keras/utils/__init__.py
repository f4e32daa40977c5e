"""Image I/O, resampling and patch helpers."""

from .utils import crop_img, crop_img_to, pickle_dump, pickle_load, read_image

__all__ = ["crop_img", "crop_img_to", "pickle_dump", "pickle_load", "read_image"]
