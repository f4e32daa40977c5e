"""The augmentation settings (the ``augment:`` section of a run config) and the parameters drawn
from them for one sample."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .permutations import PermutationKey

__all__ = ["AugmentationParams", "SampledAugmentation"]


@dataclass(frozen=True)
class AugmentationParams:
    """Which augmentations to draw for each training sample, and how strongly. All off by default.

    The same type is the ``augment:`` section of a run config (which flips by default); each
    field is a config key.

    Attributes:
        flip: flip each spatial axis with probability 1/2 (exact, no interpolation).
        permute: apply one of the 48 rotations/reflections of the cube (cubic samples only).
        distortion_factor: standard deviation of a per-axis scale factor around 1 (the
            reference's ``augment_distortion_factor``); ``None`` or 0 disables it.
        elastic: apply the paper's elastic deformation.
        elastic_sigma: standard deviation (voxels) of the displacement at each grid node.
        elastic_grid_spacing: distance (voxels) between the nodes of the displacement grid.
        rotation_degrees: rotate about a random axis by an angle uniform in
            ``[-rotation_degrees, rotation_degrees]``; 0 disables it.
        intensity_scale: standard deviation of a per-channel factor ``1 + N(0, s)``; 0 disables it.
        intensity_shift: standard deviation of a per-channel offset ``N(0, s)``; 0 disables it.
        gamma_range: ``(low, high)``; a per-channel gamma drawn log-uniformly from it is applied
            to the channel rescaled to [0, 1]; ``None`` disables it.

    Raises:
        ValueError: a value out of range; the message starts with the field's name.
    """

    flip: bool = False
    permute: bool = False
    distortion_factor: float | None = None
    elastic: bool = False
    elastic_sigma: float = 4.0
    elastic_grid_spacing: int = 32
    rotation_degrees: float = 0.0
    intensity_scale: float = 0.0
    intensity_shift: float = 0.0
    gamma_range: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        def require(condition: bool, name: str, allowed: str) -> None:
            if not condition:
                raise ValueError(f"{name}: must be {allowed}, received {getattr(self, name)!r}")

        require(self.distortion_factor is None or self.distortion_factor >= 0, "distortion_factor", "null or >= 0")
        for name in ("elastic_sigma", "intensity_scale", "intensity_shift"):
            require(getattr(self, name) >= 0, name, ">= 0")
        require(self.elastic_grid_spacing >= 1, "elastic_grid_spacing", "at least 1 voxel")
        require(0 <= self.rotation_degrees <= 180, "rotation_degrees", "between 0 and 180")
        if self.gamma_range is not None:
            require(
                len(self.gamma_range) == 2 and 0 < self.gamma_range[0] <= self.gamma_range[1],
                "gamma_range", "null or [low, high] with 0 < low <= high",
            )
            object.__setattr__(self, "gamma_range", (float(self.gamma_range[0]), float(self.gamma_range[1])))

    @classmethod
    def from_reference(
        cls,
        augment: bool = False,
        augment_flip: bool = True,
        augment_distortion_factor: float | None = 0.25,
        permute: bool = False,
    ) -> "AugmentationParams":
        """The parameters the reference's generator arguments stand for."""
        return cls(
            flip=bool(augment and augment_flip),
            distortion_factor=(augment_distortion_factor or None) if augment else None,
            permute=bool(permute),
        )

    @property
    def enabled(self) -> bool:
        """Whether any augmentation is switched on."""
        return self.resampling or self.flip or self.permute or self.gray_value

    @property
    def resampling(self) -> bool:
        """Whether a transform that interpolates (scale, rotation, elastic) is switched on."""
        return bool(self.distortion_factor) or self.rotation_degrees > 0 or (self.elastic and self.elastic_sigma > 0)

    @property
    def gray_value(self) -> bool:
        """Whether an intensity or gamma change is switched on."""
        return self.intensity_scale > 0 or self.intensity_shift > 0 or self.gamma_range is not None


@dataclass
class SampledAugmentation:
    """Parameters drawn for one sample by :func:`~unet3d_keras.augmentation.compose.sample_augmentation`;
    ``None``/empty means off.

    Attributes:
        flip_axes: spatial axes (0, 1, 2) to flip.
        scale_factor: ``(3,)`` per-axis scale about the centre (> 1 magnifies).
        rotation_axis: ``(3,)`` unit vector.
        rotation_degrees: angle about ``rotation_axis``.
        elastic_nodes: ``(3, nx, ny, nz)`` displacements at the elastic grid nodes (voxels).
        elastic_grid_spacing: node spacing the nodes were drawn for.
        permutation_key: see :func:`~unet3d_keras.augmentation.permutations.generate_permutation_keys`.
        intensity_scale: ``(n_channels,)`` factors.
        intensity_shift: ``(n_channels,)`` offsets.
        gamma: ``(n_channels,)`` exponents.
    """

    flip_axes: tuple[int, ...] = ()
    scale_factor: np.ndarray | None = None
    rotation_axis: np.ndarray | None = None
    rotation_degrees: float = 0.0
    elastic_nodes: np.ndarray | None = None
    elastic_grid_spacing: float = 32
    permutation_key: PermutationKey | None = None
    intensity_scale: np.ndarray | None = None
    intensity_shift: np.ndarray | None = None
    gamma: np.ndarray | None = None
