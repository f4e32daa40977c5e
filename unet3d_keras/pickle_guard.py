"""Pickles read without running code: HDF5 attributes holding pickled objects are refused before
PyTables opens the file, and pickle files of plain data (the reference's split files) are read.

PyTables unpickles such attributes as soon as a node's attributes are touched (opening the file
is enough for the root group), and unpickling can run arbitrary code. The raw values are read
with h5py, which never unpickles, and scanned opcode by opcode: a pickle that only builds plain
data is harmless, one that imports or calls is refused. :func:`load_plain_pickle` reads a file
after the same scan, with an unpickler that resolves no class at all.
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
from typing import Any

import h5py
import numpy as np

from .errors import DataError

__all__ = ["refuse_pickled_attributes", "is_unsafe_pickle", "load_plain_pickle"]

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
        return _first_unsafe_opcode(value) is not None
    except Exception:  # not a pickle (or a broken one): what was read up to here decides
        return False


def _first_unsafe_opcode(value: bytes) -> str | None:
    """The name of the first opcode of ``value`` that imports or calls, or None.

    Raises:
        Exception: the bytes up to such an opcode are not a pickle (from :mod:`pickletools`).
    """
    for opcode, _, _ in pickletools.genops(value):
        if opcode.name in _UNSAFE_PICKLE_OPCODES:
            return opcode.name
    return None


class _NoClassUnpickler(pickle.Unpickler):
    """An unpickler that resolves no class or function: a second guard behind the opcode scan."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refused to load {module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refused a persistent id")


def load_plain_pickle(path: str | os.PathLike) -> Any:
    """Reads a pickle file that builds plain data only (lists, tuples, dicts, strings, numbers).

    The bytes are scanned opcode by opcode first and nothing is run: a pickle that imports or
    calls anything (a class instance, a NumPy array or scalar, a function) is refused.

    Raises:
        DataError: naming the file: unreadable, not a pickle, or one that imports or calls.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as stream:
            content = stream.read()
    except OSError as error:
        raise DataError(f"{path}: cannot read the file ({error.strerror or error})") from error
    try:
        unsafe = _first_unsafe_opcode(content)
    except Exception as error:  # pickletools raises ValueError and others on bytes that are no pickle
        raise DataError(f"{path}: not a pickle file ({error})") from error
    if unsafe:
        raise DataError(
            f"{path}: refused: the pickle imports or calls Python code (opcode {unsafe}), so it holds more than "
            "plain lists of numbers and strings; it was not run"
        )
    try:
        return _NoClassUnpickler(io.BytesIO(content)).load()
    except Exception as error:  # a truncated or inconsistent pickle
        raise DataError(f"{path}: not a readable pickle file ({type(error).__name__}: {error})") from error


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
