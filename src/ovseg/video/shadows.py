"""The shadow goes with the thing: finding the shadow a removed object casts, so the fill takes it too.

Masks (DAVIS's, the tracker's, a user's) cover the object, not the shadow it casts; removing the
object alone leaves a dark streak that moves through the clip with nothing to cast it. Other
frames show what is under the shadow once the object (and so its shadow) has moved on. Per frame:

1. The **background around the hole** is rebuilt from other frames, each aligned to this one in one
   step (:mod:`ovseg.video.align`), as the per-pixel median of several frames spread in time (at
   half size: shadows are soft and large).
2. A **shadow pixel** is darker than that rebuilt background by a ratio within
   (``darkest``, ``lightest``), keeps its colour (chromaticity within ``chroma``), darkens evenly
   (the ratio varies little around it: the ground's texture stays, scaled; a grey car passing on a
   grey road has its own), and the other frames agree on the background there (not water).
3. **Only regions touching the hole** count (connected components of those pixels that touch it),
   and **only those that travel with it**: found again ``hold`` frames before and after, at about
   the same place relative to the hole. The shadow is cast by the thing removed; another thing's
   shadow that the object passes moves its own way.

What merely touches the object and is dark stays: a parked dark car is dark in the other frames
too, so it is not darker than the background rebuilt from them. A shadow that does not move
(an object standing still through the clip) cannot be told from a dark patch; it stays as well.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ovseg.video.align import FrameAligner
from ovseg.video.flow import sample


@dataclass(frozen=True)
class ShadowSettings:
    """What counts as a cast shadow (docs/videos.md, "Shadows")."""

    darkest: float = 0.2  # a shadow keeps at least this share of the background's brightness
    lightest: float = 0.8  # and at most this share: fainter darkening is left alone
    chroma: float = 0.05  # its chromaticity (r, g over r + g + b) within this of the background's
    agree: float = 0.2  # the other frames' background must agree within this share of its brightness
    reach: float = 1.5  # searched up to this many times the hole's size (the square root of its area) around it
    sources: tuple[int, ...] = (-24, -16, -10, -5, 5, 10, 16, 24)  # frames the background is rebuilt from
    gap_px: int = 16  # (at the search's size) a shadow this close to the hole touches it
    hold: int = 4  # a shadow part must be found again this many frames before and after, where they exist,
    drift: float = 0.5  # within this share of the hole's size (its area's square root) of the same place by it
    even: float = 0.5  # at least this share of a pixel's 7x7 neighbours must darken evenly (a shadow is even)
    scale: float = 0.5  # searched at this share of the frame size


def _half(image: np.ndarray, scale: float, nearest: bool = False) -> np.ndarray:
    import cv2

    height, width = image.shape[:2]
    size = (max(8, round(width * scale)), max(8, round(height * scale)))
    if nearest:
        return cv2.resize(image.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def find_shadows(
    frames: list[np.ndarray], holes: list[np.ndarray], settings: ShadowSettings = ShadowSettings()
) -> list[np.ndarray]:
    """Per frame, the (H, W) bool mask of the shadow the hole's object casts, outside the hole (empty: none)."""
    import cv2

    small_frames = [_half(f, settings.scale) for f in frames]
    small_holes = [_half(h, settings.scale, nearest=True) for h in holes]
    aligner = FrameAligner(small_frames, small_holes, scale=0.5)
    found = [
        _shadow_of(index, small_frames, small_holes, aligner, settings) if hole.any() else np.zeros(hole.shape, bool)
        for index, hole in enumerate(small_holes)
    ]
    found = _moving_with_the_object(found, small_holes, settings)
    shadows = []
    for index, small in enumerate(found):
        full = cv2.resize(small.astype(np.uint8), (holes[index].shape[1], holes[index].shape[0]),
                          interpolation=cv2.INTER_NEAREST) > 0  # fmt: skip
        shadows.append(full & ~holes[index])
    return shadows


def _parts(found: np.ndarray, hole: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """Each connected part of a frame's shadow: its pixels, its centre relative to the hole's, its size."""
    import cv2

    if not found.any():
        return []
    count, labels = cv2.connectedComponents(found.astype(np.uint8), connectivity=8)
    hole_ys, hole_xs = np.nonzero(hole)
    centre = np.array([hole_xs.mean(), hole_ys.mean()])
    parts = []
    for label in range(1, count):
        ys, xs = np.nonzero(labels == label)
        parts.append((labels == label, np.array([xs.mean(), ys.mean()]) - centre, len(xs)))
    return parts


def _moving_with_the_object(
    found: list[np.ndarray], holes: list[np.ndarray], settings: ShadowSettings
) -> list[np.ndarray]:
    """Keep a part of frame t's shadow only if frames ``t - hold`` and ``t + hold`` (those that exist) have one in
    about the same place relative to the hole, of a like size (within 4x: shadows are found in pieces): the
    object's own shadow travels with it, while another thing's shadow that the object passes (a car's, the
    dog's) moves its own way and is left alone."""
    parts = [_parts(f, h) for f, h in zip(found, holes, strict=True)]
    kept = []
    for index, (mine, hole) in enumerate(zip(parts, holes, strict=True)):
        keep = np.zeros(hole.shape, bool)
        tolerance = settings.drift * np.sqrt(max(1, int(hole.sum())))
        others = [parts[i] for i in (index - settings.hold, index + settings.hold) if 0 <= i < len(parts)]
        for pixels, offset, size in mine:
            if all(any(np.hypot(*(offset - o)) <= tolerance and 0.25 <= size / s <= 4 for _, o, s in other)
                   for other in others):  # fmt: skip
                keep |= pixels
        kept.append(keep)
    return kept


def _even(ratio: np.ndarray, where: np.ndarray, ys: np.ndarray, xs: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """At each point, the share of its 7x7 neighbours among ``where`` whose darkening ratio is even (its log within
    ``0.08`` of its 3x3 neighbours' mean): a shadow darkens the ground evenly (its texture stays, scaled), an
    object passing by (a grey car on a grey road) has its own texture, so its ratio to the ground jumps from
    pixel to pixel. A share, not a spread: the shadow's soft edge does not count against its inside."""
    import cv2

    known = np.zeros(shape, np.float32)
    values = np.zeros(shape, np.float32)
    known[ys[where], xs[where]] = 1
    values[ys[where], xs[where]] = np.log(np.maximum(ratio[where], 1e-3))
    near = np.maximum(cv2.blur(known, (3, 3)), 1e-6)
    steady = (np.abs(values - cv2.blur(values, (3, 3)) / near) < 0.08) & (known > 0)
    share = cv2.blur(steady.astype(np.float32), (7, 7)) / np.maximum(cv2.blur(known, (7, 7)), 1e-6)
    return share[ys, xs]


def _median(values: np.ndarray, counted: np.ndarray) -> np.ndarray:
    """The median over axis 0 of ``values`` whose missing entries are nan (``counted`` per point are not): nans
    sort last, so the median sits at the middle of the first ``counted``. Several times quicker than nanmedian."""
    ordered = np.sort(values, axis=0)
    low = np.clip((counted - 1) // 2, 0, len(values) - 1)
    high = np.clip(counted // 2, 0, len(values) - 1)
    shape = (1, -1, *([1] * (values.ndim - 2)))
    return (
        np.take_along_axis(ordered, low.reshape(shape), 0)[0] + np.take_along_axis(ordered, high.reshape(shape), 0)[0]
    ) / 2


def _shadow_of(
    index: int, frames: list[np.ndarray], holes: list[np.ndarray], aligner: FrameAligner, settings: ShadowSettings
) -> np.ndarray:
    import cv2

    hole = holes[index]
    reach = int(np.clip(settings.reach * np.sqrt(hole.sum()), 4, max(hole.shape)))
    near = cv2.distanceTransform((~hole).astype(np.uint8), cv2.DIST_L2, 3) <= reach  # a big dilation, cheaply
    ys, xs = np.nonzero(near & ~hole)
    found = np.zeros(hole.shape, bool)
    if not len(ys):
        return found
    height, width = hole.shape
    seen = []
    for step in settings.sources:
        source = index + step
        if not 0 <= source < len(frames):
            continue
        where = aligner.align(index, source, ys, xs, margin=reach + 4, flow=False)  # flow would follow the shadow
        inside = (where.xs >= 0) & (where.xs <= width - 1) & (where.ys >= 0) & (where.ys <= height - 1)
        covered = sample(holes[source].astype(np.uint8), where.xs, where.ys, nearest=True) > 0
        colour = sample(frames[source].astype(np.float32), where.xs, where.ys)
        seen.append(np.where((inside & ~covered)[:, None], colour, np.nan))
    if len(seen) < 2:
        return found
    stack = np.stack(seen)  # (S, N, 3)
    counted = np.isfinite(stack[..., 0]).sum(0)
    with np.errstate(all="ignore"):
        background = _median(stack, counted)
        brightness = background.sum(-1)
        spread = _median(np.abs(stack.sum(-1) - brightness), counted) / np.maximum(brightness, 1)
        here = frames[index][ys, xs].astype(np.float32)
        ratio = here.sum(-1) / np.maximum(brightness, 1)
        chroma = np.abs(here[:, :2] / np.maximum(here.sum(-1, keepdims=True), 1)
                        - background[:, :2] / np.maximum(brightness[:, None], 1)).max(-1)  # fmt: skip
    shadow = (counted >= 2) & (brightness > 60) & (ratio > settings.darkest) & (ratio < settings.lightest)
    shadow &= (chroma < settings.chroma) & (spread < settings.agree)
    # A shadow scales the ground; a thing replaces it.
    shadow &= _even(ratio, shadow, ys, xs, hole.shape) > settings.even
    found[ys[shadow], xs[shadow]] = True
    # Dark in every frame (a parked dark car): never taken, not even by the margin a found shadow gets.
    dark = np.zeros(hole.shape, bool)
    if shadow.any():
        usual = float(np.median(brightness[shadow]))
        dark[ys, xs] = (counted >= 2) & (ratio >= 0.85) & (brightness < 0.5 * usual)
    small, large = np.ones((3, 3), np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
    found = cv2.morphologyEx(found.astype(np.uint8), cv2.MORPH_OPEN, small)  # lone pixels: noise
    found = cv2.morphologyEx(found, cv2.MORPH_CLOSE, large) & (~hole).astype(np.uint8)  # a shadow's gaps: texture
    # Next to the hole the other frames often show no background either (the object was there too): a shadow
    # part within ``gap`` of the hole counts as touching it, and the gap is bridged.
    gap = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * settings.gap_px + 1,) * 2)
    count, labels = cv2.connectedComponents(found, connectivity=8)
    touching = np.unique(labels[cv2.dilate(hole.astype(np.uint8), gap) > 0])
    keep = np.isin(labels, touching[touching > 0]).astype(np.uint8)
    if not keep.any():
        return keep > 0
    bridged = cv2.morphologyEx(keep | hole.astype(np.uint8), cv2.MORPH_CLOSE, gap) & cv2.dilate(keep, gap)
    return (cv2.dilate(keep | bridged, small) > 0) & ~hole & ~dark
