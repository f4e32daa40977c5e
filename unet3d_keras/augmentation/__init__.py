"""Data augmentation of 3D training samples: flips, scaling, rotation, the paper's elastic
deformation, cube permutations and gray-value changes, drawn from an
:class:`~unet3d_keras.augmentation.params.AugmentationParams`.

Modules: ``params`` (the settings and the parameters drawn for one sample), ``spatial``
(sampling coordinates, interpolation, scale and rotation maps), ``elastic``, ``intensity``,
``permutations`` (the 48 cube symmetries) and ``compose`` (draw and apply everything for one
sample). The ``random_*`` functions and ``sample_augmentation`` only draw parameters from a
``numpy.random.Generator`` passed in; the transforms themselves are deterministic (as in torchio).

Nothing is imported here, so that the run config can use ``params`` without loading SciPy.
"""
