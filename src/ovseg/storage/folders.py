"""The one storage API: cache stage folders and result folders at any location (a path, ``s3://``, ``gs://``).

The layout is the local cache's, object for object (:mod:`ovseg.storage.store` names it), so a
cache written by a cluster into a bucket and synced down is reused by a laptop, and the
other way round. What differs is how a store becomes complete: locally a finished temp
folder is renamed into place; a bucket has no rename, so the store's objects are uploaded
first and the ``<key>.done`` marker last (a single PUT, atomic). A retried or duplicated
task rewrites the same bytes under the same names: keys are content hashes and stores hold
no timings (those go into the marker).

Keys are hex digests, so object names under a stage folder are spread evenly over their
leading characters: the hashed prefixes object stores partition on, with no extra level.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ovseg.errors import OvsegError
from ovseg.storage.locations import (
    LOCKS,
    atomic_path,
    check_folder,
    filesystem,
    is_url,
    json_bytes,
    remove_stale,
    write_json,
)
from ovseg.storage.store import (
    DONE_SUFFIX,
    FILES_SUFFIX,
    MANIFEST,
    STORE_SUFFIX,
    MaskProposals,
    files_name,
    marker_name,
    preview_name,
    read_arrays,
    store_name,
    write_arrays,
)

# The record of a photo's result folder: written last, it names the key the folder was made under, so
# a rerun (or a sync) reads it to know whether the folder is complete and current. The select and
# edit stages each own one (``ovseg.pipeline.select`` / ``.edit`` write them, nothing else does).
SELECTION_RECORD = "selection.json"
EDIT_RECORD = "edit.json"
RESULT_RECORDS = (SELECTION_RECORD, EDIT_RECORD)


class Folder:
    """A folder at a path or URL: the JSON files in it, read and written whole."""

    def __init__(self, url: str) -> None:
        self.url = str(url).rstrip("/")
        self.local = not is_url(self.url)
        if self.local:
            self.path = Path(self.url)
        else:
            self.fs, root = filesystem(self.url)
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
            self.fs.pipe_file(f"{self.path}/{name}", json_bytes(data))

    def update_json(self, data: dict[str, Any], name: str = MANIFEST, ignore: tuple[str, ...] = ()) -> bool:
        """Write a JSON file only when it would say something new (keys in ``ignore`` aside); True if written.

        A run with nothing to compute then writes nothing, so it also works on a cache or
        results it may only read.
        """
        try:
            previous = self.read_json(name)
        except (OSError, ValueError):
            previous = None
        if previous is not None and _without(previous, ignore) == _without(data, ignore):
            return False
        self.ensure_writable()
        self.write_json(data, name)
        return True

    def ensure_writable(self) -> None:
        """One line before any work when this folder cannot be written (a file in the way, no permission)."""
        if not self.local:
            return
        check_folder(self.path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.path, prefix=".ovseg-write-test-"):
                pass
        except OSError as exc:
            raise OvsegError(f"cannot write to {self.path}: {exc.strerror or exc}") from None


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

    def is_done(self, key: str) -> bool:
        """Whether the store for ``key`` is complete (its marker exists): one request."""
        if self.local:
            return (self.path / marker_name(key)).is_file()
        return self.fs.exists(f"{self.path}/{marker_name(key)}")

    def publish(
        self,
        key: str,
        arrays: dict[str, np.ndarray],
        attrs: dict[str, Any],
        record: dict[str, Any],
        preview: bytes | None = None,
    ) -> None:
        """Write the store for ``key`` (and its preview picture), then its marker, last."""
        marker = json_bytes({"key": key, **record})
        if self.local:
            if preview is not None:
                with atomic_path(self.path / preview_name(key)) as tmp:
                    tmp.write_bytes(preview)
            write_arrays(self.path / store_name(key), arrays, attrs, clear_stale=True)  # the engine claimed the key
            with atomic_path(self.path / marker_name(key)) as tmp:
                tmp.write_bytes(marker)
            return
        with tempfile.TemporaryDirectory(prefix="ovseg-publish-") as scratch:
            local = Path(scratch) / store_name(key)
            write_arrays(local, arrays, attrs)
            for file in sorted(p for p in local.rglob("*") if p.is_file()):
                self.fs.put_file(str(file), f"{self.path}/{store_name(key)}/{file.relative_to(local).as_posix()}")
        if preview is not None:
            self.fs.pipe_file(f"{self.path}/{preview_name(key)}", preview)
        self.fs.pipe_file(f"{self.path}/{marker_name(key)}", marker)

    @contextlib.contextmanager
    def scratch(self, key: str) -> Iterator[Path]:
        """An empty local folder to build the files store for ``key`` in (beside the stage's folder when that is
        local, so publishing it is a rename), removed afterwards whatever happens. What a killed run left building
        the same key goes first: the engine holds the key's claim, so no live run is building it."""
        prefix = f".ovseg-build-{key}-"
        if self.local:
            self.path.mkdir(parents=True, exist_ok=True)
            remove_stale(self.path, prefix)
        folder = Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=self.path if self.local else None))
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    @contextlib.contextmanager
    def partial(self, key: str) -> Iterator[Path]:
        """A local folder to build the files store for ``key`` in that outlives a killed run, so the next run of the
        key can go on with what it holds (``.ovseg-partial-<key>.tmp`` beside the stage's folder; ``ovseg cache gc``
        removes one left long enough). On a bucket, a scratch folder: the work is redone there. Publishing it
        (:meth:`publish_files`) moves it into place."""
        if not self.local:
            with self.scratch(key) as folder:
                yield folder
            return
        folder = self.path / f".ovseg-partial-{key}.tmp"
        folder.mkdir(parents=True, exist_ok=True)
        yield folder

    def publish_files(self, key: str, folder: Path, record: dict[str, Any]) -> None:
        """Make the local ``folder`` (plain files: frames, masks) the files store for ``key``, then its marker."""
        marker = json_bytes({"key": key, **record})
        if self.local:
            target = self.path / files_name(key)
            self.path.mkdir(parents=True, exist_ok=True)
            with atomic_path(target) as tmp:
                os.replace(folder, tmp)
            with atomic_path(self.path / marker_name(key)) as tmp:
                tmp.write_bytes(marker)
            return
        for file in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
            self.fs.put_file(str(file), f"{self.path}/{files_name(key)}/{file.relative_to(folder).as_posix()}")
        self.fs.pipe_file(f"{self.path}/{marker_name(key)}", marker)

    @contextlib.contextmanager
    def files(self, key: str) -> Iterator[Path]:
        """A local folder holding the files store for ``key`` (remote: fetched to a scratch folder first)."""
        with self._local_copy(files_name(key)) as path:
            yield path

    @contextlib.contextmanager
    def store(self, key: str) -> Iterator[Path]:
        """A local path to read the store for ``key`` from (remote: its objects fetched to a scratch folder)."""
        with self._local_copy(store_name(key)) as path:
            yield path

    @contextlib.contextmanager
    def _local_copy(self, name: str) -> Iterator[Path]:
        """``name`` in this folder as a local path: itself when local, else its objects fetched to a scratch folder."""
        if self.local:
            yield self.path / name
            return
        with tempfile.TemporaryDirectory(prefix="ovseg-fetch-") as scratch:
            target = Path(scratch) / name
            prefix = f"{self.path}/{name}"
            for found in self.fs.find(prefix):
                relative = PurePosixPath(found).relative_to(PurePosixPath(prefix))
                (target / relative).parent.mkdir(parents=True, exist_ok=True)
                self.fs.get_file(found, str(target / relative))
            yield target

    def read_store(self, key: str, names: list[str] | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The named arrays (all when None) and attributes of the store for ``key``."""
        with self.store(key) as path:
            return read_arrays(path, names)

    def proposals(self, key: str) -> tuple[MaskProposals, dict[str, Any]]:
        """The mask candidates in the masks store for ``key``, and its attributes."""
        with self.store(key) as path:
            return MaskProposals.load(path)

    def marker(self, key: str) -> dict[str, Any]:
        """What the run that completed ``key`` recorded (seconds, engine); empty when not done."""
        return self.read_json(marker_name(key)) or {}


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
            with atomic_path(self.path / name, clear_stale=True) as tmp:  # the engines claim results by name
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

    def record(self, relative: str) -> dict[str, Any] | None:
        """An earlier run's ``selection.json``/``edit.json``, or None (missing, or unreadable: then it is redone)."""
        try:
            return self.read_json(relative)
        except (OSError, ValueError):
            return None

    def prune(self, keep: set[str], record: str) -> None:
        """Remove the result folders (those holding ``record``) of photos no longer in the batch.

        The DVC stages mirror the image folder. Names may be paths (``trip/IMG_1`` with
        ``recursive``); folders left empty by a removal go too.
        """
        if self.local:
            if not self.path.is_dir():
                return
            for found in sorted(self.path.rglob(record)):
                folder = found.parent
                name = folder.relative_to(self.path).as_posix()
                if name not in keep and not any(part.startswith(".") for part in folder.relative_to(self.path).parts):
                    shutil.rmtree(folder)
                    for parent in folder.parents:
                        if parent == self.path or any(parent.iterdir()):
                            break
                        parent.rmdir()
            return
        self.fs.invalidate_cache(self.path)
        try:
            found = [n for n in self.fs.find(self.path) if n.endswith(f"/{record}")]
        except FileNotFoundError:
            return
        for name in found:
            folder = name[: -len(record) - 1]
            if folder.removeprefix(f"{self.path}/") not in keep:
                self.fs.rm(folder, recursive=True)


def _without(data: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in keys}


def sync_folder(source: str, target: str) -> tuple[int, int]:
    """Copy every file under ``source`` to ``target`` (paths or URLs) that is missing or different there.

    For taking a bucket cache or a cluster run's results to a laptop (and back) without
    another tool; claims (``.locks/``) stay behind, they belong to one machine's runs. A file
    of a content-keyed store (``<key>.zarr/...``, ``<key>.done``, ``<key>.candidates.png``)
    with the same name and size is the same file, so a synced cache costs one listing per
    side; any other file (results, manifests: same name, new content after a new prompt) is
    the same only when its bytes are. Returns (copied, already there).
    """
    (src_fs, src_root), (dst_fs, dst_root) = filesystem(source), filesystem(target)  # local paths: absolute
    src_root, dst_root = src_root.rstrip("/"), dst_root.rstrip("/")
    if not src_fs.isdir(src_root):
        raise OvsegError(f"nothing to sync: {source} is not a folder")
    there = {n: info.get("size") for n, info in _find(dst_fs, dst_root).items()}
    copied = kept = 0
    from tqdm import tqdm

    found = _find(src_fs, src_root).items()
    files = sorted(
        ((n, i) for n, i in found if LOCKS not in PurePosixPath(n).parts), key=lambda item: _sync_order(item[0])
    )
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
_KEYED = re.compile(
    r"^[0-9a-f]{16,}("
    + "|".join(re.escape(s) for s in (STORE_SUFFIX, FILES_SUFFIX, preview_name(""), DONE_SUFFIX))
    + ")$"
)


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
