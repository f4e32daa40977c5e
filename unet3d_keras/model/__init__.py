"""Model builders: the 3D U-Net and the Isensee 2017 network."""

from .isensee2017 import build_isensee2017, isensee2017_model
from .unet import build_unet_3d, unet_model_3d

__all__ = ["build_isensee2017", "build_unet_3d", "isensee2017_model", "unet_model_3d"]
