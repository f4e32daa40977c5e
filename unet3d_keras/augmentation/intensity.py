"""Gray-value augmentation of images (never labels): per-channel scale and shift, and gamma."""

from __future__ import annotations

import numpy as np

__all__ = ["intensity_transform", "random_intensity", "gamma_transform", "random_gamma"]


def _per_channel(values: np.ndarray | float, n_channels: int) -> np.ndarray:
    values = np.asarray(values, dtype=np.float32).reshape(-1)
    if values.size == 1:
        values = np.repeat(values, n_channels)
    if values.size != n_channels:
        raise ValueError(f"expected 1 or {n_channels} values (one per channel); received {values.size}")
    return values.reshape((n_channels, 1, 1, 1))


def intensity_transform(
    data: np.ndarray, scale: np.ndarray | float = 1.0, shift: np.ndarray | float = 0.0
) -> np.ndarray:
    """``data * scale + shift`` per channel.

    Args:
        data: ``(n_channels, x, y, z)``.
        scale, shift: one value, or one per channel.

    Returns:
        float32 ``(n_channels, x, y, z)``.
    """
    data = np.asarray(data, dtype=np.float32)
    n_channels = data.shape[0]
    return data * _per_channel(scale, n_channels) + _per_channel(shift, n_channels)


def random_intensity(
    data: np.ndarray, scale_std: float = 0.1, shift_std: float = 0.1, rng: np.random.Generator | int | None = None
) -> np.ndarray:
    """Per-channel factor ``1 + N(0, scale_std)`` and offset ``N(0, shift_std)``."""
    rng = np.random.default_rng(rng)
    n_channels = data.shape[0]
    scale = 1 + rng.normal(0, scale_std, n_channels)
    shift = rng.normal(0, shift_std, n_channels)
    return intensity_transform(data, scale, shift)


def gamma_transform(data: np.ndarray, gamma: np.ndarray | float) -> np.ndarray:
    """Gamma correction per channel, of the channel rescaled to [0, 1] and back.

    Args:
        data: ``(n_channels, x, y, z)``; any value range (normalised data are negative too).
        gamma: one exponent, or one per channel.

    Returns:
        float32 ``(n_channels, x, y, z)`` with each channel's minimum and maximum unchanged.
    """
    data = np.asarray(data, dtype=np.float32)
    gammas = _per_channel(gamma, data.shape[0]).reshape(-1)
    result = np.empty_like(data)
    for index, value in enumerate(gammas):
        channel = data[index]
        low, high = float(channel.min()), float(channel.max())
        if high <= low:
            result[index] = channel
            continue
        unit = (channel - low) / (high - low)
        result[index] = np.power(unit, value, dtype=np.float32) * (high - low) + low
    return result


def random_gamma(
    data: np.ndarray, gamma_range: tuple[float, float] = (0.7, 1.5), rng: np.random.Generator | int | None = None
) -> np.ndarray:
    """Per-channel gamma drawn log-uniformly from ``gamma_range``; see :func:`gamma_transform`."""
    low, high = np.log(gamma_range[0]), np.log(gamma_range[1])
    gamma = np.exp(np.random.default_rng(rng).uniform(low, high, data.shape[0]))
    return gamma_transform(data, gamma)
