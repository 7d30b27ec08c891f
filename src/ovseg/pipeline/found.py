"""The score stage's stores when a finder (SAM 3) finds the words itself: its instances are the candidates.

With CLIP, the candidates are the masks stage's and the scores store holds one score per candidate. With a
finder, the candidates depend on the words, so its scores store holds them too: the five arrays of a masks store
(:class:`~ovseg.storage.store.MaskProposals`) beside ``score`` (and ``class_scores`` for several classes), and
``finder`` in its attributes. :func:`candidates` is how every reader finds a photo's candidates either way, so
``select``, labels.png, COCO, overlays and a video's keyframes need no word of which finder ran.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ovseg.config import Settings
from ovseg.masks import finder_name
from ovseg.media.fileio import content_key
from ovseg.request import prompt_synonyms
from ovseg.storage.folders import StageFolder
from ovseg.storage.store import MaskProposals

FOUND_VERSION = "found-v1"


def found_key(settings: Settings, features: str, query: str | tuple[str, ...]) -> str:
    """The key of a finder's instances for one prompt (or classes, in order) on one photo's features."""
    words = query.strip() if isinstance(query, str) else [c.strip() for c in query]
    return content_key(FOUND_VERSION, features, words, finder_name(settings), settings.section("find"))


def found_store(
    finder: Any, features: dict[str, np.ndarray], size: tuple[int, int], classes: list[str]
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The scores store of one photo: every instance of each class (one class: the prompt) with its scores.

    Each class's synonyms are asked separately and their instances pooled; ``class_scores`` (N, C) holds each
    instance's score in the column of the class that found it, and ``score`` its best.
    """
    texts = [(c, text) for c, name in enumerate(classes) for text in prompt_synonyms(name)]
    found = finder.find(features, size, [text for _, text in texts])
    width, height = size
    pooled = [(c, one) for (c, _), one in zip(texts, found, strict=True) if len(one)]
    masks = np.concatenate([one.masks for _, one in pooled]) if pooled else np.zeros((0, height, width), bool)
    boxes = np.concatenate([one.boxes for _, one in pooled]) if pooled else np.zeros((0, 4), np.float32)
    scores = np.concatenate([one.scores for _, one in pooled]) if pooled else np.zeros((0,), np.float32)
    class_scores = np.zeros((len(scores), len(classes)), np.float32)
    row = 0
    for c, one in pooled:
        class_scores[row : row + len(one), c] = one.scores
        row += len(one)
    proposals = MaskProposals(
        masks=masks,
        boxes=boxes,
        areas=masks.sum(axis=(1, 2)).astype(np.int64),
        predicted_iou=scores,
        stability_score=np.ones_like(scores),
    )
    arrays = {**proposals.arrays(), "score": scores.astype(np.float32), "class_scores": class_scores}
    return arrays, {"finder": finder.name, "classes": list(classes), "texts": [t for _, t in texts]}


def find_for(
    finder: Any, masks_folder: StageFolder, features_key: str, classes: list[str]
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """:func:`found_store` for the photo whose features the masks stage cached under ``features_key``."""
    arrays, attrs = masks_folder.read_store(features_key)
    size = tuple(attrs["working_size"])
    return found_store(finder, arrays, (int(size[0]), int(size[1])), classes)


def candidates(masks: StageFolder, scores: StageFolder, masks_key: str, scores_key: str) -> MaskProposals:
    """A photo's candidates: a finder's instances, kept with their scores; else the masks stage's masks."""
    if scores.read_store(scores_key, names=[])[1].get("finder"):
        return scores.proposals(scores_key)[0]
    return masks.proposals(masks_key)[0]
