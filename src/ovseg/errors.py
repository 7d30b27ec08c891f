"""The one exception type that means "the user asked for something we cannot do".

Stage scripts and the CLI catch :class:`OvsegError` and print its message as a single
line with a non-zero exit code; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class OvsegError(Exception):
    """A user-facing error: bad input, missing weights, invalid parameters."""


class UnreadableImageError(OvsegError):
    """A photo that cannot be read or decoded: in a folder it is skipped, alone it stops the run."""


class WeightsMissingError(OvsegError):
    """Weights for a model are not on disk; the message names the command that fetches them."""


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message, prefixed by its type, for one-line errors."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return f"{exc.__class__.__name__}: {first}" if first else exc.__class__.__name__
