"""Photos in, pictures out: decoding images, writing PNGs, hashing content.

Every artifact is written to a temporary sibling and renamed into place
(:func:`ovseg.storage.locations.atomic_path`), so an interrupted run never leaves a half-written
PNG behind that a later run (or DVC) would mistake for a finished one.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ovseg.errors import UnreadableImageError, one_line
from ovseg.storage.locations import atomic_path, is_url, read_bytes


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


# Pillow refuses images over 2 x Image.MAX_IMAGE_PIXELS (about 179 MP) as possible decompression
# bombs: a 190 KB PNG can claim 40000 x 40000 pixels and ask for 1.6 GB. ovseg keeps that limit
# by default and names the setting that raises it (real panoramas exceed it).
DEFAULT_MAX_IMAGE_PIXELS = 2 * Image.MAX_IMAGE_PIXELS
MIN_IMAGE_SIDE = 8  # smaller is not a photo anything can be found in
_PILLOW_LIMIT = threading.Lock()  # Image.MAX_IMAGE_PIXELS is global: set it aside only while a header is read


def load_image(location: Path | str, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> Image.Image:
    """Read an image (path or fsspec URL) as RGB, honouring EXIF orientation; one line if it is not one.

    The one rule for every image ovseg reads (the stages, the API, the page, evaluation, Ray):
    whatever goes wrong, a missing file, an unreachable URL, bytes that do not decode, a
    decompression bomb, is an :class:`~ovseg.errors.UnreadableImageError` naming the file.
    """
    if not is_url(location) and not Path(location).is_file():
        raise UnreadableImageError(f"image not found: {location}")
    try:
        data = read_bytes(location)
    except FileNotFoundError:
        raise UnreadableImageError(f"image not found: {location}") from None
    except Exception as exc:  # noqa: BLE001 - a filesystem or a server can fail in many ways
        raise UnreadableImageError(f"cannot read {location}: {one_line(exc)}") from None
    return decode_image(data, str(location), max_pixels)


def decode_image(data: bytes, name: str, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> Image.Image:
    """Image bytes as an RGB picture (EXIF orientation applied), or one line naming the file and why not.

    ``max_pixels`` (the ``max_image_pixels`` setting) bounds width x height before any pixel is
    decoded; the header alone is read first.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns about what it could repair; the photo is what counts
            return _decode(data, name, max_pixels)
    except UnreadableImageError:
        raise
    except UnidentifiedImageError:
        raise UnreadableImageError(f"cannot read image {name}: not an image, or a format Pillow cannot read") from None
    except Exception as exc:  # noqa: BLE001 - corrupt files fail inside Pillow in every way there is
        raise UnreadableImageError(f"cannot read image {name}: {one_line(exc)}") from None


# ISO base media files (HEIC/HEIF from phones, AVIF) start with an "ftyp" box naming their brand.
_HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"mif2")
_HEIF_READY = threading.Event()


def _allow_heif(data: bytes) -> None:
    """Teach Pillow HEIC/HEIF (pillow-heif) when a file is one; imported only then, since few photos are.

    AVIF needs nothing: Pillow reads it itself."""
    if _HEIF_READY.is_set() or data[4:8] != b"ftyp" or data[8:12] not in _HEIF_BRANDS:
        return
    import pillow_heif

    pillow_heif.register_heif_opener()
    _HEIF_READY.set()


def _decode(data: bytes, name: str, max_pixels: int) -> Image.Image:
    _allow_heif(data)
    with _PILLOW_LIMIT:
        pillow_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            img = Image.open(io.BytesIO(data))
        finally:
            Image.MAX_IMAGE_PIXELS = pillow_limit
    width, height = img.size
    if max_pixels and width * height > max_pixels:
        raise UnreadableImageError(
            f"cannot read image {name}: {width}x{height} is {width * height:,} pixels, over max_image_pixels "
            f"({max_pixels:,}), the guard against decompression bombs; if the photo is real, allow it with "
            f"--set max_image_pixels={width * height} (params.yaml: max_image_pixels)"
        )
    _check_side(width, height, name)
    with img:
        photo = ImageOps.exif_transpose(img).convert("RGB")
    _check_side(*photo.size, name)  # a HEIF's clean-aperture crop can leave less than its header said
    return photo


def _check_side(width: int, height: int, name: str) -> None:
    if min(width, height) < MIN_IMAGE_SIDE:
        raise UnreadableImageError(
            f"cannot read image {name}: {width}x{height} pixels is too small (at least {MIN_IMAGE_SIDE} a side)"
        )


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
