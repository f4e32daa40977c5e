"""Hiding TensorFlow's native (C++/absl) log from the first screen of the command-line programs.

TensorFlow 2.21 prints, while its shared libraries load, absl log lines that no setting reaches:
``WARNING: All log messages before absl::InitializeLog() is called are written to STDERR``,
``I0000 ... port.cc:153] oneDNN custom operations are on ...``, ``cudart_stub.cc ... Could not
find cuda drivers``. They are written by static initialisers of ``libtensorflow_framework.so``,
before any Python code could call absl's ``SetMinLogLevel`` (measured: calling it through ctypes
right after loading the library by hand comes too late), and ``TF_CPP_MIN_LOG_LEVEL`` (even 3)
does not filter them. So :func:`hide_tensorflow_native_logs` does two things:

* sets ``TF_CPP_MIN_LOG_LEVEL=3`` unless the user set it, which hides TensorFlow's later C++
  messages (``failed call to cuInit`` when the first operation runs on a machine without a GPU);
* points file descriptor 2 at a temporary file while the ``tensorflow`` package itself is being
  imported (an import hook, so the programs that never load TensorFlow pay nothing) and then
  writes back every captured line that is not a native log line (Python warnings, for instance).

``--debug`` on the command line or ``UNET3D_TF_LOGS=1`` in the environment keeps everything.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import re
import sys
import tempfile
from contextlib import contextmanager
from typing import Iterator

__all__ = ["SHOW_LOGS_VARIABLE", "is_native_log_line", "hide_tensorflow_native_logs", "remove_finder"]

#: Environment variable that keeps TensorFlow's native log (any value but "", "0" or "false").
SHOW_LOGS_VARIABLE = "UNET3D_TF_LOGS"

# absl's line prefix: severity, MMDD, time, thread id, file:line]
_ABSL_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [^ \]]+:\d+\]")
_KNOWN_LINES = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "To enable the following instructions:",  # second line of cpu_feature_guard's message
)


def is_native_log_line(line: str) -> bool:
    """Whether ``line`` is a line of TensorFlow's C++/absl log (not a Python warning or error)."""
    return bool(_ABSL_LINE.match(line)) or line.startswith(_KNOWN_LINES)


@contextmanager
def _native_logs_filtered() -> Iterator[None]:
    """Capture file descriptor 2 and write back the lines that are not native log lines."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            lines = capture.read().decode("utf-8", errors="replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if not is_native_log_line(line))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


class _QuietLoader(importlib.abc.Loader):
    """Runs the wrapped loader of the ``tensorflow`` package with native logs filtered."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        with _native_logs_filtered():
            self._loader.exec_module(module)

    def __getattr__(self, name: str):  # resource readers, get_filename, ...
        return getattr(self._loader, name)


class _QuietTensorFlowFinder(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` like the normal path finder, with a loader that filters its native logs."""

    def __init__(self, set_level: bool) -> None:
        self.set_level = set_level  # whether TF_CPP_MIN_LOG_LEVEL was set here (undone by show=True)

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # one use: TensorFlow's libraries load once
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def remove_finder() -> bool:
    """Remove the import hook of :func:`hide_tensorflow_native_logs`.

    Returns:
        Whether the hook had set ``TF_CPP_MIN_LOG_LEVEL``.
    """
    finders = [f for f in sys.meta_path if isinstance(f, _QuietTensorFlowFinder)]
    for finder in finders:
        sys.meta_path.remove(finder)
    return any(f.set_level for f in finders)


def hide_tensorflow_native_logs(show: bool = False) -> None:
    """Hide TensorFlow's native log unless ``show`` or ``UNET3D_TF_LOGS`` asks for it.

    Call it before TensorFlow is imported; afterwards it only sets ``TF_CPP_MIN_LOG_LEVEL``,
    which TensorFlow reads when it logs. Calling it again with ``show=True`` undoes the hook
    (if TensorFlow has not been imported yet).
    """
    show = show or os.environ.get(SHOW_LOGS_VARIABLE, "").strip().lower() not in ("", "0", "false")
    if show:
        if remove_finder() and "tensorflow" not in sys.modules:
            os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)
        return
    set_level = "TF_CPP_MIN_LOG_LEVEL" not in os.environ  # the user's own setting is kept
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietTensorFlowFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowFinder(set_level))
