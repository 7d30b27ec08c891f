"""The cache's layout and its stores: zarr arrays per photo and stage, named by a content key.

One store per image and stage, named by a content key (hash of the inputs and the
settings that matter), so a batch run only computes what is new and a prompt change
never touches the masks or embeddings of any image. This module is the one place that
spells the layout of a stage folder:

| name                      | what                                                        |
| ------------------------- | ----------------------------------------------------------- |
| ``<key>.zarr``            | the store: named arrays plus JSON attributes                |
| ``<key>.done``            | the completion marker, written last (with run timings)     |
| ``<key>.candidates.png``  | the masks stage's picture of every candidate                |
| ``<key>.files/``          | a store of plain files: a video's frames, its tracks' masks  |
| ``manifest.json``         | the stage's latest run: photo -> keys, skipped files, timings |

A store is complete when its marker exists, written after every file of the store (and
its preview). One rule for every engine and filesystem: a local run renames a finished
temp folder into place, a bucket has no rename, so there the files go first and the
marker last; one listing of a stage's folder tells which keys are done. The marker also
holds what is not part of the result (seconds, engine), so stores are byte-identical
whoever wrote them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ovseg.errors import OvsegError
from ovseg.storage.locations import atomic_path

MANIFEST = "manifest.json"
STORE_SUFFIX = ".zarr"
DONE_SUFFIX = ".done"
PREVIEW_SUFFIX = ".candidates.png"
FILES_SUFFIX = ".files"  # a store that is a folder of plain files (JPEG frames, PNG masks) and a JSON index


def store_name(key: str) -> str:
    return f"{key}{STORE_SUFFIX}"


def marker_name(key: str) -> str:
    return f"{key}{DONE_SUFFIX}"


def preview_name(key: str) -> str:
    return f"{key}{PREVIEW_SUFFIX}"


def files_name(key: str) -> str:
    return f"{key}{FILES_SUFFIX}"


def key_of(name: str) -> str | None:
    """The key a stage folder's entry belongs to (its store, marker or preview), or None (manifest, temp)."""
    for suffix in (PREVIEW_SUFFIX, STORE_SUFFIX, FILES_SUFFIX, DONE_SUFFIX):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return None


def write_arrays(path: Path, arrays: dict[str, np.ndarray], attrs: dict[str, Any], clear_stale: bool = False) -> None:
    """Write named arrays and JSON attributes into a new zarr store, atomically (``clear_stale``: see
    :func:`ovseg.storage.locations.atomic_path`)."""
    import zarr

    with atomic_path(Path(path), clear_stale) as tmp:
        root = zarr.open_group(str(tmp), mode="w")
        root.attrs.update(attrs)
        for name, array in arrays.items():
            array = np.ascontiguousarray(array)
            if array.ndim == 3 and array.shape[0] > 0:
                # Masks compress far better chunked one mask at a time; one shard holds them all,
                # so a store is a dozen objects on a bucket, not one per mask.
                dest = root.create_array(
                    name, shape=array.shape, dtype=array.dtype, chunks=(1, *array.shape[1:]), shards=array.shape
                )
            else:
                dest = root.create_array(name, shape=array.shape, dtype=array.dtype, chunks=array.shape or "auto")
            if array.size:
                dest[...] = array


def read_arrays(path: Path, names: list[str] | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    import zarr

    path = Path(path)
    if not path.is_dir():
        raise OvsegError(f"artifact missing: {path} (run the earlier stages first: `dvc repro`)")
    root = zarr.open_group(str(path), mode="r")
    keys = names if names is not None else sorted(root.array_keys())
    return {name: np.asarray(root[name][...]) for name in keys}, dict(root.attrs)


@dataclass
class MaskProposals:
    """SAM 2's candidates for one image, at the working resolution."""

    masks: np.ndarray  # (N, H, W) bool
    boxes: np.ndarray  # (N, 4) float32, XYWH in working pixels
    areas: np.ndarray  # (N,) int64
    predicted_iou: np.ndarray  # (N,) float32
    stability_score: np.ndarray  # (N,) float32

    def __len__(self) -> int:
        return int(self.masks.shape[0])

    @classmethod
    def empty(cls, height: int, width: int) -> MaskProposals:
        """No candidates, for an image of ``height`` x ``width``."""
        return cls(
            masks=np.zeros((0, height, width), bool),
            boxes=np.zeros((0, 4), np.float32),
            areas=np.zeros((0,), np.int64),
            predicted_iou=np.zeros((0,), np.float32),
            stability_score=np.zeros((0,), np.float32),
        )

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "masks": self.masks.astype(bool),
            "boxes": self.boxes.astype(np.float32),
            "areas": self.areas.astype(np.int64),
            "predicted_iou": self.predicted_iou.astype(np.float32),
            "stability_score": self.stability_score.astype(np.float32),
        }

    @classmethod
    def load(cls, path: Path) -> tuple[MaskProposals, dict[str, Any]]:
        arrays, attrs = read_arrays(path)
        return cls(**{k: arrays[k] for k in ("masks", "boxes", "areas", "predicted_iou", "stability_score")}), attrs
