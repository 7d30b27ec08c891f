"""Video stage 1, ``frames``: every clip of the run decoded once into ``cache/frames/<key>.files/``.

The key is ``hash(version, the clip's bytes (or its frames'), the cut: start, end, every, fps)``,
so a new prompt, a new click or a new tracker never decodes again. The store holds the frames
taken, upright, as ``NNNNN.jpg`` (a clip's JPEG frames are kept byte for byte; other frames are
written at quality 95 without chroma subsampling) and ``frames.json``: each frame's number in the
clip and time, the frame rate of what was taken, the size, and the scene cuts (frames whose
colours differ from the previous one's by more than ``video.cut_threshold``), where words are
looked for again.

A file that is not a video, is truncated before its first frame, or has no frames is skipped
with one warning line (listed under ``skipped``), as photos are; ``strict`` (or a single clip)
stops instead.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ovseg.config import Settings
from ovseg.errors import OvsegError, UnreadableImageError, one_line
from ovseg.media.fileio import content_key, load_image
from ovseg.media.videoio import FRAMES_INDEX, Cut, FrameFolder, clip_rate, decode, frame_files, list_clips
from ovseg.pipeline.common import Engine, Item, LazyModel, Plan, Result, Run, Stage, StageReport
from ovseg.pipeline.plans import SourceCheck, unique_items, warn_skipped
from ovseg.storage.folders import StageFolder

VERSION = "frames-v1"
FOLDER = "frames"
JPEG = {"quality": 95, "subsampling": 0}
CUT_BINS = 8  # per channel: the colour histogram scene cuts are found with


@dataclass
class FramesEntry:
    """One clip's entry in ``cache/frames/manifest.json`` (under ``clips``, by clip name).

    ``video``: where the clip was read (a file, or a folder of frames). ``sha256``: of its bytes
    (a folder: of its frames' names and bytes). ``frames``: the key of its frames store. ``count``:
    frames taken. ``fps``: their rate. ``size``: (width, height). ``cuts``: scene cuts (frame numbers
    in the store). ``notes``: what decoding found wrong but got past (the clip is cut short; frames
    of another size than the first were resized to it).
    """

    video: str
    sha256: str
    frames: str
    count: int = 0
    fps: float = 0.0
    size: list[int] | None = None
    cuts: list[int] | None = None
    notes: list[str] | None = None  # what the user is told once, when the clip is decoded: cut short, resized frames


def cut_of(settings: Settings) -> Cut:
    video = settings.video
    return Cut(video.start, video.end, video.every, video.fps)


def frames_key(settings: Settings, sha256: str) -> str:
    video = settings.video
    taken = [video.start, video.end, video.every, video.fps, video.folder_fps]
    return content_key(VERSION, sha256, taken, video.cut_threshold)


def clip_digest(location: str) -> str:
    """sha256 of a clip file's bytes, or of a frame folder's names and bytes in order."""
    digest = hashlib.sha256()
    path = Path(location)
    for file in frame_files(path) if path.is_dir() else [path]:
        if path.is_dir():
            digest.update(file.name.encode())
        with open(file, "rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


@dataclass
class FramesItem(Item):
    """A clip to decode: where it is."""

    video: str = ""


@dataclass
class FramesResult(Result):
    """A decoded clip's index summary (count, fps, size, cuts, notes), for the manifest."""

    index: dict[str, Any] | None = None


@dataclass
class FramesState:
    """What ``finish`` needs: the manifest entries, and the clips that could not be read."""

    entries: dict[str, FramesEntry]
    errors: dict[str, str]


def check_clip(clip: SourceCheck, settings: Settings, done: frozenset[str]) -> SourceCheck:
    """Hash one clip and, unless its frames are stored, make sure its first frame decodes (a plain task)."""
    try:
        sha = clip_digest(clip.location)
        key = frames_key(settings, sha)
        if key not in done:
            next(iter(_frames(Path(clip.location), cut_of(settings), settings.video.folder_fps)))
    except (OvsegError, OSError) as exc:
        error = str(exc) if isinstance(exc, OvsegError) else f"cannot read {clip.location}: {one_line(exc)}"
        return dataclasses.replace(clip, error=error)
    return dataclasses.replace(clip, sha256=sha, key=key, error="")


def _frames(path: Path, cut: Cut, folder_fps: float, problems: list[str] | None = None):
    """(index, time, picture or JPEG bytes) of the frames ``cut`` takes from a clip file or a folder of frames
    (which has no rate of its own: ``folder_fps`` says it). ``problems`` gets a line for a clip cut short."""
    if not path.is_dir():
        for frame in decode(path, cut, problems):
            yield frame.index, frame.time, frame.image
        return
    files = frame_files(path)
    fps = folder_fps
    kept, last = 0, None
    for index, file in enumerate(files):
        time_s = index / fps
        if not cut.keeps(index, time_s, fps, kept, last):
            continue
        kept, last = kept + 1, time_s
        if file.suffix.lower() in (".jpg", ".jpeg"):
            load_image(file)  # the same rule as photos: one line if it does not decode
            yield index, round(time_s, 6), file.read_bytes()
        else:
            yield index, round(time_s, 6), load_image(file)
    if kept == 0:
        raise UnreadableImageError(f"no frames in {path.name} (in the part asked for)")


def _histogram(image) -> np.ndarray:
    small = np.asarray(image.convert("RGB").resize((64, 36)), np.int64) // (256 // CUT_BINS)
    codes = (small[..., 0] * CUT_BINS + small[..., 1]) * CUT_BINS + small[..., 2]
    counts = np.bincount(codes.ravel(), minlength=CUT_BINS**3).astype(np.float32)
    return counts / counts.sum()


def decode_clip(location: str, settings: Settings, folder: Path) -> dict[str, Any]:
    """Write a clip's frames into ``folder`` as ``NNNNN.jpg`` plus ``frames.json``; returns the index.

    Every frame takes the first frame's size: a folder of frames of mixed sizes (or a stream that changes
    size) has the others resized to it, and the index notes how many."""
    import io

    from PIL import Image

    path, cut = Path(location), cut_of(settings)
    frames, cuts, previous, size, resized, notes = [], [], None, None, [], []
    for number, (index, time_s, picture) in enumerate(_frames(path, cut, settings.video.folder_fps, notes)):
        target = folder / f"{number:05d}.jpg"
        if isinstance(picture, bytes):
            data, picture = picture, Image.open(io.BytesIO(picture)).convert("RGB")
        else:
            data = None
        if size is not None and list(picture.size) != size:
            picture, data = picture.resize(tuple(size), Image.Resampling.BILINEAR), None
            resized.append(number)
        if data is not None:
            target.write_bytes(data)  # a clip's JPEG frames are kept byte for byte
        else:
            picture.save(target, format="JPEG", **JPEG)
        size = list(picture.size)
        histogram = _histogram(picture)
        if previous is not None and np.abs(histogram - previous).sum() / 2 > settings.video.cut_threshold:
            cuts.append(number)
        previous = histogram
        frames.append({"index": index, "time": time_s})
    if resized:
        notes.append(
            f"{path.name}: {len(resized)} of its {len(frames)} frames are not {size[0]}x{size[1]} like the first; "
            f"they were resized to it (first: frame {frames[resized[0]]['index']})"
        )
    source = clip_rate(path) if not path.is_dir() else settings.video.folder_fps
    fps = settings.video.fps or source / settings.video.every
    index = {
        "video": str(location), "fps": round(float(fps), 6), "size": size, "frames": frames, "cuts": cuts,
        "notes": notes,
    }  # fmt: skip
    (folder / FRAMES_INDEX).write_text(json.dumps(index, indent=1))
    return index


def plan(run: Run, engine: Engine) -> Plan[FramesState]:
    started = time.perf_counter()
    settings = run.settings
    clips = list_clips(run.request.videos)
    folder = run.stage_folder(FOLDER)
    done = folder.done_keys()
    check = partial(check_clip, settings=settings, done=frozenset(done))
    rows: dict[str, SourceCheck] = {
        row.stem: row for row in engine.map(check, [SourceCheck(c.name, c.location) for c in clips], "read")
    }
    errors: dict[str, str] = {}
    entries: dict[str, FramesEntry] = {}
    previous = (folder.read_json() or {}).get("clips", {})
    for clip in clips:
        row = rows[clip.name]
        if row.error:
            if settings.strict or len(clips) == 1:
                raise OvsegError(row.error)
            errors[clip.name] = row.error
            warn_skipped(clip.location, row.error)
            continue
        old = previous.get(clip.name, {})
        entry = FramesEntry(clip.location, row.sha256, row.key)
        if old.get("frames") == row.key:
            entry = FramesEntry(**{**old, "video": clip.location})
        entries[clip.name] = entry
    if not entries:
        raise OvsegError(f"none of the {len(clips)} videos could be read (first: {next(iter(errors.values()))})")
    plan = unique_items(entries, "frames", done, lambda stem, e: FramesItem(stem, e.frames, e.video))
    plan.state, plan.started = FramesState(entries, errors), started
    return plan


def compute(run: Run, shared: None, model: LazyModel, item: FramesItem) -> FramesResult:
    started = time.perf_counter()
    store = run.stage_folder(FOLDER)
    with store.scratch(item.key) as scratch:
        index = decode_clip(item.video, run.settings, scratch)
        seconds = round(time.perf_counter() - started, 3)
        store.publish_files(item.key, scratch, {"seconds": seconds, "engine": run.engine})
    return FramesResult(item.stem, index=_summary(index))


def _summary(index: dict[str, Any]) -> dict[str, Any]:
    return {
        "count": len(index["frames"]), "fps": index["fps"], "size": index["size"], "cuts": index["cuts"],
        "notes": index.get("notes") or None,
    }  # fmt: skip


def finish(run: Run, plan: Plan[FramesState], results: list[Result]) -> StageReport:
    entries = plan.state.entries
    errors = dict(plan.state.errors)
    for result in results:
        if result.error:
            if run.settings.strict:
                raise OvsegError(result.error)
            errors[result.stem] = result.error
            warn_skipped(entries[result.stem].video, result.error)
            del entries[result.stem]
        elif isinstance(result, FramesResult) and result.index is not None:  # decoded now (not reused)
            entries[result.stem] = dataclasses.replace(entries[result.stem], **result.index)
            for note in result.index.get("notes") or []:  # said once, when the clip is decoded
                print(f"ovseg: warning: {note}", file=sys.stderr)
    store = run.stage_folder(FOLDER)
    for name, entry in entries.items():
        if not entry.count:  # reused from a store this manifest did not list yet
            with store.files(entry.frames) as path:
                entries[name] = dataclasses.replace(entry, **_summary(FrameFolder(path).index))
    if not entries:
        raise OvsegError(f"none of the videos could be read (first: {next(iter(errors.values()), 'no videos')})")
    report = plan.report("frames", results, list(errors))
    clips = {name: dataclasses.asdict(entry) for name, entry in entries.items()}
    store.update_json({"clips": clips, "skipped": errors, "run": report.record(run.engine)}, ignore=("run",))
    return report


def clip_entries(cache: str) -> dict[str, FramesEntry]:
    """The clips the frames stage decoded in its latest run (name -> entry), or one line naming the stage to run."""
    manifest = StageFolder(str(cache), FOLDER).read_json()
    if manifest is None:
        raise OvsegError("frames/manifest.json not found: run the frames stage first (`dvc repro` or `ovseg run`)")
    return {name: FramesEntry(**data) for name, data in manifest["clips"].items()}


def skipped_clips(cache: str) -> dict[str, str]:
    return (StageFolder(str(cache), FOLDER).read_json() or {}).get("skipped", {})


def describe(run: Run) -> str:
    return "frames (decode)"


STAGE = Stage.of(__name__, "frames", cache=FOLDER)
