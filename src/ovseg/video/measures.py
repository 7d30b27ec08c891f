"""The DAVIS measures of a video segmentation: J (region similarity) and F (boundary accuracy).

As the DAVIS benchmark defines them (Perazzi et al., CVPR 2016; the ``davis2017-evaluation``
toolkit), so figures are comparable with published ones:

* **J** is the intersection over union of the predicted and true masks; 1 when both are empty.
* **F** is the F-measure of the predicted boundary against the true one, where a boundary pixel
  counts as matched when a boundary pixel of the other mask lies within a disc of radius
  ``ceil(0.008 x image diagonal)`` (4 px at 854x480). Boundaries are the pixels whose label differs
  from their right, lower or lower-right neighbour.
* A sequence's score is the mean over its frames leaving out the first (given) and the last, and a
  data set's the mean over its sequences.
"""

from __future__ import annotations

import math

import numpy as np

BOUNDARY_TOLERANCE = 0.008  # of the image diagonal, DAVIS's bound_th


def region_j(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of two boolean masks; 1 when both are empty (nothing to find, nothing found)."""
    predicted, truth = np.asarray(predicted, bool), np.asarray(truth, bool)
    union = np.logical_or(predicted, truth).sum()
    return 1.0 if union == 0 else float(np.logical_and(predicted, truth).sum() / union)


def boundary(mask: np.ndarray) -> np.ndarray:
    """The mask's boundary pixels: where it differs from the right, lower or lower-right neighbour."""
    mask = np.asarray(mask, bool)
    right, below, diagonal = (np.zeros_like(mask) for _ in range(3))
    right[:, :-1], below[:-1, :], diagonal[:-1, :-1] = mask[:, 1:], mask[1:, :], mask[1:, 1:]
    edges = (mask ^ right) | (mask ^ below) | (mask ^ diagonal)
    edges[-1, :] = mask[-1, :] ^ right[-1, :]
    edges[:, -1] = mask[:, -1] ^ below[:, -1]
    edges[-1, -1] = False
    return edges


def _disc(radius: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return (xx**2 + yy**2 <= radius**2).astype(np.uint8)


def boundary_f(predicted: np.ndarray, truth: np.ndarray, tolerance: float = BOUNDARY_TOLERANCE) -> float:
    """The boundary F-measure of ``predicted`` against ``truth`` (same shape), DAVIS's tolerance by default."""
    import cv2

    mine, theirs = boundary(predicted), boundary(truth)
    disc = _disc(math.ceil(tolerance * math.hypot(*mine.shape)) if tolerance > 0 else 0)
    near_theirs = cv2.dilate(theirs.astype(np.uint8), disc) > 0
    near_mine = cv2.dilate(mine.astype(np.uint8), disc) > 0
    n_mine, n_theirs = int(mine.sum()), int(theirs.sum())
    if n_mine == 0 and n_theirs == 0:
        return 1.0
    if n_mine == 0 or n_theirs == 0:
        return 0.0  # precision or recall is 0 (nothing drawn, or drawn where nothing is)
    precision = float((mine & near_theirs).sum() / n_mine)
    recall = float((theirs & near_mine).sum() / n_theirs)
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def sequence_scores(predicted: list[np.ndarray], truth: list[np.ndarray]) -> dict[str, float | list[float]]:
    """Per-frame J and F of one sequence, and their means over frames 1..n-2 (the toolkit's frames)."""
    if len(predicted) != len(truth):
        raise ValueError(f"{len(predicted)} predicted masks for {len(truth)} true ones")
    j = [region_j(p, t) for p, t in zip(predicted, truth, strict=True)]
    f = [boundary_f(p, t) for p, t in zip(predicted, truth, strict=True)]
    counted = slice(1, -1) if len(j) > 2 else slice(0, len(j))
    return {
        "J": float(np.mean(j[counted])),
        "F": float(np.mean(f[counted])),
        "J_frames": [round(v, 5) for v in j],
        "F_frames": [round(v, 5) for v in f],
    }
