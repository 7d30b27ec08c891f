"""`ovseg ui`: a web page to find things in a photo by words, correct them with clicks, and edit them.

A face on top of the Python API (:class:`ovseg.api.Segmenter`), so it shares the CLI's
content-addressed cache and keeps models loaded between requests: re-prompting a photo
reuses its masks and CLIP features and costs about the scoring time. Gradio serves it on
127.0.0.1 (an optional extra: ``pip install -e ".[ui]"``). Every user mistake (no photo, a
file that is not an image, an empty prompt, a setting the preset cannot do) becomes one
line in the page's status box; nothing is raised into Gradio, so no stack trace is shown.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image

from ovseg.api import Segmenter, SegmentResult
from ovseg.config import preset_names
from ovseg.errors import OvsegError
from ovseg.media.viz import overlay, side_by_side, with_legend
from ovseg.pipeline.select import COCO_FILE, LABELS_FILE
from ovseg.web.video_tab import build_video_tab

CANDIDATES_SHOWN = 12
MAX_VIDEO_FRAMES = 900  # the Video tab follows at most this many frames at once (`ovseg ui --max-video-frames`)
EDIT_MODES = ("remove", "replace", "style")
CLICK_COLOURS = {1: (40, 220, 60), 0: (235, 40, 40)}


@dataclass
class PageState:
    """One browser tab's state: its photo, its clicks and its latest result (kept per session by Gradio)."""

    photo: str | None = None
    clicks: list[tuple[float, float, int]] = field(default_factory=list)
    result: SegmentResult | None = None


# The page's files (downloads) older than this are pruned while it runs; all go when it stops.
REQUEST_FILES_TTL_S = 3600


class Workbench:
    """The page's actions as plain methods (testable without a browser): one Segmenter per preset.

    ``scratch``: the server's own folder for the files it offers (one subfolder per request,
    pruned after an hour; the whole folder is removed when the server stops).
    """

    def __init__(
        self, cache: Path, device: str = "auto", sets: list[str] | None = None, scratch: Path | None = None
    ) -> None:
        self.cache = Path(cache)
        self.device = device
        self.sets = list(sets or [])
        self.segmenters: dict[str, Segmenter] = {}
        self.scratch = Path(scratch) if scratch is not None else Path(tempfile.mkdtemp(prefix="ovseg-ui-"))
        self.scratch.mkdir(parents=True, exist_ok=True)
        self.ready = threading.Event()  # set once the starting preset's models are loaded (see preload)
        self.ready.set()
        self.load_error: str | None = None

    def preload(self, preset: str) -> threading.Thread:
        """Load ``preset``'s models in the background, so the first Segment does not wait for them."""
        self.ready.clear()

        def load() -> None:
            try:
                self.segmenter(preset).warm_up()
            except OvsegError as exc:  # missing weights: the first request says so, in the page's status line
                self.load_error = str(exc)
            finally:
                self.ready.set()

        thread = threading.Thread(target=load, name="ovseg-preload", daemon=True)
        thread.start()
        return thread

    def segmenter(self, preset: str) -> Segmenter:
        """The preset's Segmenter, created once: its models stay loaded for the next request."""
        if preset not in self.segmenters:
            self.segmenters[preset] = Segmenter(preset=preset, device=self.device, cache=self.cache, set=self.sets)
        return self.segmenters[preset]

    def open_photo(self, path: str | None, preset: str) -> Image.Image:
        """The uploaded file as a photo (read as every stage reads photos), or a one-line error saying why not."""
        if not path:
            raise OvsegError("drop a photo first")
        return self.segmenter(preset).open(path)

    def request_folder(self) -> Path:
        """A new folder for one request's downloads; those of requests older than an hour go now."""
        now = time.time()
        for old in self.scratch.glob("request-*"):
            if now - old.stat().st_mtime > REQUEST_FILES_TTL_S:
                shutil.rmtree(old, ignore_errors=True)
        return Path(tempfile.mkdtemp(prefix="request-", dir=self.scratch))

    def segment(self, state: PageState, preset: str, prompt: str, top_k: int, classes: str = "") -> SegmentResult:
        """The prompt's selection, corrected by the state's clicks (clicks alone when there are no words);
        or, with ``classes`` (one per line), every instance of each class."""
        if state.photo is None:
            raise OvsegError("drop a photo first")
        names = class_lines(classes)
        if names:
            if prompt.strip():
                raise OvsegError("type what to find or list classes, not both")
            if state.clicks:
                raise OvsegError("clicks correct one prompt; clear them to label several classes")
            return self.segmenter(preset).segment(state.photo, names, top_k=int(top_k), candidates=CANDIDATES_SHOWN)
        if not prompt.strip() and not state.clicks:
            raise OvsegError("type what to find, or click on the object in the picture")
        points = [(x, y) for x, y, _ in state.clicks]
        labels = [label for _, _, label in state.clicks]
        return self.segmenter(preset).segment(
            state.photo,
            prompt.strip() or None,
            points=points or None,
            labels=labels or None,
            top_k=int(top_k),
            candidates=CANDIDATES_SHOWN if prompt.strip() else 0,
        )

    def edit(self, state: PageState, preset: str, mode: str, edit_prompt: str) -> Image.Image:
        """The latest result's region removed, replaced or restyled."""
        if state.result is None or state.photo is None:
            raise OvsegError("segment something first, then edit it")
        if not state.result.merged.any():
            raise OvsegError("nothing is selected: change the prompt or click on the object")
        if mode not in EDIT_MODES:
            raise OvsegError(f"choose an edit: {', '.join(EDIT_MODES)}")
        if mode != "remove" and not edit_prompt.strip():
            raise OvsegError(f"{mode} needs an edit prompt, e.g. 'a red bicycle'")
        return self.segmenter(preset).edit(state.photo, state.result, mode, edit_prompt.strip())


def class_lines(text: str) -> list[str]:
    """The classes box: one class per line ("sofa|couch" lists synonyms), blank lines ignored."""
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def label_view(result: SegmentResult) -> Image.Image | None:
    """The label map of a result with classes, with a legend: each class's colour, name and instance count."""
    picture = result.label_picture()
    if picture is None:
        return None
    entries = [("background", (0, 0, 0))] + [(f"{name} ({n})", colour) for name, colour, n in result.legend()]
    return with_legend(picture, entries)


def picture(result: SegmentResult, clicks: list[tuple[float, float, int]]) -> Image.Image:
    """The selection overlay with the clicks drawn on it (green include, red exclude)."""
    from PIL import ImageDraw

    image = result.overlay()
    draw = ImageDraw.Draw(image)
    radius = max(4, round(max(image.size) / 100))
    for x, y, label in clicks:
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=CLICK_COLOURS[label], outline="white")
    return image


def candidate_gallery(result: SegmentResult) -> list[tuple[Image.Image, str]]:
    """One small picture per candidate with its score, best first, so people see what else was proposed."""
    if result.candidates is None or not len(result.candidates):
        return []
    thumb = result.image.copy()
    thumb.thumbnail((256, 256))
    scale = thumb.width / result.image.width
    items = []
    for rank, (mask, score) in enumerate(zip(result.candidates, result.candidate_scores, strict=True), start=1):
        small = np.asarray(Image.fromarray(mask).resize(thumb.size, Image.NEAREST)) if scale != 1 else mask
        items.append((overlay(thumb, [small]), f"#{rank}  {score:.3f}"))
    return items


def downloads(bench: Workbench, result: SegmentResult, edited: Image.Image | None = None) -> list[str]:
    """The mask PNG and COCO JSON (and the edited photo) as files the page offers for download.

    Written by the result's own :meth:`~ovseg.api.SegmentResult.save`, so the page's files are
    the ones ``ovseg run`` writes; they live in the server's scratch folder.
    """
    folder = result.save(bench.request_folder() / "selection", visualize=False)
    files = [str(folder / "mask.png"), str(folder / COCO_FILE)]
    if result.classes:
        files.append(str(folder / LABELS_FILE))
    if edited is not None:
        edited.save(folder.parent / "edited.png")
        files.append(str(folder.parent / "edited.png"))
    return files


def status_line(message: str, error: bool = False) -> str:
    """One line for the status box; errors are marked so they stand out (and tests can find them)."""
    return f"**Error:** {message}" if error else message


LOADING = "Loading models…"
READY = "Drop a photo to start."


def build_app(bench: Workbench, default_preset: str, max_video_frames: int = MAX_VIDEO_FRAMES):
    """The Gradio page: a Photo tab (inputs on the left, the selection (clickable) and candidates on the right, edits
    below) and a Video tab (:mod:`ovseg.web.video_tab`), which shares its preset."""
    presets = preset_names()

    def on_upload(path, state: PageState, preset):
        if not path:  # the file was removed (by the user, or below after a bad file): keep the message
            return None, None, [], None, gr.skip(), PageState(), gr.skip()
        try:
            photo = bench.open_photo(path, preset)
        except OvsegError as exc:  # clear the file box so another file can be dropped
            message = str(exc).replace(str(path), Path(path).name)  # not Gradio's temp folder
            return None, None, [], None, status_line(message, error=True), PageState(), None
        message = f"{Path(path).name}: {photo.width}x{photo.height}. Type what to find, or click on the object."
        return photo, None, [], None, message, PageState(photo=path), gr.skip()

    def on_segment(state: PageState, preset, prompt, top_k, classes, progress=gr.Progress()):  # noqa: B008
        new = PageState(photo=state.photo)  # new words: start again without the old clicks
        return _segment(state, new, preset, prompt, top_k, classes, progress)

    def on_click(
        state: PageState,
        preset,
        prompt,
        top_k,
        classes,
        click_mode,
        evt: gr.SelectData,
        progress=gr.Progress(),  # noqa: B008
    ):
        if state.photo is None:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), status_line("drop a photo first", error=True), state
        x, y = evt.index[:2]
        new = PageState(photo=state.photo, clicks=[*state.clicks, (float(x), float(y), int(click_mode == "include"))])
        return _segment(state, new, preset, prompt, top_k, classes, progress)

    def on_clear(state: PageState, preset, prompt, top_k, classes, progress=gr.Progress()):  # noqa: B008
        return _segment(state, PageState(photo=state.photo), preset, prompt, top_k, classes, progress)

    def _segment(state: PageState, new: PageState, preset, prompt, top_k, classes, progress):
        """``new`` segmented; on an error the page keeps ``state``, the result it shows, usable for editing."""
        progress(0.1, desc="masks and features (reused from the cache after the first time)")
        started = time.perf_counter()
        try:
            result = bench.segment(new, preset, prompt or "", top_k, classes or "")
        except OvsegError as exc:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), status_line(str(exc), error=True), state
        state = new
        state.result = result
        seconds = time.perf_counter() - started
        if result.classes:
            counts = ", ".join(f"{name} {n}" for name, _, n in result.legend())
            message = (
                f"Found {len(result.masks)} instance(s) of {len(result.classes)} classes ({counts}) in {seconds:.2f} s"
                f" ({int(result.merged.sum())} px). The label map is below the selection."
            )
        else:
            what = f"'{result.prompt}'" if result.prompt else "the clicks"
            clicks = f", {len(state.clicks)} click(s)" if state.clicks else ""
            message = (
                f"Found {len(result.masks)} mask(s) for {what}{clicks} in {seconds:.2f} s"
                f" ({int(result.merged.sum())} px). Click the picture to include or exclude a region."
            )
        shown = picture(result, state.clicks)
        return shown, label_view(result), candidate_gallery(result), downloads(bench, result), message, state

    def on_edit(state: PageState, preset, mode, edit_prompt, progress=gr.Progress()):  # noqa: B008
        progress(0.1, desc=f"{mode}: loading the painting model and editing")
        started = time.perf_counter()
        try:
            edited = bench.edit(state, preset, mode, edit_prompt or "")
        except OvsegError as exc:
            return gr.skip(), gr.skip(), status_line(str(exc), error=True)
        message = f"{mode} done in {time.perf_counter() - started:.2f} s: before on the left, after on the right."
        comparison = side_by_side(state.result.image, edited, ("before", f"after: {mode}"))
        return comparison, downloads(bench, state.result, edited), message

    def on_page_load():
        bench.ready.wait()  # the models load in the background from the start: wait for them once
        if bench.load_error:
            return status_line(bench.load_error, error=True)
        return READY

    def on_pick(state: PageState, evt: gr.SelectData):
        if state.result is None or state.result.candidates is None or not len(state.result.candidates):
            return (
                gr.skip(),
                gr.skip(),
                gr.skip(),
                status_line("segment with words first: candidates come from them", True),
                state,
            )
        rank = int(evt.index)
        before = len(state.result.masks)
        state = PageState(photo=state.photo, clicks=state.clicks, result=state.result.toggle(rank))
        verb = "added" if len(state.result.masks) > before else "removed"
        message = (
            f"Candidate #{rank + 1} {verb}: {len(state.result.masks)} mask(s) selected"
            f" ({int(state.result.merged.sum())} px). Click it again to undo."
        )
        result = state.result
        return picture(result, state.clicks), label_view(result), downloads(bench, result), message, state

    with gr.Blocks(title="ovseg", delete_cache=(REQUEST_FILES_TTL_S // 4, REQUEST_FILES_TTL_S)) as app:
        gr.Markdown(
            "## ovseg: find things in a photo or a video by words, correct them with clicks, then edit them\n"
            "Drop a photo, say what to find, press **Segment**. Click the result to include (or exclude) a region. "
            "Videos: the **Video** tab."
        )
        state = gr.State(PageState())
        with gr.Tab("Photo", id="photo-tab"):
            with gr.Row():
                with gr.Column(scale=1):
                    photo_file = gr.File(label="Photo", type="filepath", elem_id="photo")
                    prompt = gr.Textbox(label="What to find", placeholder="the cat", elem_id="prompt", lines=1)
                    classes = gr.Textbox(
                        label="Or label several classes, one per line (every instance of each; sofa|couch: synonyms)",
                        placeholder="car\nperson|pedestrian\ntraffic sign",
                        elem_id="classes",
                        lines=3,
                    )
                    preset = gr.Dropdown(presets, value=default_preset, label="Preset", elem_id="preset")
                    top_k = gr.Slider(1, 10, value=3, step=1, label="Masks to merge (top-K)")
                    click_mode = gr.Radio(["include", "exclude"], value="include", label="A click on the picture will")
                    with gr.Row():
                        segment_button = gr.Button("Segment", variant="primary", elem_id="segment")
                        clear_button = gr.Button("Clear clicks", elem_id="clear")
                    status = gr.Markdown(LOADING if not bench.ready.is_set() else READY, elem_id="status")
                with gr.Column(scale=2):
                    result_image = gr.Image(
                        label="Selection (click to correct)",
                        type="pil",
                        interactive=False,
                        elem_id="result",
                        format="png",
                    )
                    labels_image = gr.Image(
                        label="Label map (several classes)",
                        type="pil",
                        interactive=False,
                        elem_id="labels",
                        format="png",
                    )
                    gallery = gr.Gallery(
                        label="Best candidates: click one to add it, again to drop it",
                        columns=6,
                        height=220,
                        allow_preview=False,  # a click toggles the candidate instead of opening a preview over the page
                        elem_id="candidates",
                    )
            with gr.Row():
                with gr.Column(scale=1):
                    edit_mode = gr.Radio(list(EDIT_MODES), value="remove", label="Edit", elem_id="edit-mode")
                    edit_prompt = gr.Textbox(label="Edit prompt (replace / style)", elem_id="edit-prompt")
                    edit_button = gr.Button("Edit", variant="primary", elem_id="edit")
                    files = gr.File(label="Downloads: mask PNG, COCO JSON, edited photo", elem_id="downloads")
                with gr.Column(scale=2):
                    before_after = gr.Image(
                        label="Before / after", type="pil", interactive=False, elem_id="before-after", format="png"
                    )

        build_video_tab(bench, preset, max_video_frames)
        segment_outputs = [result_image, labels_image, gallery, files, status, state]
        asked = [state, preset, prompt, top_k, classes]
        app.load(on_page_load, None, status)
        gallery.select(on_pick, [state], [result_image, labels_image, files, status, state])
        photo_file.change(on_upload, [photo_file, state, preset], [*segment_outputs, photo_file])
        segment_button.click(on_segment, asked, segment_outputs)
        prompt.submit(on_segment, asked, segment_outputs)
        result_image.select(on_click, [*asked, click_mode], segment_outputs)
        clear_button.click(on_clear, asked, segment_outputs)
        edit_button.click(on_edit, [state, preset, edit_mode, edit_prompt], [before_after, files, status])
    return app


def serve(
    bench: Workbench,
    default_preset: str,
    host: str,
    port: int,
    open_browser: bool = False,
    auth: tuple[str, str] | None = None,
    max_video_frames: int = MAX_VIDEO_FRAMES,
) -> None:
    """Serve the page until interrupted; one request at a time (the models share one device).

    Gradio keeps its own copies of uploads and downloads in ``GRADIO_TEMP_DIR`` (the caller
    points it into the server's scratch folder): files older than an hour are deleted while it
    runs. The page serves no file outside those folders (the cache is blocked explicitly).
    """
    app = build_app(bench, default_preset, max_video_frames)
    app.queue(default_concurrency_limit=1)
    # System fonts only: the page works offline (the default theme asks Google Fonts for its font).
    theme = gr.themes.Default(
        font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
    )
    app.launch(
        server_name=host,
        server_port=port,
        inbrowser=open_browser,
        theme=theme,
        show_error=False,
        auth=auth,
        blocked_paths=[str(bench.cache.resolve())],
    )
