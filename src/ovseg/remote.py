"""Stage folders and image folders at any fsspec URL: a local path, ``s3://``, ``gs://``.

The layout is the local cache's, object for object (``<stage>/<key>.zarr``, ``<key>.done``,
``<key>.candidates.png``, ``manifest.json``), so a cache written by a cluster into a bucket
and synced down is reused by a laptop, and the other way round. What differs is how a store
becomes complete: locally a finished temp folder is renamed into place; a bucket has no
rename, so the store's objects are uploaded first and the ``<key>.done`` marker last (a
single PUT, atomic). A retried or duplicated task rewrites the same bytes under the same
names: keys are content hashes and stores hold no timings (those go into the marker).

Keys are hex digests, so object names under a stage folder are spread evenly over their
leading characters: the hashed prefixes object stores partition on, with no extra level.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ovseg.errors import OvsegError
from ovseg.fileio import IMAGE_SUFFIXES, atomic_path, is_url, list_images, write_json
from ovseg.store import DONE_SUFFIX, MANIFEST, store_path, write_arrays, write_complete


def _fs(url: str):
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        scheme = url.split("://")[0]
        extra = {"s3": "s3", "gs": "gcs", "gcs": "gcs"}.get(scheme, scheme)
        raise OvsegError(f"cannot open {url}: {exc}; for {scheme}:// install ovseg[{extra}]") from None


def list_image_urls(location: str) -> list[str]:
    """The images directly inside a folder (or the one file) at ``location``, sorted, stems unique."""
    if not is_url(location):
        return [str(p) for p in list_images(Path(location))]
    fs, path = _fs(location)
    protocol = location.split("://")[0]
    if fs.isfile(path):
        return [location]
    try:
        names = sorted(fs.ls(path, detail=False))
    except FileNotFoundError:
        raise OvsegError(f"image folder not found: {location}") from None
    images = [f"{protocol}://{n}" for n in names if PurePosixPath(n).suffix.lower() in IMAGE_SUFFIXES]
    if not images:
        raise OvsegError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {location}")
    stems = [image_stem(u) for u in images]
    dupes = sorted({s for s in stems if stems.count(s) > 1})
    if dupes:
        raise OvsegError(f"two images share the name {dupes[0]!r} in {location}; outputs are keyed by name")
    return images


def image_stem(location: str) -> str:
    """``photo`` for ``s3://bucket/in/photo.jpg`` or ``data/images/photo.jpg``: outputs are keyed by it."""
    return PurePosixPath(str(location).split("://")[-1]).stem


def image_name(location: str) -> str:
    """``photo.jpg`` for a path or URL: how warnings and ``skipped`` lists name a file."""
    return PurePosixPath(str(location).split("://")[-1]).name


def read_bytes(location: str) -> bytes:
    """A file's bytes from a path or URL (one GET)."""
    if not is_url(location):
        return Path(location).read_bytes()
    fs, path = _fs(location)
    return fs.cat_file(path)


class StageFolder:
    """One stage's folder of the cache (``<cache>/masks``), wherever the cache lives."""

    def __init__(self, cache: str, stage: str) -> None:
        self.url = f"{str(cache).rstrip('/')}/{stage}"
        self.local = not is_url(cache)
        if self.local:
            self.path = Path(cache) / stage
        else:
            self.fs, root = _fs(str(cache))
            self.path = f"{root.rstrip('/')}/{stage}"

    def done_keys(self) -> set[str]:
        """Every key whose store is complete: one listing of the folder, not one request per image."""
        if self.local:
            names = [p.name for p in self.path.glob(f"*{DONE_SUFFIX}")] if self.path.is_dir() else []
        else:
            self.fs.invalidate_cache(self.path)
            try:
                names = [PurePosixPath(n).name for n in self.fs.ls(self.path, detail=False)]
            except FileNotFoundError:
                names = []
        return {n.removesuffix(DONE_SUFFIX) for n in names if n.endswith(DONE_SUFFIX)}

    def publish(
        self,
        key: str,
        arrays: dict[str, np.ndarray],
        attrs: dict[str, Any],
        record: dict[str, Any],
        extras: dict[str, bytes] | None = None,
    ) -> None:
        """Write the store for ``key`` (and extra files such as its preview), then its marker, last."""
        if self.local:
            for name, data in (extras or {}).items():
                with atomic_path(self.path / name) as tmp:
                    tmp.write_bytes(data)
            write_complete(self.path, key, arrays, attrs, record)
            return
        with tempfile.TemporaryDirectory(prefix="ovseg-publish-") as scratch:
            local = store_path(Path(scratch), key)
            write_arrays(local, arrays, attrs)
            for file in sorted(p for p in local.rglob("*") if p.is_file()):
                self.fs.put_file(str(file), f"{self.path}/{key}.zarr/{file.relative_to(local).as_posix()}")
        for name, data in (extras or {}).items():
            self.fs.pipe_file(f"{self.path}/{name}", data)
        self.fs.pipe_file(f"{self.path}/{key}{DONE_SUFFIX}", _json_bytes({"key": key, **record}))

    def fetch_store(self, key: str, scratch: Path) -> Path:
        """A local path to read the store for ``key`` from (remote: its objects downloaded to ``scratch``)."""
        if self.local:
            return store_path(self.path, key)
        target = store_path(Path(scratch), key)
        prefix = f"{self.path}/{key}.zarr"
        for name in self.fs.find(prefix):
            relative = PurePosixPath(name).relative_to(PurePosixPath(prefix))
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            self.fs.get_file(name, str(target / relative))
        return target

    def read_json(self, name: str = MANIFEST) -> dict[str, Any] | None:
        """A JSON file of the folder (the manifest), or None when there is none yet."""
        if self.local:
            path = self.path / name
            return json.loads(path.read_text()) if path.is_file() else None
        try:
            return json.loads(self.fs.cat_file(f"{self.path}/{name}"))
        except FileNotFoundError:
            return None

    def write_json(self, data: dict[str, Any], name: str = MANIFEST) -> None:
        """Write a JSON file whole (locally renamed into place; on a bucket one PUT)."""
        if self.local:
            write_json(self.path / name, data)
        else:
            self.fs.pipe_file(f"{self.path}/{name}", _json_bytes(data))


def _json_bytes(data: dict[str, Any]) -> bytes:
    return json.dumps(data, indent=2).encode()
