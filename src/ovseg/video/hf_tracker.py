"""The ``edgetam`` and ``sam3`` propagation backends: SAM 2-style memory trackers through transformers.

``EdgeTamVideoModel`` (with ``Sam2VideoProcessor``) and ``Sam3TrackerVideoModel`` (with
``Sam3TrackerVideoProcessor``) share one inference-session API (``init_video_session``,
``add_inputs_to_inference_session``, ``propagate_in_video_iterator``), so one class serves both; they differ
only in the classes :data:`TRACKERS` names.

Long clips keep bounded memory, where the session as transformers makes it would not:
- frames are preprocessed when the model asks for them and only the last few are kept
  (:class:`ProcessedFrames`), instead of the whole clip at 1024 px in float32 (12 MB a frame);
- each object's per-frame memory is dropped once it is older than anything the model reads again
  (``num_maskmem`` memories and ``max_object_pointers_in_encoder`` pointers), so a 600-frame clip holds about
  as much as a 20-frame one;
- on a GPU under 10 GB the session's state lives on the CPU (``inference_state_device``), as sam2 offloads.

A new object after tracking started (words found it at a keyframe) restarts the session there, every object
given again as its mask on that frame, as the ``sam2`` backend does.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ovseg.video.backend import Frames, ObjectMask

SMALL_GPU = 10 * 2**30
KEPT_FRAMES = 4  # preprocessed frames kept at once (the model reads the current one; a restart reads one more)

# backend name -> (model class, processor class) in transformers
TRACKERS = {
    "edgetam": ("EdgeTamVideoModel", "Sam2VideoProcessor"),
    "sam3": ("Sam3TrackerVideoModel", "Sam3TrackerVideoProcessor"),
}


class ProcessedFrames:
    """The session's ``processed_frames``, made when asked: a frame is read and preprocessed on demand and only
    the last :data:`KEPT_FRAMES` are kept."""

    def __init__(self, frames: Frames, processor: Any, dtype: Any) -> None:
        self.frames, self.processor, self.dtype = frames, processor, dtype
        self._kept: OrderedDict[int, Any] = OrderedDict()

    def __len__(self) -> int:
        return len(self.frames)

    def __contains__(self, index: object) -> bool:
        return isinstance(index, int) and 0 <= index < len(self.frames)

    def __getitem__(self, index: int) -> Any:
        if index not in self._kept:
            frame = np.array(self.frames[index])  # a writable copy: torch reads it in place
            video = self.processor.video_processor(videos=[frame[None]], return_tensors="pt")
            self._kept[index] = video.pixel_values_videos[0][0].to(self.dtype)
            while len(self._kept) > KEPT_FRAMES:
                self._kept.popitem(last=False)
        self._kept.move_to_end(index)
        return self._kept[index]

    def __setitem__(self, index: int, value: Any) -> None:  # streaming adds; not used on a known clip
        self._kept[index] = value


@dataclass
class HfTrackState:
    frames: Frames
    session: Any
    objects: set[int] = field(default_factory=set)
    started: bool = False
    latest: dict[int, dict[int, np.ndarray]] = field(default_factory=dict)  # frame -> object -> mask (restarts)


def load_hf_tracker(name: str, folder: Path, device: str) -> HfVideoTracker:
    """The ``name`` tracker (:data:`TRACKERS`) from a transformers folder, on ``device``."""
    import torch
    import transformers

    model_class, processor_class = (getattr(transformers, cls) for cls in TRACKERS[name])
    dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    model = model_class.from_pretrained(str(folder), dtype=dtype).to(device).eval()
    return HfVideoTracker(name, model, processor_class.from_pretrained(str(folder)), str(device), dtype)


class HfVideoTracker:
    """A transformers video tracker behind :class:`~ovseg.video.backend.Propagator`."""

    def __init__(self, name: str, model: Any, processor: Any, device: str, dtype: Any) -> None:
        self.name, self.model, self.processor, self.device, self.dtype = name, model, processor, device, dtype
        config = model.config
        self.keep = max(int(config.num_maskmem), int(config.max_object_pointers_in_encoder)) + 1

    def _state_device(self) -> str:
        if not self.device.startswith("cuda"):
            return self.device
        import torch

        small = torch.cuda.get_device_properties(torch.device(self.device)).total_memory < SMALL_GPU
        return "cpu" if small else self.device

    def start(self, frames: Frames) -> HfTrackState:
        session = self.processor.init_video_session(
            inference_device=self.device,
            inference_state_device=self._state_device(),
            video_storage_device="cpu",
            dtype=self.dtype,
        )
        session.processed_frames = ProcessedFrames(frames, self.processor, self.dtype)
        session.video_height, session.video_width = np.asarray(frames[0]).shape[:2]
        return HfTrackState(frames, session)

    def add(self, state: HfTrackState, frame: int, obj: int, *, points=None, labels=None, box=None, mask=None):
        import torch

        if state.started and obj not in state.objects:
            self._restart(state, frame)
        with torch.inference_mode():
            self._give(state, frame, obj, points=points, labels=labels, box=box, mask=mask)
            found = self._masks(self.model(inference_session=state.session, frame_idx=frame), state)
        _mend_score_shapes(state.session)
        state.objects.add(obj)
        state.latest.setdefault(frame, {}).update({o: m.mask for o, m in found.items()})
        return found[obj]

    def _give(self, state: HfTrackState, frame: int, obj: int, *, points=None, labels=None, box=None, mask=None):
        inputs: dict[str, Any] = {}
        if mask is not None:
            inputs["input_masks"] = np.asarray(mask, bool)
        if points is not None and len(points):
            coords = np.asarray(points, np.float32).reshape(-1, 2)
            inputs["input_points"] = [[coords.tolist()]]
            inputs["input_labels"] = [[np.asarray(labels, np.int64).reshape(-1).tolist()]]
        if box is not None:
            inputs["input_boxes"] = [[[float(v) for v in box]]]
        self.processor.add_inputs_to_inference_session(
            inference_session=state.session, frame_idx=frame, obj_ids=obj, **inputs
        )

    def _restart(self, state: HfTrackState, frame: int) -> None:
        """A new object after tracking started: start again at ``frame`` with every object's mask there."""
        import torch

        known = state.latest.get(frame, {})
        state.session.reset_tracking_data()
        state.started = False
        state.objects = set()
        with torch.inference_mode():
            for obj, mask in known.items():
                if mask.any():
                    self._give(state, frame, obj, mask=mask)
                    state.objects.add(obj)
            if state.objects:
                self.model(inference_session=state.session, frame_idx=frame)
                _mend_score_shapes(state.session)

    def _masks(self, outputs: Any, state: HfTrackState) -> dict[int, ObjectMask]:
        """Each object's mask at the frame's size, its score (mean probability inside) and whether it is there."""
        import torch

        size = [[state.session.video_height, state.session.video_width]]
        logits = self.processor.post_process_masks([outputs.pred_masks.float()], original_sizes=size, binarize=False)
        logits = logits[0][:, 0]
        present = (
            outputs.object_score_logits.float().reshape(-1) > 0 if outputs.object_score_logits is not None else None
        )
        found = {}
        for i, obj in enumerate(outputs.object_ids):
            inside = logits[i] > 0
            here = bool(inside.any()) and (present is None or bool(present[i]))
            score = float(torch.sigmoid(logits[i][inside]).mean()) if here else 0.0
            mask = inside.cpu().numpy() if here else np.zeros(inside.shape, bool)
            found[int(obj)] = ObjectMask(mask, round(score, 4), here)
        return found

    def propagate(
        self, state: HfTrackState, start: int, stop: int, reverse: bool = False
    ) -> Iterator[tuple[int, dict[int, ObjectMask]]]:
        import torch

        if not state.objects:
            return
        state.started = True
        with torch.inference_mode():
            for outputs in self.model.propagate_in_video_iterator(
                state.session,
                start_frame_idx=start,
                max_frame_num_to_track=abs(stop - start),
                reverse=reverse,
                show_progress_bar=False,
            ):
                frame = int(outputs.frame_idx)
                if frame == start:
                    continue
                found = self._masks(outputs, state)
                state.latest = {frame: {o: m.mask for o, m in found.items()}}
                self._forget(state, frame, reverse)
                yield frame, found

    def _forget(self, state: HfTrackState, frame: int, reverse: bool) -> None:
        """Drop each object's memory of frames the model will not read again (bounded memory on long clips)."""
        for outputs in state.session.output_dict_per_obj.values():
            older = outputs["non_cond_frame_outputs"]
            for index in [i for i in older if (i > frame + self.keep if reverse else i < frame - self.keep)]:
                del older[index]


def _mend_score_shapes(session: Any) -> None:
    """Give a mask-prompted frame's object score the shape every other output has, (1, 1, 1).

    transformers (5.x) stores it as (1, 1) when the prompt was a mask, and the next call that gathers every
    object's outputs on that frame (a second object added there, or propagation from it) then fails to
    concatenate them. Reshaping the stored value is all that differs; nothing else reads its shape.
    """
    for outputs in session.output_dict_per_obj.values():
        for stored in outputs["cond_frame_outputs"].values():
            logits = stored.get("object_score_logits")
            if logits is not None and logits.dim() == 2:
                stored["object_score_logits"] = logits.unsqueeze(-1)
