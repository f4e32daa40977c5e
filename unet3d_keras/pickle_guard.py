"""Refusing HDF5 files whose attributes hold pickled Python objects, before PyTables opens them.

PyTables unpickles such attributes as soon as a node's attributes are touched (opening the file
is enough for the root group), and unpickling can run arbitrary code. The raw values are read
with h5py, which never unpickles, and scanned opcode by opcode: a pickle that only builds plain
data is harmless, one that imports or calls is refused.
"""

from __future__ import annotations

import os
import pickletools
from typing import Any

import h5py
import numpy as np

from .errors import DataError

__all__ = ["refuse_pickled_attributes", "is_unsafe_pickle"]

# Pickle opcodes that import or call: a pickle without any of them only builds plain data.
_UNSAFE_PICKLE_OPCODES = frozenset({
    "GLOBAL", "STACK_GLOBAL", "REDUCE", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "BUILD", "EXT1", "EXT2", "EXT4",
    "PERSID", "BINPERSID",
})


def is_unsafe_pickle(value: Any) -> bool:
    """Whether PyTables would unpickle ``value`` (a string ending in ".") into something that runs code.

    Args:
        value: an attribute's raw value (``str``, ``bytes`` or anything else, which is safe).
    """
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogateescape")
    if not isinstance(value, bytes) or not value.endswith(b".") or value in (b"0", b"0."):
        return False
    try:
        for opcode, _, _ in pickletools.genops(value):
            if opcode.name in _UNSAFE_PICKLE_OPCODES:
                return True
    except Exception:  # not a pickle (or a broken one): what was read up to here decides
        return False
    return False


def refuse_pickled_attributes(filename: str | os.PathLike) -> None:
    """Refuses an HDF5 file with a pickled object in any attribute of any node.

    A file that h5py cannot open is let through: PyTables' own open reports it.

    Raises:
        DataError: naming the file, the node and the attribute.
    """
    filename = os.fspath(filename)
    try:
        handle = h5py.File(filename, "r")
    except Exception:  # not HDF5: PyTables' own open reports it
        return
    found: list[str] = []

    def visit(name: str, node: Any) -> None:
        for key in node.attrs:
            try:
                value = node.attrs[key]
            except Exception:  # a type h5py cannot read is not a pickle PyTables would load either
                continue
            if isinstance(value, np.ndarray) and value.shape == ():
                value = value[()]
            if isinstance(value, np.bytes_):
                value = bytes(value)
            if is_unsafe_pickle(value):
                found.append(f"attribute '{key}' of /{name}")

    with handle:
        visit("", handle)
        handle.visititems(visit)
    if found:
        raise DataError(
            f"{filename}: refused: {found[0]} holds a pickled Python object, which could run code when read "
            "(this project never writes one); rebuild the file from the images"
        )
