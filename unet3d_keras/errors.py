"""Exceptions shared by the data pipeline.

Kept in a module of its own so that low-level helpers (``utils``, ``normalize``) and the HDF5
writer (``data``) can raise the same type without importing each other.
"""

__all__ = ["DataError", "NoTimeToTrain", "USER_ERRORS"]


class DataError(ValueError):
    """Bad input data: a missing, unreadable or inconsistent image, or an incomplete data file.

    Messages name the subject and the file at fault where they are known, and say what was
    expected and what was found.
    """


class NoTimeToTrain(DataError):
    """A time budget that the prediction alone would spend: an untrained model's map is not worth making."""


#: Errors caused by the user's input or environment (bad config, missing or malformed input, a file
#: in the way, a full disk): a program reports them in one line, a folder of subjects skips the
#: subject. ``ConfigError`` and ``DataError`` are ``ValueError``s; missing, existing or unreadable
#: files are ``OSError``s.
USER_ERRORS = (ValueError, OSError)
