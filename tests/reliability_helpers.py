"""Helpers of the reliability tests: run a script, snapshot a folder, check that files are complete.

Used by ``test_bad_inputs.py`` (the bad-input matrix) and ``test_crash_safety.py`` (SIGKILL tests).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = {
    "train": ROOT / "scripts" / "train.py",
    "predict": ROOT / "scripts" / "predict.py",
    "densify": ROOT / "scripts" / "densify.py",
    "preprocess": ROOT / "brats" / "preprocess.py",
    "evaluate": ROOT / "brats" / "evaluate.py",
}
# What atomic writers name their temporaries: .{name}.tmp-{pid}[suffix]
TEMPORARY = re.compile(r"^\..+\.tmp-\d+(\..*)?$")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_END = b"IEND\xaeB`\x82"

_modules: dict[str, object] = {}


def script_module(name: str):
    """The script ``name`` (a key of :data:`SCRIPTS`) imported as a module, to call its ``main(argv)``."""
    if name not in _modules:
        spec = importlib.util.spec_from_file_location(f"_script_{name}", SCRIPTS[name])
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _modules[name] = module
    return _modules[name]


def call_main(name: str, argv: list[str]) -> tuple[int, str, str]:
    """Run a script's ``main(argv)`` in this process: ``(exit status, stdout, stderr)``.

    This is the code path of the command line (``sys.exit(main())``) without a
    new interpreter; an exception escaping ``main`` is re-raised (the test fails
    with its traceback, as the user would have seen one).
    """
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = script_module(name).main([str(a) for a in argv])
        except SystemExit as exit_:  # argparse
            status = exit_.code if isinstance(exit_.code, int) else 1
    return int(status), out.getvalue(), err.getvalue()


def run_script(name: str, argv: list[str], timeout: float = 600, preexec_fn: Callable | None = None,
               **kwargs) -> subprocess.CompletedProcess:
    """Run a script as the user does, in a new interpreter."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, str(SCRIPTS[name]), *map(str, argv)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT, preexec_fn=preexec_fn, **kwargs)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def snapshot(*roots: Path) -> dict[str, tuple[int, str]]:
    """``{path: (size, sha1)}`` of every file below ``roots`` (empty folders are not files)."""
    files = {}
    for root in roots:
        root = Path(root)
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in paths:
            data = path.read_bytes()
            files[str(path)] = (len(data), hashlib.sha1(data).hexdigest())
    return files


def temporaries(root: Path) -> list[Path]:
    """Temporary files or folders of atomic writers below ``root``."""
    return sorted(p for p in Path(root).rglob("*") if TEMPORARY.match(p.name))


def check_complete(path: Path) -> None:
    """Raise AssertionError unless ``path`` is a complete file of its kind (read in full)."""
    path = Path(path)
    name = path.name
    data = path.read_bytes()
    try:
        if name.endswith(".json"):
            json.loads(data)
        elif name.endswith((".yaml", ".yml")):
            import yaml

            assert isinstance(yaml.safe_load(data), dict)
        elif name.endswith(".weights.h5"):
            import h5py

            with h5py.File(path, "r") as handle:
                handle.visititems(lambda _, node: node[()] if hasattr(node, "shape") else None)
        elif name.endswith(".h5"):
            from unet3d_keras.data import open_data_file
            from unet3d_keras.hdf5_store import check_data_file

            check_data_file(path)
            with open_data_file(path) as handle:
                for node in ("data", "truth", "affine"):
                    np.asarray(handle.get_node(f"/{node}")[:])
        elif name.endswith(".keras"):
            with zipfile.ZipFile(path) as archive:
                assert archive.testzip() is None, "bad CRC"
                assert "config.json" in archive.namelist()
        elif name.endswith((".nii.gz", ".nii")):
            import nibabel as nib

            np.asarray(nib.load(path).dataobj)  # gzip checks its CRC at the end of the stream
        elif name.endswith(".png"):
            assert data.startswith(PNG_SIGNATURE) and data.rstrip(b"\0").endswith(PNG_END), "truncated PNG"
        elif name.endswith((".csv", ".log")):
            rows = list(csv.reader(io.StringIO(data.decode("utf-8"))))
            if rows:
                assert all(len(row) == len(rows[0]) for row in rows), "ragged CSV"
                if name.endswith("scores.csv"):
                    assert rows[-1][0] == "mean", "no mean row"
        elif name.endswith(".txt"):
            assert data.endswith(b"\n")
    except AssertionError as error:
        raise AssertionError(f"{path}: incomplete ({error})") from None
    except Exception as error:  # a reader's own error: the file is broken
        raise AssertionError(f"{path}: incomplete ({type(error).__name__}: {error})") from None


def check_all_complete(root: Path, skip: Callable[[Path], bool] = lambda p: False) -> int:
    """:func:`check_complete` on every file below ``root`` except temporaries; returns how many were checked."""
    count = 0
    for path in sorted(Path(root).rglob("*")):
        if path.is_file() and not any(TEMPORARY.match(part) for part in path.relative_to(root).parts) \
                and not skip(path):
            check_complete(path)
            count += 1
    return count


def _run(*command: str) -> bool:
    return subprocess.run(command, capture_output=True).returncode == 0


@contextlib.contextmanager
def read_only_folder(folder: Path) -> Iterator[str]:
    """Make ``folder`` read-only for this process; yields how (``chmod`` or ``mount``).

    Root ignores permission bits, so as root the folder is bind-mounted read-only
    (skipped where mounting is not allowed).
    """
    import pytest

    folder = Path(folder)
    if os.geteuid() != 0:
        mode = folder.stat().st_mode
        folder.chmod(0o555)
        try:
            yield "chmod"
        finally:
            folder.chmod(mode)
        return
    if not (_run("mount", "--bind", str(folder), str(folder))
            and _run("mount", "-o", "remount,bind,ro", str(folder), str(folder))):
        _run("umount", str(folder))
        pytest.skip("running as root without permission to mount: cannot make a read-only folder")
    try:
        yield "mount"
    finally:
        if not _run("umount", str(folder)):
            _run("umount", "-l", str(folder))


@contextlib.contextmanager
def full_disk(folder: Path) -> Iterator[Callable | None]:
    """A folder with no free space left, for the runs that write there.

    As root, a tiny tmpfs mounted on ``folder`` and filled up (writes fail with
    ENOSPC); it yields None and the script runs in this process. Elsewhere it
    yields a ``preexec_fn`` that limits the size of every file the script writes
    to 0 bytes (RLIMIT_FSIZE, writes fail with EFBIG), for a subprocess.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0 and _run("mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", str(folder)):
        try:
            fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
            try:
                while os.write(fd, b"\0" * 4096):
                    pass
            except OSError:  # ENOSPC: full
                pass
            finally:
                os.close(fd)
            yield None
        finally:
            if not _run("umount", str(folder)):
                _run("umount", "-l", str(folder))
        return

    def limit_file_size():
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))

    yield limit_file_size


DISK_FULL_MESSAGES = ("No space left on device", "File too large", "disk full")
READ_ONLY_MESSAGES = ("Read-only file system", "Permission denied")
