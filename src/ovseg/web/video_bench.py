"""The Video tab's actions as plain methods (:class:`VideoBench`), testable without a browser, and what one browser
tab holds between them (:class:`ClipState`).

A face on :class:`ovseg.api.Segmenter` (its ``decode``, ``segment``, ``track`` and ``remove_from_video``): no
pipeline logic here. :mod:`ovseg.web.video_tab` lays the components out and wires them to these methods.
"""

from __future__ import annotations

import dataclasses
import shutil
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ovseg.api import SegmentResult
from ovseg.api.video import DecodedClip, VideoResult
from ovseg.errors import OvsegError

VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".mkv", ".avi", ".m4v")
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")
CLICK_MODES = ("include", "exclude", "box")  # box: two clicks, opposite corners


@dataclass
class ClipState:
    """One browser tab's clip: where it is, the part taken, its decoded frames, the clicks and what came of them."""

    source: str | None = None  # the clip (a file) or a folder of frames (a zip, unpacked)
    part: dict[str, Any] = field(default_factory=dict)  # start / end / every, as `ovseg run --video` takes them
    clip: DecodedClip | None = None
    shown: int = 0  # the position of the frame on screen, among the frames taken
    clicks: list[tuple[float, float, int]] = field(default_factory=list)  # on `clicked`
    clicked: int | None = None  # the position the clicks are on
    first_mask: SegmentResult | None = None  # the clicks' mask on their frame, before following
    result: VideoResult | None = None
    files: list[str] = field(default_factory=list)  # what the tab offers for download
    followed: dict[str, Any] = field(default_factory=dict)  # what `result` followed (removal removes the same)
    box: tuple[float, float, float, float] | None = None  # on `clicked`, with the clicks
    corner: tuple[float, float] | None = None  # a box's first corner, waiting for the second
    pending: bool = False  # clicks made since `result`: the frame shows their mask, Correct can use them

    def clicked_again(self, **changes: Any) -> ClipState:
        """This state with new clicks (a box, a corner, their mask), the clip and what was followed kept."""
        return dataclasses.replace(self, **changes)


class VideoBench:
    """The tab's actions as plain methods (testable without a browser), on the page's :class:`Workbench`."""

    def __init__(self, bench: Any, max_frames: int) -> None:
        self.bench, self.max_frames = bench, max_frames
        self._stops: dict[str, threading.Event] = {}  # per browser tab (session): its Stop button
        self._lock = threading.Lock()

    def stop_flag(self, session: str) -> threading.Event:
        """The Stop flag of one browser tab: set by :meth:`stop`, cleared when that tab starts a follow or a removal,
        asked by the running stage between frames."""
        with self._lock:
            return self._stops.setdefault(session, threading.Event())

    def stop(self, session: str) -> None:
        """Ask what that tab is running (following, correcting, removing) to stop after the frame it is on."""
        self.stop_flag(session).set()

    def _running(self, session: str):
        flag = self.stop_flag(session)
        flag.clear()
        return flag.is_set

    def open(self, path: str | None, preset: str, start: str, end: str, every: int) -> ClipState:
        """The uploaded clip (or zip of frames), its part decoded: one line when it is none, or too long."""
        if not path:
            raise OvsegError("drop a clip (mp4, mov, webm) or a zip of frames first")
        source = Path(path)
        if source.suffix.lower() == ".zip":
            source = self._unzip(source)
        elif source.suffix.lower() not in VIDEO_SUFFIXES and not source.is_dir():  # a folder of frames: as the CLI
            raise OvsegError(f"{source.name} is not a video: drop an mp4, mov or webm clip, or a zip of frames")
        part = clip_part(start, end, every)
        clip = self.bench.segmenter(preset).decode(str(source), part)
        if len(clip) == 0:
            raise OvsegError(f"{source.name} has no frames in the part asked for")
        if len(clip) > self.max_frames:
            raise OvsegError(
                f"{source.name}: {len(clip)} frames to follow, over this page's {self.max_frames}: "
                "take a part (start, end) or every N-th frame"
            )
        return ClipState(source=str(source), part=part, clip=clip)

    def _unzip(self, archive: Path) -> Path:
        """The zip's frames (jpg / png, in name order, sub-folders flattened) in a folder of the request's own."""
        folder = self.bench.request_folder() / archive.stem
        folder.mkdir(parents=True)
        try:
            with zipfile.ZipFile(archive) as bundle:
                names = sorted(n for n in bundle.namelist() if Path(n).suffix.lower() in FRAME_SUFFIXES)
                for rank, name in enumerate(names):
                    target = folder / f"{rank:05d}{Path(name).suffix.lower()}"
                    with bundle.open(name) as data, open(target, "wb") as out:
                        shutil.copyfileobj(data, out)
        except (zipfile.BadZipFile, OSError) as exc:
            raise OvsegError(f"{archive.name} is not a readable zip: {exc}") from None
        if not names:
            raise OvsegError(f"{archive.name} holds no frames (jpg or png files)")
        return folder

    def click(self, state: ClipState, preset: str, x: float, y: float, mode: str = "include") -> ClipState:
        """A click on the frame shown: the clicked object's mask there at once (the photo tab's click, on that frame).

        ``mode``: include, exclude, or box (two clicks: opposite corners). Clicks on another frame than the last
        ones start again there: one object, from the frame it is clicked on (Follow), or that object put right from
        there on (Correct). After following, an exclude click first on a followed object cuts from its mask there
        (:func:`around_followed`), as SAM 2's demo refines a frame's mask.
        """
        clip = self._clip(state)
        width, height = clip.size
        if mode not in CLICK_MODES:
            raise OvsegError(f"a click adds to the object (include), cuts from it (exclude) or draws a box, not {mode}")
        if not (0 <= x < width and 0 <= y < height):
            raise OvsegError(f"the click ({x:.0f}, {y:.0f}) is outside the {width}x{height} frame")
        same = state.clicked == state.shown and state.pending
        clicks, box = (state.clicks, state.box) if same else ([], None)
        corner = state.corner if same else None
        if mode == "box" and corner is None:  # the first corner: nothing to segment yet
            return state.clicked_again(clicks=clicks, box=box, corner=(float(x), float(y)), clicked=state.shown,
                                       first_mask=state.first_mask if same else None, pending=True)  # fmt: skip
        if mode == "exclude" and not clicks and box is None and state.result is not None:
            clicks, box = around_followed(state.result.labels(state.shown), x, y)
        if mode == "box":
            (x1, y1), (x2, y2) = corner, (float(x), float(y))
            if abs(x2 - x1) < 2 or abs(y2 - y1) < 2:
                raise OvsegError("a box needs two opposite corners: click the second one away from the first")
            box, corner = (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)), None
        else:
            clicks = [*clicks, (float(x), float(y), int(mode == "include"))]
        if box is None and not any(label for _, _, label in clicks):
            raise OvsegError("click on the object first (include) or draw a box; exclude clicks correct it afterwards")
        points = [(cx, cy) for cx, cy, _ in clicks] or None
        labels = [label for _, _, label in clicks] or None
        found = self.bench.segmenter(preset).segment(str(clip.path(state.shown)), points=points, labels=labels,
                                                     box=box)  # fmt: skip
        return state.clicked_again(clicks=clicks, box=box, corner=corner, clicked=state.shown, first_mask=found,
                                   pending=True)  # fmt: skip

    def clear(self, state: ClipState) -> ClipState:
        """The clicks and box forgotten (what was followed stays)."""
        return state.clicked_again(clicks=[], box=None, corner=None, clicked=None, first_mask=None, pending=False)

    def follow(self, state: ClipState, preset: str, words: str, session: str = "") -> ClipState:
        """The clicks (or the words: one class per line) followed through every frame taken, from the start (any
        corrections made before are dropped)."""
        self._clip(state)
        names = [line.strip() for line in (words or "").splitlines() if line.strip()]
        if names and (state.clicks or state.box):
            raise OvsegError("follow words or clicks, not both: clear the clicks or the words")
        if names:
            asked: dict[str, Any] = {"prompt": names if len(names) > 1 else names[0]}
        elif state.clicks or state.box:
            asked = self._seeds(state)
        else:
            raise OvsegError("click on the object in a frame, or type what to follow")
        return self._track(state, preset, asked, session)

    def correct(self, state: ClipState, preset: str, obj: int = 0, session: str = "") -> ClipState:
        """The clicks on the frame shown put object ``obj`` right from that frame on (0: the object under the first
        include click, or the only one): that object alone is followed again from there, the frames before it and
        the other objects are kept from the cache, not followed again."""
        clip = self._clip(state)
        if state.result is None:
            raise OvsegError("follow something first; then click it on a later frame and press Correct")
        if not state.pending or state.clicked is None or not (state.clicks or state.box):
            raise OvsegError("click the object on the frame to correct from (it shows its mask), then press Correct")
        which = int(obj or 0) or self._object_under(state)
        fix = {"frame": clip.numbers[state.clicked], "points": list(state.clicks), "box": state.box, "obj": which}
        asked = {**state.followed, "corrections": [*state.followed.get("corrections", []), fix]}
        return self._track(state, preset, asked, session)

    def _object_under(self, state: ClipState) -> int:
        """The followed object under the first include click on the clicked frame (or the box's centre), or the only
        object followed; one line when neither says which."""
        ids = state.result.labels(state.clicked)
        include = [(x, y) for x, y, label in state.clicks if label]
        if state.box is not None and not include:
            include = [((state.box[0] + state.box[2]) / 2, (state.box[1] + state.box[3]) / 2)]
        under = int(ids[int(include[0][1]), int(include[0][0])]) if include else 0
        if under:
            return under
        objects = [o["id"] for o in state.result.objects]
        if len(objects) == 1:
            return objects[0]
        raise OvsegError(f"say which object to correct (#): the click is on none of the {len(objects)} followed")

    def _track(self, state: ClipState, preset: str, asked: dict[str, Any], session: str) -> ClipState:
        result = self.bench.segmenter(preset).track(state.source, **asked, part=state.part,
                                                    stop=self._running(session))  # fmt: skip
        folder = self.bench.request_folder()
        result.save(folder / "video")
        files = [str(folder / "video" / "overlay.mp4"), str(folder / "video" / "tracks.json")]
        files.append(shutil.make_archive(str(folder / "masks"), "zip", folder / "video" / "masks"))
        return state.clicked_again(result=result, files=files, followed=asked, pending=False, corner=None)

    def remove(self, state: ClipState, preset: str, session: str = "") -> tuple[ClipState, Path]:
        """What was followed (the same words or clicks and corrections, whatever the boxes say now), removed through
        time: the folder with ``edited.mp4`` and ``before_after.mp4``."""
        if state.result is None:
            raise OvsegError("follow something first, then remove it")
        segmenter = self.bench.segmenter(preset)
        _, folder = segmenter.remove_from_video(state.source, **state.followed, part=state.part,
                                                stop=self._running(session))  # fmt: skip
        here = self.bench.request_folder()
        for name in ("edited.mp4", "before_after.mp4"):
            shutil.copy(folder / name, here / name)
        state.files = [str(here / "edited.mp4"), *[f for f in state.files if not f.endswith("edited.mp4")]]
        return state, here

    def _seeds(self, state: ClipState) -> dict[str, Any]:
        clip = self._clip(state)
        return {
            "points": [(x, y) for x, y, _ in state.clicks] or None,
            "labels": [label for _, _, label in state.clicks] or None,
            "box": state.box,
            "frame": clip.numbers[state.clicked or 0],
        }

    def _clip(self, state: ClipState) -> DecodedClip:
        if state.clip is None or state.source is None:
            raise OvsegError("drop a clip first (or press Example)")
        return state.clip


def around_followed(ids: np.ndarray, x: float, y: float) -> tuple[list[tuple[float, float, int]], tuple]:
    """An exclude click that comes first on a followed object: the object there as the prompt model is asked for it
    (an include click on its innermost point, its box), so the click cuts from what was followed instead of
    standing alone, which names nothing. One line when the click is on no followed object."""
    from ovseg.video.prompts import innermost_point, mask_box

    obj = int(ids[int(y), int(x)])
    if not obj:
        raise OvsegError("click on the object first (include) or draw a box; exclude clicks correct it afterwards")
    inside = ids == obj
    return [(*innermost_point(inside), 1)], mask_box(inside)


def clip_part(start: str, end: str, every: int | float | None) -> dict[str, Any]:
    """The part of a clip the boxes ask for, as the CLI's --start / --end / --every take it (blank: all)."""
    part: dict[str, Any] = {}
    if str(start or "").strip():
        part["start"] = str(start).strip()
    if str(end or "").strip():
        part["end"] = str(end).strip()
    step = 1 if every in (None, "") else int(every)
    if step < 1:
        raise OvsegError(f"every must be 1 or more, got {step}")
    if step > 1:
        part["every"] = step
    return part
