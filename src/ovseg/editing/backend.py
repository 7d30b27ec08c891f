"""The one small interface every edit backend offers the edit stage.

Why an interface: SD 2 inpainting, OpenCV's fills and whatever comes next (LaMa, another
diffusion model) differ in what they load and what they can do, but the stage uses them the
same way: load the heavy part once per run, make a painter for one request, and paint crops
through the shared dilate / crop / paste path (:mod:`.geometry`). A new backend is one module
implementing :class:`EditBackend` plus one line in :data:`ovseg.editing.BACKENDS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from PIL import Image

from ovseg.config import EditSettings

# Crop image + crop mask (white = paint here) -> the painted crop, the same size. The crop is at
# ``edit.resolution`` for a backend whose ``resizes_to_model`` is true, else at the photo's own pixels.
Painter = Callable[[Image.Image, Image.Image], Image.Image]


@dataclass(frozen=True)
class EditRequest:
    """What to paint, resolved from the mode: the prompt, what to avoid, how strongly to repaint."""

    prompt: str
    negative_prompt: str
    strength: float


class EditBackend(Protocol):
    """A way to paint the selected region."""

    name: str
    modes: tuple[str, ...]  # which of remove / replace / style it can do
    # True: a model trained at one size (SD 2: 512 px) paints the crop resized to edit.resolution;
    # False: the crop is painted at the photo's own pixels (resizing would only blur a fill from them).
    resizes_to_model: bool
    # The edit setting naming its weights (a registry name or a folder) and their kind in ovseg.weights.registry;
    # None for a backend without weights. ``edit.backend: auto`` takes the first whose weights are on disk.
    weights_setting: str | None
    weights_kind: str | None

    def check(self, settings: EditSettings) -> None:
        """Raise a one-line :class:`~ovseg.errors.OvsegError` for settings this backend cannot use."""

    def min_crop_side(self, settings: EditSettings) -> int:
        """The smallest crop (photo pixels) painted around a hole: a model needs context around small holes."""

    def fingerprint(self, settings: EditSettings) -> str:
        """What identifies the painting model in the edit's cache key (weights, library version)."""

    def load(self, settings: EditSettings, device: str) -> Any:
        """The heavy part (a diffusion pipeline; None when there is none), loaded once per run."""

    def painter(self, model: Any, settings: EditSettings, request: EditRequest) -> Painter:
        """A painter for one request from the loaded model."""
