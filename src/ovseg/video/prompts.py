"""Where to click: the prompts a tracker gives the mask model, worked out from masks and from a memory's reading.

Boxes and clicks in image pixels (x, y), as :class:`~ovseg.masks.backend.PromptModel` takes them: a mask's box,
its innermost point (a click there is inside whatever the shape), points on a ring outside it (exclude clicks,
so the model does not spill onto what touches the object), and exclude clicks on the parts of an answer a
memory reads as background (:mod:`ovseg.video.memory`).
"""

from __future__ import annotations

import numpy as np

from ovseg.video.memory import CellGrid

Box = tuple[float, float, float, float]


def mask_box(mask: np.ndarray, grow: float = 0.0) -> Box:
    """A mask's box (x1, y1, x2, y2), grown by ``grow`` of its sides, kept inside the frame."""
    ys, xs = np.nonzero(mask)
    height, width = mask.shape
    x1, x2, y1, y2 = float(xs.min()), float(xs.max() + 1), float(ys.min()), float(ys.max() + 1)
    dx, dy = (x2 - x1) * grow / 2, (y2 - y1) * grow / 2
    return max(0.0, x1 - dx), max(0.0, y1 - dy), min(float(width), x2 + dx), min(float(height), y2 + dy)


def union(a: Box, b: Box) -> Box:
    """The smallest box holding both."""
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


def innermost_point(mask: np.ndarray) -> tuple[float, float]:
    """The mask's pixel farthest from its border (x, y): a click there is inside the object whatever its shape."""
    from scipy import ndimage

    distance = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return float(x) + 0.5, float(y) + 0.5


def ring_points(mask: np.ndarray, distance: int, count: int) -> list[tuple[float, float]]:
    """``count`` points spread along a ring ``distance`` px outside the mask (inside the frame)."""
    from scipy import ndimage

    if distance <= 0 or count <= 0:
        return []
    outer = ndimage.binary_dilation(mask, iterations=distance)
    ring = outer & ~ndimage.binary_dilation(mask, iterations=max(1, distance - 3))
    ys, xs = np.nonzero(ring)
    if not len(xs):
        return []
    picks = np.linspace(0, len(xs) - 1, count).astype(int)
    return [(float(xs[i]) + 0.5, float(ys[i]) + 0.5) for i in picks]


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks of one size (0 when both are empty)."""
    both = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / both) if both else 0.0


def cells_near(grid: CellGrid, box: Box) -> np.ndarray:
    """The indices of the cells whose centres lie in ``box`` (grown by one cell)."""
    centres = grid.centres()
    x1, y1, x2, y2 = box
    return np.nonzero(
        (centres[:, 0] >= x1 - grid.stride[1]) & (centres[:, 0] <= x2 + grid.stride[1])
        & (centres[:, 1] >= y1 - grid.stride[0]) & (centres[:, 1] <= y2 + grid.stride[0])
    )[0]  # fmt: skip


def leak_clicks(grid: CellGrid, cover: np.ndarray, probability: np.ndarray, near: np.ndarray) -> list:
    """Exclude clicks on the parts of an answer that the memory reads as background: for each group of at least two
    cells mostly inside the answer (``cover``) and read (``near``) below 0.2, largest groups first and three at
    most, its surest cell's centre."""
    from scipy import ndimage

    read = np.zeros_like(probability, dtype=bool)
    read[near] = True
    leak = ((cover > 0.5) & read & (probability < 0.2)).reshape(grid.rows, grid.cols)
    groups, count = ndimage.label(leak)
    if not count:
        return []
    sizes = ndimage.sum(leak, groups, range(1, count + 1))
    centres = grid.centres()
    clicks = []
    for group in np.argsort(-sizes)[:3]:
        if sizes[group] < 2:
            break
        cells = np.nonzero(groups.ravel() == group + 1)[0]
        surest = cells[int(np.argmin(probability[cells]))]
        clicks.append(tuple(float(v) for v in centres[surest]))
    return clicks
