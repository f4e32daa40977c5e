"""One process at a time in a run folder: a lock file holding the process id of its holder.

Training, preprocessing into a folder and densifying into a folder hold ``<folder>/.unet3d.lock``
while they work; a second process is refused at once with the folder and the holder's process id.

The lock is ``fcntl.flock`` on that file -- why not the ``filelock`` package: it does not record
who holds a lock, and the message must name the process id; ``flock`` is what ``filelock`` uses
on Linux anyway. The kernel releases a ``flock`` when its process dies, however it dies, so a lock
file left behind by a killed process (its process id no longer runs) is stale by construction:
the next process locks it, logs that it takes it over, and writes its own id. The file is removed
when the holder finishes. A process that holds the lock may take it again (a command, then the
library function it calls); only the outer holder removes it. Like the temporaries of
:mod:`unet3d_keras.fileio`, this protects
against processes of one machine, not against writers on other machines sharing a network folder.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import DataError

__all__ = ["LOCK_NAME", "RunFolderLocked", "lock_holder", "run_folder_lock"]

logger = logging.getLogger(__name__)

#: Name of the lock file inside the locked folder.
LOCK_NAME = ".unet3d.lock"


class RunFolderLocked(DataError):
    """Another process holds the lock of the folder."""


def lock_holder(folder: str | os.PathLike) -> int | None:
    """The process id written in ``folder``'s lock file (the holder, or the last one), or None."""
    try:
        text = (Path(folder) / LOCK_NAME).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def _open_locked(path: Path) -> int | None:
    """Open and ``flock`` the lock file: its descriptor, or None when another process holds it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno in (errno.EWOULDBLOCK, errno.EACCES):
                return None
            raise
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        # The holder removed the file between our open and our flock: lock the new one instead.
        os.close(fd)


def _open_in_this_process(path: Path) -> bool:
    """Whether a descriptor of this process refers to ``path`` (read from ``/proc/self/fd``)."""
    try:
        target = os.stat(path)
        names = os.listdir("/proc/self/fd")
    except OSError:
        return False
    for name in names:
        try:
            found = os.fstat(int(name))
        except (OSError, ValueError):
            continue
        if (found.st_dev, found.st_ino) == (target.st_dev, target.st_ino):
            return True
    return False


@contextmanager
def run_folder_lock(folder: str | os.PathLike, what: str = "run folder") -> Iterator[Path]:
    """Hold ``folder``'s lock (the folder is made if missing) for the ``with`` block.

    Args:
        folder: the run, output or preprocessing folder.
        what: how messages name the folder, e.g. ``"output_dir"``.

    Yields:
        The lock file.

    Raises:
        RunFolderLocked: another running process holds the lock (the message names it).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    fd = _open_locked(path)
    if fd is None:
        holder = lock_holder(folder)
        # Held further up this process's own call (a command, then the pipeline); the descriptor
        # is checked too, since a full disk may have kept the holder from writing its id.
        if holder == os.getpid() or _open_in_this_process(path):
            yield path
            return
        raise RunFolderLocked(
            f"{folder}: this {what} is in use by process {holder if holder is not None else '(id not yet written)'}"
            f" (lock file {path}); wait until it ends, stop it, or choose another folder"
        )
    try:
        previous = os.read(fd, 32).decode("ascii", errors="replace").strip()
        if previous.isdigit() and int(previous) != os.getpid():
            logger.info("%s: taking over the lock of process %s, which no longer holds it (stale lock)",
                        folder, previous)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        except OSError as error:  # a full disk: the flock still guards the folder, only the id is missing
            logger.debug("could not write the process id into %s: %s", path, error)
        yield path
    finally:
        try:
            path.unlink(missing_ok=True)  # while still holding the lock: no one else owns this file
        finally:
            os.close(fd)
