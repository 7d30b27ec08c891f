"""Reading and writing stage artifacts as zarr stores.

One store per image and stage, named by a content key (hash of the inputs and the
settings that matter), so a batch run only computes what is new and a prompt change
never touches the masks or embeddings of any image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from ovseg.errors import OvsegError
from ovseg.fileio import atomic_path, read_json, write_json

MANIFEST = "manifest.json"
# A store is complete when its marker ``<key>.done`` exists, written after every file of the
# store (and its preview). One rule for every engine and filesystem: a local run renames a
# finished temp folder into place, a bucket has no rename, so there the files go first and
# the marker last; one listing of a stage's folder tells which keys are done. The marker
# also holds what is not part of the result (seconds, engine), so stores are byte-identical
# whoever wrote them.
DONE_SUFFIX = ".done"


def store_path(folder: Path, key: str) -> Path:
    """Where the store for ``key`` lives in a stage folder."""
    return Path(folder) / f"{key}.zarr"


def is_complete(folder: Path, key: str) -> bool:
    """Whether the store for ``key`` was written to the end (its marker exists)."""
    return (Path(folder) / f"{key}{DONE_SUFFIX}").is_file()


def mark_complete(folder: Path, key: str, record: dict[str, Any] | None = None) -> None:
    """Write the marker, last: from now on the store counts as done."""
    write_json(Path(folder) / f"{key}{DONE_SUFFIX}", {"key": key, **(record or {})})


def write_complete(
    folder: Path, key: str, arrays: dict[str, np.ndarray], attrs: dict[str, Any], record: dict[str, Any] | None = None
) -> None:
    """A store in a local stage folder: renamed into place whole, then its marker."""
    write_arrays(store_path(folder, key), arrays, attrs)
    mark_complete(folder, key, record)


def read_marker(folder: Path, key: str) -> dict[str, Any]:
    path = Path(folder) / f"{key}{DONE_SUFFIX}"
    return read_json(path) if path.is_file() else {}


def write_arrays(path: Path, arrays: dict[str, np.ndarray], attrs: dict[str, Any]) -> None:
    """Write named arrays and JSON attributes into a new zarr store, atomically."""
    with atomic_path(Path(path)) as tmp:
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


def load_manifest(stage_dir: Path) -> dict[str, dict[str, Any]]:
    """The per-image entries a stage wrote last time (image stem -> keys and paths)."""
    path = Path(stage_dir) / MANIFEST
    if not path.is_file():
        raise OvsegError(f"{path} not found: run the earlier stages first (`dvc repro` or `ovseg run`)")
    return read_json(path)["images"]


def save_manifest(stage_dir: Path, entries: dict[str, dict[str, Any]], **extra: Any) -> None:
    write_json(Path(stage_dir) / MANIFEST, {**extra, "images": entries})
