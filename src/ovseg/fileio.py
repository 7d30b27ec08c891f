"""Photos in, pictures out: decoding images, writing PNGs, hashing content.

Every artifact is written to a temporary sibling and renamed into place
(:func:`ovseg.locations.atomic_path`), so an interrupted run never leaves a half-written
PNG behind that a later run (or DVC) would mistake for a finished one.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ovseg.errors import UnreadableImageError
from ovseg.locations import atomic_path, is_url, read_bytes


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


def load_image(location: Path | str) -> Image.Image:
    """Read an image (path or fsspec URL) as RGB, honouring EXIF orientation; one line if it is not one."""
    if not is_url(location) and not Path(location).is_file():
        raise UnreadableImageError(f"image not found: {location}")
    try:
        data = read_bytes(location)
    except FileNotFoundError:
        raise UnreadableImageError(f"image not found: {location}") from None
    except OSError as exc:
        raise UnreadableImageError(f"cannot read {location}: {exc}") from None
    return decode_image(data, str(location))


def decode_image(data: bytes, name: str) -> Image.Image:
    """Image bytes as an RGB picture (EXIF orientation applied), or one line naming the file."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img = ImageOps.exif_transpose(img)
            return img.convert("RGB")
    except UnidentifiedImageError:
        raise UnreadableImageError(f"cannot read image {name}: not an image, or a format Pillow cannot read") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise UnreadableImageError(f"cannot read image {name}: {exc.__class__.__name__}: {exc}") from None


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


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
