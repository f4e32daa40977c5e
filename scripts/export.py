#!/usr/bin/env python
"""Export a trained model to SavedModel or ONNX (the ``unet3d-export`` command): see
:mod:`unet3d_keras.commands.export`."""

import sys

from unet3d_keras.commands.export import main

if __name__ == "__main__":
    sys.exit(main())
