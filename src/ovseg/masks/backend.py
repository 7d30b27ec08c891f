"""The one small interface every promptable mask model offers the mask engine.

Why an interface: SAM 2 in torch and SAM-family ONNX exports encode an image once and
then decode any number of prompts. The engine (grid or adaptive sampling, quality
filters, NMS, upsampling) is written once against :class:`PromptModel`, so a new
backend is one file that implements these few methods.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class PromptModel(Protocol):
    """A promptable segmenter: encode one image, then decode prompts into low-resolution logits."""

    name: str
    calls: int  # decoder calls since the last set_image (the cost that matters on a CPU)

    def set_image(self, image: np.ndarray) -> None:
        """Encode an (H, W, 3) uint8 RGB image; later calls to :meth:`predict` prompt it."""

    def predict(self, coords: np.ndarray, labels: np.ndarray, multimask: bool) -> tuple[np.ndarray, np.ndarray]:
        """Decode B prompts.

        ``coords`` (B, N, 2) float (x, y) in image pixels; ``labels`` (B, N) int: 1 include,
        0 exclude, 2 / 3 the top-left / bottom-right corners of a box. Returns low-resolution
        mask logits (B, M, h, w) float32 and the model's predicted IoU (B, M): M = 3 masks
        per prompt with ``multimask`` (whole, part, sub-part) where the model has them, else 1.
        """
        ...

    def candidates(self, coords: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every mask the model gives for one prompt (``coords`` (N, 2), ``labels`` (N,) as above): SAM's single
        answer and its multimask ones, (M, h, w) low-resolution logits and (M,) predicted IoU. What a tracker
        chooses from (:mod:`ovseg.video.flow_tracker`)."""
        ...

    @property
    def low_res_valid(self) -> tuple[int, int]:
        """Rows and columns of the low-resolution grid that show the image (the rest is padding)."""
        ...

    def upscale(self, logits: np.ndarray) -> np.ndarray:
        """(K, rows, cols) logits cropped to :attr:`low_res_valid` -> (K, H, W) logits at the image's size."""
        ...


# Optional, for trackers (:mod:`ovseg.video.memory`): ``image_features() -> (features (C, rows, cols), (cell height,
# cell width) in image pixels) | None``, the image embedding the last :meth:`PromptModel.set_image` computed. A model
# without it is remembered by colour instead.
