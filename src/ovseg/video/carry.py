"""Carrying background into a frame's hole from the frames that saw it: two ways, one small interface.

A :class:`Carrier` answers, for hole points of one frame, the colours other frames saw there (and
which points got one), and where those points lie in a neighbour (for smoothing through time).
:class:`~ovseg.video.fill.TemporalFiller` asks it; which one is ``video.fill_align``:

- ``direct`` (:class:`DirectCarrier`, the default): every source frame in the window aligned to the
  target in one step (:mod:`ovseg.video.align`: the camera's motion, then flow), a robust mean of
  the best few sources per pixel.
- ``chained`` (:class:`ChainedCarrier`): each hole pixel followed frame by frame along completed
  neighbour flows (FGVC's scheme without its learned parts); kept as the benchmark's reference,
  since its error compounds along the chain (measured in docs/benchmarks.md).

Both read ``seen`` (hole pixels of a frame that hold a fill already: a painted keyframe) and
``sources`` (what colours are taken from) from the filler, which updates them in place.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from typing import Any, Protocol

import numpy as np

from ovseg.video.align import Alignment, FrameAligner, push_pull, smoothed_over
from ovseg.video.flow import gray, sample

Filler = Any  # the TemporalFiller asking (frames, holes, settings, seen, sources): typed loosely, it imports us


class Carrier(Protocol):
    def colours(
        self, frame: int, ys: np.ndarray, xs: np.ndarray, only: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3) float32 colours for the hole points (ys, xs) of ``frame``, and (N,) which points got one.
        ``only``: the one frame that changed since the points were last asked for (a painted keyframe), a hint."""
        ...

    def positions(self, frame: int, other: int, ys: np.ndarray, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where the points of ``frame`` lie in the neighbouring frame ``other`` (float xs, ys)."""
        ...


OUTLIER = 45.0  # a candidate colour this far (summed over R, G, B) from its point's median is dropped
ERROR_SCALE = 8.0  # a candidate whose alignment error is this much above the best one's weighs 1/e as much


def offsets(window: int) -> list[int]:
    """Source frames' distances to try, nearest first, thinning out with distance (1, 2, 3, 4, 5, 7, 9, 12, ...):
    far frames matter for what near ones do not show yet, and neighbours of a far frame show nearly the same."""
    steps, step = [], 1
    while step <= window:
        steps.append(step)
        step = max(step + 1, round(step * 1.3))
    return steps


class DirectCarrier:
    """Each source aligned to the target in one step; per hole pixel, the ``keep`` best sources averaged.

    A source's candidate for a pixel counts when it lands inside the source frame and outside its
    still-empty hole. It is ranked by the alignment's error around the hole there plus
    ``per_frame`` for each frame of distance (near frames show the scene as it is now); the best
    ``keep`` are averaged, weighted down as their rank's error grows, so one misaligned source
    cannot smear, and independent errors of the others average out (less flicker too).
    """

    def __init__(self, filler: Filler, keep: int = 3, per_frame: float = 0.15, cache: int = 48) -> None:
        self.filler = filler
        self.keep, self.per_frame = keep, per_frame
        self.aligner = FrameAligner(filler.frames, filler.holes, filler.settings.flow_scale)
        self._alignments: OrderedDict[tuple[int, int], tuple[Alignment, np.ndarray]] = OrderedDict()
        self._cache = cache

    def _alignment(self, frame: int, source: int, ys: np.ndarray, xs: np.ndarray) -> Alignment:
        """The alignment of ``frame``'s whole hole to ``source`` (kept for the latest pairs), at the points asked."""
        key = (frame, source)
        if key not in self._alignments:
            hole_ys, hole_xs = np.nonzero(self.filler.holes[frame])
            index = np.full(self.filler.holes[frame].shape, -1, np.int64)
            index[hole_ys, hole_xs] = np.arange(len(hole_ys))
            self._alignments[key] = (self.aligner.align(frame, source, hole_ys, hole_xs), index)
            if len(self._alignments) > self._cache:
                self._alignments.popitem(last=False)
        self._alignments.move_to_end(key)
        whole, index = self._alignments[key]
        at = index[ys, xs]
        return Alignment(whole.xs[at], whole.ys[at], whole.error[at])

    def colours(
        self, frame: int, ys: np.ndarray, xs: np.ndarray, only: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        filler = self.filler
        height, width = filler.shape
        count = len(xs)
        colours, scores = [], []
        enough = np.zeros(count, np.int64)
        for step in offsets(filler.settings.window):
            for source in (frame + step, frame - step):
                if not 0 <= source < len(filler.frames) or only is not None and source != only:
                    continue
                where = self._alignment(frame, source, ys, xs)
                inside = (where.xs >= 0) & (where.xs <= width - 1) & (where.ys >= 0) & (where.ys <= height - 1)
                covered = filler.holes[source] & ~filler.seen[source]
                blocked = sample(covered.astype(np.uint8), where.xs, where.ys, nearest=True) > 0
                valid = inside & ~blocked
                colour = sample(filler.sources[source].astype(np.float32), where.xs, where.ys)
                colours.append(colour)
                scores.append(np.where(valid, where.error + self.per_frame * step, np.inf))
                enough += valid
            if enough.min(initial=self.keep) >= self.keep:
                break  # every point has its few sources: farther frames would rank below them
        if not colours:
            return np.zeros((count, 3), np.float32), np.zeros(count, bool)
        return self._combine(np.stack(colours), np.stack(scores))

    def _combine(self, colours: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per point, a robust mean of its ``keep`` best-scored candidates: those far from their median are dropped
        (a source whose own hole missed a shadow, a misaligned one), the rest weighted down as their error grows."""
        keep = min(self.keep, len(scores))
        best = np.argsort(scores, axis=0)[:keep]  # (keep, N)
        picked_scores = np.take_along_axis(scores, best, 0)
        picked = np.take_along_axis(colours, best[..., None], 0)
        valid = np.isfinite(picked_scores)
        got = valid[0]
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # points no source saw: their median is nan
            median = np.nanmedian(np.where(valid[..., None], picked, np.nan), 0)
        near = np.abs(picked - median[None]).sum(-1) <= OUTLIER
        near[0] |= ~near.any(0)  # none near the median (two that disagree): the best one
        excess = np.where(valid, picked_scores - np.where(got, picked_scores[0], 0)[None], 0)
        weights = np.where(valid & near, np.exp(-excess / ERROR_SCALE), 0.0)
        colour = (picked * weights[..., None]).sum(0) / np.maximum(weights.sum(0), 1e-9)[:, None]
        return np.clip(colour, 0, 255).astype(np.float32), got

    def positions(self, frame: int, other: int, ys: np.ndarray, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        where = self._alignment(frame, other, ys, xs)
        return where.xs, where.ys


class ChainedCarrier:
    """Each hole pixel followed frame by frame along completed neighbour flows, forward and backward.

    The first frame where it lands outside that frame's still-empty hole, with forward and backward
    flow agreeing within ``consistency_px``, gives its colour; of the two directions the nearer in
    time wins (a tie averages them).
    """

    def __init__(self, filler: Filler) -> None:
        self.filler = filler
        self._flows: dict[tuple[int, int], np.ndarray] = {}
        self._grays = smoothed_over([gray(f) for f in filler.frames], filler.holes)

    def _size(self) -> tuple[int, int]:
        height, width = self.filler.shape
        scale = self.filler.settings.flow_scale
        return max(8, round(width * scale)), max(8, round(height * scale))

    def flow(self, source: int, target: int) -> np.ndarray:
        """Completed flow from frame ``source`` to its neighbour ``target`` (at the flow's size), computed once."""
        import cv2

        key = (source, target)
        if key not in self._flows:
            size = self._size()
            small = [cv2.resize(self._grays[i], size, interpolation=cv2.INTER_AREA) for i in (source, target)]
            raw = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(small[0], small[1], None)
            hole = cv2.resize(self.filler.holes[source].astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
            hole = cv2.dilate(hole, np.ones((3, 3), np.uint8)) > 0
            self._flows[key] = _complete(raw, hole)
        return self._flows[key]

    def _displacement(self, source: int, target: int, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """(N, 2) full-size displacement of the points (xs, ys) of ``source`` to ``target``."""
        scale = self.filler.settings.flow_scale
        return sample(self.flow(source, target), xs * scale, ys * scale) / scale

    def _carry(self, frame: int, xs: np.ndarray, ys: np.ndarray, step: int) -> tuple[np.ndarray, np.ndarray]:
        """Follow hole points of ``frame`` ``step``-wise; (colour (N, 3), frames travelled (N,), inf: not found)."""
        filler = self.filler
        count = len(xs)
        colour = np.zeros((count, 3), np.float32)
        distance = np.full(count, np.inf)
        alive = np.ones(count, bool)
        px, py = xs.astype(np.float32).copy(), ys.astype(np.float32).copy()
        height, width = filler.shape
        for k in range(1, filler.settings.window + 1):
            source, target = frame + step * (k - 1), frame + step * k
            if not 0 <= target < len(filler.frames) or not alive.any():
                break
            live = np.flatnonzero(alive)
            forward = self._displacement(source, target, px[live], py[live])
            nx, ny = px[live] + forward[:, 0], py[live] + forward[:, 1]
            back = self._displacement(target, source, nx, ny)
            error = np.hypot(forward[:, 0] + back[:, 0], forward[:, 1] + back[:, 1])
            inside = (nx >= 0) & (nx <= width - 1) & (ny >= 0) & (ny <= height - 1)
            covered = filler.holes[target] & ~filler.seen[target]
            blocked = sample(covered.astype(np.uint8), nx, ny, nearest=True) > 0
            good = inside & ~blocked & (error <= filler.settings.consistency_px)
            found = live[good]
            colour[found] = sample(filler.sources[target].astype(np.float32), nx[good], ny[good])
            distance[found] = k
            alive[found] = False
            alive[live[~inside]] = False  # left the frame: no later frame shows it either
            px[live], py[live] = nx, ny
        return colour, distance

    def colours(
        self, frame: int, ys: np.ndarray, xs: np.ndarray, only: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        forward, ahead = self._carry(frame, xs.astype(np.float32), ys.astype(np.float32), +1)
        backward, behind = self._carry(frame, xs.astype(np.float32), ys.astype(np.float32), -1)
        got = np.isfinite(ahead) | np.isfinite(behind)
        colour = np.where((ahead < behind)[:, None], forward, backward)
        tie = np.isfinite(ahead) & (ahead == behind)
        colour[tie] = (forward[tie] + backward[tie]) / 2
        return colour, got

    def positions(self, frame: int, other: int, ys: np.ndarray, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        move = self._displacement(frame, other, xs.astype(np.float32), ys.astype(np.float32))
        return xs + move[:, 0], ys + move[:, 1]


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
    """The flow with its values inside ``hole`` replaced by the background's motion: the camera's
    (:func:`_camera_flow`) plus a smooth continuation (push-pull) of what differs from it around the hole."""
    if not hole.any():
        return flow
    if hole.all():
        return np.zeros_like(flow)
    camera = _camera_flow(flow, hole)
    if camera is None:
        return push_pull(flow, ~hole)
    return np.where(hole[..., None], camera + push_pull(flow - camera, ~hole), flow).astype(np.float32)
