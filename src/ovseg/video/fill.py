"""Filling a hole through time: each frame's hole gets the background other frames saw; the rest is painted once.

What FGVC, E2FGVI and ProPainter do first, without learned weights (their learned parts are
flow completion and hallucination; here flow is continued smoothly and only what no frame sees is
left to an image backend):

1. **The shadow too** (``shadows``): each hole grows by the shadow its object casts
   (:mod:`ovseg.video.shadows`), in every frame, so no frame gives the shadow back to another.
2. **Carrying** (a :class:`~ovseg.video.carry.Carrier`): ``direct`` (the default) aligns each source
   frame up to ``window`` away to the frame being filled in one step (camera, then flow,
   :mod:`ovseg.video.align`) and takes a robust mean of the ``keep`` best sources per pixel;
   ``chained`` follows each pixel frame by frame along completed neighbour flows (its error
   compounds: kept for the benchmark).
3. **What no frame saw**: once the carried pixels are in place, the frame with most such pixels is
   filled by the image backend (``edit.backend``: LaMa or MI-GAN where their weights are, FSR
   otherwise), and that fill then counts as seen for the other frames, so the invented part is
   invented once and carried, not painted anew per frame (no flicker). ``rounds`` times; whatever
   is left is filled per frame.
4. **Smoothing through time**: each frame's fill is blended with its neighbours' fills carried to it
   (forward, then backward, weight ``smooth`` on its own; what other frames saw only with what other
   frames saw), so independent errors average out and the fill changes between frames as the scene does.
5. **Seams**: the fill is blended into the frame over ``feather_px`` inside the hole; pixels
   outside the (grown) holes are never changed.

A model-layer module: frames and holes in, filled frames out.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from ovseg.video.carry import Carrier, ChainedCarrier, DirectCarrier
from ovseg.video.flow import sample
from ovseg.video.shadows import find_shadows

ImageFill = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (H, W, 3) uint8 frame, (H, W) bool hole -> filled frame


@dataclass(frozen=True)
class TemporalFillSettings:
    """How far and how carefully pixels are carried (docs/videos.md, "Remove from a video")."""

    window: int = 24  # frames each way colours are taken from
    flow_scale: float = 0.5
    consistency_px: float = 2.0  # chained: forward and backward flow must agree this well (px at full size)
    rounds: int = 3  # keyframes filled by the image backend and carried
    smooth: float = 0.3  # each frame's own fill keeps this weight against its neighbours' carried to it (1: off)
    feather_px: int = 2
    align: str = "direct"  # direct: each source aligned to the frame in one step | chained: frame by frame
    keep: int = 3  # direct: the best this many sources per pixel are averaged
    shadows: bool = True  # the hole grows by the shadow its object casts (:mod:`ovseg.video.shadows`)

    @classmethod
    def of(cls, video) -> TemporalFillSettings:
        """From the run's ``video`` settings (:class:`ovseg.config.VideoSettings`)."""
        return cls(window=video.fill_window, flow_scale=video.flow_scale, consistency_px=video.fill_consistency,
                   align=video.fill_align, keep=video.fill_sources, shadows=video.shadows)  # fmt: skip


@dataclass
class FillStats:
    """One frame's fill: hole pixels, the share carried from other frames, the share from the image backend."""

    frame: int
    hole_px: int  # with the shadow
    from_frames: float
    from_image: float
    seconds: float
    shadow_px: int = 0  # pixels the shadow step added to the hole


class TemporalFiller:
    """Fills the holes of a clip's frames; :meth:`run` yields each frame filled, in order, with its stats."""

    def __init__(
        self,
        frames: list[np.ndarray],
        holes: list[np.ndarray],
        image_fill: ImageFill,
        settings: TemporalFillSettings = TemporalFillSettings(),
    ) -> None:
        if len(frames) != len(holes):
            raise ValueError(f"{len(frames)} frames but {len(holes)} holes")
        self.frames, self.image_fill, self.settings = frames, image_fill, settings
        self.shape = frames[0].shape[:2]
        self.shadows = find_shadows(frames, holes) if settings.shadows else [np.zeros(self.shape, bool)] * len(holes)
        self.holes = [hole | shadow for hole, shadow in zip(holes, self.shadows, strict=True)]
        self.seen = [np.zeros(self.shape, bool) for _ in frames]  # hole pixels that hold a fill already
        self.sources = list(frames)  # what colours are taken from: a keyframe's filled copy replaces it
        self.invented = [np.zeros(self.shape, bool) for _ in frames]  # hole pixels no frame saw (painted)
        self.carrier: Carrier = (DirectCarrier(self, keep=settings.keep) if settings.align == "direct"
                                 else ChainedCarrier(self))  # fmt: skip

    def _fill_from_frames(
        self, frame: int, points: tuple[np.ndarray, np.ndarray], only: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Colours for the points from the frames that saw them; and which points got one."""
        ys, xs = points
        return self.carrier.colours(frame, ys, xs, only)

    # --- the whole clip --------------------------------------------------------------------

    def run(self) -> Iterator[tuple[int, np.ndarray, FillStats]]:
        started = time.perf_counter()
        count = len(self.frames)
        filled = [f.astype(np.float32).copy() for f in self.frames]
        from_frames = [0] * count
        from_image = [0] * count
        todo = [h.copy() for h in self.holes]  # hole pixels without a colour yet
        for frame in range(count):
            if todo[frame].any():
                colour, got = self._fill_from_frames(frame, np.nonzero(todo[frame]))
                ys, xs = np.nonzero(todo[frame])
                filled[frame][ys[got], xs[got]] = colour[got]
                todo[frame][ys[got], xs[got]] = False
                from_frames[frame] += int(got.sum())
        for _ in range(self.settings.rounds):
            left = [int(t.sum()) for t in todo]
            if not any(left):
                break
            key = int(np.argmax(left))  # the frame missing the most: invented once, then carried
            painted = self.image_fill(np.clip(filled[key], 0, 255).astype(np.uint8), todo[key]).astype(np.float32)
            filled[key][todo[key]] = painted[todo[key]]
            from_image[key] += left[key]
            self.invented[key] |= todo[key]
            self.seen[key] = self.holes[key].copy()
            self.sources[key] = np.clip(filled[key], 0, 255).astype(np.uint8)  # its fill is a source from now on
            todo[key][:] = False
            for frame in range(count):
                if todo[frame].any() and abs(frame - key) <= self.settings.window:
                    colour, got = self._fill_from_frames(frame, np.nonzero(todo[frame]), only=key)
                    ys, xs = np.nonzero(todo[frame])
                    filled[frame][ys[got], xs[got]] = colour[got]
                    todo[frame][ys[got], xs[got]] = False
                    from_image[frame] += int(got.sum())  # carried, but first invented on the keyframe
                    self.invented[frame][ys[got], xs[got]] = True
        for frame in range(count):
            if todo[frame].any():  # nothing carried it here: the image backend, on this frame alone
                painted = self.image_fill(np.clip(filled[frame], 0, 255).astype(np.uint8), todo[frame])
                filled[frame][todo[frame]] = painted[todo[frame]].astype(np.float32)
                from_image[frame] += int(todo[frame].sum())
                self.invented[frame] |= todo[frame]
        if self.settings.smooth < 1.0:
            self._smooth(filled)
        seconds = (time.perf_counter() - started) / max(1, count)
        for frame in range(count):
            hole = int(self.holes[frame].sum())
            stats = FillStats(
                frame,
                hole,
                round(from_frames[frame] / hole, 4) if hole else 0.0,
                round(from_image[frame] / hole, 4) if hole else 0.0,
                round(seconds, 4),
                int(self.shadows[frame].sum()),
            )
            yield frame, self._blend(frame, filled[frame]), stats

    def _smooth(self, filled: list[np.ndarray]) -> None:
        """Blend each frame's hole with its neighbour's fill carried to it, forward then backward (in place)."""
        height, width = self.shape
        weight = self.settings.smooth
        for step in (+1, -1):
            order = range(1, len(filled)) if step == 1 else range(len(filled) - 2, -1, -1)
            for frame in order:
                ys, xs = np.nonzero(self.holes[frame])
                if not len(xs):
                    continue
                nx, ny = self.carrier.positions(frame, frame - step, ys, xs)
                ok = (nx >= 0) & (nx <= width - 1) & (ny >= 0) & (ny <= height - 1)
                # What other frames saw is not blended with what the neighbour invented there, nor the reverse.
                ok &= (sample(self.invented[frame - step].astype(np.uint8), nx, ny, nearest=True) > 0) == (
                    self.invented[frame][ys, xs]
                )
                carried = sample(filled[frame - step], nx[ok], ny[ok])
                filled[frame][ys[ok], xs[ok]] = weight * filled[frame][ys[ok], xs[ok]] + (1 - weight) * carried

    def _blend(self, frame: int, filled: np.ndarray) -> np.ndarray:
        return blend(self.frames[frame], filled, self.holes[frame], self.settings.feather_px)


def blend(original: np.ndarray, filled: np.ndarray, hole: np.ndarray, feather_px: int) -> np.ndarray:
    """The fill inside the hole, feathered over ``feather_px`` at its edge; the frame untouched outside it."""
    from scipy import ndimage

    if not hole.any():
        return original
    if feather_px > 0:
        weight = np.clip(ndimage.distance_transform_edt(hole) / (feather_px + 1), 0, 1)
    else:
        weight = hole.astype(np.float32)
    out = original.astype(np.float32) * (1 - weight[..., None]) + filled * weight[..., None]
    out[~hole] = original[~hole]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
