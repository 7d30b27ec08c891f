"""The page's Video tab: bring a clip, click the thing on any frame, follow it, remove it, download the result.

The components and their events, on :class:`~ovseg.web.video_bench.VideoBench` (a face on
:class:`ovseg.api.Segmenter`), so it holds no pipeline logic. Following and removal run the same stages and cache
as ``ovseg run --video``: a clip decoded once is not decoded again, following it again with the same clicks costs
nothing, a correction on a later frame follows that object again from there only (``track(corrections=...)``),
and removal reuses the following. Stop asks the running stage to end between two frames. Every user mistake is
one line in the tab's status box.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image, ImageDraw

from ovseg.api.video import DecodedClip
from ovseg.errors import OvsegError, Stopped
from ovseg.media.viz import overlay
from ovseg.web.video_bench import CLICK_MODES, ClipState, VideoBench

EXAMPLE_CLIP = Path(__file__).resolve().parents[3] / "data" / "videos" / "bunny.mp4"
EXAMPLE_CREDIT = "Big Buck Bunny, (c) 2008 Blender Foundation, www.bigbuckbunny.org, CC BY 3.0"
CLICK_COLOURS = {1: (40, 220, 60), 0: (235, 40, 40)}


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
            return shown(state, str(exc), error=not isinstance(exc, Stopped))
        return shown(state, followed(state, started, "Followed"))

    def on_correct(state: ClipState, preset_name, obj, request: gr.Request,
                   progress=gr.Progress(track_tqdm=True)):  # noqa: B008  # fmt: skip
        started = time.perf_counter()
        try:
            state = videos.correct(state, preset_name, int(obj or 0), session=request.session_hash or "")
        except OvsegError as exc:
            return shown(state, str(exc), error=not isinstance(exc, Stopped))
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
            return gr.skip(), gr.skip(), status(str(exc), not isinstance(exc, Stopped)), state
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
