#!/usr/bin/env python
"""Convert a reference (Keras 2) model file to the port's .keras file (the ``unet3d-convert-model`` command):
see :mod:`unet3d_keras.commands.convert_model`."""

import sys

from unet3d_keras.commands.convert_model import main

if __name__ == "__main__":
    sys.exit(main())
