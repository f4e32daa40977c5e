"""Shared plumbing of the command-line programs: parser, logging, and one readable error line.

A command's ``main(argv)`` (see :mod:`unet3d_keras.commands`) builds its parser
with :func:`base_parser` and runs its work through :func:`run`, which turns the
errors a user can fix (bad config, missing or malformed input, a file in the
way) into one line on stderr and exit status 2, with the traceback only under
``--debug``. Importing it hides TensorFlow's native log (:mod:`unet3d_keras.native_logs`) and
asks TensorFlow for its oneDNN CPU kernels (:mod:`unet3d_keras.onednn`), so only the programs
import it, never the library.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from typing import Callable

from .config import add_config_arguments
from .errors import USER_ERRORS
from .native_logs import hide_tensorflow_native_logs
from .onednn import enable_onednn

# why at import: a command module imports this before anything that loads TensorFlow, whose
# native log is printed while its libraries load, i.e. before main() could parse --debug.
hide_tensorflow_native_logs(show="--debug" in sys.argv[1:])
enable_onednn()  # read once, when TensorFlow loads


def base_parser(description: str, with_config: bool = True) -> argparse.ArgumentParser:
    """An argument parser with ``--config``/``--set`` (optional), ``--debug`` and ``--quiet``."""
    parser = argparse.ArgumentParser(description=description)
    if with_config:
        add_config_arguments(parser)
    parser.add_argument("--debug", action="store_true", help="show full tracebacks and debug logging")
    parser.add_argument("--quiet", action="store_true", help="only warnings and errors")
    return parser


def setup_logging(debug: bool = False, quiet: bool = False) -> None:
    """Plain ``LEVEL message`` logging on stderr for scripts."""
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(message)s", stream=sys.stderr, force=True)
    hide_tensorflow_native_logs(show=debug)  # main(argv) may get --debug without sys.argv holding it


def run(work: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """Run a script's work and map user errors to one line and exit status 2.

    Returns:
        The exit status: the work's return value (0 if None), 2 on a user
        error, 130 on Ctrl-C.
    """
    setup_logging(getattr(args, "debug", False), getattr(args, "quiet", False))
    try:
        status = work(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as error:
        if getattr(args, "debug", False):
            traceback.print_exc()
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 2
    return 0 if status is None else int(status)


def one_line(error: BaseException) -> str:
    """The error's message on one line (OS errors get their file name)."""
    if isinstance(error, OSError) and error.filename and error.strerror:
        # "path: No space left on device" rather than "[Errno 28] No space left on device: 'path'"
        message = f"{error.filename}: {error.strerror}" + (f" (and {error.filename2})" if error.filename2 else "")
    elif isinstance(error, OSError) and error.filename and str(error.filename) not in str(error):
        message = f"{error.filename}: {error.strerror or error}"
    else:
        message = str(error) or type(error).__name__
    return " ".join(message.split())
