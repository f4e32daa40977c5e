#!/usr/bin/env python
"""Predict with a trained model: the run's validation subjects, or new images.

    python scripts/predict.py [--config FILE] [--model FILE] [--input PATH ...] [--output DIR]
                              [--set section.key=value ...]

The same program as the ``unet3d-predict`` command: see :mod:`unet3d_keras.commands.predict`.
"""

from __future__ import annotations

import sys

from unet3d_keras.commands.predict import main

if __name__ == "__main__":
    sys.exit(main())
