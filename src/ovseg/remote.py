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

import contextlib
import json
import re
import tempfile
from collections.abc import Iterator
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


# The files whose key says a result folder is complete; written (and synced) after the rest.
RESULT_RECORDS = ("selection.json", "edit.json")


class Folder:
    """A folder at a path or URL: the JSON files in it, read and written whole."""

    def __init__(self, url: str) -> None:
        self.url = str(url).rstrip("/")
        self.local = not is_url(self.url)
        if self.local:
            self.path = Path(self.url)
        else:
            self.fs, root = _fs(self.url)
            self.path = root.rstrip("/")

    def join(self, relative: str) -> str:
        """The path or URL of ``relative`` inside this folder (how results name their files)."""
        return str(self.path / relative) if self.local else f"{self.url}/{relative}"

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


class StageFolder(Folder):
    """One stage's folder of the cache (``<cache>/masks``), wherever the cache lives."""

    def __init__(self, cache: str, stage: str) -> None:
        super().__init__(f"{str(cache).rstrip('/')}/{stage}")

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


class OutputFolder(Folder):
    """A results folder (``<output>/segment``): one subfolder per photo, which appears whole.

    Locally a finished temp folder is renamed into place. A bucket has no rename, so the
    subfolder's files are uploaded first, objects an earlier result left there and this one
    does not have are deleted, and the file that names the result's key (``selection.json``,
    ``edit.json``: what a rerun reads to decide whether to redo it) goes last. A reader that
    sees the new key therefore sees every file of the new result.
    """

    @contextlib.contextmanager
    def write(self, name: str, last: str) -> Iterator[Path]:
        """Yield a new local folder to fill; on success it becomes ``<this folder>/<name>``."""
        if self.local:
            with atomic_path(self.path / name) as tmp:
                tmp.mkdir(parents=True)
                yield tmp
            return
        with tempfile.TemporaryDirectory(prefix="ovseg-output-") as scratch:
            folder = Path(scratch) / name
            folder.mkdir()
            yield folder
            files = {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}
            if last not in files:
                raise OvsegError(f"{name}: the result has no {last}")
            prefix = f"{self.path}/{name}"
            for relative, file in files.items():
                if relative != last:
                    self.fs.put_file(str(file), f"{prefix}/{relative}")
            self.fs.invalidate_cache(prefix)
            stale = [
                n
                for n in self.fs.find(prefix)
                if n.startswith(f"{prefix}/") and n.removeprefix(f"{prefix}/") not in files
            ]
            if stale:
                self.fs.rm(stale)
            self.fs.put_file(str(files[last]), f"{prefix}/{last}")


def sync_folder(source: str, target: str) -> tuple[int, int]:
    """Copy every file under ``source`` to ``target`` (paths or URLs) that is missing or different there.

    For taking a bucket cache or a cluster run's results to a laptop (and back) without
    another tool. A file of a content-keyed store (``<key>.zarr/...``, ``<key>.done``,
    ``<key>.candidates.png``) with the same name and size is the same file, so a synced cache
    costs one listing per side; any other file (results, manifests: same name, new content
    after a new prompt) is the same only when its bytes are. Returns (copied, already there).
    """
    (src_fs, src_root), (dst_fs, dst_root) = _fs(source), _fs(target)  # local paths: absolute
    src_root, dst_root = src_root.rstrip("/"), dst_root.rstrip("/")
    if not src_fs.isdir(src_root):
        raise OvsegError(f"nothing to sync: {source} is not a folder")
    there = {n: info.get("size") for n, info in _find(dst_fs, dst_root).items()}
    copied = kept = 0
    from tqdm import tqdm

    files = sorted(_find(src_fs, src_root).items(), key=lambda item: _sync_order(item[0]))
    for name, info in tqdm(files, desc=f"sync {source}", unit="file", disable=len(files) < 50):
        data = None
        if there.get(name) == info.get("size"):
            if _content_keyed(name):
                kept += 1
                continue
            data = src_fs.cat_file(f"{src_root}/{name}")
            if dst_fs.cat_file(f"{dst_root}/{name}") == data:
                kept += 1
                continue
        dst_fs.makedirs(str(PurePosixPath(f"{dst_root}/{name}").parent), exist_ok=True)
        dst_fs.pipe_file(f"{dst_root}/{name}", data if data is not None else src_fs.cat_file(f"{src_root}/{name}"))
        copied += 1
    return copied, kept


# A cache store's name: a hex content key, then what part of the store it is.
_KEYED = re.compile(r"^[0-9a-f]{16,}(\.zarr|\.candidates\.png|" + re.escape(DONE_SUFFIX) + ")$")


def _content_keyed(name: str) -> bool:
    """Whether ``name`` lies in a content-keyed store, whose bytes its name fixes."""
    return any(_KEYED.match(part) for part in PurePosixPath(name).parts)


def _sync_order(name: str) -> tuple[int, str]:
    """Data first, then the files that say a result is complete, so a cut-off sync never claims too much."""
    base = PurePosixPath(name).name
    return (2 if base.endswith(DONE_SUFFIX) else 1 if base in RESULT_RECORDS else 0, name)


def _find(fs, root: str) -> dict[str, dict[str, Any]]:
    """Relative name -> info of every file under ``root`` (none when it does not exist)."""
    try:
        found = fs.find(root, detail=True)
    except FileNotFoundError:
        return {}
    return {PurePosixPath(n).relative_to(PurePosixPath(root)).as_posix(): i for n, i in found.items()}


def _json_bytes(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, indent=2) + "\n").encode()  # as fileio.write_json writes it locally
