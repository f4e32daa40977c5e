#!/usr/bin/env python
"""Convert the reference's pickled split files to JSON (the ``unet3d-convert-split`` command): see
:mod:`unet3d_keras.commands.convert_split`."""

import sys

from unet3d_keras.commands.convert_split import main

if __name__ == "__main__":
    sys.exit(main())
