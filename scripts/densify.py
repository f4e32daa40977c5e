#!/usr/bin/env python
"""Densify the sparse annotation of one volume (the ``unet3d-densify`` command): see
:mod:`unet3d_keras.commands.densify`."""

import sys

from unet3d_keras.commands.densify import main

if __name__ == "__main__":
    sys.exit(main())
