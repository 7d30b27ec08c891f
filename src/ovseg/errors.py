"""The one exception type that means "the user asked for something we cannot do".

Stage scripts and the CLI catch :class:`OvsegError` and print its message as a single
line with a non-zero exit code; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class OvsegError(Exception):
    """A user-facing error: bad input, missing weights, invalid parameters."""


class UnreadableImageError(OvsegError):
    """A photo that cannot be read or decoded: in a folder it is skipped, alone it stops the run."""


class Stopped(OvsegError):
    """Whoever started a run asked it to stop (the page's Stop button): what was done is kept, and the message
    says where it stood."""


class WeightsMissingError(OvsegError):
    """Weights for a model are not on disk; the message names the command that fetches them."""


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message, prefixed by its type, for one-line errors."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return f"{exc.__class__.__name__}: {first}" if first else exc.__class__.__name__


def from_os_error(exc: OSError) -> OvsegError:
    """An OSError met while writing (a full disk, no permission, a read-only file system) as one line.

    Every artifact is written to a temporary name and renamed, so what the line reports left
    nothing half-written behind; the next run resumes from what was finished.
    """
    import errno

    where = f" ({exc.filename})" if exc.filename else ""
    reason = exc.strerror or one_line(exc)
    hint = ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = "; free some space (`ovseg cache gc` helps) and run again: finished artifacts are kept"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "; choose a folder you can write (--cache, --output)"
    return OvsegError(f"{reason}{where}{hint}")
