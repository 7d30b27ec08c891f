"""The one small interface every propagation backend offers: prompts on a frame in, masks on every frame out.

Modelled on SAM 2's video predictor (``init_state`` / ``add_new_points_or_box`` /
``add_new_mask`` / ``propagate_in_video``): one state object carries a video's frames, the
objects' prompts and whatever memory the backend keeps. What differs between backends (SAM 2's
memory attention on a GPU, a CPU tracker that re-prompts a SAM-family model along optical
flow) stays behind these few methods, so following (:mod:`ovseg.video.tracking`) is written once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


class Frames(Protocol):
    """A video's frames in order, read when asked (a long clip never sits in memory whole)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> np.ndarray:
        """Frame ``index`` as (H, W, 3) uint8 RGB."""
        ...


class FrameList:
    """:class:`Frames` over arrays already in memory (tests, short clips)."""

    def __init__(self, frames: Sequence[np.ndarray]) -> None:
        self._frames = list(frames)

    def __len__(self) -> int:
        return len(self._frames)

    def __getitem__(self, index: int) -> np.ndarray:
        return self._frames[index]


@dataclass
class ObjectMask:
    """One object on one frame: its mask at the frame's size, how sure the backend is, and whether it is there.

    ``present`` is False when the object has left the frame or is hidden (the mask is then empty).
    """

    mask: np.ndarray
    score: float
    present: bool


class Propagator(Protocol):
    """A way to follow objects through a video."""

    name: str

    def start(self, frames: Frames) -> Any:
        """A new state for a video (no objects yet)."""

    def add(
        self,
        state: Any,
        frame: int,
        obj: int,
        *,
        points: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        box: tuple[float, float, float, float] | None = None,
        mask: np.ndarray | None = None,
    ) -> ObjectMask:
        """Object ``obj`` on ``frame`` from clicks (x, y; label 1 include, 0 exclude), a box (x1, y1, x2, y2) or a
        mask; replaces what the state knew of it on that frame. Returns its mask there."""

    def propagate(
        self, state: Any, start: int, stop: int, reverse: bool = False
    ) -> Iterator[tuple[int, dict[int, ObjectMask]]]:
        """Follow every object from frame ``start`` (where each has a mask) to ``stop`` (inclusive), forward or
        backward; yields each frame after ``start`` with its objects' masks."""


# Optional, for stopping and going on (:class:`ovseg.video.tracking.Following`): ``snapshot(state, frames) -> values |
# None`` (picklable: what propagating on from those frames needs, the objects on them and any memory) and
# ``restore(frames, values) -> state``. A backend without them (SAM 2's, whose state lives on the GPU) starts again.
