"""unet3d_keras: a Keras 3 port of the 3D U-Net of 3DUnetCNN (Çiçek et al. 2016).

Submodules are imported on use (``unet3d_keras.model``, ``unet3d_keras.data``,
...) so that the data pipeline can run without importing Keras.
"""

__version__ = "0.1.0"
