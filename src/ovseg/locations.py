"""Where things are: local paths and fsspec URLs (``s3://``, ``gs://``), read, listed and written whole.

The one module that touches filesystems and URLs directly, so everything above it (image
decoding, stores, stage folders) shares one idea of a location and one way to write a file
that never appears half-written: a temporary sibling renamed into place.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from ovseg.errors import OvsegError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


def is_url(location: str | Path) -> bool:
    """``s3://...``, ``gs://...`` (fsspec URLs) rather than a local path."""
    return "://" in str(location) and not str(location).startswith("file://")


def filesystem(url: str):
    """(fsspec filesystem, path inside it) for a URL or a local path; one line naming a missing extra."""
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        scheme = url.split("://")[0]
        extra = {"s3": "s3", "gs": "gcs", "gcs": "gcs"}.get(scheme, scheme)
        raise OvsegError(f"cannot open {url}: {exc}; for {scheme}:// install ovseg[{extra}]") from None


def check_reachable(url: str) -> None:
    """One listing of a bucket location, so a missing credential, bucket or extra is one line before any work."""
    fs, path = filesystem(url)
    try:
        fs.ls(path.split("/")[0], detail=False)
    except Exception as exc:  # noqa: BLE001 - each filesystem fails its own way (credentials, network, names)
        first = (str(exc).strip().splitlines() or [""])[0]
        raise OvsegError(f"cannot reach {url}: {exc.__class__.__name__}: {first}") from None


def read_bytes(location: str | Path) -> bytes:
    """A file's bytes from a path or URL (one GET)."""
    if not is_url(location):
        return Path(location).read_bytes()
    fs, path = filesystem(str(location))
    return fs.cat_file(path)


def image_stem(location: str | Path) -> str:
    """``photo`` for ``s3://bucket/in/photo.jpg`` or ``data/images/photo.jpg``: outputs are keyed by it."""
    return PurePosixPath(str(location).split("://")[-1]).stem


def image_name(location: str | Path) -> str:
    """``photo.jpg`` for a path or URL: how warnings and ``skipped`` lists name a file."""
    return PurePosixPath(str(location).split("://")[-1]).name


def list_images(location: str | Path | tuple[str, ...]) -> list[str]:
    """The images directly inside a folder (or the one file) at a path or URL, sorted, stems unique.

    Sorted so batch runs are reproducible; stems must be unique because every output is
    named by the photo's stem. A tuple of files is taken as it is (stems checked).
    """
    if isinstance(location, (tuple, list)):
        images, location = [str(p) for p in location], f"the {len(location)} images given"
    elif is_url(location):
        location = str(location)
        fs, path = filesystem(location)
        protocol = location.split("://")[0]
        if fs.isfile(path):
            return [location]
        try:
            names = sorted(fs.ls(path, detail=False))
        except FileNotFoundError:
            raise OvsegError(f"image folder not found: {location}") from None
        images = [f"{protocol}://{n}" for n in names if PurePosixPath(n).suffix.lower() in IMAGE_SUFFIXES]
    else:
        location = str(location)
        folder = Path(location)
        if folder.is_file():
            return [location]
        if not folder.is_dir():
            raise OvsegError(f"image folder not found: {folder}")
        images = [str(p) for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    if not images:
        raise OvsegError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {location}")
    stems = [image_stem(u) for u in images]
    dupes = sorted({s for s in stems if stems.count(s) > 1})
    if dupes:
        raise OvsegError(f"two images share the name {dupes[0]!r} in {location}; outputs are keyed by name")
    return images


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; rename it onto ``final`` only on success.

    Works for files and directories (zarr stores, output folders). The temporary
    path lives in the same directory so the rename is atomic on one filesystem.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    target = tmp / final.name
    try:
        yield target
        if final.is_dir() and not final.is_symlink():
            shutil.rmtree(final)
        elif final.exists():
            final.unlink()
        os.replace(target, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def json_bytes(data: Any) -> bytes:
    """JSON as every ovseg file holds it: indented for people, ending with a newline."""
    return (json.dumps(data, indent=2, sort_keys=False) + "\n").encode()


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically, pretty-printed so people can read it."""
    with atomic_path(Path(path)) as tmp:
        tmp.write_bytes(json_bytes(data))


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())
