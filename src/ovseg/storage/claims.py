"""Claims on keys, so two runs on the same cache share the work instead of doing it twice.

A run about to compute a store (or write a photo's result folder) first claims it: an OS
file lock (``filelock``, ``flock`` underneath) on ``<folder's parent>/.locks/<folder>/<name>.lock``.
When another process holds the claim, the run moves on to other photos and comes back
at the end, waiting for that process to finish; then the work is there and is reused.
After taking a claim the stage always checks again whether the work is done, so a claim
file removed or left behind by a killed run can never make two processes compute one key:
locks held by a dead process are released by the OS.

Locks need one machine (or a file system with working ``flock``); on buckets there are none,
and the completion markers are what keeps work from being done twice, as before.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from filelock import FileLock, Timeout

from ovseg.storage.locations import LOCKS, is_url


class Claims:
    """Claims on the entries of one folder (a cache stage folder or a results folder)."""

    def __init__(self, folder: Path | str | None) -> None:
        """``folder``: a local path, or a bucket URL (no locks there, as on ``None``)."""
        local = folder is not None and not is_url(str(folder))
        self.root = Path(folder).parent / LOCKS / Path(folder).name if local else None

    def _lock(self, name: str) -> FileLock | None:
        if self.root is None:
            return None
        self.root.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.root / f"{quote(name, safe='')}.lock"))  # a photo's name may be a path

    @contextlib.contextmanager
    def attempt(self, name: str) -> Iterator[bool]:
        """Claim ``name`` if nobody holds it: yields True (held until the block ends) or False (someone else has it)."""
        lock = self._lock(name)
        if lock is None:
            yield True
            return
        try:
            lock.acquire(timeout=0)
        except Timeout:
            yield False
            return
        try:
            yield True
        finally:
            lock.release()
            Path(lock.lock_file).unlink(missing_ok=True)  # the work is recorded: the next claimant checks it first

    @contextlib.contextmanager
    def wait(self, name: str) -> Iterator[None]:
        """Claim ``name``, waiting for whoever holds it (the other run computing it)."""
        lock = self._lock(name)
        if lock is None:
            yield
            return
        with lock:
            yield
        Path(lock.lock_file).unlink(missing_ok=True)
