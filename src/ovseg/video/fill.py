"""Filling a hole through time: each frame's hole gets the background other frames saw, carried along optical flow.

What FGVC, E2FGVI and ProPainter do first, without learned weights (their learned parts are
flow completion and hallucination; here flow is completed by smooth interpolation and only what
no frame sees is left to an image backend):

1. **Flows** between neighbouring frames, both ways (OpenCV DIS), at ``flow_scale`` of the size.
2. **Completion**: inside each frame's hole the flow belongs to the thing being removed, so it
   is replaced by a smooth continuation of the flow around the hole (push-pull interpolation):
   the background's motion, as if the thing were not there.
3. **Carrying**: each hole pixel is followed frame by frame along the completed flows, forward
   and backward, up to ``window`` frames; the first frame where it lands outside that frame's hole,
   with forward and backward flow agreeing within ``consistency_px``, gives its colour. Of the
   two directions the nearer in time wins (a tie averages them).
4. **What no frame saw**: the frame with most such pixels is filled by the image backend (FSR on
   the ``cpu`` preset), and that fill then counts as seen for the other frames, so the invented
   part is invented once and carried, not painted anew per frame (no flicker). ``rounds`` times;
   whatever is left is filled per frame.
5. **Smoothing through time**: each frame's fill is blended with its neighbours' fills carried to it
   (forward, then backward, weight ``smooth`` on its own), so independent errors average out and
   the fill changes between frames as the scene does (measured: +1.0-1.4 dB, 15 % less flicker).
6. **Seams**: the fill is blended into the frame over ``feather_px`` inside the hole; pixels
   outside the (dilated) holes are never changed.

A model-layer module: frames and holes in, filled frames out.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from ovseg.video.flow import gray

ImageFill = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (H, W, 3) uint8 frame, (H, W) bool hole -> filled frame


@dataclass(frozen=True)
class TemporalFillSettings:
    """How far and how carefully pixels are carried (docs/videos.md, "Remove from a video")."""

    window: int = 12  # frames each way a hole pixel is followed
    flow_scale: float = 0.5
    consistency_px: float = 2.0  # forward and backward flow must agree this well (px at full size)
    rounds: int = 3  # keyframes filled by the image backend and carried
    smooth: float = 0.3  # each frame's own fill keeps this weight against its neighbours' carried to it (1: off)
    feather_px: int = 2


@dataclass
class FillStats:
    """One frame's fill: hole pixels, the share carried from other frames, the share from the image backend."""

    frame: int
    hole_px: int
    from_frames: float
    from_image: float
    seconds: float


def _flow(source: np.ndarray, target: np.ndarray, scale: float) -> np.ndarray:
    """For each pixel of ``source`` (gray, its hole already smoothed over), its displacement to ``target``, at
    ``scale`` of the size (and in its pixels)."""
    import cv2

    height, width = source.shape
    size = (max(8, round(width * scale)), max(8, round(height * scale)))
    small_source = cv2.resize(source, size, interpolation=cv2.INTER_AREA)
    small_target = cv2.resize(target, size, interpolation=cv2.INTER_AREA)
    return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(small_source, small_target, None)


def _smoothed_over(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """A gray frame with its hole filled from around it, so the thing being removed does not pull the flow
    of the background near it (the hole's flow is replaced afterwards anyway)."""
    import cv2

    if not hole.any():
        return image
    return cv2.inpaint(image, hole.astype(np.uint8), 3, cv2.INPAINT_TELEA)


def _camera_flow(flow: np.ndarray, hole: np.ndarray) -> np.ndarray | None:
    """The flow a homography fitted (RANSAC) to the flow around the hole gives everywhere: the camera's motion
    over a far scene, which holds inside the hole too. None when the background does not fit one."""
    import cv2

    height, width = hole.shape
    ys, xs = np.mgrid[0:height:4, 0:width:4]
    keep = ~hole[ys, xs]
    if keep.sum() < 50:
        return None
    source = np.stack([xs[keep], ys[keep]], -1).astype(np.float32)
    target = source + flow[ys[keep], xs[keep]]
    matrix, inliers = cv2.findHomography(source, target, cv2.RANSAC, 1.0)
    if matrix is None or inliers.mean() < 0.5:
        return None
    grid = np.stack(np.meshgrid(np.arange(width), np.arange(height)), -1).astype(np.float32).reshape(-1, 1, 2)
    moved = cv2.perspectiveTransform(grid, matrix).reshape(height, width, 2)
    return (moved - grid.reshape(height, width, 2)).astype(np.float32)


def _complete(flow: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """The flow with its values inside ``hole`` (at the flow's size) replaced by the background's motion: the
    camera's (:func:`_camera_flow`) plus a smooth fill of what differs from it around the hole.

    Push-pull: the known values and their weights are averaged down a pyramid until every cell has
    some, then each level's holes take the coarser level's values on the way back up: a smooth
    continuation of the surroundings, exact outside the hole, in a few resizes.
    """
    if not hole.any():
        return flow
    if hole.all():
        return np.zeros_like(flow)
    camera = _camera_flow(flow, hole)
    if camera is None:
        return _push_pull(flow, hole)
    return np.where(hole[..., None], camera + _push_pull(flow - camera, hole), flow).astype(np.float32)


def _push_pull(flow: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """``flow`` with the ``hole`` filled smoothly from around it (push-pull, Gortler et al. 1996)."""
    import cv2

    weight = (~hole).astype(np.float32)
    levels = [(flow * weight[..., None], weight)]
    while levels[-1][1].min() <= 0 and min(levels[-1][1].shape) > 1:
        values, weights = levels[-1]
        size = (max(1, weights.shape[1] // 2), max(1, weights.shape[0] // 2))
        levels.append((cv2.resize(values, size, interpolation=cv2.INTER_AREA),
                       cv2.resize(weights, size, interpolation=cv2.INTER_AREA)))  # fmt: skip
    values, weights = levels[-1]
    filled = values / np.maximum(weights, 1e-6)[..., None]
    for values, weights in reversed(levels[:-1]):
        coarse = cv2.resize(filled, (weights.shape[1], weights.shape[0]), interpolation=cv2.INTER_LINEAR)
        known = np.clip(weights, 0, 1)[..., None]
        filled = known * (values / np.maximum(weights, 1e-6)[..., None]) + (1 - known) * coarse
    return np.where(hole[..., None], filled, flow).astype(np.float32)


def _sample(values: np.ndarray, xs: np.ndarray, ys: np.ndarray, nearest: bool = False) -> np.ndarray:
    """``values`` (h, w[, c]) at float positions (bilinear; nearest for masks), out-of-range read as 0."""
    import cv2

    count = len(xs)
    if count == 0:
        return np.zeros((0, *values.shape[2:]), values.dtype)
    mode = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    width = 4096  # remap's maps are images: lay the points out in rows (a side must stay under 32767)
    rows = -(-count // width)
    map_x = np.zeros(rows * width, np.float32)
    map_y = np.zeros(rows * width, np.float32)
    map_x[:count], map_y[:count] = xs, ys
    source = np.ascontiguousarray(values)
    out = cv2.remap(source, map_x.reshape(rows, width), map_y.reshape(rows, width), mode,
                    borderMode=cv2.BORDER_CONSTANT, borderValue=0)  # fmt: skip
    return out.reshape(rows * width, *values.shape[2:])[:count]


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
        self.frames, self.holes, self.image_fill, self.settings = frames, holes, image_fill, settings
        self.shape = frames[0].shape[:2]
        self._flows: dict[tuple[int, int], np.ndarray] = {}
        self._grays = [_smoothed_over(gray(f), h) for f, h in zip(frames, holes, strict=True)]
        self.seen = [np.zeros(self.shape, bool) for _ in frames]  # hole pixels that hold a fill already
        self.sources = list(frames)  # what colours are taken from: a keyframe's filled copy replaces it

    # --- flows ---------------------------------------------------------------------------

    def _small_hole(self, index: int) -> np.ndarray:
        import cv2

        height, width = self.shape
        scale = self.settings.flow_scale
        size = (max(8, round(width * scale)), max(8, round(height * scale)))
        small = cv2.resize(self.holes[index].astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
        return cv2.dilate(small.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0

    def flow(self, source: int, target: int) -> np.ndarray:
        """Completed flow from frame ``source`` to its neighbour ``target`` (at the flow's size), computed once."""
        key = (source, target)
        if key not in self._flows:
            raw = _flow(self._grays[source], self._grays[target], self.settings.flow_scale)
            self._flows[key] = _complete(raw, self._small_hole(source))
        return self._flows[key]

    def _displacement(self, source: int, target: int, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """(N, 2) full-size displacement of the points (xs, ys) of ``source`` to ``target``."""
        scale = self.settings.flow_scale
        flow = self.flow(source, target)
        return _sample(flow, xs * scale, ys * scale) / scale

    # --- carrying ------------------------------------------------------------------------

    def _carry(self, frame: int, xs: np.ndarray, ys: np.ndarray, step: int) -> tuple[np.ndarray, np.ndarray]:
        """Follow hole points of ``frame`` ``step``-wise; (colour (N, 3), frames travelled (N,), inf: not found)."""
        settings = self.settings
        count = len(xs)
        colour = np.zeros((count, 3), np.float32)
        distance = np.full(count, np.inf)
        alive = np.ones(count, bool)
        px, py = xs.astype(np.float32).copy(), ys.astype(np.float32).copy()
        height, width = self.shape
        for k in range(1, settings.window + 1):
            source, target = frame + step * (k - 1), frame + step * k
            if not 0 <= target < len(self.frames) or not alive.any():
                break
            live = np.flatnonzero(alive)
            forward = self._displacement(source, target, px[live], py[live])
            nx, ny = px[live] + forward[:, 0], py[live] + forward[:, 1]
            back = self._displacement(target, source, nx, ny)
            error = np.hypot(forward[:, 0] + back[:, 0], forward[:, 1] + back[:, 1])
            inside = (nx >= 0) & (nx <= width - 1) & (ny >= 0) & (ny <= height - 1)
            covered = self.holes[target] & ~self.seen[target]
            blocked = _sample(covered.astype(np.uint8), nx, ny, nearest=True) > 0
            good = inside & ~blocked & (error <= settings.consistency_px)
            found = live[good]
            colour[found] = _sample(self.sources[target].astype(np.float32), nx[good], ny[good])
            distance[found] = k
            alive[found] = False
            alive[live[~inside]] = False  # left the frame: no later frame shows it either
            px[live], py[live] = nx, ny
        return colour, distance

    def _fill_from_frames(self, frame: int, points: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Colours for the points from the nearest frames that saw them; and which points got one."""
        ys, xs = points
        forward, ahead = self._carry(frame, xs.astype(np.float32), ys.astype(np.float32), +1)
        backward, behind = self._carry(frame, xs.astype(np.float32), ys.astype(np.float32), -1)
        got = np.isfinite(ahead) | np.isfinite(behind)
        colour = np.where((ahead < behind)[:, None], forward, backward)
        tie = np.isfinite(ahead) & (ahead == behind)
        colour[tie] = (forward[tie] + backward[tie]) / 2
        return colour, got

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
            self.seen[key] = self.holes[key].copy()
            self.sources[key] = np.clip(filled[key], 0, 255).astype(np.uint8)  # its fill is a source from now on
            todo[key][:] = False
            for frame in range(count):
                if todo[frame].any() and abs(frame - key) <= self.settings.window:
                    colour, got = self._fill_from_frames(frame, np.nonzero(todo[frame]))
                    ys, xs = np.nonzero(todo[frame])
                    filled[frame][ys[got], xs[got]] = colour[got]
                    todo[frame][ys[got], xs[got]] = False
                    from_image[frame] += int(got.sum())  # carried, but first invented on the keyframe
        for frame in range(count):
            if todo[frame].any():  # nothing carried it here: the image backend, on this frame alone
                painted = self.image_fill(np.clip(filled[frame], 0, 255).astype(np.uint8), todo[frame])
                filled[frame][todo[frame]] = painted[todo[frame]].astype(np.float32)
                from_image[frame] += int(todo[frame].sum())
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
                move = self._displacement(frame, frame - step, xs.astype(np.float32), ys.astype(np.float32))
                nx, ny = xs + move[:, 0], ys + move[:, 1]
                ok = (nx >= 0) & (nx <= width - 1) & (ny >= 0) & (ny <= height - 1)
                carried = _sample(filled[frame - step], nx[ok], ny[ok])
                filled[frame][ys[ok], xs[ok]] = weight * filled[frame][ys[ok], xs[ok]] + (1 - weight) * carried

    def _blend(self, frame: int, filled: np.ndarray) -> np.ndarray:
        """The fill inside the hole, feathered over ``feather_px`` at its edge; the frame untouched outside it."""
        from scipy import ndimage

        hole = self.holes[frame]
        original = self.frames[frame]
        if not hole.any():
            return original
        if self.settings.feather_px > 0:
            weight = np.clip(ndimage.distance_transform_edt(hole) / (self.settings.feather_px + 1), 0, 1)
        else:
            weight = hole.astype(np.float32)
        out = original.astype(np.float32) * (1 - weight[..., None]) + filled * weight[..., None]
        out[~hole] = original[~hole]
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
