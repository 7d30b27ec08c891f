"""Pictures for people: mask overlays, candidate previews, before/after pairs."""

from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageDraw, ImageFont

TITLE_CHARS = 60  # a prompt longer than this is shortened where people read it (titles, tables)
PREVIEW_SIDE = 4096  # pictures for people (before/after, overlays) are at most this on their long side


def shorten(text: str, width: int = TITLE_CHARS) -> str:
    """``text`` as a title: whole when short, else its start and an ellipsis."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def preview(image: Image.Image, side: int = PREVIEW_SIDE) -> Image.Image:
    """A picture people look at, at most ``side`` pixels on its long side (a 200 MP photo's overlay would
    itself be a file that viewers, and Pillow's own bomb guard, refuse)."""
    if max(image.size) <= side:
        return image
    scale = side / max(image.size)
    return image.resize(
        (max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.LANCZOS
    )


def palette(n: int, seed: int = 0) -> list[tuple[int, int, int]]:
    """``n`` well separated, saturated colours (golden-ratio hue steps)."""
    colours = []
    for i in range(n):
        hue = (seed * 0.17 + i * 0.618033988749895) % 1.0
        r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
        colours.append((int(r * 255), int(g * 255), int(b * 255)))
    return colours


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a bool mask to (width, height) with smooth edges, then threshold."""
    if mask.shape[::-1] == tuple(size):
        return mask.astype(bool)
    img = Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.Resampling.BILINEAR)
    return np.asarray(img) >= 128


def _outline(mask: np.ndarray, width: int) -> np.ndarray:
    from scipy import ndimage

    return mask & ~ndimage.binary_erosion(mask, iterations=max(1, width), border_value=0)


def overlay(
    image: Image.Image,
    masks: list[np.ndarray],
    labels: list[str] | None = None,
    title: str | None = None,
    alpha: float = 0.45,
    colours: list[tuple[int, int, int]] | None = None,
) -> Image.Image:
    """The image with each mask tinted in its own colour (or ``colours``: one per mask), outlined, labelled."""
    base = np.asarray(image.convert("RGB")).astype(np.float32)
    out = base.copy()
    line = max(1, round(max(image.size) / 400))
    colours = colours if colours is not None else palette(len(masks))
    for mask, colour in zip(masks, colours, strict=True):
        mask = resize_mask(mask, image.size)
        out[mask] = out[mask] * (1 - alpha) + np.array(colour, np.float32) * alpha
        out[_outline(mask, line)] = colour
    result = Image.fromarray(out.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(result)
    font = ImageFont.load_default(size=max(12, image.height // 40))
    for mask, colour, label in zip(masks, colours, labels or [], strict=False):
        ys, xs = np.nonzero(resize_mask(mask, image.size))
        if len(xs):
            draw.text(
                (int(xs.min()) + 2, int(ys.min()) + 2),
                label,
                fill=colour,
                font=font,
                stroke_width=2,
                stroke_fill=(0, 0, 0),
            )
    if title:  # bottom-left, where it does not cover the mask labels at the boxes' corners
        bottom = image.height - font.size - 10
        draw.text((6, bottom), shorten(title), fill=(255, 255, 255), font=font, stroke_width=2, stroke_fill=(0, 0, 0))
    return result


def label_image(labels: np.ndarray, classes: int) -> Image.Image:
    """A label map as people and tools read it: an indexed PNG (0 black = background, class c in
    :func:`palette`'s colour c - 1), so a viewer shows colours and ``np.asarray`` gives the ids.
    More than 255 classes do not fit a palette: then a 16-bit grayscale PNG of the ids."""
    if classes >= 255:
        return Image.fromarray(labels.astype(np.uint16))
    image = Image.fromarray(labels.astype(np.uint8))  # mode L; putpalette makes it P
    colours = [(0, 0, 0), *palette(classes)]
    image.putpalette([v for colour in colours for v in colour] + [255, 255, 255] * (256 - len(colours)))
    return image


def candidates_preview(image: Image.Image, masks: np.ndarray) -> Image.Image:
    """All candidates at once, smallest on top, so people can see what the mask model proposed."""
    order = np.argsort(-masks.reshape(masks.shape[0], -1).sum(1)) if len(masks) else []
    return overlay(image, [masks[i] for i in order], title=f"{len(masks)} mask candidates", alpha=0.5)


def side_by_side(before: Image.Image, after: Image.Image, labels: tuple[str, str] = ("before", "after")) -> Image.Image:
    """Before and after next to each other with a caption on each, at most :data:`PREVIEW_SIDE` wide."""
    if before.width * 2 > PREVIEW_SIDE:
        before, after = preview(before, PREVIEW_SIDE // 2), preview(after, PREVIEW_SIDE // 2)
    gap = max(4, before.width // 100)
    canvas = Image.new("RGB", (before.width + gap + after.width, max(before.height, after.height)), "white")
    canvas.paste(before, (0, 0))
    canvas.paste(after, (before.width + gap, 0))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=max(12, before.height // 30))
    for x, text in ((6, labels[0]), (before.width + gap + 6, labels[1])):
        draw.text((x, 6), text, fill=(255, 255, 255), font=font, stroke_width=2, stroke_fill=(0, 0, 0))
    return canvas


def with_legend(picture: Image.Image, entries: list[tuple[str, tuple[int, int, int]]]) -> Image.Image:
    """``picture`` with a strip below naming each colour (a label map's classes), one swatch and name each."""
    font = ImageFont.load_default(size=max(12, picture.height // 30))
    swatch, pad = font.size, max(4, font.size // 2)
    x, y, placed = pad, pad, []
    for text, colour in entries:
        width = swatch + pad + int(font.getlength(text)) + 2 * pad
        if x + width > picture.width and x > pad:  # wrap to the next line
            x, y = pad, y + swatch + pad
        placed.append((x, y, text, colour))
        x += width
    rows = y + swatch + pad
    canvas = Image.new("RGB", (picture.width, picture.height + rows), "white")
    canvas.paste(picture.convert("RGB"), (0, 0))
    draw = ImageDraw.Draw(canvas)
    for x, y, text, colour in placed:
        top = picture.height + y
        draw.rectangle((x, top, x + swatch, top + swatch), fill=colour, outline=(0, 0, 0))
        draw.text((x + swatch + pad, top), text, fill=(0, 0, 0), font=font)
    return canvas
