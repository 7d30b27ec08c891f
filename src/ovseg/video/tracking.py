"""Following objects through a video: what the user gave (clicks, a box, a mask) and what words find at keyframes,
carried frame by frame by a propagation backend (:mod:`ovseg.video.backend`). A model-layer algorithm: frames
and instances in, per-frame masks out; it knows no folder.

* **Seeds** (clicks, a box, a first mask with one or several ids) are objects on one frame: they
  are followed backward to the first frame and forward to the last.
* **Words** are looked for at keyframes (the first frame, every K-th, and scene changes): each
  instance found there is matched to the object it overlaps most (of its class, IoU at least
  ``match_iou``), which is brought back if it was lost; an instance that matches none is a new
  object with a new id, followed from there on.

Results come frame by frame, in the order they are made, so a long clip is written as it goes
and never held whole.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ovseg.video.backend import Frames, ObjectMask, Propagator

MATCH_IOU = 0.3


@dataclass
class Seed:
    """One object the user gave on ``frame``: clicks (x, y with labels 1 / 0), a box (x1, y1, x2, y2) or a mask."""

    obj: int
    label: str
    frame: int
    points: np.ndarray | None = None
    labels: np.ndarray | None = None
    box: tuple[float, float, float, float] | None = None
    mask: np.ndarray | None = None


@dataclass
class Found:
    """An instance words found on a keyframe: its mask, its class (0-based) and how sure scoring is."""

    mask: np.ndarray
    category: int
    score: float


@dataclass
class TrackInfo:
    """What is known of one followed object: its id, what it is (the prompt, the class, "click", "mask 2"), its class
    (1-based, words only) and where it started."""

    obj: int
    label: str
    category: int | None
    first_frame: int


@dataclass
class FollowPlan:
    """What to follow in a video of ``frames`` frames: seeds, and (for words) keyframes with a way to find instances."""

    frames: int
    seeds: list[Seed] = field(default_factory=list)
    keyframes: list[int] = field(default_factory=list)
    find: Callable[[int], list[Found]] | None = None
    classes: list[str] = field(default_factory=list)
    match_iou: float = MATCH_IOU


@dataclass
class FollowCheckpoint:
    """Where a :class:`Following` stands after it gave ``done`` frames (the last one ``frame``), and all it needs to
    go on from there exactly as it would have: the propagator's snapshot, the objects on that frame, each one's
    last mask seen and what is known of it. Plain values: it is pickled beside a clip's partial results."""

    done: int
    frame: int
    propagator: Any
    current: dict[int, ObjectMask]
    last_seen: dict[int, np.ndarray]
    tracks: dict[int, TrackInfo]


class Following:
    """Every frame's objects, as (frame, {object id: its mask}), in the order they are computed; resumable.

    Frames come in this order: with seeds on frame f, f itself, then f-1 ... 0, then f+1 ... the last; with
    words, from the first keyframe on. :meth:`checkpoint` after any frame gives what :class:`Following` needs,
    given as ``resume``, to go on from the next frame with the same results as without the stop (when the
    propagator can snapshot its state; None when it cannot).
    """

    def __init__(
        self,
        propagator: Propagator,
        frames: Frames,
        plan: FollowPlan,
        tracks: dict[int, TrackInfo],
        resume: FollowCheckpoint | None = None,
    ) -> None:
        self.propagator, self.frames, self.plan, self.tracks = propagator, frames, plan, tracks
        self.current: dict[int, ObjectMask] = {}
        self.last_seen: dict[int, np.ndarray] = {}  # each object's latest mask while it was there
        self.done, self.frame = 0, -1
        if resume is not None:
            self.state = propagator.restore(frames, resume.propagator)
            self.done, self.frame = resume.done, resume.frame
            self.current, self.last_seen = dict(resume.current), dict(resume.last_seen)
            tracks.update(resume.tracks)
        else:
            self.state = propagator.start(frames)

    def checkpoint(self) -> FollowCheckpoint | None:
        """A snapshot of where following stands, or None when the propagator cannot take one."""
        snapshot = getattr(self.propagator, "snapshot", None)
        if snapshot is None or self.done == 0:
            return None
        keep = {self.frame, *(seed.frame for seed in self.plan.seeds)}
        taken = snapshot(self.state, sorted(keep))
        if taken is None:
            return None
        return FollowCheckpoint(
            self.done, self.frame, taken, dict(self.current), dict(self.last_seen), dict(self.tracks)
        )

    def _give(self, frame: int, masks: dict[int, ObjectMask]) -> tuple[int, dict[int, ObjectMask]]:
        self.done, self.frame = self.done + 1, frame
        return frame, masks

    def __iter__(self) -> Iterator[tuple[int, dict[int, ObjectMask]]]:
        if self.plan.seeds:
            yield from self._seeded()
        else:
            yield from self._by_words()

    def _seeded(self) -> Iterator[tuple[int, dict[int, ObjectMask]]]:
        plan, propagator, state = self.plan, self.propagator, self.state
        start, last = plan.seeds[0].frame, plan.frames - 1
        if any(seed.frame != start for seed in plan.seeds):
            raise ValueError("every seed must be on the same frame")
        if self.done == 0:
            on_start = {}
            for seed in plan.seeds:
                self.tracks[seed.obj] = TrackInfo(seed.obj, seed.label, None, start)
                on_start[seed.obj] = propagator.add(
                    state, start, seed.obj, points=seed.points, labels=seed.labels, box=seed.box, mask=seed.mask
                )
            yield self._give(start, on_start)
        if self.done <= start:  # going back to the first frame, from the seeds' frame or where it stopped
            for frame, masks in propagator.propagate(state, self.frame, 0, reverse=True):
                yield self._give(frame, masks)
        if start < last:  # then on from the seeds' frame to the last, or from where it stopped
            for frame, masks in propagator.propagate(state, start if self.done <= start + 1 else self.frame, last):
                yield self._give(frame, masks)

    def _by_words(self) -> Iterator[tuple[int, dict[int, ObjectMask]]]:
        plan, propagator, state = self.plan, self.propagator, self.state
        if plan.find is None or not plan.keyframes:
            raise ValueError("nothing to follow: give seeds, or keyframes and a way to find instances")
        keyframes, last = sorted(set(plan.keyframes)), plan.frames - 1
        for frame in range(self.frame + 1, keyframes[0]):
            yield self._give(frame, {})
        for position, keyframe in enumerate(keyframes):
            final = position + 1 == len(keyframes)
            stop = last if final else keyframes[position + 1]
            if self.frame >= stop and not final:
                continue  # done before a stop: on to the keyframe where it stood
            if self.frame < keyframe:
                self.current = _match(propagator, state, keyframe, plan, self.current, self.last_seen, self.tracks)
                self.last_seen.update({obj: seen.mask for obj, seen in self.current.items() if seen.present})
                yield self._give(keyframe, dict(self.current))
            if stop <= self.frame:
                continue
            if not self.current:  # nothing found yet: empty frames until the next keyframe
                for frame in range(self.frame + 1, stop + final):
                    yield self._give(frame, {})
                continue
            for frame, masks in propagator.propagate(state, self.frame, stop):
                self.current = masks
                self.last_seen.update({obj: seen.mask for obj, seen in masks.items() if seen.present})
                if frame < stop or final:
                    yield self._give(frame, dict(masks))


def follow(
    propagator: Propagator, frames: Frames, plan: FollowPlan, tracks: dict[int, TrackInfo]
) -> Iterator[tuple[int, dict[int, ObjectMask]]]:
    """Every frame's objects, as (frame, {object id: its mask}); ``tracks`` fills with each object's description
    (:class:`Following`, without stops)."""
    return iter(Following(propagator, frames, plan, tracks))


def refollow(propagator: Propagator, frames: Frames, seed: Seed) -> Iterator[tuple[int, ObjectMask]]:
    """One object followed again from ``seed.frame`` to the last frame, alone, from the seed's clicks, box or mask
    there: (frame, its mask) in order. A fresh state, so nothing the earlier following knew (a wrong memory is
    what a correction is for) leaks into it."""
    state = propagator.start(frames)
    yield seed.frame, propagator.add(state, seed.frame, seed.obj, points=seed.points, labels=seed.labels,
                                     box=seed.box, mask=seed.mask)  # fmt: skip
    if seed.frame >= len(frames) - 1:
        return
    height, width = frames[seed.frame].shape[:2]
    gone = ObjectMask(np.zeros((height, width), bool), 0.0, False)
    for frame, masks in propagator.propagate(state, seed.frame, len(frames) - 1):
        yield frame, masks.get(seed.obj, gone)


def _match(
    propagator: Propagator,
    state,
    keyframe: int,
    plan: FollowPlan,
    current: dict[int, ObjectMask],
    last_seen: dict[int, np.ndarray],
    tracks: dict[int, TrackInfo],
) -> dict[int, ObjectMask]:
    """The keyframe's objects: those followed so far, the lost ones words found again, and new ones.

    An instance is the object of its class it overlaps most (IoU at least ``match_iou`` with the
    object's mask here, or, for a lost object, with its last mask seen); else a new object.
    """
    found = sorted(plan.find(keyframe), key=lambda f: -f.score)
    result = dict(current)
    taken: set[int] = set()
    for instance in found:
        best, best_iou = None, plan.match_iou
        for obj, seen in current.items():
            if obj in taken or tracks[obj].category != instance.category + 1:
                continue
            reference = seen.mask if seen.present else last_seen.get(obj)
            overlap = _iou(reference, instance.mask) if reference is not None else 0.0
            if overlap >= best_iou:
                best, best_iou = obj, overlap
        if best is not None:
            taken.add(best)
            if not current[best].present:  # lost, found again by words
                result[best] = propagator.add(state, keyframe, best, mask=instance.mask)
            continue
        obj = max(tracks, default=0) + 1
        name = plan.classes[instance.category] if plan.classes else str(instance.category + 1)
        tracks[obj] = TrackInfo(obj, name, instance.category + 1, keyframe)
        result[obj] = propagator.add(state, keyframe, obj, mask=instance.mask)
        taken.add(obj)
    return result


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def label_map(masks: dict[int, ObjectMask], shape: tuple[int, int]) -> np.ndarray:
    """One frame's objects as ids (0 background, k object k); where two overlap, the surer one's id."""
    labels = np.zeros(shape, np.uint16 if max(masks, default=0) > 255 else np.uint8)
    for obj, found in sorted(masks.items(), key=lambda item: item[1].score):
        if found.present:
            labels[found.mask] = obj
    return labels
