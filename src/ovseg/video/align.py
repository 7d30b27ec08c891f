"""Aligning one frame to another in one step, for filling holes: the camera's homography, then what it misses.

Chained flows (frame to frame to frame) compound the error of the flow guessed inside each hole:
1-2 px a frame, over ten frames a blur and a ghost. Here a source frame ``s`` is aligned to the
target frame ``t`` directly, whatever their distance:

1. **The camera**: a similarity fitted (RANSAC) to ORB feature matches outside both frames' holes,
   the features found once per frame; far frames only through matches that the neighbours' chained
   maps allow (:meth:`FrameAligner.homography`). Neighbours with too few matches fit their dense
   flow instead, and the identity (a still camera) when that fails too.
2. **What it misses** (parallax, a scene that moves slowly): a dense flow (DIS) between ``t`` and ``s``
   warped by the camera's map, only in a box around ``t``'s hole and at ``scale`` of the size. Inside
   the hole the flow belongs to the thing being removed, so there it is replaced by a smooth
   continuation (push-pull) of the flow around it; so is any place ``s``'s own hole covers.
3. **How well it holds**: the colour residual between ``t`` and the aligned ``s`` around the hole,
   smoothed and continued into it the same way: each hole pixel gets the error its surroundings
   show, which is how sources are ranked. (Continuing the colour *difference* the same way, a
   membrane as in mean-value cloning, to correct each source's exposure was tried: it carried the
   ring's misalignment noise into the hole and cost 1-4 grey levels on the tests' scenes.)

A model-layer module: no stage, no files.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ovseg.video.flow import gray, sample

MIN_INLIERS = 24  # matches a homography must explain before it is trusted over the identity
GUIDE_PX = 24  # far frames: matches farther than this (at 854 px wide) from where the chained map puts them are cut
RING_PX = 24  # the band around a hole where an alignment is judged (the box reaches twice this)


@dataclass
class Alignment:
    """Where a target frame's hole pixels lie in one source frame, and how well the alignment held around them."""

    xs: np.ndarray  # (N,) float32 source positions
    ys: np.ndarray
    error: np.ndarray  # (N,) float32: expected colour error (0-255) of the aligned source at each point


def push_pull(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """``values`` (h, w[, c]) with the pixels where ``known`` is false filled smoothly from around them.

    Push-pull (Gortler et al. 1996): known values and their weights are averaged down a pyramid until
    every cell has some, then each level's gaps take the coarser level's values on the way back up:
    a smooth continuation of the surroundings, exact where known, in a few resizes.
    """
    import cv2

    if known.all():
        return values
    squeeze = values.ndim == 2
    data = values[..., None] if squeeze else values
    if not known.any():
        return np.zeros_like(values)
    weight = known.astype(np.float32)
    levels = [(data * weight[..., None], weight)]
    while levels[-1][1].min() <= 0 and min(levels[-1][1].shape) > 1:
        level_values, level_weights = levels[-1]
        size = (max(1, level_weights.shape[1] // 2), max(1, level_weights.shape[0] // 2))
        small_values = cv2.resize(level_values, size, interpolation=cv2.INTER_AREA)
        levels.append((small_values.reshape(size[1], size[0], -1),
                       cv2.resize(level_weights, size, interpolation=cv2.INTER_AREA)))  # fmt: skip
    level_values, level_weights = levels[-1]
    filled = level_values / np.maximum(level_weights, 1e-6)[..., None]
    for level_values, level_weights in reversed(levels[:-1]):
        size = (level_weights.shape[1], level_weights.shape[0])
        coarse = cv2.resize(filled, size, interpolation=cv2.INTER_LINEAR).reshape(size[1], size[0], -1)
        share = np.clip(level_weights, 0, 1)[..., None]
        filled = share * (level_values / np.maximum(level_weights, 1e-6)[..., None]) + (1 - share) * coarse
    out = np.where(known[..., None], data, filled).astype(np.float32)
    return out[..., 0] if squeeze else out


def _box(hole: np.ndarray, margin: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the hole's box grown by ``margin``, inside the frame."""
    ys, xs = np.nonzero(hole)
    height, width = hole.shape
    return (max(0, int(xs.min()) - margin), max(0, int(ys.min()) - margin),
            min(width, int(xs.max()) + margin + 1), min(height, int(ys.max()) + margin + 1))  # fmt: skip


def _masked_blur(values: np.ndarray, known: np.ndarray, size: int) -> np.ndarray:
    """A box blur of ``values`` over the ``known`` pixels only (unknown ones neither count nor dilute)."""
    import cv2

    weight = known.astype(np.float32)
    spread = weight[..., None] if values.ndim == 3 else weight
    total = cv2.blur(np.where(spread > 0, values, 0).astype(np.float32), (size, size))
    share = cv2.blur(weight, (size, size))
    share = share[..., None] if values.ndim == 3 else share
    return (total / np.maximum(share, 1e-6)).astype(np.float32)


def smoothed_over(grays: list[np.ndarray], holes: list[np.ndarray]) -> list[np.ndarray]:
    """Each gray frame with its hole filled from around it (Telea), so the thing being removed does not pull
    the flow of the background near it (the hole's flow is replaced afterwards anyway)."""
    import cv2

    return [
        cv2.inpaint(g, h.astype(np.uint8), 3, cv2.INPAINT_TELEA) if h.any() else g
        for g, h in zip(grays, holes, strict=True)
    ]


class FrameAligner:
    """Aligns any frame of a clip to any other around the holes (:meth:`align`); features are found once per frame."""

    def __init__(self, frames: list[np.ndarray], holes: list[np.ndarray], scale: float = 0.5) -> None:
        self.frames, self.holes, self.scale = frames, holes, scale
        self.shape = frames[0].shape[:2]
        self._grays = [gray(f) for f in frames]  # for features: the hole is masked out there
        self._smooth = smoothed_over(self._grays, holes)
        self._features: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}
        self._homographies: dict[tuple[int, int], np.ndarray] = {}

    def features(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """ORB keypoints (K, 2) and descriptors of a frame, outside its (grown) hole."""
        import cv2

        if index not in self._features:
            keep = ~(cv2.dilate(self.holes[index].astype(np.uint8), np.ones((9, 9), np.uint8)) > 0)
            orb = cv2.ORB_create(nfeatures=1000, fastThreshold=12)
            points, descriptors = orb.detectAndCompute(self._grays[index], keep.astype(np.uint8) * 255)
            where = np.array([p.pt for p in points], np.float32).reshape(-1, 2)
            self._features[index] = (where, descriptors)
        return self._features[index]

    def _fit(self, target: int, source: int, guess: np.ndarray | None) -> np.ndarray | None:
        """The similarity (3x3) from ``target``'s pixels to ``source``'s fitted (RANSAC) to feature matches; with a
        ``guess``, only matches within ``GUIDE_PX`` of where it puts them count. None: too few agree."""
        import cv2

        target_points, target_descriptors = self.features(target)
        source_points, source_descriptors = self.features(source)
        if target_descriptors is None or source_descriptors is None or len(target_points) < MIN_INLIERS:
            return None
        matches = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True).match(target_descriptors, source_descriptors)
        a = target_points[[m.queryIdx for m in matches]].reshape(-1, 2)
        b = source_points[[m.trainIdx for m in matches]].reshape(-1, 2)
        if guess is not None and len(a):
            expected = cv2.perspectiveTransform(a.reshape(-1, 1, 2), guess).reshape(-1, 2)
            near = np.hypot(*(expected - b).T) < GUIDE_PX * max(self.shape) / 854
            a, b = a[near], b[near]
        if len(a) < MIN_INLIERS:
            return None
        fitted, inliers = cv2.estimateAffinePartial2D(a, b, method=cv2.RANSAC, ransacReprojThreshold=3.0)
        if fitted is None or int(inliers.sum()) < MIN_INLIERS or not np.isfinite(fitted).all():
            return None
        return np.vstack([fitted, [0, 0, 1]])

    def _fit_flow(self, target: int, source: int) -> np.ndarray:
        """For neighbours with too few feature matches (a smooth scene, a small frame): the similarity fitted to
        their dense flow outside both holes; the identity when that fails too."""
        import cv2

        height, width = self.shape
        size = (max(8, round(width * self.scale)), max(8, round(height * self.scale)))
        small = [cv2.resize(self._smooth[i], size, interpolation=cv2.INTER_AREA) for i in (target, source)]
        flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(small[0], small[1], None)
        holes = cv2.resize((self.holes[target] | self.holes[source]).astype(np.uint8), size,
                           interpolation=cv2.INTER_NEAREST)  # fmt: skip
        ys, xs = np.mgrid[2 : size[1] - 2 : 2, 2 : size[0] - 2 : 2]
        keep = holes[ys, xs] == 0
        if keep.sum() < MIN_INLIERS:
            return np.eye(3)
        a = np.stack([xs[keep], ys[keep]], -1).astype(np.float32)
        b = a + flow[ys[keep], xs[keep]]
        fitted, inliers = cv2.estimateAffinePartial2D(a / self.scale, b / self.scale, method=cv2.RANSAC,
                                                      ransacReprojThreshold=2.0)  # fmt: skip
        if fitted is None or inliers.mean() < 0.3 or not np.isfinite(fitted).all():
            return np.eye(3)
        return np.vstack([fitted, [0, 0, 1]])

    def homography(self, target: int, source: int) -> np.ndarray:
        """The 3x3 map from ``target``'s pixels to ``source``'s for the far scene.

        Neighbours are matched directly (by their dense flow where features are too few; the identity when
        that fails too). Far frames get the neighbours' maps chained as a guess, then are refitted to
        direct matches, only those the guess allows: what the chain drifts is corrected, and a far frame's
        spurious matches (water, a moving crowd) cannot pull the map away from the camera's path.
        """
        key = (target, source)
        if key in self._homographies:
            return self._homographies[key]
        if abs(target - source) == 1:
            matrix = self._fit(target, source, None)
            matrix = self._fit_flow(target, source) if matrix is None else matrix
        elif target == source:
            matrix = np.eye(3)
        else:
            step = 1 if source > target else -1
            chained = self.homography(source - step, source) @ self.homography(target, source - step)
            fitted = self._fit(target, source, chained)
            matrix = chained if fitted is None else fitted
        self._homographies[key] = matrix
        return matrix

    def align(
        self, target: int, source: int, ys: np.ndarray, xs: np.ndarray, margin: int = RING_PX * 2, flow: bool = True
    ) -> Alignment:
        """Where the points (ys, xs) of ``target``'s hole (or up to ``margin`` px around it) lie in ``source``, and
        their expected error. Without ``flow``, the camera's motion alone (what moves with the hole's
        object, its shadow, is then not followed).

        The box around the hole is worked at ``scale`` of the size (the flow, the holes, the error): only
        the points asked for are mapped at full size.
        """
        import cv2

        matrix = self.homography(target, source)
        points = np.stack([xs, ys], -1).astype(np.float32)
        if not flow:  # the camera alone: a map of the points, no box, no error to judge
            moved = cv2.perspectiveTransform(points.reshape(-1, 1, 2), matrix).reshape(-1, 2)
            return Alignment(moved[:, 0], moved[:, 1], np.zeros(len(xs), np.float32))
        hole = self.holes[target]
        height, width = self.shape
        x0, y0, x1, y1 = _box(hole, margin)
        size = (max(8, round((x1 - x0) * self.scale)), max(8, round((y1 - y0) * self.scale)))
        step_x, step_y = (x1 - x0) / size[0], (y1 - y0) / size[1]  # full-size pixels per small one
        grid_x, grid_y = np.meshgrid(x0 + (np.arange(size[0], dtype=np.float32) + 0.5) * step_x - 0.5,
                                     y0 + (np.arange(size[1], dtype=np.float32) + 0.5) * step_y - 0.5)  # fmt: skip
        grid = np.stack([grid_x, grid_y], -1)

        def through(flow_small: np.ndarray) -> np.ndarray:
            """The small grid moved by a small-pixel flow, then taken to the source by the camera's map."""
            moved = grid + flow_small * np.float32([step_x, step_y])
            return cv2.perspectiveTransform(moved.reshape(-1, 1, 2), matrix).reshape(size[1], size[0], 2)

        camera = through(np.zeros((size[1], size[0], 2), np.float32))
        # The source seen through the camera's motion, in the target's box; then the flow for what remains.
        warped = cv2.remap(self._smooth[source], camera[..., 0], camera[..., 1], cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
        outside = (camera[..., 0] < 0) | (camera[..., 0] > width - 1) | (camera[..., 1] < 0)
        outside |= camera[..., 1] > height - 1
        source_hole = cv2.remap(self.holes[source].astype(np.uint8), camera[..., 0], camera[..., 1],
                                cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0) > 0  # fmt: skip
        own_hole = cv2.resize(hole[y0:y1, x0:x1].astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
        unknown = own_hole | source_hole | outside
        small_target = cv2.resize(self._smooth[target][y0:y1, x0:x1], size, interpolation=cv2.INTER_AREA)
        residual = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(small_target, warped, None)
        grown = cv2.dilate(unknown.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        residual = push_pull(residual, ~grown)  # inside the holes: continued from around them
        where = through(residual)
        aligned = cv2.remap(self.frames[source], where[..., 0], where[..., 1], cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE).astype(np.float32)  # fmt: skip
        target_colour = cv2.resize(self.frames[target][y0:y1, x0:x1], size, interpolation=cv2.INTER_AREA)
        judged = ~unknown
        error = _masked_blur(np.abs(target_colour.astype(np.float32) - aligned).mean(-1), judged, 5)
        error = push_pull(error, judged)
        small_x, small_y = (xs - x0 + 0.5) / step_x - 0.5, (ys - y0 + 0.5) / step_y - 0.5
        at_points = sample(residual, small_x, small_y) * np.float32([step_x, step_y])
        moved = cv2.perspectiveTransform((points + at_points).reshape(-1, 1, 2), matrix).reshape(-1, 2)
        return Alignment(moved[:, 0], moved[:, 1], sample(error, small_x, small_y))
