"""User-facing errors: the CLI prints them as one line and exits non-zero."""


class EdgepackError(Exception):
    """A problem with the user's input (file, option, data). Printed without a traceback."""


class DataError(EdgepackError):
    """A data set could not be found, read or verified."""


class ModelError(EdgepackError):
    """A model file or description is missing, corrupt or does not fit."""


class OptionError(EdgepackError):
    """An unknown or out-of-range option."""


def first_line(e: BaseException, limit: int = 200) -> str:
    """'TypeName: first line of the message' (never fails on an empty message), for one-line errors."""
    s = str(e).strip()
    return f"{type(e).__name__}: {s.splitlines()[0][:limit]}" if s else type(e).__name__


def write_error(path, e: BaseException) -> EdgepackError:
    """A file that could not be written, in one line naming it: a full disk says so, whatever layer raised it."""
    import errno
    text = str(e)
    if getattr(e, "errno", None) == errno.ENOSPC or "No space left" in text or "file write failed" in text:
        return EdgepackError(f"{path}: cannot write it: no space left on the device (free some, or choose another --out)")
    return EdgepackError(f"{path}: cannot write it ({first_line(e)})")
