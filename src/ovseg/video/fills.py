"""The video fills ``video.fill`` chooses between, behind one small interface (:class:`VideoFill`).

A fill backend says which heavy model it needs (:meth:`VideoFill.load`, pooled by the stage under
:meth:`VideoFill.model_settings`) and makes a filler for a clip: anything whose ``run()`` yields
``(frame index, filled frame, FillStats)`` in order, pixels outside the holes unchanged. The fill
stage (:mod:`ovseg.pipeline.fill`), the benchmark and the page use only this.

| ``video.fill``  | model                              | what                                             |
| --------------- | ---------------------------------- | ------------------------------------------------ |
| ``temporal``    | ``edit.backend``'s painter         | :mod:`.fill`: other frames' pixels, aligned      |
|                 | (for what no frame saw)            | directly; shadows too; no weights of its own     |
| ``propainter``  | ProPainter (``video.propainter_``  | :mod:`.propainter`: learned flow completion and  |
|                 | ``model``; NTU S-Lab, non-comm.)   | propagation, a video transformer for the rest    |
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol

import numpy as np

from ovseg.config import Registry, Settings
from ovseg.video.fill import FillStats, ImageFill


class Filler(Protocol):
    holes: list[np.ndarray]  # the holes filled (the temporal fill grows them by the shadow)

    def run(self) -> Iterator[tuple[int, np.ndarray, FillStats]]: ...


class VideoFill(Protocol):
    kind: str  # the model pool's name for what :meth:`load` returns

    def model_settings(self, settings: Settings) -> Any:
        """What the loaded model depends on (the pool reloads when it changes)."""
        ...

    def load(self, settings: Settings, device: str) -> Any:
        """The heavy model this fill needs, loaded on ``device``."""
        ...

    def fingerprint(self, settings: Settings) -> str:
        """What the fill's result depends on besides the settings: its weights (for the stage's key)."""
        ...

    def describe(self, settings: Settings) -> str:
        """How the stage names itself in progress lines."""
        ...

    def filler(
        self, frames: list[np.ndarray], holes: list[np.ndarray], model: Callable[[], Any], settings: Settings,
        paint: ImageFill,
    ) -> Filler:  # fmt: skip
        """A filler for one clip; ``model()`` gives the loaded model, ``paint`` the photo painter's fill."""
        ...


class TemporalFill:
    """Pixels other frames saw, aligned in one step; the image backend (``edit.backend``) paints the rest once."""

    kind = "painter"

    def model_settings(self, settings: Settings) -> Any:
        return settings.edit

    def load(self, settings: Settings, device: str) -> Any:
        from ovseg.editing import load_painting_model

        return load_painting_model(settings.edit, device)

    def fingerprint(self, settings: Settings) -> str:
        from ovseg.editing import fingerprint

        return fingerprint(settings.edit)

    def describe(self, settings: Settings) -> str:
        return f"fill (remove, {settings.edit.backend} where no frame saw)"

    def filler(
        self, frames: list[np.ndarray], holes: list[np.ndarray], model: Callable[[], Any], settings: Settings,
        paint: ImageFill,
    ) -> Filler:  # fmt: skip
        from ovseg.video.fill import TemporalFiller, TemporalFillSettings

        return TemporalFiller(frames, holes, paint, TemporalFillSettings.of(settings.video))


class ProPainterFill:
    """ProPainter, for users with its weights (``ovseg weights download propainter``; non-commercial licence)."""

    kind = "propainter"

    def model_settings(self, settings: Settings) -> Any:
        return settings.video.propainter_model

    def load(self, settings: Settings, device: str) -> Any:
        from ovseg.video.propainter import load_propainter

        # pytorchcv's streaming driver knows CUDA and the CPU; on Apple's MPS it runs on the CPU.
        return load_propainter(settings.video.propainter_model, device if device.startswith("cuda") else "cpu")

    def fingerprint(self, settings: Settings) -> str:
        from ovseg.weights.registry import PROPAINTER, model_fingerprint

        return model_fingerprint(settings.video.propainter_model, PROPAINTER)

    def describe(self, settings: Settings) -> str:
        return "fill (remove, ProPainter)"

    def filler(
        self, frames: list[np.ndarray], holes: list[np.ndarray], model: Callable[[], Any], settings: Settings,
        paint: ImageFill,
    ) -> Filler:  # fmt: skip
        from ovseg.video.propainter import ProPainterFiller

        return ProPainterFiller(frames, holes, model(), settings.video.fill_short_side)


FILLS: Registry[VideoFill] = Registry("video.fill", {"temporal": TemporalFill, "propainter": ProPainterFill})
