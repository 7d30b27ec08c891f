"""Video stage 4, ``fill``: each clip's followed objects removed, every frame filled with the background other
frames saw (mode ``remove``), one clip at a time.

Writes ``<output>/video_edit/<clip>/``: ``edited.mp4``, ``before_after.mp4`` (side by side), the edited
frames as ``frames/NNNNN.png`` with ``video.fill_frames``, and ``edit.json`` last
(:class:`ClipEditRecord`: per frame, the share of hole pixels carried from other frames, the
share the image backend invented, the pixels the shadow step added, and the seconds). The masks
are dilated by ``edit.dilate_px`` as photo edits are (edges go too; the cast shadow with
``video.shadows``); the fill ``video.fill`` names (:data:`ovseg.video.fills.FILLS`) does the rest:
:mod:`ovseg.video.fill` with ``edit.backend``'s painter for what no frame saw (FSR on ``cpu``, diffusion
where its weights are), or ProPainter.

The key is ``hash(version, the frames, the tracks, the edit settings, the fill's weights (the painter's for
the temporal fill), the fill settings)``: a new image backend reruns this stage alone.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ovseg.editing import painter_for, request_for
from ovseg.errors import Stopped
from ovseg.media.fileio import content_key
from ovseg.pipeline import edit, follow, frames
from ovseg.pipeline.common import Engine, LazyModel, ModelPool, Plan, Result, Run, Stage, StageReport
from ovseg.pipeline.plans import read_records

VERSION = "video-fill-v2"
RESULTS = "video_edit"  # <output>/video_edit/<clip>/: this stage's own folder (DVC: its output)
SUMMARY_FILE = "summary.json"


@dataclass
class ClipEditRecord:
    """``edit.json`` of a clip: how it was edited. ``frames``: per frame ``frame``, ``hole_px``, ``from_frames``,
    ``from_image`` (shares of the hole), ``seconds``. ``from_frames`` / ``from_image``: over the whole clip."""

    key: str
    clip: str
    mode: str
    video: str
    backend: str  # the photo painter (the temporal fill's, for what no frame saw)
    fill: str  # video.fill: temporal | propainter (which reports the whole hole as its own, from_image 1)
    settings: dict[str, Any]
    fps: float
    from_frames: float
    from_image: float
    seconds_per_frame: float
    shadow_px: int = 0  # pixels the shadow step added to the holes, over the clip (``video.shadows``)
    files: list[str] = field(default_factory=list)
    frames: list[dict[str, Any]] = field(default_factory=list)


def fill_key(run: Run, entry: follow.ClipTracks) -> str:
    video = run.settings.video
    knobs = [video.fill_window, video.fill_consistency, video.flow_scale, video.fill_frames, video.fill_align,
             video.fill_sources, video.shadows, video.fill, video.fill_short_side]  # fmt: skip
    return content_key(VERSION, entry.frames, entry.tracks, run.settings.section("edit"),
                       _fill(run).fingerprint(run.settings), knobs)  # fmt: skip


@dataclass
class FillState:
    """What ``finish`` needs: every clip of the run (the summary lists each one's edited video)."""

    clips: list[str]


def plan(run: Run, engine: Engine) -> Plan[FillState]:
    if run.request.mode != "remove":
        return Plan(state=FillState([]))
    entries = follow.tracks_entries(run.cache)
    out = run.results(RESULTS)
    previous = read_records(engine, out, edit.EDIT_RECORD, list(entries))
    plan = Plan(state=FillState(list(entries)))
    for clip, entry in entries.items():
        key = fill_key(run, entry)
        if (previous.get(clip) or {}).get("key") == key:
            plan.reused.append(clip)
        else:
            plan.items.append(follow.TracksItem(clip, key, entry.frames, entry.tracks))
    return plan


def _fill(run: Run):
    """The fill backend ``video.fill`` names (:data:`ovseg.video.fills.FILLS`)."""
    from ovseg.video.fills import FILLS

    return FILLS.create(run.settings.video.fill)


def load(run: Run):
    return _fill(run).load(run.settings, run.device)


def model_key(run: Run) -> str:
    backend = _fill(run)
    return ModelPool.key(backend.kind, backend.model_settings(run.settings))


def image_backend(run: Run, model: LazyModel):
    """(frame, hole) -> frame with the hole painted by ``edit.backend``, through the photo edits' own path
    (crop, paint, paste); the hole is dilated already, and no feathering: what is under the hole's edge may
    still be the object (the fill blends its own seams)."""
    from ovseg.editing import edit_image

    settings = dataclasses.replace(run.settings.edit, dilate_px=0, feather_px=0)
    request = request_for("remove", "", run.settings.edit)

    def paint(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
        painter = painter_for(model.get(), run.settings.edit, request)
        return np.asarray(edit_image(Image.fromarray(image), hole, settings, painter).convert("RGB"))

    return paint


def compute(run: Run, shared: None, model: LazyModel, item: follow.TracksItem) -> Result:
    from tqdm import tqdm

    from ovseg.editing import dilate
    from ovseg.media.videoio import FrameFolder, VideoWriter
    from ovseg.media.viz import side_by_side

    started = time.perf_counter()
    video_settings = run.settings.video
    with run.stage_folder(frames.FOLDER).files(item.frames) as decoded, \
            run.stage_folder(follow.FOLDER).files(item.tracks) as tracks:  # fmt: skip
        video = FrameFolder(decoded)
        pictures = [video[i] for i in range(len(video))]
        holes = [
            dilate(np.asarray(Image.open(tracks / "masks" / f"{i:05d}.png")) > 0, run.settings.edit.dilate_px)
            for i in range(len(video))
        ]
    filler = _fill(run).filler(pictures, holes, model.get, run.settings, image_backend(run, model))
    rows: list[dict[str, Any]] = []

    def write(folder: Path) -> dict[str, Any]:
        files = ["edited.mp4", "before_after.mp4"]
        if video_settings.fill_frames:
            (folder / "frames").mkdir()
            files.append("frames/")
        with VideoWriter(folder / "edited.mp4", video.fps) as edited, \
                VideoWriter(folder / "before_after.mp4", video.fps) as both:  # fmt: skip
            steps = tqdm(filler.run(), desc=f"fill {item.stem}", total=len(pictures), unit="frame", leave=False)
            for index, result, stats in steps:
                edited.write(result)
                both.write(side_by_side(Image.fromarray(pictures[index]), Image.fromarray(result),
                                        ("before", "after: remove")))  # fmt: skip
                if video_settings.fill_frames:
                    Image.fromarray(result).save(folder / "frames" / f"{index:05d}.png")
                rows.append(dataclasses.asdict(stats))
                if run.stopping and len(rows) < len(pictures):  # nothing is published: the old result stays
                    raise Stopped(f"stopped after {len(rows)} of {len(pictures)} frames of {item.stem}: nothing "
                                  "written; removing again starts over (following is kept)")  # fmt: skip
        seconds = (time.perf_counter() - started) / max(1, len(rows))
        holes_px = sum(r["hole_px"] for r in rows) or 1
        record = ClipEditRecord(
            key=item.key, clip=item.stem, mode="remove", video=video.index["video"],
            backend=run.settings.edit.backend, fill=video_settings.fill, settings=run.settings.section("edit"),
            fps=video.fps,
            from_frames=round(sum(r["from_frames"] * r["hole_px"] for r in rows) / holes_px, 4),
            from_image=round(sum(r["from_image"] * r["hole_px"] for r in rows) / holes_px, 4),
            seconds_per_frame=round(seconds, 4), shadow_px=sum(r["shadow_px"] for r in rows), files=files, frames=rows,
        )  # fmt: skip
        return dataclasses.asdict(record)

    record = edit.write_clip_edit(run.results(RESULTS), item.stem, write)
    return Result(item.stem, record=record)


def finish(run: Run, plan: Plan[FillState], results: list[Result]) -> StageReport:
    out = run.results(RESULTS)
    clips = {clip: out.join(f"{clip}/edited.mp4") for clip in plan.state.clips}
    if run.request.mode == "remove":
        out.update_json({"mode": "remove", "clips": clips}, SUMMARY_FILE)
    return plan.report("fill", results)


def describe(run: Run) -> str:
    return _fill(run).describe(run.settings)


STAGE = Stage.of(__name__, "fill", results=RESULTS, record=edit.EDIT_RECORD)
