"""Installable package for unet3d_keras."""

from setuptools import find_packages, setup

setup(
    name="unet3d_keras",
    version="0.1.0",
    description=(
        "Keras 3 / TensorFlow port of the 3D U-Net (Cicek et al. 2016) and the "
        "Isensee et al. 2017 BraTS model from ellisdg/3DUnetCNN"
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["unet3d_keras", "unet3d_keras.*", "brats"]),
    install_requires=[
        "tensorflow>=2.16",
        "tensorboard>=2.16",
        "keras>=3.3",
        "numpy>=1.24",
        "scipy>=1.10",
        "nibabel>=5.0",
        "SimpleITK>=2.2",
        "tables>=3.8",
        "h5py>=3.8",
        "pyyaml>=6.0",
        "tqdm>=4.60",
        "matplotlib>=3.6",
    ],
    extras_require={
        # tf_keras (Keras 2 for TensorFlow): tests write model files as the reference's Keras 2 did.
        # jax (CPU): tests/test_backends.py and the JAX distribution tests run Keras on JAX.
        # onnx, onnxruntime, tf2onnx (the export extra): tests/test_export.py exports and runs ONNX models.
        # pytest-xdist: pytest.ini runs the suite in two processes (about 1.6x faster on two cores).
        "test": ["pytest>=7.0", "pytest-xdist>=3.5", "tf_keras~=2.21", "jax>=0.5", "onnx>=1.14", "onnxruntime>=1.16",
                 "tf2onnx>=1.16"],
        # examples/mni152_sparse: the MNI152 template and tissue maps ship inside nilearn.
        # examples/thin_shell/forest.py: scikit-learn's random forest (nilearn needs it too).
        # examples/thin_shell/watershed.py: scikit-image's watershed (scipy's watershed_ift, tried first, cut the
        # cells of a known membrane map badly: median IoU 0.48 against 0.83 with scikit-image's).
        "examples": ["nilearn>=0.10", "scikit-learn>=1.2", "scikit-image>=0.21"],
        # benchmarks/run.py: the PyTorch and MONAI comparison rows and profiling.
        "bench": ["torch", "monai", "pyinstrument"],
        # unet3d-export --format onnx (tf2onnx, onnx) and running ONNX exports (onnxruntime).
        "export": ["onnx>=1.14", "onnxruntime>=1.16", "tf2onnx>=1.16"],
        # NVIDIA GPUs: TensorFlow with its CUDA libraries.
        "gpu": ["tensorflow[and-cuda]>=2.16"],
    },
    entry_points={
        "console_scripts": [
            "unet3d-train = unet3d_keras.commands.train:main",
            "unet3d-predict = unet3d_keras.commands.predict:main",
            "unet3d-make-sparse-labels = unet3d_keras.commands.make_sparse_labels:main",
            "unet3d-densify = unet3d_keras.commands.densify:main",
            "unet3d-export = unet3d_keras.commands.export:main",
            "unet3d-convert-split = unet3d_keras.commands.convert_split:main",
            "unet3d-convert-model = unet3d_keras.commands.convert_model:main",
            "brats-preprocess = brats.preprocess:main",
            "brats-train = brats.train:main",
            "brats-original-unet-train = brats.original_unet_train:main",
            "brats-predict = brats.predict:main",
            "brats-evaluate = brats.evaluate:main",
        ],
    },
)
