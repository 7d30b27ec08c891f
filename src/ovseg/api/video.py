"""What ``Segmenter.track`` returns: a followed video, read from the cache one frame at a time."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from ovseg.api.results import one_line_errors

if TYPE_CHECKING:
    from ovseg.request import Correction


@dataclass
class VideoResult:
    """Objects followed through a clip.

    ``objects``: per object its ``id`` (the value in :meth:`labels`), ``label`` (the prompt or class,
    ``click``, ``box``, ``mask k``), ``category`` (1-based class, words only), ``first_frame`` and per
    frame ``score``, ``present``, ``box`` (XYWH) and ``area``. Frames and masks stay in the cache
    (``cache/frames``, ``cache/tracks``) and are read when asked for, so a long clip costs no memory.
    """

    clip: str
    frames: int
    fps: float
    size: tuple[int, int]  # (width, height)
    objects: list[dict[str, Any]]
    propagator: str
    seconds_per_frame: float
    tracks_folder: Path
    frames_folder: Path

    def labels(self, frame: int) -> np.ndarray:
        """(H, W) ids on ``frame``: 0 background, k object k (DAVIS's format)."""
        if not 0 <= frame < self.frames:
            from ovseg.errors import OvsegError

            raise OvsegError(f"there is no frame {frame}: this clip has {self.frames}")
        return np.asarray(Image.open(self.tracks_folder / "masks" / f"{frame:05d}.png"))

    def mask(self, frame: int, obj: int) -> np.ndarray:
        """(H, W) bool: object ``obj`` on ``frame``."""
        return self.labels(frame) == obj

    def present(self, obj: int) -> list[bool]:
        """Per frame, whether object ``obj`` is there."""
        found = next(o for o in self.objects if o["id"] == obj)
        return [f["present"] for f in found["frames"]]

    def image(self, frame: int) -> np.ndarray:
        """The frame as it was followed (upright RGB)."""
        from ovseg.media.videoio import FrameFolder

        return FrameFolder(self.frames_folder)[frame]

    def overlay_frame(self, frame: int) -> Image.Image:
        """Frame ``frame`` with each object tinted in its colour and labelled, as ``overlay.mp4`` shows it."""
        from ovseg.pipeline.video_out import overlay_frame

        return overlay_frame(self.image(frame), self.labels(frame), self._index())

    def _index(self) -> dict[str, Any]:
        from ovseg.pipeline.follow import TRACKS_INDEX

        return json.loads((self.tracks_folder / TRACKS_INDEX).read_text())

    def to_youtube_vis(self) -> dict[str, Any]:
        """The tracks in YouTube-VIS's JSON layout (``tracks.json``): one video, an annotation per object."""
        from ovseg.pipeline.video_out import youtube_vis

        return youtube_vis(self._index(), self.tracks_folder / "masks", self.clip)

    @one_line_errors
    def overlay_video(self, path: str | Path) -> Path:
        """Write the frames with each object tinted and labelled as an MP4 (H.264, plays in a browser)."""
        from ovseg.media.videoio import FrameFolder, write_video
        from ovseg.pipeline.video_out import overlay_frames

        write_video(Path(path), overlay_frames(FrameFolder(self.frames_folder), self.tracks_folder / "masks",
                                               self._index()), self.fps)  # fmt: skip
        return Path(path)

    @one_line_errors
    def save(self, folder: str | Path, overlay: bool = True) -> Path:
        """Write ``masks/NNNNN.png``, ``tracks.json`` and (``overlay``) ``overlay.mp4`` into ``folder``."""
        from ovseg.pipeline.video_out import OVERLAY, TRACKS_FILE
        from ovseg.storage.locations import write_json

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if (folder / "masks").exists():
            shutil.rmtree(folder / "masks")
        shutil.copytree(self.tracks_folder / "masks", folder / "masks")
        write_json(folder / TRACKS_FILE, self.to_youtube_vis())
        if overlay:
            self.overlay_video(folder / OVERLAY)
        return folder


def video_request(
    video: str | Path,
    prompt: str | list[str] | None,
    points: list[tuple[float, float]] | None,
    labels: list[int] | None,
    box: tuple[float, float, float, float] | None,
    frame: int,
    mask: str | Path | None,
    mode: str = "segment",
    corrections: Sequence[Correction | dict[str, Any]] | None = None,
):
    """The run request for following (``mode`` segment) or removing from one clip: words, or clicks / a box / a
    mask on ``frame``, and corrections on later frames. One line for what cannot be asked (both, neither, several
    clips)."""
    from ovseg.errors import OvsegError
    from ovseg.media.videoio import list_clips
    from ovseg.request import RunRequest, VideoSeeds, split_prompt

    words, classes = split_prompt(list(prompt) if isinstance(prompt, (list, tuple)) else prompt)
    fixes = tuple(as_correction(fix) for fix in corrections or ())
    seeds = VideoSeeds(corrections=fixes) if fixes else None
    if points or box is not None or mask is not None:
        if words or classes:
            raise OvsegError("follow words, or clicks / a box / a mask: not both")
        clicks = clicks_of(points, labels)
        seeds = VideoSeeds(clicks, tuple(box) if box is not None else None, frame, str(mask) if mask else None,
                           fixes)  # fmt: skip
    elif not words and not classes:
        raise OvsegError("say what to follow: a prompt, points=[(x, y)], a box or a mask")
    clips = list_clips(video)
    if len(clips) != 1:
        raise OvsegError(f"{video} holds {len(clips)} videos: track one at a time")
    return RunRequest(videos=str(video), prompt=words, classes=classes, seeds=seeds, mode=mode)


def as_correction(fix: Correction | dict[str, Any]) -> Correction:
    """A correction as the API takes it: a :class:`~ovseg.request.Correction`, or a dict with ``frame``, ``points``
    ([(x, y)] or [(x, y, label)]), ``labels``, ``box`` and ``obj``; one line for anything else."""
    from ovseg.errors import OvsegError
    from ovseg.request import Correction

    if isinstance(fix, Correction):
        return fix
    unknown = sorted(set(fix) - {"frame", "points", "labels", "box", "obj"}) if isinstance(fix, dict) else ["?"]
    if unknown or "frame" not in fix:
        raise OvsegError(f"a correction is a dict of frame, points, labels, box and obj, got {fix!r}")
    box = tuple(float(v) for v in fix["box"]) if fix.get("box") is not None else None
    clicks = clicks_of(fix.get("points"), fix.get("labels") or None)
    return Correction(int(fix["frame"]), clicks, box, int(fix.get("obj") or 1))  # type: ignore[arg-type]


def clicks_of(points, labels) -> tuple[tuple[float, float, int], ...]:
    """Clicks as the API takes them, [(x, y)] with ``labels`` (1 include, 0 exclude; all 1 when None) or
    [(x, y, label)], as (x, y, label) numbers."""
    points = [tuple(p) for p in points or ()]
    kinds = list(labels) if labels is not None else [p[2] if len(p) > 2 else 1 for p in points]
    return tuple((float(p[0]), float(p[1]), int(k)) for p, k in zip(points, kinds, strict=True))


@dataclass
class DecodedClip:
    """A clip's frames as the frames stage took them (what following reads): ``folder`` of JPEGs, ``numbers`` each
    one's frame number in the clip, their rate and (width, height), and what decoding got past (``notes``)."""

    name: str
    folder: Path
    numbers: list[int]
    fps: float
    size: tuple[int, int]
    notes: list[str]

    def __len__(self) -> int:
        return len(self.numbers)

    def image(self, position: int) -> np.ndarray:
        from ovseg.media.videoio import FrameFolder

        return FrameFolder(self.folder)[position]

    def path(self, position: int) -> Path:
        """The JPEG of the ``position``-th frame taken."""
        from ovseg.media.videoio import frame_files

        return frame_files(self.folder)[position]


def with_part(settings, part: dict[str, Any] | None):
    """The settings with ``part`` (start, end, every, fps of the ``video`` section) for one run."""
    import dataclasses

    from ovseg.errors import OvsegError

    if not part:
        return settings
    unknown = sorted(set(part) - {"start", "end", "every", "fps"})
    if unknown:
        raise OvsegError(f"a part of a clip is start, end, every or fps, not {', '.join(unknown)}")
    return dataclasses.replace(settings, video=dataclasses.replace(settings.video, **part))


def decode_clip(settings, cache: Path, video: str | Path, part: dict[str, Any] | None) -> DecodedClip:
    """:meth:`ovseg.api.Segmenter.decode`: the frames stage alone, on one clip."""
    from ovseg.engines import run_pipeline
    from ovseg.errors import OvsegError
    from ovseg.media.videoio import FRAMES_INDEX, list_clips
    from ovseg.pipeline import frames, new_run
    from ovseg.request import RunRequest
    from ovseg.storage.store import files_name

    clips = list_clips(video)
    if len(clips) != 1:
        raise OvsegError(f"{video} holds {len(clips)} videos: open one at a time")
    request = RunRequest(videos=str(video), prompt="the object")  # the frames stage reads no words
    run = new_run(with_part(settings, part), request, cache=str(cache), output=str(Path(cache) / "api"))
    run_pipeline(run, [frames.STAGE])
    entry = frames.clip_entries(run.cache)[clips[0].name]
    folder = Path(run.stage_folder(frames.FOLDER).path) / files_name(entry.frames)
    index = json.loads((folder / FRAMES_INDEX).read_text())
    numbers = [int(f["index"]) for f in index["frames"]]
    size = (int(entry.size[0]), int(entry.size[1])) if entry.size else (0, 0)
    return DecodedClip(clips[0].name, folder, numbers, float(entry.fps), size, list(entry.notes or []))


def follow_clip(run, stages: list) -> VideoResult:
    """The video stages ``stages`` on the run's one clip, and what following it gave."""
    from ovseg.engines import run_pipeline
    from ovseg.media.videoio import list_clips
    from ovseg.pipeline import follow, frames
    from ovseg.storage.store import files_name

    clip = list_clips(run.request.videos)[0]
    run_pipeline(run, stages)
    entry = follow.tracks_entries(run.cache)[clip.name]
    tracks = Path(run.stage_folder(follow.FOLDER).path) / files_name(entry.tracks)
    decoded = Path(run.stage_folder(frames.FOLDER).path) / files_name(entry.frames)
    index = json.loads((tracks / follow.TRACKS_INDEX).read_text())
    return VideoResult(
        clip=clip.name, frames=index["frames"], fps=index["fps"], size=tuple(index["size"]),
        objects=index["objects"], propagator=index["propagator"],
        seconds_per_frame=follow.seconds_per_frame(run, entry.tracks),
        tracks_folder=tracks, frames_folder=decoded,
    )  # fmt: skip
