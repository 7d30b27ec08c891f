"""The interface of a model that finds things by words itself (SAM 3), beside :class:`~ovseg.masks.PromptModel`.

Why a second interface: SAM 2 proposes every mask of a photo without knowing the words, and CLIP scores the
candidates. SAM 3 takes the words and returns every instance of them. Its cost still splits the way the DAG
wants: the image encoder (most of the work) once per photo, whatever the words; the detector and mask head
per prompt. So a finder offers the two halves, and the stages cache the first (the ``masks`` stage) and run the
second per prompt (the ``score`` stage), as they cache masks and CLIP features and score them per prompt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from PIL import Image


@dataclass
class FoundSet:
    """Every instance a finder found for one text on one photo, at the size asked for.

    ``masks`` (N, H, W) bool; ``boxes`` (N, 4) float32 XYWH pixels; ``scores`` (N,) float32 in [0, 1], the
    model's confidence that the instance is one of the words (SAM 3: the query's score times the presence score).
    """

    masks: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return int(self.masks.shape[0])


class Finder(Protocol):
    """A model that finds every instance of some words: the image encoded once, then any number of prompts."""

    name: str
    encoder_calls: int  # image encodings since loading: what a prompt change must not add to

    def encode(self, image: Image.Image) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The image's features as arrays to cache (float16 where they are large) and what they depend on."""
        ...

    def find(self, features: dict[str, np.ndarray], size: tuple[int, int], texts: list[str]) -> list[FoundSet]:
        """For each text, every instance on the encoded image, at ``size`` (width, height)."""
        ...
