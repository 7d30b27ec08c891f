"""Atomic file writes, image reading and hashing.

Every artifact is written to a temporary sibling and renamed into place, so an
interrupted run never leaves a half-written PNG, JSON or zarr store behind that a
later run (or DVC) would mistake for a finished one.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ovseg.errors import OvsegError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


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


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically, pretty-printed so people can read it."""
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def mask_image(mask: np.ndarray) -> Image.Image:
    """A boolean mask as the 0/255 grayscale picture every ``mask.png`` is."""
    return Image.fromarray(np.asarray(mask, bool).astype(np.uint8) * 255, mode="L")


def save_png(path: Path, image: Image.Image | np.ndarray) -> None:
    """Save a PNG atomically; bool arrays become 0/255 grayscale masks."""
    if isinstance(image, np.ndarray):
        image = mask_image(image) if image.dtype == bool else Image.fromarray(image)
    with atomic_path(Path(path)) as tmp:
        image.save(tmp, format="PNG")


def png_bytes(image: Image.Image) -> bytes:
    """A picture as PNG bytes: the same bytes ``save_png`` writes, for stores on buckets."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def is_url(location: str | Path) -> bool:
    """``s3://...``, ``gs://...`` (fsspec URLs) rather than a local path."""
    return "://" in str(location) and not str(location).startswith("file://")


def load_image(path: Path | str) -> Image.Image:
    """Read an image as RGB, honouring EXIF orientation; a clear error if it is not an image.

    ``path`` may be an fsspec URL (``s3://bucket/photo.jpg``): the Ray engine's images live there.
    """
    if is_url(path):
        from ovseg.remote import read_bytes  # at call time: remote builds on this module

        try:
            return decode_image(read_bytes(str(path)), str(path))
        except FileNotFoundError:
            raise OvsegError(f"image not found: {path}") from None
    path = Path(path)
    if not path.is_file():
        raise OvsegError(f"image not found: {path}")
    return decode_image(path.read_bytes(), str(path))


def decode_image(data: bytes, name: str) -> Image.Image:
    """Image bytes as an RGB picture (EXIF orientation applied), or one line naming the file."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img = ImageOps.exif_transpose(img)
            return img.convert("RGB")
    except UnidentifiedImageError:
        raise OvsegError(f"cannot read image {name}: not an image, or a format Pillow cannot read") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise OvsegError(f"cannot read image {name}: {exc.__class__.__name__}: {exc}") from None


def list_images(folder: Path) -> list[Path]:
    """All images directly inside ``folder``, sorted, so batch runs are reproducible."""
    folder = Path(folder)
    if folder.is_file():
        return [folder]
    if not folder.is_dir():
        raise OvsegError(f"image folder not found: {folder}")
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not images:
        raise OvsegError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    stems = [p.stem for p in images]
    dupes = sorted({s for s in stems if stems.count(s) > 1})
    if dupes:
        raise OvsegError(f"two images share the name {dupes[0]!r} in {folder}; outputs are keyed by name")
    return images


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def content_key(*parts: Any) -> str:
    """A short stable hash of JSON-serialisable parts: the name of a content-addressed artifact."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def working_image(image: Image.Image, max_side: int) -> Image.Image:
    """Downscale so the longer side is at most ``max_side``: the mask model and CLIP see this image.

    Masks are stored at this resolution (a 4K photo would need gigabytes per mask
    stack otherwise) and upsampled to the photo's size only for the final outputs.
    """
    scale = min(1.0, max_side / max(image.size))
    if scale >= 1.0:
        return image
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)
