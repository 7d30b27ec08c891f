"""Where to put point prompts: a regular grid, or points where the masks found so far leave gaps.

Why adaptive sampling: on a CPU each prompt costs one decoder call (~40-60 ms for a
SAM-sized decoder on 2 cores), and a regular 16 x 16 grid spends most of its 256 calls
re-finding the sky and the road. A coarse grid finds the big regions; then each round
puts a few points in the pixels no kept mask covers yet, farthest from every covered
pixel and every point already tried, until the budget is spent or nothing is left
uncovered that is wide enough to hold an object.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def grid_points(per_side: int, width: int, height: int) -> np.ndarray:
    """(per_side², 2) (x, y) cell centres of a regular grid over a width x height image."""
    offsets = (np.arange(per_side, dtype=np.float32) + 0.5) / per_side
    xs, ys = np.meshgrid(offsets * width, offsets * height)
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def farthest_uncovered_points(covered: np.ndarray, tried: np.ndarray, count: int, min_distance: float) -> np.ndarray:
    """Up to ``count`` (x, y) grid positions in ``covered``'s frame where new masks most likely are.

    Greedy farthest-point choice: each pick is the uncovered pixel farthest from any
    covered pixel, any point in ``tried`` (x, y) and any earlier pick; picking stops when
    the best candidate is closer than ``min_distance`` grid pixels to all of those (a
    gap that narrow is a mask border, not an object).
    """
    rows, cols = covered.shape
    distance = ndimage.distance_transform_edt(~covered) if covered.any() else np.full(covered.shape, np.inf)
    yy, xx = np.indices(covered.shape, dtype=np.float32)
    for x, y in np.asarray(tried, np.float32).reshape(-1, 2):
        distance = np.minimum(distance, np.hypot(xx - x, yy - y))
    picks = []
    for _ in range(count):
        index = int(np.argmax(distance))
        if not distance.flat[index] >= min_distance:
            break
        y, x = divmod(index, cols)
        picks.append((float(x), float(y)))
        distance = np.minimum(distance, np.hypot(xx - x, yy - y))
    return np.array(picks, np.float32).reshape(-1, 2)
