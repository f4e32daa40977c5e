#!/usr/bin/env python
"""Make a sparse label map from a dense one (the ``unet3d-make-sparse-labels`` command).

See :mod:`unet3d_keras.commands.make_sparse_labels`.
"""

import sys

from unet3d_keras.commands.make_sparse_labels import main

if __name__ == "__main__":
    sys.exit(main())
