"""What the Python API returns: results as arrays and pictures, written to disk by the stages' own writers."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ovseg.errors import OvsegError, from_os_error
from ovseg.media.coco import coco_annotations
from ovseg.media.rle import box_xywh
from ovseg.media.viz import label_image, overlay, palette
from ovseg.pipeline import select
from ovseg.ranking.selection import paint_label_map
from ovseg.storage.folders import OutputFolder


def one_line_errors(method):
    """A full disk or a folder without permission reaches the caller as OvsegError, like every user-facing error."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        except OSError as exc:
            raise from_os_error(exc) from None

    return wrapper


@dataclass
class SegmentDetails:
    """Where a :class:`SegmentResult` came from: what :meth:`SegmentResult.toggle` needs to add or drop a candidate,
    and what :meth:`SegmentResult.record` writes into ``selection.json``, as the select stage writes it.

    Indices are into the photo's mask candidates (``cache/masks/<key>.zarr``); None for a mask the clicks re-drew.
    """

    image: str = "image.png"  # where the photo was read
    preset: str = ""
    clicks: dict[str, Any] | None = None  # {"points", "labels", "box"} as given, in photo pixels
    indices: list[int | None] = field(default_factory=list)  # each selected mask's candidate
    predicted_iou: list[float | None] = field(default_factory=list)  # the mask model's own quality estimate of each
    num_candidates: int | None = None
    select_settings: dict[str, Any] | None = None  # the select (or instances) settings it was chosen with
    artifacts: dict[str, str] | None = None  # the masks, embeddings and scores stores' keys
    candidate_indices: list[int] = field(default_factory=list)  # SegmentResult.candidates, as candidate indices
    candidate_iou: list[float] = field(default_factory=list)
    candidate_categories: list[int] = field(default_factory=list)  # classes: the class each candidate scores best


@dataclass
class SegmentResult:
    """What was found in one photo: each selected mask, its score and box, and their union.

    With several classes (``Segmenter.segment(photo, ["car", "person|pedestrian"])``) every
    instance of each class: ``classes`` lists them in order and ``categories`` gives each mask's
    class (1 = the first, as in :attr:`labels` and COCO).
    """

    image: Image.Image
    prompt: str | None
    masks: np.ndarray  # (K, H, W) bool, at the photo's size (clicks that re-draw the region: K = 1)
    scores: np.ndarray  # (K,) the prompt's scores (a click's mask: the model's predicted IoU; classes: its class's)
    boxes: np.ndarray  # (K, 4) XYWH in photo pixels
    merged: np.ndarray  # (H, W) bool: what remove / replace / style edit
    details: SegmentDetails = field(default_factory=SegmentDetails)
    # The best-scoring mask candidates for the prompt (selected or not), so people can see what
    # else the mask model proposed: (N, H, W) bool at the photo's size and their scores.
    candidates: np.ndarray | None = None
    candidate_scores: np.ndarray | None = None
    classes: tuple[str, ...] | None = None  # several classes: them, in order
    categories: np.ndarray | None = None  # (K,) each mask's class, 1-based (several classes only)

    @property
    def title(self) -> str:
        """What was asked, as people read it: the prompt, the classes joined by " + ", or "clicks"."""
        return " + ".join(self.classes) if self.classes else self.prompt or "clicks"

    @property
    def labels(self) -> np.ndarray | None:
        """(H, W) label map of a result with classes: 0 background, c the c-th class; an overlap goes to the
        higher score (what ``labels.png`` holds). None for one prompt or clicks."""
        if not self.classes:
            return None
        shape = self.merged.shape
        return paint_label_map(list(self.masks), [int(c) for c in self.categories], shape, len(self.classes))

    def label_picture(self) -> Image.Image | None:
        """:attr:`labels` as ``labels.png`` shows it: each class in its colour of :meth:`legend`."""
        labels = self.labels
        return None if labels is None else label_image(labels, len(self.classes)).convert("RGB")

    def legend(self) -> list[tuple[str, tuple[int, int, int], int]]:
        """(class, its colour in the overlay and the label map, how many instances) for each class, in order."""
        if not self.classes:
            return []
        counts = np.bincount(np.asarray(self.categories, int), minlength=len(self.classes) + 1)
        colours = palette(len(self.classes))
        return [(name, colours[i], int(counts[i + 1])) for i, name in enumerate(self.classes)]

    def overlay(self) -> Image.Image:
        """The photo with the masks tinted and labelled with their scores (and classes): overlay.png's picture."""
        if self.classes:
            colours = palette(len(self.classes))
            names = [self.classes[c - 1] for c in self.categories]
            labels = [f"{n} {s:.2f}" for n, s in zip(names, self.scores, strict=True)]
            chosen = [colours[c - 1] for c in self.categories]
            return overlay(self.image, list(self.masks), labels, title=self.title, colours=chosen)
        labels = [f"#{i + 1} {s:.2f}" for i, s in enumerate(self.scores)]
        return overlay(self.image, list(self.masks), labels, title=self.title)

    def toggle(self, rank: int) -> SegmentResult:
        """This result with candidate ``rank`` (0 = best, as :attr:`candidates` lists them) added, or dropped
        when it is selected: what a click on a candidate does on the web page. With classes, an added
        candidate counts for the class it scores best for."""
        if self.candidates is None or not 0 <= rank < len(self.candidates):
            raise OvsegError(f"there is no candidate #{rank + 1}: this result lists {len(self.candidates or [])}")
        index = int(self.details.candidate_indices[rank])
        indices = list(self.details.indices or [None] * len(self.masks))
        ious = list(self.details.predicted_iou or [None] * len(self.masks))
        categories = None if self.categories is None else list(self.categories)
        if index in indices:
            keep = [i for i, selected in enumerate(indices) if selected != index]
            masks, scores = self.masks[keep], self.scores[keep]
            indices, ious = [indices[i] for i in keep], [ious[i] for i in keep]
            categories = None if categories is None else [categories[i] for i in keep]
        else:
            masks = np.concatenate([self.masks, self.candidates[rank][None]])
            scores = np.append(self.scores, self.candidate_scores[rank]).astype(np.float32)
            indices, ious = [*indices, index], [*ious, float(self.details.candidate_iou[rank])]
            if categories is not None:
                categories.append(int(self.details.candidate_categories[rank]))
        height, width = self.merged.shape
        return dataclasses.replace(
            self,
            masks=masks.reshape(-1, height, width),
            scores=scores,
            boxes=np.array([box_xywh(m) for m in masks], np.float32).reshape(-1, 4),
            merged=masks.any(0) if len(masks) else np.zeros((height, width), bool),
            details=dataclasses.replace(self.details, indices=indices, predicted_iou=ious),
            categories=None if categories is None else np.asarray(categories, np.int64),
        )

    def record(self) -> select.SelectionRecord:
        """This result as ``selection.json`` describes a selection (:class:`~ovseg.pipeline.select.SelectionRecord`)."""
        clicks = self.details.clicks or {}
        any_clicks = bool(clicks.get("points")) or clicks.get("box") is not None
        return select.SelectionRecord.of_masks(
            self.details.image,
            self.title if self.classes else self.prompt,
            list(self.masks),
            [float(s) for s in self.scores],
            list(self.details.indices or [None] * len(self.masks)),
            list(self.details.predicted_iou or [None] * len(self.masks)),
            self.merged,
            categories=None if self.categories is None else [int(c) for c in self.categories],
            key=None,
            num_candidates=self.details.num_candidates,
            settings=self.details.select_settings,
            artifacts=self.details.artifacts,
            note=None if len(self.masks) else "nothing selected",
            clicks=clicks if any_clicks else None,
            classes=list(self.classes) if self.classes else None,
        )

    def to_coco(self) -> dict[str, Any]:
        """This result as a COCO dataset: one image, RLE segmentations; one category (the prompt), or one per class."""
        classes = list(self.classes) if self.classes else None
        return coco_annotations([self.record().to_json()], self.title, classes=classes)

    @one_line_errors
    def save(self, folder: str | Path, visualize: bool = True) -> Path:
        """Write the result as the select stage does: ``mask.png``, ``masks/NN.png``, ``overlay.png``,
        ``selection.zarr``, ``selection.json``, ``annotations.json`` (COCO) and, with classes, ``labels.png``."""
        folder = Path(folder)
        select.write_selection(
            OutputFolder(str(folder.parent)),
            folder.name,
            self.record(),
            self.image,
            list(self.masks),
            [float(s) for s in self.scores],
            visualize=visualize,
            mask_pngs=True,
            coco=True,
        )
        return folder
