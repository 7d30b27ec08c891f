"""The page's Video tab: bring a clip, click the thing on any frame, follow it, remove it, download the result.

A face on :class:`ovseg.api.Segmenter` as the photo tab is (its ``decode``, ``segment``, ``track`` and
``remove_from_video``), so it holds no pipeline logic. Following and removal run the same stages and cache as
``ovseg run --video``: a clip decoded once is not decoded again, following it again with the same clicks costs
nothing, a correction on a later frame follows that object again from there only (``track(corrections=...)``),
and removal reuses the following. Stop asks the running stage to end between two frames. Every user mistake is
one line in the tab's status box.
"""

from __future__ import annotations

import dataclasses
import shutil
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image, ImageDraw

from ovseg.api import SegmentResult
from ovseg.api.video import DecodedClip, VideoResult
from ovseg.errors import OvsegError
from ovseg.media.viz import overlay

VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".mkv", ".avi", ".m4v")
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")
EXAMPLE_CLIP = Path(__file__).resolve().parents[3] / "data" / "videos" / "bunny.mp4"
EXAMPLE_CREDIT = "Big Buck Bunny, (c) 2008 Blender Foundation, www.bigbuckbunny.org, CC BY 3.0"
CLICK_COLOURS = {1: (40, 220, 60), 0: (235, 40, 40)}
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
        there on (Correct).
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


def frame_view(state: ClipState) -> Image.Image | None:
    """The frame shown: new clicks' mask on their frame (before Follow or Correct uses them), else the followed
    objects tinted and labelled, else the frame; the clicks, the box and a box's first corner drawn on top."""
    clip = state.clip
    if clip is None:
        return None
    on_clicked = state.clicked == state.shown
    if state.pending and on_clicked and state.first_mask is not None:
        picture = overlay(Image.fromarray(clip.image(state.shown)), [state.first_mask.merged], ["click"])
    elif state.result is not None:
        picture = state.result.overlay_frame(state.shown)
    else:
        picture = Image.fromarray(clip.image(state.shown))
    if on_clicked and (state.clicks or state.box or state.corner):
        draw = ImageDraw.Draw(picture)
        radius = max(4, round(max(picture.size) / 100))
        if state.box is not None:
            draw.rectangle(state.box, outline=(255, 210, 0), width=max(2, radius // 2))
        marks = [*state.clicks, *([(*state.corner, 2)] if state.corner else [])]
        for x, y, label in marks:
            colour = CLICK_COLOURS.get(label, (255, 210, 0))
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour, outline="white")
    return picture


def describe_clip(clip: DecodedClip) -> str:
    numbers = clip.numbers
    taken = f"frames {numbers[0]}-{numbers[-1]}" + (f" every {numbers[1] - numbers[0]}" if len(numbers) > 1 and
                                                      numbers[1] - numbers[0] > 1 else "")  # fmt: skip
    notes = f" ({'; '.join(clip.notes)})" if clip.notes else ""
    return (
        f"{clip.name}: {len(clip)} frames to follow ({taken}), {clip.size[0]}x{clip.size[1]}, {clip.fps:g} fps{notes}."
        " Click the object on any frame, or type what to follow."
    )


def status(message: str, error: bool = False) -> str:
    return f"**Error:** {message}" if error else message


def build_video_tab(bench: Any, preset: gr.Dropdown, max_frames: int) -> None:
    """The Video tab's components and events, inside the page's Blocks (``preset``: the page's preset choice)."""
    videos = VideoBench(bench, max_frames)

    def shown(state: ClipState, message: str, error: bool = False):
        clip = state.clip
        slider = gr.update(maximum=max(1, len(clip) - 1) if clip else 1, value=state.shown)
        played = state.files[0] if state.files and state.files[0].endswith("overlay.mp4") else None
        return frame_view(state), slider, played, state.files or None, status(message, error), state

    def on_open(path, preset_name, start, end, every, progress=gr.Progress()):  # noqa: B008
        progress(0.1, desc="decoding the part asked for")
        try:
            state = videos.open(path, preset_name, start, end, every)
        except OvsegError as exc:
            message = str(exc).replace(str(path), Path(path).name) if path else str(exc)
            return shown(ClipState(), message, error=True)
        return shown(state, describe_clip(state.clip))

    def on_example(preset_name, start, end, every, progress=gr.Progress()):  # noqa: B008
        if not EXAMPLE_CLIP.is_file():
            return shown(ClipState(), f"the example ships with the repository ({EXAMPLE_CLIP.name}); drop a clip", True)
        result = on_open(str(EXAMPLE_CLIP), preset_name, start, end, every, progress)
        return (*result[:4], result[4] + f" Example: {EXAMPLE_CREDIT}.", result[5])

    def on_slide(state: ClipState, position):
        if state.clip is None:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), state
        state.shown = min(max(0, int(position or 0)), len(state.clip) - 1)
        number = state.clip.numbers[state.shown]
        return shown(state, f"frame {number} ({state.shown + 1} of {len(state.clip)})")

    def on_click(state: ClipState, preset_name, mode, evt: gr.SelectData):
        started = time.perf_counter()
        try:
            state = videos.click(state, preset_name, float(evt.index[0]), float(evt.index[1]), mode)
        except OvsegError as exc:
            return shown(state, str(exc), error=True)
        number = state.clip.numbers[state.shown]
        if state.first_mask is None:
            return shown(state, f"box corner at ({evt.index[0]}, {evt.index[1]}) on frame {number}: click the "
                                "opposite corner")  # fmt: skip
        pixels = int(state.first_mask.merged.sum())
        what = f"{len(state.clicks)} click(s)" + (" and a box" if state.box else "")
        then = "Follow, or Correct to put a followed object right from here" if state.result else "Follow"
        return shown(state, f"{what} on frame {number}: {pixels} px in {time.perf_counter() - started:.2f} s. "
                            f"Press {then}.")  # fmt: skip

    def on_clear(state: ClipState):
        return shown(videos.clear(state), "clicks cleared")

    def followed(state: ClipState, started: float, verb: str) -> str:
        result = state.result
        counts = [(o["id"], o["label"], sum(f["present"] for f in o["frames"])) for o in result.objects]
        present = ", ".join(f"#{i} {label}: {n}" for i, label, n in counts)
        return (f"{verb} {result.frames} frames in {time.perf_counter() - started:.1f} s ({result.propagator}); "
                f"frames present per object: {present or 'none'}.")  # fmt: skip

    def on_follow(state: ClipState, preset_name, words, request: gr.Request,
                  progress=gr.Progress(track_tqdm=True)):  # noqa: B008  # fmt: skip
        started = time.perf_counter()
        try:
            state = videos.follow(state, preset_name, words, session=request.session_hash or "")
        except OvsegError as exc:
            return shown(state, str(exc), error=True)
        return shown(state, followed(state, started, "Followed"))

    def on_correct(state: ClipState, preset_name, obj, request: gr.Request,
                   progress=gr.Progress(track_tqdm=True)):  # noqa: B008  # fmt: skip
        started = time.perf_counter()
        try:
            state = videos.correct(state, preset_name, int(obj or 0), session=request.session_hash or "")
        except OvsegError as exc:
            return shown(state, str(exc), error=True)
        fix = state.followed["corrections"][-1]
        return shown(state, followed(state, started, f"Corrected #{fix['obj']} from frame {fix['frame']} on:"))

    def on_stop(request: gr.Request):
        videos.stop(request.session_hash or "")
        return status("stopping after the frame being worked on...")

    def on_remove(state: ClipState, preset_name, request: gr.Request,
                  progress=gr.Progress(track_tqdm=True)):  # noqa: B008  # fmt: skip
        started = time.perf_counter()
        try:
            state, folder = videos.remove(state, preset_name, session=request.session_hash or "")
        except OvsegError as exc:
            return gr.skip(), gr.skip(), status(str(exc), True), state
        message = f"Removed in {time.perf_counter() - started:.1f} s: before on the left, after on the right."
        return str(folder / "before_after.mp4"), state.files, message, state

    with gr.Tab("Video", id="video-tab"):
        gr.Markdown(
            "Drop a clip, click the thing on any frame (or type it), **Follow**; click a later frame where it "
            "went wrong and **Correct** from there; then **Remove** it."
        )
        state = gr.State(ClipState())
        with gr.Row():
            with gr.Column(scale=1):
                clip_file = gr.File(label="Clip (mp4, mov, webm) or a zip of frames", type="filepath",
                                    elem_id="clip")  # fmt: skip
                example = gr.Button("Example: Big Buck Bunny, 60 frames", elem_id="example-clip")
                with gr.Row():
                    start = gr.Textbox(label="start (frame or 1.5s)", elem_id="clip-start")
                    end = gr.Textbox(label="end", elem_id="clip-end")
                    every = gr.Number(value=1, label="every N", precision=0, minimum=1, elem_id="clip-every")
                words = gr.Textbox(label="Or follow words (one class per line)", lines=2, elem_id="clip-words")
                click_mode = gr.Radio(list(CLICK_MODES), value="include", elem_id="video-click-mode",
                                      label="A click on the frame will (box: click two opposite corners)")  # fmt: skip
                with gr.Row():
                    follow = gr.Button("Follow", variant="primary", elem_id="follow")
                    remove = gr.Button("Remove", elem_id="remove-video")
                    stop = gr.Button("Stop", variant="stop", elem_id="stop-video")
                with gr.Row():
                    correct = gr.Button("Correct from this frame", elem_id="correct")
                    obj = gr.Number(value=0, precision=0, minimum=0, label="object # (0: the one clicked)",
                                    elem_id="correct-object")  # fmt: skip
                    clear = gr.Button("Clear clicks", elem_id="clear-clicks")
                video_status = gr.Markdown("Drop a clip to start.", elem_id="video-status")
                files = gr.File(label="Downloads: overlay.mp4, tracks.json, masks.zip, edited.mp4",
                                elem_id="video-downloads")  # fmt: skip
            with gr.Column(scale=2):
                frame = gr.Image(label="Frame (click the object)", type="pil", interactive=False, format="png",
                                 elem_id="frame")  # fmt: skip
                slider = gr.Slider(0, 1, value=0, step=1, label="Frame", elem_id="frame-slider")
                played = gr.Video(label="Followed (overlay)", elem_id="overlay-video")
                before_after = gr.Video(label="Before / after", elem_id="before-after-video")
        outputs = [frame, slider, played, files, video_status, state]
        part = [start, end, every]
        clip_file.upload(on_open, [clip_file, preset, *part], outputs)
        example.click(on_example, [preset, *part], outputs)
        slider.input(on_slide, [state, slider], outputs)
        frame.select(on_click, [state, preset, click_mode], outputs)
        follow.click(on_follow, [state, preset, words], outputs)
        correct.click(on_correct, [state, preset, obj], outputs)
        clear.click(on_clear, [state], outputs)
        remove.click(on_remove, [state, preset], [before_after, files, video_status, state])
        stop.click(on_stop, None, [video_status], queue=False)
