"""Video stage 3, ``video_out``: each clip's results as people and tools read them, ``<output>/video/<clip>/``.

* ``masks/NNNNN.png``: one indexed PNG per frame (0 background, k object k): DAVIS's format;
* ``tracks.json``: YouTube-VIS's layout (``videos``, ``categories``, ``annotations`` with one
  ``segmentations`` entry per frame, COCO RLE or null where the object is absent), plus per object
  its label and per frame its score and presence (:func:`youtube_vis`);
* ``overlay.mp4``: the frames with each object tinted and labelled (H.264: browsers play it);
* ``video.json`` last (:class:`VideoRecord`): the key the folder was made under, what it holds.

A clip whose ``video.json`` names the current key is not written again.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from ovseg.errors import OvsegError
from ovseg.media import rle
from ovseg.media.fileio import content_key
from ovseg.pipeline import follow, frames
from ovseg.pipeline.common import Engine, LazyModel, Plan, Result, Run, Stage, StageReport
from ovseg.pipeline.plans import read_records
from ovseg.storage.folders import OutputFolder
from ovseg.storage.locations import write_json

VERSION = "video-out-v1"
RESULTS = "video"
VIDEO_RECORD = "video.json"
TRACKS_FILE = "tracks.json"
OVERLAY = "overlay.mp4"


@dataclass
class VideoRecord:
    """``video.json``: one clip's results. ``present``: per object id, the frames it is in."""

    key: str
    clip: str
    video: str
    frames: int
    fps: float
    size: list[int]
    propagator: str
    objects: list[dict[str, Any]] = field(default_factory=list)  # id, label, category, first_frame, present
    seconds_per_frame: float = 0.0
    files: list[str] = field(default_factory=list)


def youtube_vis(index: dict[str, Any], masks_folder, clip: str) -> dict[str, Any]:
    """The clip's tracks in YouTube-VIS's JSON layout (one video, one annotation per object, RLE per frame)."""
    width, height = index["size"]
    count = index["frames"]
    classes = index.get("classes") or []
    names = classes or sorted({o["label"] for o in index["objects"]}) or ["object"]
    categories = [{"id": i + 1, "name": name.split("|")[0].strip(), "synonyms": name.split("|")} for i, name in
                  enumerate(names)]  # fmt: skip
    segmentations: dict[int, list[Any]] = {o["id"]: [None] * count for o in index["objects"]}
    for frame in range(count):
        labels = np.asarray(Image.open(masks_folder / f"{frame:05d}.png"))
        for obj in segmentations:
            mask = labels == obj
            if mask.any():
                segmentations[obj][frame] = rle.encode(mask)
    annotations = []
    for number, obj in enumerate(index["objects"], start=1):
        present = [f["present"] for f in obj["frames"]]
        category = obj["category"] or (names.index(obj["label"]) + 1 if obj["label"] in names else 1)
        shown = [f["score"] for f in obj["frames"] if f["present"]]
        annotations.append(
            {
                "id": number, "video_id": 1, "object_id": obj["id"], "category_id": category, "label": obj["label"],
                "iscrowd": 0, "height": height, "width": width, "length": 1,
                "segmentations": segmentations[obj["id"]],
                "bboxes": [f["box"] if f["present"] else None for f in obj["frames"]],
                "areas": [f["area"] if f["present"] else None for f in obj["frames"]],
                "scores": [f["score"] for f in obj["frames"]], "present": present,
                "score": round(float(np.mean(shown)), 4) if shown else 0.0,
            }
        )  # fmt: skip
    video = {"id": 1, "name": clip, "width": width, "height": height, "length": count,
             "file_names": [f"{clip}/{f:05d}.jpg" for f in range(count)]}  # fmt: skip
    return {"info": {"description": "ovseg video tracks"}, "videos": [video], "categories": categories,
            "annotations": annotations}  # fmt: skip


def overlay_frames(video, masks_folder, index: dict[str, Any]):
    """Each frame with its objects tinted in their colours and labelled ``#id label``."""
    for frame in range(len(video)):
        yield overlay_frame(video[frame], np.asarray(Image.open(masks_folder / f"{frame:05d}.png")), index)


def overlay_frame(image: np.ndarray, labels: np.ndarray, index: dict[str, Any]) -> Image.Image:
    """One frame with the objects on it (``labels``: 0 background, k object k) tinted and labelled ``#id label``;
    each object keeps its colour on every frame."""
    from ovseg.media.viz import overlay, palette

    objects = index["objects"]
    colours = dict(zip([o["id"] for o in objects], palette(max(1, len(objects))), strict=False))
    names = {o["id"]: f"#{o['id']} {o['label']}" for o in objects}
    shown = [o["id"] for o in objects if (labels == o["id"]).any()]
    tints = [colours[i] for i in shown]
    return overlay(Image.fromarray(image), [labels == i for i in shown], [names[i] for i in shown], colours=tints)


def video_key(run: Run, entry: follow.ClipTracks) -> str:
    return content_key(VERSION, entry.frames, entry.tracks, run.visualize)


@dataclass
class VideoState:
    """What ``finish`` needs: the records of the clips reused."""

    records: dict[str, dict[str, Any]]


def plan(run: Run, engine: Engine) -> Plan[VideoState]:
    entries = follow.tracks_entries(run.cache)
    out = run.results(RESULTS)
    previous = read_records(engine, out, VIDEO_RECORD, list(entries))
    plan = Plan(state=VideoState({}))
    for clip, entry in entries.items():
        key = video_key(run, entry)
        record = previous.get(clip)
        if record is not None and record.get("key") == key:
            plan.reused.append(clip)
            plan.state.records[clip] = record
        else:
            plan.items.append(follow.TracksItem(clip, key, entry.frames, entry.tracks))
    return plan


def compute(run: Run, shared: None, model: LazyModel, item: follow.TracksItem) -> Result:
    from ovseg.media.videoio import FrameFolder, write_video

    tracks = run.stage_folder(follow.FOLDER)
    with tracks.files(item.tracks) as store, run.stage_folder(frames.FOLDER).files(item.frames) as decoded:
        index = json.loads((store / follow.TRACKS_INDEX).read_text())
        video = FrameFolder(decoded)
        with run.results(RESULTS).write(item.stem, last=VIDEO_RECORD) as tmp:
            shutil.copytree(store / "masks", tmp / "masks")
            write_json(tmp / TRACKS_FILE, youtube_vis(index, store / "masks", item.stem))
            files = ["masks/", TRACKS_FILE]
            if run.visualize:
                write_video(tmp / OVERLAY, overlay_frames(video, store / "masks", index), video.fps)
                files.append(OVERLAY)
            objects = [
                {"id": o["id"], "label": o["label"], "category": o["category"], "first_frame": o["first_frame"],
                 "present": sum(f["present"] for f in o["frames"])}
                for o in index["objects"]
            ]  # fmt: skip
            record = VideoRecord(
                key=item.key, clip=item.stem, video=video.index["video"], frames=index["frames"],
                fps=index["fps"], size=index["size"], propagator=index["propagator"], objects=objects,
                seconds_per_frame=follow.seconds_per_frame(run, item.tracks), files=files,
            )  # fmt: skip
            write_json(tmp / VIDEO_RECORD, dataclasses.asdict(record))
    return Result(item.stem, record=dataclasses.asdict(record))


def finish(run: Run, plan: Plan[VideoState], results: list[Result]) -> StageReport:
    records = {**plan.state.records, **{r.stem: r.record for r in results if not r.error}}
    skipped = {**frames.skipped_clips(run.cache), **follow.skipped_clips(run.cache)}
    out = run.results(RESULTS)
    clips = {clip: _summary(r) for clip, r in records.items()}
    out.update_json({"clips": clips, "skipped": skipped}, "summary.json")
    return plan.report("video", results, list(skipped))


def _summary(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "frames": record["frames"],
        "objects": {str(o["id"]): {"label": o["label"], "present": o["present"]} for o in record["objects"]},
        "seconds_per_frame": record["seconds_per_frame"],
        "folder": record["clip"],
    }


def video_records(output: str) -> dict[str, dict[str, Any]]:
    """Clip -> its ``video.json``, for the run's table."""
    out = OutputFolder(f"{str(output).rstrip('/')}/{RESULTS}")
    summary = out.read_json("summary.json")
    if summary is None:
        raise OvsegError("video/summary.json not found: run the video stages first")
    return {clip: out.record(f"{clip}/{VIDEO_RECORD}") or {} for clip in summary["clips"]}


def describe(run: Run) -> str:
    return "video (masks, tracks.json, overlay.mp4)"


STAGE = Stage.of(__name__, "video_out", results=RESULTS, record=VIDEO_RECORD, hands_back_record=True)
