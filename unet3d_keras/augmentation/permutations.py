"""The 48 rotations and reflections of a cube: keys, drawing one, applying and undoing it.

Arrays are channels-first ``(n_channels, n, n, n)``; every channel gets the same symmetry.
"""

from __future__ import annotations

import itertools

import numpy as np

from ..checks import require_cube

__all__ = [
    "PermutationKey",
    "generate_permutation_keys",
    "random_permutation_key",
    "permute_data",
    "random_permutation_x_y",
    "reverse_permutation_key",
    "reverse_permute_data",
]

#: A cube symmetry: ``((rotate_y, rotate_z), flip_x, flip_y, flip_z, transpose)``.
PermutationKey = tuple[tuple[int, int], int, int, int, int]


def generate_permutation_keys() -> set[PermutationKey]:
    """The 48 rotations and reflections of a cube, as keys for :func:`permute_data`.

    A key is ``((rotate_y, rotate_z), flip_x, flip_y, flip_z, transpose)``: e.g.
    ``((0, 1), 0, 1, 0, 1)`` rotates 90 degrees about the z axis, reverses the y axis, then
    transposes. 3 rotation pairs x 2**4 flip/transpose choices = 48
    (https://en.wikipedia.org/wiki/Octahedral_symmetry#The_isometries_of_the_cube).
    """
    rotations = ((0, 0), (0, 1), (1, 1))
    flags = (0, 1)
    return set(itertools.product(rotations, flags, flags, flags, flags))


def random_permutation_key(rng: np.random.Generator | int | None = None) -> PermutationKey:
    """One of :func:`generate_permutation_keys`, uniformly."""
    keys = sorted(generate_permutation_keys())
    return keys[int(np.random.default_rng(rng).integers(len(keys)))]


def _cube(data: np.ndarray) -> np.ndarray:
    data = np.asarray(data)
    require_cube(data.shape[1:], f"sample (n_channels, n, n, n); data shape {tuple(data.shape)}")
    return data


def permute_data(data: np.ndarray, key: PermutationKey) -> np.ndarray:
    """Applies a cube symmetry to every channel.

    Args:
        data: ``(n_channels, n, n, n)``.
        key: ``((rotate_y, rotate_z), flip_x, flip_y, flip_z, transpose)``.

    Returns:
        A new C-contiguous array of the same shape.

    Raises:
        ValueError: ``data`` is not ``(n_channels, n, n, n)``.
    """
    result = _cube(data)
    (rotate_y, rotate_z), flip_x, flip_y, flip_z, transpose = key
    if rotate_y:
        result = np.rot90(result, rotate_y, axes=(1, 3))
    if rotate_z:
        result = np.rot90(result, rotate_z, axes=(2, 3))
    if flip_x:
        result = result[:, ::-1]
    if flip_y:
        result = result[:, :, ::-1]
    if flip_z:
        result = result[:, :, :, ::-1]
    if transpose:
        result = result.transpose(0, 3, 2, 1)
    return np.array(result, order="C")


def random_permutation_x_y(
    x_data: np.ndarray, y_data: np.ndarray, rng: np.random.Generator | int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The same random cube symmetry applied to ``x_data`` and ``y_data``, both ``(n, s, s, s)``."""
    key = random_permutation_key(rng)
    return permute_data(x_data, key), permute_data(y_data, key)


def reverse_permutation_key(key: PermutationKey) -> PermutationKey:
    """The key with its rotations negated; :func:`reverse_permute_data` applies it in reverse order."""
    rotation = tuple(-rotate for rotate in key[0])
    return (rotation, key[1], key[2], key[3], key[4])


def reverse_permute_data(data: np.ndarray, key: PermutationKey) -> np.ndarray:
    """Undoes :func:`permute_data` with the same ``key``: ``reverse(permute(d, k), k) == d``.

    Args:
        data: ``(n_channels, n, n, n)``.
        key: the key :func:`permute_data` was given.

    Returns:
        A new C-contiguous array of the same shape.
    """
    result = _cube(data)
    (rotate_y, rotate_z), flip_x, flip_y, flip_z, transpose = reverse_permutation_key(key)
    if transpose:
        result = result.transpose(0, 3, 2, 1)
    if flip_z:
        result = result[:, :, :, ::-1]
    if flip_y:
        result = result[:, :, ::-1]
    if flip_x:
        result = result[:, ::-1]
    if rotate_z:
        result = np.rot90(result, rotate_z, axes=(2, 3))
    if rotate_y:
        result = np.rot90(result, rotate_y, axes=(1, 3))
    return np.array(result, order="C")
