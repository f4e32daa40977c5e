"""Crash-safe file writing: write beside the target under a temporary name, then rename.

A process killed at any point leaves either the old complete file or the new
complete one, never a truncated file under the real name. Files that belong
together are renamed all or none (:func:`atomic_paths`). The temporary names
(``.{name}.tmp-{pid}[suffix]``), the clean-up of those left by killed writers,
the flush to disk, the check that a folder is writable and the making of an
output folder that a failed command takes back all live here.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

from .errors import DataError

logger = logging.getLogger(__name__)


def temporary_path(path: str | os.PathLike, suffix: str = "") -> Path:
    """The name this process writes ``path`` under before renaming it: ``.{name}.tmp-{pid}{suffix}`` beside it.

    :func:`remove_stale_temporary_files` recognises these names.
    """
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}{suffix}")


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "", *, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` when the block succeeds.

    Args:
        path: The file to (re)write.
        suffix: Appended to the temporary name, for writers that choose the
            format from the extension (``.keras``, ``.nii.gz``, ``.png``).
        durable: Flush the written file to disk before the rename and the
            folder after it, so that a crash of the machine cannot leave a
            renamed but empty file. The file must be closed when the block ends.

    Yields:
        The temporary path to write; it is removed if the block raises.
    """
    path = Path(path)
    remove_stale_temporary_files(path)
    tmp = temporary_path(path, suffix)
    try:
        with naming_errors(path, tmp):
            yield tmp
            if durable:
                fsync_path(tmp)
            os.replace(tmp, path)
            if durable:
                fsync_folder(path.parent)
    finally:
        _remove_temporaries([tmp])


@contextmanager
def naming_errors(path: str | os.PathLike, tmp: str | os.PathLike) -> Iterator[None]:
    """Raise an ``OSError`` of the block that names no file, or names ``tmp``, as one that names ``path``.

    Writers (gzip, zip, plain files) report a full disk without the file's name, or with the temporary
    one; the user asked for ``path``.
    """
    try:
        yield
    except OSError as error:
        if error.filename in (None, str(tmp)) and error.errno is not None:
            raise OSError(error.errno, error.strerror or str(error), str(path)) from error
        raise


@contextmanager
def atomic_paths(paths: Sequence[str | os.PathLike], suffixes: Sequence[str] | None = None
                 ) -> Iterator[list[Path]]:
    """Yield a temporary path beside each of ``paths``; when the block succeeds, rename them all over ``paths``.

    All or none: if the block raises, no path changes; if a rename fails (a target that is a folder, a
    file system that refuses), the paths renamed before it are put back as they were (their old files,
    or none) before the error is raised. A process killed during the renames (a few system calls) can
    still leave some paths new and the others old, each one complete.

    Args:
        paths: The files to (re)write, in the order they are renamed.
        suffixes: Appended to each temporary name (see :func:`atomic_path`); none by default.

    Yields:
        The temporary paths to write, in the order of ``paths``; they are removed if anything fails.
    """
    paths = [Path(path) for path in paths]
    suffixes = [""] * len(paths) if suffixes is None else list(suffixes)
    if len(suffixes) != len(paths):
        raise ValueError(f"{len(suffixes)} suffixes for {len(paths)} paths")
    for path in paths:
        remove_stale_temporary_files(path)
    temporaries = [temporary_path(path, suffix) for path, suffix in zip(paths, suffixes)]
    try:
        yield temporaries
        _replace_together(temporaries, paths)
    finally:
        _remove_temporaries(temporaries)


def write_together(paths: Sequence[str | os.PathLike], writers: Sequence[Callable[[Path], object]],
                   suffixes: Sequence[str] | None = None) -> None:
    """Write files that belong together, all or none (:func:`atomic_paths`).

    Args:
        paths: The files to (re)write.
        writers: One per path: writes the file to the temporary path it is given.
        suffixes: As for :func:`atomic_paths`.
    """
    if len(writers) != len(paths):
        raise ValueError(f"{len(writers)} writers for {len(paths)} paths")
    with atomic_paths(paths, suffixes) as temporaries:
        for write, path, tmp in zip(writers, paths, temporaries):
            with naming_errors(path, tmp):
                write(tmp)


def _remove_temporaries(temporaries: Sequence[Path]) -> None:
    """Remove what is left of a writer's temporaries (a failed block, a failed rename, old files kept)."""
    for tmp in temporaries:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:  # a read-only folder refuses even this; the error that matters is already raised
            pass


def _replace_together(temporaries: Sequence[Path], paths: Sequence[Path]) -> None:
    """Rename each temporary over its path; on a failure put the paths already renamed back as they were."""
    renamed: list[tuple[Path, Path | None]] = []  # (path, where its old file is kept, None: it had none)
    kept_files: list[Path] = []
    try:
        for tmp, path in zip(temporaries, paths):
            with naming_errors(path, tmp):
                kept = _keep_old_file(path)
                if kept is not None:
                    kept_files.append(kept)
                os.replace(tmp, path)
            renamed.append((path, kept))
    except OSError:
        for done, kept in reversed(renamed):
            try:
                if kept is None:
                    done.unlink(missing_ok=True)
                else:
                    os.replace(kept, done)
            except OSError:
                logger.error("Could not put back the old %s after a failed write", done, exc_info=True)
        raise
    finally:
        _remove_temporaries(kept_files)


def _keep_old_file(path: Path) -> Path | None:
    """A second name for ``path``'s current file (a hard link, else a copy), or None when there is none.

    The name is a temporary of this process (``remove_stale_temporary_files`` clears it if the process is
    killed), and ``path`` itself stays in place, so a kill at any moment leaves it complete.
    """
    if not os.path.lexists(path):
        return None
    kept = temporary_path(path, ".old")
    kept.unlink(missing_ok=True)
    try:
        os.link(path, kept, follow_symlinks=False)
    except OSError:  # a file system without hard links (FAT, some network shares): copy it instead
        try:
            shutil.copy2(path, kept, follow_symlinks=False)
        except BaseException:
            kept.unlink(missing_ok=True)
            raise
    return kept


def write_text_atomically(path: str | os.PathLike, text: str, fsync: bool = False) -> None:
    """Write ``text`` (UTF-8) to ``path`` through :func:`atomic_path`.

    Args:
        fsync: Flush the data to disk before the rename, so that a crash of
            the machine cannot leave a renamed but empty file.
    """
    with atomic_path(path, durable=fsync) as tmp:
        with open(tmp, "w", encoding="utf-8") as stream:
            stream.write(text)


def fsync_path(path: str | os.PathLike) -> None:
    """Flush ``path`` (a file or a folder) from the page cache to disk.

    Raises:
        OSError: the disk reported an error.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_folder(folder: str | os.PathLike) -> None:
    """Flush ``folder``'s entries (a rename) to disk, where the file system allows it."""
    try:
        fsync_path(folder)
    except OSError:  # some file systems refuse to open or sync folders; the rename itself is done
        logger.debug("Could not flush the folder %s to disk", folder, exc_info=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temporary_files(path: str | os.PathLike) -> list[Path]:
    """Delete what killed writers of ``path`` left: ``.{name}.tmp-{pid}[suffix]`` files or folders.

    A temporary whose process no longer runs can never be completed; one whose
    process still runs (another writer) is left alone.

    Returns:
        The paths removed.
    """
    path = Path(path)
    pattern = re.compile(re.escape(f".{path.name}.tmp-") + r"(\d+)(\..*)?$")
    removed = []
    try:
        entries = list(path.parent.iterdir())
    except OSError:  # no folder yet: nothing stale
        return removed
    for entry in entries:
        match = pattern.match(entry.name)
        if match is None or int(match.group(1)) == os.getpid() or _process_alive(int(match.group(1))):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except FileNotFoundError:  # another process cleaned it first
            continue
        removed.append(entry)
        logger.info("Removed %s, left by an interrupted writer", entry)
    return removed


def check_writable_folder(folder: str | os.PathLike, what: str = "output folder") -> Path:
    """Raise :class:`~unet3d_keras.errors.DataError` naming ``folder`` unless files can be created in it.

    Checked before long work, so that a read-only folder fails at once rather
    than after hours of training or prediction. A probe file is created and
    removed (``os.access`` says yes to root on a read-only mount). A folder
    that does not exist yet is not made: its nearest existing parent is probed.

    Returns:
        ``folder`` as a :class:`~pathlib.Path`.
    """
    folder = Path(folder)
    probe = folder.absolute()
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        raise DataError(f"{folder}: cannot write to the {what}: {probe} is a file, not a folder")
    try:
        _probe_write(probe)
    except OSError as error:
        where = "" if probe == folder.absolute() else f" (in {probe})"
        raise DataError(f"{folder}: cannot write to the {what}{where}: {error.strerror or error}") from None
    return folder


def check_no_folder_in_the_way(path: str | os.PathLike, what: str = "output") -> Path:
    """Raise :class:`~unet3d_keras.errors.DataError` naming ``path`` if it is a folder, where a file is to be
    written: checked before long work, which would otherwise end in "Is a directory".

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: a folder of that name is in the way of the {what}; move it or choose another output")
    return path


def check_output_file(path: str | os.PathLike, what: str = "output") -> Path:
    """Raise :class:`~unet3d_keras.errors.DataError` naming ``path`` unless a file can be written there:
    :func:`check_no_folder_in_the_way`, then :func:`check_writable_folder` on its folder.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = check_no_folder_in_the_way(path, what)
    check_writable_folder(path.parent)
    return path


@contextmanager
def made_folder(folder: str | os.PathLike) -> Iterator[Path]:
    """Make ``folder`` and its missing parents for the ``with`` block; if the block fails, remove those it made
    that are still empty, so that a command that fails leaves no folder behind.

    Yields:
        ``folder`` as a :class:`~pathlib.Path`.
    """
    folder = Path(folder)
    absolute = folder.absolute()
    missing = [path for path in (absolute, *absolute.parents) if not path.exists()]  # deepest first
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield folder
    except BaseException:
        for path in missing:
            try:
                path.rmdir()
            except OSError:  # something was written into it: keep it and its parents
                break
        raise


def _probe_write(folder: Path) -> None:
    """Create and drop a file in ``folder``; raise the ``OSError`` that a real write would meet."""
    flag = getattr(os, "O_TMPFILE", 0)
    if flag:
        # An unnamed file: nothing is left behind even if the process is killed right here.
        try:
            os.close(os.open(folder, flag | os.O_WRONLY, 0o600))
            return
        except OSError as error:
            if error.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):  # no O_TMPFILE there
                raise
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-probe-"):
        pass
