"""Shared plumbing of the command-line scripts: logging, and one readable error line.

A script's ``main(argv)`` builds its parser with :func:`base_parser` and runs
its work through :func:`run`, which turns the errors a user can fix (bad
config, missing or malformed input, a file in the way) into one line on
stderr and exit status 2, with the traceback only under ``--debug``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from typing import Callable

from .config import ConfigError, add_config_arguments
from .errors import DataError

# Errors caused by the user's input or environment, reported without a traceback.
USER_ERRORS = (ConfigError, DataError, FileNotFoundError, FileExistsError, PermissionError, ValueError, OSError)


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
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


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


def train_and_report(config, overwrite: bool, quiet: bool) -> int:
    """Run :func:`~unet3d_keras.pipeline.train_from_config` and print its Dice table (scripts)."""
    from .fileio import check_writable_folder

    check_writable_folder(config.run_dir, "output_dir")  # before Keras loads and before hours of work
    # Imported here: it loads Keras, which only pays once the config is known to be valid.
    from .pipeline import score_report, train_from_config

    result = train_from_config(config, overwrite=overwrite, show_progress=not quiet, verbose=0 if quiet else 2)
    print(score_report(result.scores))
    print(f"Run folder: {result.paths.run_dir} ({result.epochs_trained} epochs)")
    return 0


def predict_and_report(config, inputs, model_file, data_file, output, quiet: bool) -> int:
    """Run :func:`~unet3d_keras.pipeline.predict_new_subjects`; one error line per failed subject.

    Returns:
        0, or 1 when some subject failed (the others are still written).
    """
    from .fileio import check_writable_folder
    from .pipeline import predict_new_subjects

    check_writable_folder(output)
    written, failures = predict_new_subjects(config, inputs, model_file, data_file, output, show_progress=not quiet)
    for subject, message in failures:
        prefix = f"subject {subject}: "
        if message.lower().startswith(prefix.lower()):  # the reader already named the subject
            message = message[len(prefix):]
        print(f"error: {prefix}{message}", file=sys.stderr)
    print(f"Wrote {len(written)} label maps to {output}" + (f"; {len(failures)} subjects failed" if failures else ""))
    return 1 if failures else 0
