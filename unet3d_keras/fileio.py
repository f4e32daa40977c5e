"""Crash-safe file writing: write beside the target under a temporary name, then rename.

A process killed at any point leaves either the old complete file or the new
complete one, never a truncated file under the real name.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` when the block succeeds.

    Args:
        path: The file to (re)write.
        suffix: Appended to the temporary name, for writers that choose the
            format from the extension (``.keras``, ``.nii.gz``, ``.png``).

    Yields:
        The temporary path to write; it is removed if the block raises.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomically(path: str | os.PathLike, text: str, fsync: bool = False) -> None:
    """Write ``text`` (UTF-8) to ``path`` through :func:`atomic_path`.

    Args:
        fsync: Flush the data to disk before the rename, so that a crash of
            the machine cannot leave a renamed but empty file.
    """
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as stream:
            stream.write(text)
            if fsync:
                stream.flush()
                os.fsync(stream.fileno())
