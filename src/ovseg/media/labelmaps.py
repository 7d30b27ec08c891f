"""Per-pixel classes from scored mask candidates, and mIoU accumulated the way mmseg does.

Why candidates: ovseg scores SAM's candidates, not pixels. A pixel's score for a class is the
best score of that class among the candidates covering it (a pixel inside a car mask and a
road mask is a car when the car mask is surer of "car" than the road mask is of "road").
Pixels that no candidate covers have no score: they become background (label 0) when the
class list has one, else they count as wrong. The protocol's background threshold turns
pixels whose best class probability is under it into label 0 as well.

The metric is mmseg's ``IoUMetric``: intersections, unions, predicted and true areas are
summed per class over the whole dataset first (not averaged per image), pixels labelled
255 are left out, and mIoU is the mean over classes that occur (a class with no true and no
predicted pixel anywhere has no IoU, NaN, and is left out of the mean).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

IGNORE_INDEX = 255
NO_CLASS = -1  # a pixel no candidate covers, in a class list without background


def pixel_class_scores(masks: np.ndarray, class_scores: np.ndarray) -> np.ndarray:
    """(C, H, W): per pixel and class, the best score of that class among the candidates covering it.

    ``masks`` (N, H, W) bool, ``class_scores`` (N, C). Uncovered pixels get -1 (below any score).
    The work is each candidate's area times C, not N x C x H x W.
    """
    n, height, width = masks.shape
    classes = class_scores.shape[1]
    best = np.full((classes, height * width), -1.0, np.float32)
    flat = masks.reshape(n, -1)
    for i in range(n):
        covered = np.flatnonzero(flat[i])
        if covered.size:
            best[:, covered] = np.maximum(best[:, covered], class_scores[i].astype(np.float32)[:, None])
    return best.reshape(classes, height, width)


def predict_labels(
    scores: np.ndarray,
    size: tuple[int, int],
    background_threshold: float = 0.0,
    first_label: int = 0,
    fallback: int = 0,
) -> np.ndarray:
    """The label map at ``size`` (width, height) from (C, h, w) pixel scores.

    The scores are resized first (bilinear, as mmseg resizes logits to the label map) and the
    argmax taken after; score row c is label ``first_label + c`` (1 when label 0 is a background
    slot that is not scored). Pixels no candidate covered, and those whose best score is below
    ``background_threshold``, get ``fallback``: 0 (background) or :data:`NO_CLASS`.
    """
    tensor = torch.from_numpy(np.ascontiguousarray(scores, np.float32))[None]
    if tensor.shape[-2:] != (size[1], size[0]):
        tensor = F.interpolate(tensor, size=(size[1], size[0]), mode="bilinear", align_corners=False)
    values, labels = tensor[0].max(dim=0)
    labels = labels.numpy().astype(np.int64) + first_label
    values = values.numpy()
    labels[values < max(background_threshold, 0.0)] = fallback  # uncovered pixels score -1
    return labels


def intersect_and_union(
    pred: np.ndarray, label: np.ndarray, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per class: (intersection, union, predicted area, true area) in pixels, ``ignore_index`` left out."""
    keep = label != ignore_index
    pred, label = pred[keep], label[keep]
    hit = pred[pred == label]
    bins = lambda values: np.bincount(values[(values >= 0) & (values < num_classes)], minlength=num_classes)  # noqa: E731
    intersect, area_pred, area_label = bins(hit), bins(pred), bins(label)
    return intersect, area_pred + area_label - intersect, area_pred, area_label


@dataclass
class IoUAccumulator:
    """Sums of intersections, unions and areas over a dataset, per class; then mmseg's metrics."""

    num_classes: int
    intersect: np.ndarray = field(init=False)
    union: np.ndarray = field(init=False)
    area_pred: np.ndarray = field(init=False)
    area_label: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        for name in ("intersect", "union", "area_pred", "area_label"):
            setattr(self, name, np.zeros(self.num_classes, np.int64))

    def add(self, pred: np.ndarray, label: np.ndarray) -> None:
        if pred.shape != label.shape:
            raise ValueError(f"prediction {pred.shape} and label map {label.shape} differ in size")
        i, u, p, t = intersect_and_union(pred, label, self.num_classes)
        self.intersect += i
        self.union += u
        self.area_pred += p
        self.area_label += t

    def iou(self) -> np.ndarray:
        """Per class IoU; NaN where the class never occurs, neither true nor predicted."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.union > 0, self.intersect / np.maximum(self.union, 1), np.nan)

    def accuracy(self) -> np.ndarray:
        """Per class recall of its true pixels; NaN where the class has no true pixel."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.area_label > 0, self.intersect / np.maximum(self.area_label, 1), np.nan)

    def summary(self, names: list[str], exclude: list[int] | None = None) -> dict:
        """mIoU, mAcc (means over classes that occur), aAcc (all pixels), and each class's IoU and Acc.

        ``exclude``: classes reported but left out of the means (a background slot that the
        dataset never labels, like CamVid's: mmseg would average in its IoU of 0).
        """
        iou, acc = self.iou(), self.accuracy()
        left_out = np.zeros(self.num_classes, bool)
        left_out[list(exclude or [])] = True
        total = int(self.area_label.sum())

        def mean(values: np.ndarray) -> float:
            return round(float(np.nanmean(values)), 6) if np.isfinite(values).any() else 0.0

        classes = {
            name: {
                "iou": None if np.isnan(iou[c]) else round(float(iou[c]), 6),
                "acc": None if np.isnan(acc[c]) else round(float(acc[c]), 6),
                "pixels": int(self.area_label[c]),
                **({"in_mean": False} if left_out[c] else {}),
            }
            for c, name in enumerate(names)
        }
        return {
            "miou": mean(iou[~left_out]),
            "macc": mean(acc[~left_out]),
            "aacc": round(float(self.intersect.sum() / total), 6) if total else 0.0,
            "classes": classes,
        }
