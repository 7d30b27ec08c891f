"""The ``sam2`` propagation backend: SAM 2's own video predictor (memory attention), through sam2's own code.

Built with ``build_sam2_video_predictor`` from the same checkpoint and config the mask stage
loads (:func:`ovseg.masks.sam2_backend.load_sam2`'s folder rules). The video is the frame store's
folder of ``NNNNN.jpg`` files, which is what sam2's loader reads. On a GPU under 10 GB the frames
and the per-frame state are kept on the CPU (``offload_video_to_cpu``, ``offload_state_to_cpu``), as
sam2 allows, so it fits the 6 GB card the presets are sized for.

SAM 2 takes no new object once it has started tracking; when one appears later (words found it at
a keyframe), the state is reset there and every object is given again as its mask on that frame.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ovseg.video.backend import Frames, ObjectMask

SMALL_GPU = 10 * 2**30


@dataclass
class Sam2State:
    frames: Frames
    inference: Any
    folder: Path
    scratch: tempfile.TemporaryDirectory | None = None
    latest: dict[int, dict[int, np.ndarray]] = field(default_factory=dict)  # frame -> object -> mask
    objects: set[int] = field(default_factory=set)
    started: bool = False


def load_video_predictor(name: str, device: str):
    """SAM 2's video predictor for mask model ``name`` (a registry SAM 2 or a folder with ``config.yaml``)."""
    from sam2.build_sam import build_sam2_video_predictor

    from ovseg.masks.sam2_backend import build_with

    return build_with(build_sam2_video_predictor, name, device, "SAM 2's video predictor")


class Sam2VideoPropagator:
    """SAM 2's video predictor behind :class:`~ovseg.video.backend.Propagator`."""

    name = "sam2"

    def __init__(self, predictor: Any, device: str) -> None:
        self.predictor, self.device = predictor, str(device)

    def _offload(self) -> bool:
        if not self.device.startswith("cuda"):
            return False
        import torch

        return torch.cuda.get_device_properties(torch.device(self.device)).total_memory < SMALL_GPU

    def start(self, frames: Frames) -> Sam2State:
        from PIL import Image

        folder, scratch = getattr(frames, "folder", None), None
        if folder is None:  # frames in memory: sam2 reads a folder of NNNNN.jpg
            scratch = tempfile.TemporaryDirectory(prefix="ovseg-sam2-frames-")
            folder = Path(scratch.name)
            for index in range(len(frames)):
                Image.fromarray(frames[index]).save(folder / f"{index:05d}.jpg", quality=95)
        offload = self._offload()
        inference = self.predictor.init_state(str(folder), offload_video_to_cpu=offload, offload_state_to_cpu=offload)
        return Sam2State(frames, inference, Path(folder), scratch)

    def _masks(self, obj_ids, logits) -> dict[int, np.ndarray]:
        return {int(o): (logits[i, 0] > 0.0).cpu().numpy() for i, o in enumerate(obj_ids)}

    def add(self, state: Sam2State, frame: int, obj: int, *, points=None, labels=None, box=None, mask=None):
        import torch

        if state.started and obj not in state.objects:
            self._restart(state, frame)
        with torch.inference_mode(), self._autocast():
            if mask is not None:
                _, ids, logits = self.predictor.add_new_mask(state.inference, frame, obj, np.asarray(mask, bool))
            else:
                _, ids, logits = self.predictor.add_new_points_or_box(
                    state.inference,
                    frame,
                    obj,
                    points=None if points is None else np.asarray(points, np.float32).reshape(-1, 2),
                    labels=None if labels is None else np.asarray(labels, np.int32).reshape(-1),
                    box=None if box is None else np.asarray(box, np.float32),
                )
        state.objects.add(obj)
        found = self._masks(ids, logits)
        state.latest.setdefault(frame, {}).update(found)
        return ObjectMask(found[obj], 1.0, bool(found[obj].any()))

    def _restart(self, state: Sam2State, frame: int) -> None:
        """A new object after tracking started: start again at ``frame`` with every object's mask there."""
        import torch

        known = state.latest.get(frame, {})
        self.predictor.reset_state(state.inference)
        state.started = False
        with torch.inference_mode(), self._autocast():
            for obj, mask in known.items():
                if mask.any():
                    self.predictor.add_new_mask(state.inference, frame, obj, mask)
        state.objects = {obj for obj, mask in known.items() if mask.any()}

    def propagate(
        self, state: Sam2State, start: int, stop: int, reverse: bool = False
    ) -> Iterator[tuple[int, dict[int, ObjectMask]]]:
        import torch

        if not state.objects:
            return
        state.started = True
        with torch.inference_mode(), self._autocast():
            for frame, ids, logits in self.predictor.propagate_in_video(
                state.inference, start_frame_idx=start, max_frame_num_to_track=abs(stop - start), reverse=reverse
            ):
                if frame == start:
                    continue
                found = self._masks(ids, logits)
                state.latest = {frame: found}  # only a restart reads it, on the frame where it stands
                scores = {int(o): float(torch.sigmoid(logits[i, 0][logits[i, 0] > 0]).mean().item())
                          if (logits[i, 0] > 0).any() else 0.0 for i, o in enumerate(ids)}  # fmt: skip
                yield frame, {o: ObjectMask(m, round(scores[o], 4), bool(m.any())) for o, m in found.items()}

    def _autocast(self):
        import contextlib

        import torch

        if self.device.startswith("cuda"):
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()
