"""The path every edit takes: dilate the selection, cut a square around it, paint, paste back feathered.

SD 2 inpainting works at 512 px, photos do not: we cut a padded square around the
(dilated) mask, resize it to the model's resolution, inpaint, resize back and paste
only the masked, feathered area into the original. Pixels where the paste weight is
zero are copied from the input byte for byte, so everything outside the dilated mask
is untouched, whichever backend painted.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ovseg.config import EditSettings
from ovseg.editing.backend import Painter
from ovseg.errors import OvsegError
from ovseg.media.rle import box_xywh


def dilate(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Grow a mask by a disk of radius ``pixels`` (exact Euclidean distance)."""
    from scipy import ndimage

    if pixels <= 0 or not mask.any():
        return mask.astype(bool)
    return ndimage.distance_transform_edt(~mask) <= pixels


def feather(region: np.ndarray, pixels: int) -> np.ndarray:
    """Paste weights in [0, 1]: a ramp of ``pixels`` inside ``region``, exactly 0 outside it.

    The ramp runs inwards so the soft edge never leaks past the dilated mask.
    """
    from scipy import ndimage

    if pixels <= 0:
        return region.astype(np.float32)
    inside = ndimage.distance_transform_edt(region)
    return np.clip(inside / float(pixels), 0.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class CropBox:
    """A square window (may extend past the image; those pixels are edge-padded)."""

    x0: int
    y0: int
    side: int


def crop_box(box: tuple[int, int, int, int], image_size: tuple[int, int], context: float, min_side: int) -> CropBox:
    """Square around ``box`` (XYWH) with ``context`` margin on each side, kept inside the image if it fits."""
    x, y, w, h = box
    width, height = image_size
    side = max(math.ceil(max(w, h) * (1 + 2 * context)), min_side, 8)
    x0 = round(x + w / 2 - side / 2)
    y0 = round(y + h / 2 - side / 2)
    x0 = min(max(x0, 0), width - side) if side <= width else (width - side) // 2
    y0 = min(max(y0, 0), height - side) if side <= height else (height - side) // 2
    return CropBox(x0, y0, side)


def cut(array: np.ndarray, box: CropBox) -> np.ndarray:
    """The ``box`` window of an (H, W[, C]) array, edge-padded where it leaves the image."""
    height, width = array.shape[:2]
    pad_top, pad_left = max(0, -box.y0), max(0, -box.x0)
    pad_bottom = max(0, box.y0 + box.side - height)
    pad_right = max(0, box.x0 + box.side - width)
    pads = [(pad_top, pad_bottom), (pad_left, pad_right)] + [(0, 0)] * (array.ndim - 2)
    padded = np.pad(array, pads, mode="edge")
    y0, x0 = box.y0 + pad_top, box.x0 + pad_left
    return padded[y0 : y0 + box.side, x0 : x0 + box.side]


def paste(original: np.ndarray, generated_crop: np.ndarray, alpha: np.ndarray, box: CropBox) -> np.ndarray:
    """Blend ``generated_crop`` into ``original`` with per-pixel ``alpha``; alpha 0 keeps bytes exact."""
    height, width = original.shape[:2]
    generated = original.astype(np.float32).copy()
    ys0, xs0 = max(0, box.y0), max(0, box.x0)
    ys1, xs1 = min(height, box.y0 + box.side), min(width, box.x0 + box.side)
    generated[ys0:ys1, xs0:xs1] = generated_crop[ys0 - box.y0 : ys1 - box.y0, xs0 - box.x0 : xs1 - box.x0]
    a = alpha[..., None]
    blended = np.rint(original.astype(np.float32) * (1 - a) + generated * a).clip(0, 255).astype(np.uint8)
    return np.where(a > 0, blended, original)


def edit_image(
    image: Image.Image,
    mask: np.ndarray,
    settings: EditSettings,
    paint: Painter,
    *,
    resize: bool = True,
    min_side: int | None = None,
) -> Image.Image:
    """Inpaint ``mask`` (bool, image resolution) of ``image`` with ``paint``; returns a same-size image.

    ``resize``: paint the crop at ``edit.resolution`` (a model's size) or, when false, at the photo's
    own pixels. ``min_side``: the smallest crop, for context around small holes (default: half of
    ``edit.resolution`` when resizing, else none), never more than the photo's longer side.
    """
    if mask.shape != (image.height, image.width):
        raise OvsegError(f"mask size {mask.shape[::-1]} does not match image size {image.size}")
    if not mask.any():
        return image.copy()
    region = dilate(mask, settings.dilate_px)
    alpha = feather(region, settings.feather_px)
    if min_side is None:
        min_side = settings.resolution // 2 if resize else 8
    min_side = min(min_side, max(image.size))
    box = crop_box(tuple(box_xywh(region)), image.size, settings.context, min_side)
    original = np.asarray(image.convert("RGB"))
    size = (settings.resolution, settings.resolution) if resize else (box.side, box.side)
    crop_image = Image.fromarray(cut(original, box)).resize(size, Image.Resampling.LANCZOS)
    crop_mask = Image.fromarray(cut(region, box).astype(np.uint8) * 255).resize(size, Image.Resampling.BILINEAR)
    crop_mask = crop_mask.point(lambda v: 255 if v > 0 else 0)  # conservative: any touched pixel repaints
    painted = paint(crop_image, crop_mask).convert("RGB").resize((box.side, box.side), Image.Resampling.LANCZOS)
    return Image.fromarray(paste(original, np.asarray(painted), alpha, box))


def fill_at_most(
    image: Image.Image, mask: Image.Image, max_side: int, fill: Callable[[np.ndarray, np.ndarray], np.ndarray]
) -> Image.Image:
    """``fill(rgb, holes) -> rgb`` on a crop scaled down to ``max_side`` when larger, scaled back up after;
    the known pixels come back exactly as they were.

    Why: a learned fill's time grows with the crop's area, while a hole that big gains little detail from
    the extra pixels (the fill is smooth at that scale anyway).
    """
    rgb = np.asarray(image.convert("RGB"))
    holes = np.asarray(mask.convert("L")) > 0
    height, width = holes.shape
    scale = max_side / max(height, width)
    if scale >= 1.0:
        filled = fill(rgb, holes)
    else:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        small = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BOX))
        small_holes = np.asarray(Image.fromarray(holes.astype(np.uint8) * 255).resize(size, Image.Resampling.BOX)) > 0
        painted = Image.fromarray(fill(small, small_holes)).resize((width, height), Image.Resampling.BICUBIC)
        filled = np.asarray(painted)
    return Image.fromarray(np.where(holes[..., None], filled, rgb))
