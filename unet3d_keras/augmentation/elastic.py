"""The paper's elastic deformation (Cicek et al. 2016: displacements ``N(0, 4 voxels)`` on a
32-voxel node grid, interpolated with a cubic B-spline) of images and labels together."""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np
from scipy import ndimage

from .spatial import apply_spatial_transform

__all__ = ["elastic_grid", "elastic_node_displacements", "elastic_displacement_field", "elastic_transform"]


def elastic_grid(shape: Sequence[int], grid_spacing: float = 32) -> tuple[tuple[int, int, int], np.ndarray]:
    """The node grid of the elastic deformation for a volume.

    Nodes are ``grid_spacing`` voxels apart, at least two per axis, and centred on the volume so
    that they cover it.

    Returns:
        ``(n_nodes, origin)``: nodes per axis, and the voxel position ``(3,)`` of node
        ``(0, 0, 0)``; node ``k`` of axis ``a`` lies at ``origin[a] + k * grid_spacing``.
    """
    shape = np.asarray(shape[-3:], dtype=np.float64)
    n_nodes = np.maximum(np.ceil((shape - 1) / grid_spacing).astype(np.int64) + 1, 2)
    origin = (shape - 1) / 2 - (n_nodes - 1) * grid_spacing / 2
    return tuple(int(n) for n in n_nodes), origin


def elastic_node_displacements(
    shape: Sequence[int],
    sigma: float = 4.0,
    grid_spacing: float = 32,
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """Random displacements at the grid nodes, ``N(0, sigma)`` voxels per axis.

    Returns:
        float32 ``(3, nx, ny, nz)``; see :func:`elastic_grid`.
    """
    n_nodes, _ = elastic_grid(shape, grid_spacing)
    return np.random.default_rng(rng).normal(0.0, sigma, size=(3,) + n_nodes).astype(np.float32)


@functools.lru_cache(maxsize=64)
def _spline_weights(size: int, n_nodes: int, origin: float, spacing: float) -> np.ndarray:
    """``(size, n_nodes)`` matrix evaluating the interpolating cubic B-spline through node values."""
    positions = (np.arange(size, dtype=np.float64) - origin) / spacing
    weights = np.empty((size, n_nodes), dtype=np.float32)
    for node in range(n_nodes):
        unit = np.zeros(n_nodes)
        unit[node] = 1.0
        weights[:, node] = ndimage.map_coordinates(unit, positions[None], order=3, mode="mirror")
    weights.setflags(write=False)
    return weights


def elastic_displacement_field(
    node_displacements: np.ndarray, shape: Sequence[int], grid_spacing: float = 32
) -> np.ndarray:
    """The dense displacement field: the cubic B-spline through the node displacements.

    The spline interpolates: at a node the field equals that node's displacement. It is
    separable, so it is evaluated as three small matrix products (no per-voxel spline).

    Args:
        node_displacements: ``(3, nx, ny, nz)`` from :func:`elastic_node_displacements`.
        shape: ``(x, y, z)`` of the volume.
        grid_spacing: node spacing the nodes were drawn for.

    Returns:
        float32 ``(3, x, y, z)`` displacement in voxels.
    """
    shape = tuple(int(s) for s in shape[-3:])
    n_nodes, origin = elastic_grid(shape, grid_spacing)
    nodes = np.asarray(node_displacements, dtype=np.float32)
    if nodes.shape != (3,) + n_nodes:
        raise ValueError(
            f"node_displacements must have shape {(3,) + n_nodes} for a volume {shape} and grid spacing "
            f"{grid_spacing}; received {nodes.shape}"
        )
    wx, wy, wz = (_spline_weights(s, n, float(o), float(grid_spacing)) for s, n, o in zip(shape, n_nodes, origin))
    # Plain einsum loops, never BLAS (optimize=True would call it): see spatial.sampling_coordinates.
    field = np.einsum("aijk,xi->axjk", nodes, wx)
    field = np.einsum("axjk,yj->axyk", field, wy)
    return np.ascontiguousarray(np.einsum("axyk,zk->axyz", field, wz), dtype=np.float32)


def elastic_transform(
    data: np.ndarray | None,
    truth: np.ndarray | None,
    sigma: float = 4.0,
    grid_spacing: float = 32,
    rng: np.random.Generator | int | None = None,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The paper's elastic deformation of images (linear) and labels (nearest) together.

    Args:
        data: ``(n_channels, x, y, z)`` or None.
        truth: ``(x, y, z)`` or ``(1, x, y, z)`` or None.
        sigma: standard deviation of the node displacements, in voxels.
        grid_spacing: node spacing in voxels.
        rng: random generator (or seed).

    Returns:
        ``(data, truth)`` deformed, same shapes.
    """
    shape = (data if data is not None else truth).shape[-3:]
    nodes = elastic_node_displacements(shape, sigma, grid_spacing, rng)
    field_ = elastic_displacement_field(nodes, shape, grid_spacing)
    return apply_spatial_transform(data, truth, displacement=field_)
