"""The prediction command's shared work: segment new subjects and report each failure on one line."""

from __future__ import annotations

import os
import sys
from typing import Sequence

from ..config import Config
from ..fileio import check_writable_folder


def predict_and_report(config: Config, inputs: Sequence[str | os.PathLike], model_file: str | os.PathLike,
                       data_file: str | os.PathLike, output: str | os.PathLike, quiet: bool) -> int:
    """Run :func:`~unet3d_keras.pipeline.predict_new_subjects`; one error line per failed subject.

    Returns:
        0, or 1 when some subject failed (the others are still written).
    """
    check_writable_folder(output)
    # why: the pipeline loads Keras, which only pays once the output folder is known to be writable
    from ..pipeline import predict_new_subjects

    written, failures = predict_new_subjects(config, inputs, model_file, data_file, output, show_progress=not quiet)
    for subject, message in failures:
        prefix = f"subject {subject}: "
        if message.lower().startswith(prefix.lower()):  # the reader already named the subject
            message = message[len(prefix):]
        print(f"error: {prefix}{message}", file=sys.stderr)
    print(f"Wrote {len(written)} label maps to {output}" + (f"; {len(failures)} subjects failed" if failures else ""))
    return 1 if failures else 0
