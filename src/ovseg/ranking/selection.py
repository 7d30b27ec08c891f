"""Pick the top-K candidates for a prompt and merge them into one region.

SAM 2 proposes nested masks (a wheel, the car, the car plus its shadow), so a plain
top-K would often select near-duplicates; a mask-IoU suppression keeps the picks
distinct, and a threshold relative to the best score keeps weak extras out of the
merged region.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ovseg.config import InstancesSettings, SelectSettings


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


@dataclass
class Instances:
    """Every instance of every class in one photo (a run with several classes)."""

    indices: list[int]  # candidates, best score first
    classes: list[int]  # each instance's class, 0-based in the run's class order
    scores: list[float]  # its class probability
    labels: np.ndarray  # (H, W) label map at the masks' size: 0 = background, class c is c + 1

    @property
    def merged(self) -> np.ndarray:
        """Every instance together: what remove / replace / style edit."""
        return self.labels > 0


def paint_label_map(masks: list[np.ndarray], categories: list[int], shape: tuple[int, int], classes: int) -> np.ndarray:
    """A label map of (H, W) ``shape`` from instance masks listed best first, with their 1-based ``categories``.

    Painted from the last (least sure) up, so where two overlap the pixel goes to the surer one.
    Every label map of a run with classes is drawn by this one rule (at the masks' size for the
    edit region, at the photo's size for ``labels.png``). 16-bit past 254 classes.
    """
    labels = np.zeros(shape, np.uint16 if classes >= 255 else np.uint8)
    for mask, category in reversed(list(zip(masks, categories, strict=True))):
        labels[mask] = category
    return labels


def same_thing(a: np.ndarray, b: np.ndarray, area_a: int, area_b: int, overlap: float) -> bool:
    """Two masks of one class are one thing when this much of the smaller lies inside the larger."""
    smaller = min(area_a, area_b)
    return smaller > 0 and np.logical_and(a, b).sum() >= overlap * smaller


def select_instances(
    class_scores: np.ndarray, masks: np.ndarray, settings: InstancesSettings, min_area_frac: float = 0.0
) -> Instances:
    """Each candidate's best class, kept when its probability passes the threshold, duplicates dropped.

    Why argmax first: a mask is one thing, so it counts for one class only (the softmax across
    classes already makes them compete). Then, per class and best first, a candidate that is
    mostly inside or around an instance already kept (``settings.overlap`` of the smaller one)
    is the same object again (SAM's nested whole / part / whole-with-shadow) and is dropped, and
    ``top_k`` (when not 0) caps each class. The label map paints the instances from the lowest
    score up, so where two overlap the pixel goes to the higher score.
    """
    n, height, width = masks.shape
    if n == 0 or class_scores.shape[1] == 0:
        return Instances([], [], [], paint_label_map([], [], (height, width), class_scores.shape[1]))
    best_class = np.argmax(class_scores, axis=1)
    best = class_scores[np.arange(n), best_class]
    areas = masks.reshape(n, -1).sum(1)
    min_area = max(min_area_frac * height * width, 1)
    kept: list[int] = []
    counts: dict[int, int] = {}
    for i in np.argsort(-best, kind="stable"):
        if best[i] < settings.threshold:
            break
        c = int(best_class[i])
        if areas[i] < min_area or (settings.top_k and counts.get(c, 0) >= settings.top_k):
            continue
        if any(
            best_class[j] == c and same_thing(masks[i], masks[j], areas[i], areas[j], settings.overlap) for j in kept
        ):
            continue
        kept.append(int(i))
        counts[c] = counts.get(c, 0) + 1
    classes = [int(best_class[i]) for i in kept]
    labels = paint_label_map([masks[i] for i in kept], [c + 1 for c in classes], (height, width), class_scores.shape[1])
    return Instances(kept, classes, [float(best[i]) for i in kept], labels)


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
