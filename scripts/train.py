#!/usr/bin/env python
"""Train a 3D U-Net from a config (the ``unet3d-train`` command): see :mod:`unet3d_keras.commands.train`."""

import sys

from unet3d_keras.commands.train import main

if __name__ == "__main__":
    sys.exit(main())
