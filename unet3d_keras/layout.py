"""Where the channel and spatial axes lie in the model's tensors, for either data format.

A model tensor is ``(batch, x, y, z, channels)`` under ``channels_last`` (the
default) and ``(batch, channels, x, y, z)`` under ``channels_first``. The axes
returned here are negative, so they hold for a batched tensor and for one
unbatched item alike.
"""

from __future__ import annotations

from typing import Sequence

__all__ = ["DATA_FORMATS", "channel_axis", "resolve_data_format", "spatial_axes", "split_input_shape"]

DATA_FORMATS = ("channels_last", "channels_first")


def resolve_data_format(data_format: str | None = None) -> str:
    """``data_format`` checked, or Keras's global ``image_data_format()`` when None.

    Raises:
        ValueError: neither ``"channels_last"`` nor ``"channels_first"``.
    """
    if data_format is None:
        import keras  # why: keeps this module importable without loading Keras and its backend

        return keras.config.image_data_format()
    if data_format not in DATA_FORMATS:
        raise ValueError(f"data_format must be 'channels_last' or 'channels_first'; received {data_format!r}")
    return data_format


def channel_axis(data_format: str | None = None) -> int:
    """Negative index of the channel axis: -1 for channels_last, -4 for channels_first."""
    return -1 if resolve_data_format(data_format) == "channels_last" else -4


def spatial_axes(data_format: str | None = None) -> tuple[int, int, int]:
    """Negative indices of the three spatial axes.

    Args:
        data_format: ``"channels_last"`` or ``"channels_first"``; None reads
            ``keras.config.image_data_format()``.

    Returns:
        ``(-4, -3, -2)`` for channels_last, ``(-3, -2, -1)`` for channels_first.
    """
    return (-4, -3, -2) if resolve_data_format(data_format) == "channels_last" else (-3, -2, -1)


def split_input_shape(
    input_shape: Sequence[int | None], data_format: str | None = None
) -> tuple[tuple, int | None]:
    """Split a model input shape into its spatial sizes and channel count.

    Args:
        input_shape: ``(x, y, z, channels)`` for channels_last or
            ``(channels, x, y, z)`` for channels_first.
        data_format: None reads ``keras.config.image_data_format()``.

    Returns:
        ``((x, y, z), channels)``.

    Raises:
        ValueError: ``input_shape`` does not have 4 entries.
    """
    input_shape = tuple(input_shape)
    if len(input_shape) != 4:
        raise ValueError(
            f"input_shape must have 4 entries (3 spatial sizes and the channels), received {input_shape}"
        )
    if resolve_data_format(data_format) == "channels_last":
        return input_shape[:3], input_shape[3]
    return input_shape[1:], input_shape[0]
