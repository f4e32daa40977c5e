"""Argument and array checks shared by several stages, each written once.

Every check raises ``ValueError`` (or the ``error`` type passed in, e.g.
:class:`~unet3d_keras.errors.DataError`) with a message that names what was checked, what was
expected and what was received.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["require_cube", "require_integer_values", "as_int_triple"]


def require_cube(shape: Sequence[int], what: str, error: type[Exception] = ValueError) -> None:
    """Refuses a spatial shape whose three sides differ (the 48 cube permutations need a cube).

    Args:
        shape: ``(x, y, z)``.
        what: what the shape belongs to, for the message (e.g. ``"patch_shape"``).
        error: exception type to raise.

    Raises:
        error: the sides differ.
    """
    shape = tuple(int(side) for side in shape)
    if len(shape) != 3 or len(set(shape)) != 1:
        raise error(f"permutation needs a cubic {what} (x == y == z); received {shape}")


def require_integer_values(array: np.ndarray, what: str, error: type[Exception] = ValueError) -> None:
    """Refuses an array that does not hold whole numbers (integer/bool dtype, or floats equal to
    their rounding), as label maps must.

    Args:
        array: any shape.
        what: what the array is, for the message (e.g. ``"Subject 3: seg.nii.gz"``).
        error: exception type to raise.

    Raises:
        error: non-numeric dtype, or a float value with a fractional part.
    """
    array = np.asarray(array)
    if array.dtype.kind == "f":
        if not np.all(array == np.round(array)):
            raise error(f"{what} holds non-integer label values")
    elif array.dtype.kind not in "iub":
        raise error(f"{what} has unsupported dtype {array.dtype}; expected integer label values")


def as_int_triple(value: int | Sequence[int], name: str, ndim: int = 3) -> np.ndarray:
    """``value`` as ``ndim`` integers (a scalar is repeated).

    Raises:
        ValueError: wrong length, or values that are not whole numbers.
    """
    array = np.asarray(value)
    if array.ndim == 0:
        array = np.full(ndim, array)
    if array.shape != (ndim,):
        raise ValueError(f"{name} must be an int or {ndim} ints; received {value!r}")
    if not np.all(array == np.round(array)):
        raise ValueError(f"{name} must hold integers; received {value!r}")
    return array.astype(np.int64)
