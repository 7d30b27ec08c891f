"""Pick the top-K candidates for a prompt and merge them into one region.

SAM 2 proposes nested masks (a wheel, the car, the car plus its shadow), so a plain
top-K would often select near-duplicates; a mask-IoU suppression keeps the picks
distinct, and a threshold relative to the best score keeps weak extras out of the
merged region.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ovseg.config import SelectSettings


@dataclass
class Selection:
    indices: list[int]  # into the candidate list, best first
    scores: list[float]
    merged: np.ndarray  # (H, W) bool: union of the selected masks (or the best one)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def select_masks(scores: np.ndarray, masks: np.ndarray, settings: SelectSettings) -> Selection:
    """Greedy top-K by score with absolute and relative thresholds, min area and mask NMS."""
    n, height, width = masks.shape
    areas = masks.reshape(n, -1).sum(1) if n else np.zeros(0)
    min_area = settings.min_area_frac * height * width
    eligible = [i for i in np.argsort(-scores, kind="stable") if areas[i] >= max(min_area, 1)]
    chosen: list[int] = []
    if eligible:
        best = float(scores[eligible[0]])
        relative_floor = best * settings.relative_threshold if best > 0 else -np.inf
        limit = 1 if settings.merge == "best" else settings.top_k
        for i in eligible:
            if scores[i] < settings.threshold or scores[i] < relative_floor:
                break
            if any(mask_iou(masks[i], masks[j]) > settings.nms_iou for j in chosen):
                continue
            chosen.append(int(i))
            if len(chosen) == limit:
                break
    merged = np.any(masks[chosen], axis=0) if chosen else np.zeros((height, width), bool)
    return Selection(chosen, [float(scores[i]) for i in chosen], merged)


def refine_with_clicks(
    indices: list[int], masks: np.ndarray, scores: np.ndarray, points: np.ndarray, labels: np.ndarray
) -> list[int]:
    """A text selection corrected by clicks (x, y in mask pixels; label 1 include, 0 exclude).

    An include click adds the best-scoring candidate under it (if none selected covers it
    yet); an exclude click drops every selected candidate under it. Why candidates, not
    pixels: a click means "that thing", and the candidates are SAM's idea of things.
    """
    chosen = list(indices)
    height, width = masks.shape[1:]
    for (x, y), label in zip(np.asarray(points).reshape(-1, 2), np.asarray(labels).reshape(-1), strict=True):
        col, row = min(width - 1, max(0, int(x))), min(height - 1, max(0, int(y)))
        under = [int(i) for i in np.flatnonzero(masks[:, row, col])]
        if label == 1 and under and not any(i in chosen for i in under):
            chosen.append(max(under, key=lambda i: float(scores[i])))
        elif label == 0:
            chosen = [i for i in chosen if i not in under]
    return chosen
