"""Harder versions of a labelled clip, with known truth: what breaks a tracker that has no memory.

Each case takes a sequence (frames and the object's mask on every frame) and changes it the way
real clips do, at the same moment of every sequence (an *event* starting at 30 % of the clip:
``enter`` frames coming, ``hold`` frames at its worst, ``enter`` frames going), so the frames after it
measure whether the object was found again:

* ``occluder``: a vertical bar textured like a tree trunk sweeps in front of the object, hides it
  for ``hold`` frames and moves on (it moves with the object while it hides it, like a trunk near a
  camera that pans with the object). The truth is what the bar leaves visible.
* ``look-alike``: the same bar, and a mirrored copy of the object as it was on the first frame pasted
  where the object never goes, as near as that allows to where it is hidden: a tracker that searches
  by appearance alone takes the copy.
* ``out of frame``: a window narrower than the frame, centred on the object, pans to the side until
  the object is out of it, waits, and pans back: the object leaves the frame and comes back.

Presence truth: present when at least ``PRESENT_SHARE`` of the object's usual body is visible (its mask
without thin parts such as a kite's lines), absent when nothing of the object is, and not counted in
between (a sliver at an edge is neither). Everything is made
from the sequence and a seed named by its frames, so two runs make the same cases.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

STRESS_VARIANTS = ("occluder", "look-alike", "out of frame")
PRESENT_SHARE = 0.1  # of the object's median area: visible at least this much is "present"
EVENT_START = 0.3  # of the clip: when the object starts to go
ENTER = 4  # frames the bar (or the window) takes to come in, and to go
HOLD = 6  # frames the object is hidden, or out of the frame


@dataclass
class StressCase:
    """One hardened clip: frames, the object's visible mask per frame, and presence truth.

    ``present[f]`` is True / False, or None where only a sliver shows (not counted). ``event`` is the
    first and last frame of the change; ``reappears`` the first frame after it where the object is
    present again (None if it never is).
    """

    sequence: str
    variant: str
    frames: list[np.ndarray]
    truth: list[np.ndarray]
    present: list[bool | None]
    event: tuple[int, int]
    reappears: int | None


def _seed(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")


def body(mask: np.ndarray) -> np.ndarray:
    """The object without its thin parts (kite lines, a leash): what the bar must hide and the window must leave.
    The mask opened by a 7 px square; the mask itself where nothing that thick is left."""
    import cv2

    opened = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, np.ones((7, 7), np.uint8)) > 0
    return opened if opened.any() else mask


def _box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    mask = body(mask)
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def event_frames(count: int) -> tuple[int, list[float]]:
    """The event's first frame, and per event frame how far in it is: 0..1 coming, 1 holding, 1..0 going."""
    start = max(1, round(EVENT_START * count))
    coming = [(k + 1) / (ENTER + 1) for k in range(ENTER)]
    return start, coming + [1.0] * HOLD + coming[::-1]


def bark_texture(height: int, width: int, seed: int) -> np.ndarray:
    """(H, W, 3) uint8: a tree trunk's bark, brown with vertical furrows and darker edges."""
    import cv2

    rng = np.random.default_rng(seed)
    columns = cv2.GaussianBlur(rng.normal(0, 1, (1, width)).astype(np.float32), (0, 0), 2.5).ravel()
    fine = cv2.GaussianBlur(rng.normal(0, 1, (height, width)).astype(np.float32), (0, 0), sigmaX=0.8, sigmaY=6)
    light = 1.0 + 0.35 * columns[None, :] / (np.abs(columns).max() + 1e-6) + 0.12 * fine
    across = np.linspace(-1, 1, width)
    light *= 1.0 - 0.45 * across[None, :] ** 4  # rounder: darker at the trunk's sides
    base = np.array([92, 70, 52], np.float32)
    return np.clip(base[None, None, :] * light[..., None], 0, 255).astype(np.uint8)


def _presence(truth: list[np.ndarray], original: list[np.ndarray]) -> list[bool | None]:
    """Present where at least ``PRESENT_SHARE`` of the object's usual body shows; absent where nothing of it shows;
    None (not counted) in between, and where only thin parts show (a kite's lines without the surfer)."""
    bodies = [body(m) for m in original]
    usual = float(np.median([b.sum() for b in bodies])) or 1.0
    present: list[bool | None] = []
    for visible, whole in zip(truth, bodies, strict=True):
        area = float((visible & whole).sum())
        present.append(True if area >= PRESENT_SHARE * usual else None if area or visible.any() else False)
    return present


def _reappears(present: list[bool | None], event: tuple[int, int]) -> int | None:
    """The first frame the object is present on after it was last absent during the event."""
    gone = [f for f in range(event[0], min(len(present), event[1] + 1)) if present[f] is False]
    after = gone[-1] + 1 if gone else event[1] + 1
    return next((f for f in range(after, len(present)) if present[f]), None)


def stress_scores(case: StressCase, masks: list[np.ndarray], present: list[bool]) -> dict[str, float | None]:
    """J and F over the clip (DAVIS's frames 1..n-2), J on the frames from the object's return on, and the share of
    counted frames (1..n-1, slivers left out) whose presence is wrong."""
    from ovseg.video.measures import sequence_scores

    scores = sequence_scores(masks, case.truth)
    last = len(masks) - 1 if len(masks) > 2 else len(masks)
    after = scores["J_frames"][case.reappears : last] if case.reappears is not None else []
    counted = [f for f in range(1, len(masks)) if case.present[f] is not None]
    wrong = sum(bool(present[f]) != case.present[f] for f in counted)
    return {
        "J": float(scores["J"]),
        "F": float(scores["F"]),
        "J_after": float(np.mean(after)) if after else None,
        "presence_wrong": wrong / len(counted) if counted else 0.0,
    }


def occluded(name: str, frames: list[np.ndarray], truth: list[np.ndarray], look_alike: bool = False) -> StressCase:
    """The ``occluder`` case (and, with ``look_alike``, the ``look-alike`` case) of one sequence."""
    height, width = truth[0].shape
    start, depth = event_frames(len(frames))
    span = range(start, min(len(frames), start + len(depth)))
    boxes = {f: _box(truth[f]) for f in span}
    widest = max((b[2] - b[0] for b in boxes.values() if b), default=width // 4)
    margin = max(8, width // 25)
    bar_width = min(width, widest + 2 * margin)
    bark = bark_texture(height, bar_width, _seed(name))
    out_frames = [f.copy() for f in frames]
    if look_alike:
        _paste_look_alike(out_frames, frames[0], truth, boxes)
    out_truth = [m.copy() for m in truth]
    last_centre = None
    for offset, frame in enumerate(span):
        box = boxes[frame]
        if box is not None:
            last_centre = (box[0] + box[2]) / 2
            object_width = box[2] - box[0]
        else:
            object_width = widest
        if last_centre is None:
            continue
        travel = (bar_width + object_width) / 2  # bar centre this far from the object's: they just touch
        coming = offset < len(depth) / 2
        shift = (1.0 - depth[offset]) * travel * (-1 if coming else 1)  # in from the left, out to the right
        left = int(round(last_centre + shift - bar_width / 2))
        x1, x2 = max(0, left), min(width, left + bar_width)
        if x2 <= x1:
            continue
        out_frames[frame][:, x1:x2] = bark[:, x1 - left : x2 - left]
        out_truth[frame][:, x1:x2] = False
    present = _presence(out_truth, truth)
    end = span[-1] if len(span) else start
    variant = "look-alike" if look_alike else "occluder"
    return StressCase(name, variant, out_frames, out_truth, present, (start, end), _reappears(present, (start, end)))


def _paste_look_alike(
    out_frames: list[np.ndarray], first: np.ndarray, truth: list[np.ndarray], boxes: dict[int, tuple | None]
) -> None:
    """A mirrored copy of the first frame's object, pasted on every frame where the object never is, as near as
    possible to where it is hidden; scaled down (to 0.4x at least) where the free room is smaller than it."""
    import cv2

    height, width = truth[0].shape
    box = _box(truth[0])
    if box is None:
        return
    x1, y1, x2, y2 = box
    patch = first[y1:y2, x1:x2][:, ::-1]
    shape = truth[0][y1:y2, x1:x2][:, ::-1]
    path = cv2.dilate(np.any(truth, axis=0).astype(np.uint8), np.ones((41, 41), np.uint8)) > 0
    integral = np.pad(path.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    hidden = [b for b in boxes.values() if b]
    target = np.mean([[(b[0] + b[2]) / 2, (b[1] + b[3]) / 2] for b in hidden], axis=0) if hidden else (width / 2, 0)
    for scale in (1.0, 0.85, 0.7, 0.55, 0.4):
        ph, pw = max(2, round((y2 - y1) * scale)), max(2, round((x2 - x1) * scale))
        if ph >= height or pw >= width:
            continue
        covered = integral[ph:, pw:] - integral[:-ph, pw:] - integral[ph:, :-pw] + integral[:-ph, :-pw]
        free = np.argwhere(covered == 0)  # (top, left) of placements that touch no part of the object's path
        if not len(free):
            continue
        centres = free + np.array([ph / 2, pw / 2])
        top, left = free[int(np.argmin(np.hypot(centres[:, 1] - target[0], centres[:, 0] - target[1])))]
        pixels = cv2.resize(patch, (pw, ph), interpolation=cv2.INTER_AREA)
        inside = cv2.resize(shape.astype(np.uint8), (pw, ph), interpolation=cv2.INTER_NEAREST) > 0
        for frame in out_frames:
            region = frame[top : top + ph, left : left + pw]
            region[inside] = pixels[inside]
        return


def out_of_frame(name: str, frames: list[np.ndarray], truth: list[np.ndarray]) -> StressCase:
    """The ``out of frame`` case: a window, as wide as lets the object leave it (0.3 to 0.5 of the frame), follows
    the object, pans away until the object is out, waits and comes back. Frames and truth are the window."""
    height, width = truth[0].shape
    start, depth = event_frames(len(frames))
    span = list(range(start, min(len(frames), start + len(depth))))
    held = [f for f, d in zip(span, depth, strict=False) if d == 1.0] or span
    boxes = [b for b in (_box(truth[f]) for f in held) if b]
    left_room = min((b[0] for b in boxes), default=width // 2)
    right_room = width - max((b[2] for b in boxes), default=width // 2)
    to_right = right_room >= left_room  # the window goes to the side with more room beside the object
    window = int(np.clip(max(left_room, right_room), 0.3 * width, 0.5 * width)) // 2 * 2
    away = width - window if to_right else 0
    centres = []
    last = width / 2
    for mask in truth:
        box = _box(mask)
        last = (box[0] + box[2]) / 2 if box else last
        centres.append(int(np.clip(round(last - window / 2), 0, width - window)))
    lefts = list(centres)
    for offset, frame in enumerate(span):
        lefts[frame] = int(round(centres[frame] + depth[offset] * (away - centres[frame])))
    out_frames = [np.ascontiguousarray(f[:, x : x + window]) for f, x in zip(frames, lefts, strict=True)]
    out_truth = [np.ascontiguousarray(m[:, x : x + window]) for m, x in zip(truth, lefts, strict=True)]
    usual = [m[:, c : c + window] for m, c in zip(truth, centres, strict=True)]  # its area when the window follows
    present = _presence(out_truth, usual)
    end = span[-1] if span else start
    return StressCase(
        name, "out of frame", out_frames, out_truth, present, (start, end), _reappears(present, (start, end))
    )


def stress_case(variant: str, name: str, frames: list[np.ndarray], truth: list[np.ndarray]) -> StressCase:
    """The ``variant`` (one of :data:`STRESS_VARIANTS`) of a sequence."""
    if variant == "occluder":
        return occluded(name, frames, truth)
    if variant == "look-alike":
        return occluded(name, frames, truth, look_alike=True)
    if variant == "out of frame":
        return out_of_frame(name, frames, truth)
    raise ValueError(f"unknown stress variant {variant!r} (one of {', '.join(STRESS_VARIANTS)})")
