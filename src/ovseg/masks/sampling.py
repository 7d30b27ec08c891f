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


def edge_strength(gray: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Ridge strength of a grayscale picture, |Laplacian of Gaussian|, scaled to [0, 1] (99th percentile is 1).

    Why the Laplacian and not the gradient: the gradient of a thin thing (a pole, a sign post,
    a fence bar) peaks on its two sides, the Laplacian on its middle line, where a point prompt
    must land to select it; at the border of a wide object it peaks just inside and just outside,
    either of which is a fine prompt.
    """
    ridge = np.abs(ndimage.gaussian_laplace(gray.astype(np.float32), sigma))
    top = float(np.percentile(ridge, 99)) or 1.0
    return np.clip(ridge / top, 0.0, 1.0)


def farthest_uncovered_points(
    covered: np.ndarray, tried: np.ndarray, count: int, min_distance: float, weight: np.ndarray | None = None
) -> np.ndarray:
    """Up to ``count`` (x, y) grid positions in ``covered``'s frame where new masks most likely are.

    Greedy farthest-point choice: each pick is the uncovered pixel farthest from any
    covered pixel, any point in ``tried`` (x, y) and any earlier pick; picking stops when
    the best candidate is closer than ``min_distance`` grid pixels to all of those (a
    gap that narrow is a mask border, not an object). ``weight`` (per grid pixel, >= 1)
    multiplies the distance, so among pixels about as far, those it favours win.
    """
    rows, cols = covered.shape
    seeds = covered.copy()
    for x, y in np.asarray(tried, np.float32).reshape(-1, 2):  # every point tried counts as covered there
        seeds[min(rows - 1, max(0, round(float(y)))), min(cols - 1, max(0, round(float(x))))] = True
    distance = ndimage.distance_transform_edt(~seeds) if seeds.any() else np.full(covered.shape, np.inf)
    yy, xx = np.indices(covered.shape, dtype=np.float32)
    picks = []
    for _ in range(count):
        score = distance if weight is None else np.where(distance >= min_distance, distance * weight, 0.0)
        index = int(np.argmax(score))
        if not distance.flat[index] >= min_distance:
            break
        y, x = divmod(index, cols)
        picks.append((float(x), float(y)))
        distance = np.minimum(distance, np.hypot(xx - x, yy - y))
    return np.array(picks, np.float32).reshape(-1, 2)
