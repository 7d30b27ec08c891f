"""Videos in, videos out: decoding clips (PyAV, whose wheels carry FFmpeg) and frame folders, writing MP4s.

Base layer, like :mod:`ovseg.media.fileio`: it knows files, not stages. A clip is read as upright RGB
frames (a phone's rotation matrix applied), optionally cut (``start`` / ``end``) and thinned
(``every`` N-th frame, or resampled to ``fps``); a folder of frames is taken in name order.
Whatever goes wrong with a file (not a video, truncated, no frames) is one
:class:`~ovseg.errors.UnreadableImageError` line naming it, as for photos. Videos are written as
H.264 in MP4 (yuv420p, even sides, the index at the front), which every browser plays.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from ovseg.errors import OvsegError, UnreadableImageError, one_line
from ovseg.media.fileio import MIN_IMAGE_SIDE
from ovseg.storage.locations import IMAGE_SUFFIXES, atomic_path

VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".webm", ".mkv", ".avi")


@dataclass(frozen=True)
class Cut:
    """Which frames of a clip to take: ``start`` / ``end`` as a frame number (``"12"``) or seconds (``"1.5s"``),
    and ``every`` N-th frame, or ``fps`` frames a second (not both)."""

    start: str | None = None
    end: str | None = None
    every: int = 1
    fps: float | None = None

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if value is not None and not _POSITION.fullmatch(str(value).strip()):
                raise OvsegError(f"--{name} {value!r}: a frame number (12) or seconds (1.5s)")
        if self.every < 1:
            raise OvsegError(f"--every must be at least 1, got {self.every}")
        if self.fps is not None and self.fps <= 0:
            raise OvsegError(f"--fps must be positive, got {self.fps}")
        if self.fps is not None and self.every != 1:
            raise OvsegError("give --every or --fps, not both")

    def bound(self, value: str | None, fps: float) -> float | None:
        """``start`` or ``end`` in seconds (a frame number counts at the clip's ``fps``)."""
        if value is None:
            return None
        text = str(value).strip()
        return float(text[:-1]) if text.endswith("s") else int(text) / fps

    def keeps(self, index: int, time: float, fps: float, kept: int, last_time: float | None) -> bool:
        """Whether frame ``index`` at ``time`` s is taken, ``kept`` frames having been taken before it."""
        start, end = self.bound(self.start, fps), self.bound(self.end, fps)
        if (start is not None and time < start - 1e-6) or (end is not None and time > end + 1e-6):
            return False
        if self.fps is not None:
            return last_time is None or time - last_time >= 1.0 / self.fps - 0.5 / fps
        first = round(start * fps) if start is not None else 0
        return (index - first) % self.every == 0


_POSITION = re.compile(r"\d+|\d+(\.\d+)?s")


@dataclass(frozen=True)
class Frame:
    """One frame taken from a clip: its number in the clip, its time, and its upright pixels."""

    index: int
    time: float
    image: Image.Image


def is_video_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def frame_files(folder: Path) -> list[Path]:
    """A folder of frames in name order (the images directly inside it; hidden files left out)."""
    files = sorted(
        p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )
    if not files:
        raise UnreadableImageError(f"no frames ({', '.join(IMAGE_SUFFIXES)}) in the folder {folder}")
    return files


def upright(array: np.ndarray, rotation: float) -> np.ndarray:
    """A decoded frame turned as its display matrix says (FFmpeg's angle: counter-clockwise degrees)."""
    turns = round(rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(array, turns)) if turns else array


def ffmpeg_reason(exc: BaseException) -> str:
    """What FFmpeg said, in its words and nothing else (PyAV's message also carries the error number and the path:
    ``[Errno 1094995529] Invalid data found when processing input: 'clip.mp4'``)."""
    reason = getattr(exc, "strerror", None)
    if not reason:
        return one_line(exc)
    return reason[0].lower() + reason[1:]


def decode(path: Path, cut: Cut = Cut(), problems: list[str] | None = None) -> Iterator[Frame]:
    """The clip's frames that ``cut`` takes, upright RGB, one at a time (a long clip never sits in memory).

    One line for a file that is not a video, is cut short before its first frame, has none, or is smaller than
    ``MIN_IMAGE_SIDE`` a side. A clip cut short later keeps the frames before (as players show it), and
    ``problems`` gets a line saying so.
    """
    import av

    name = Path(path).name
    try:
        container = av.open(str(path))
    except Exception as exc:  # noqa: BLE001 - FFmpeg fails in many ways on a file that is not a video
        raise UnreadableImageError(f"cannot read video {name}: {ffmpeg_reason(exc)} (not a video?)") from None
    with container:
        if not container.streams.video:
            raise UnreadableImageError(f"cannot read video {name}: it has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = float(stream.average_rate or stream.guessed_rate or 30)
        kept, last_time, decoded, ended = 0, None, 0, False
        try:
            for index, frame in enumerate(container.decode(stream)):
                decoded = index + 1
                time = float(frame.time) if frame.time is not None else index / fps
                if not cut.keeps(index, time, fps, kept, last_time):
                    end = cut.bound(cut.end, fps)
                    if end is not None and time > end + 1e-6:
                        ended = True
                        break
                    continue
                if min(frame.width, frame.height) < MIN_IMAGE_SIDE:
                    raise UnreadableImageError(
                        f"cannot read video {name}: {frame.width}x{frame.height} pixels is too small "
                        f"(at least {MIN_IMAGE_SIDE} a side)"
                    )
                array = upright(frame.to_ndarray(format="rgb24"), getattr(frame, "rotation", 0) or 0)
                kept, last_time = kept + 1, time
                yield Frame(index, round(time, 6), Image.fromarray(array))
        except av.error.FFmpegError as exc:
            if kept == 0:
                raise UnreadableImageError(f"cannot read video {name}: {ffmpeg_reason(exc)}") from None
            if problems is not None:
                problems.append(
                    f"{name} is cut short: decoding stopped after frame {decoded - 1} ({ffmpeg_reason(exc)}); "
                    f"the {kept} frames taken before it are kept"
                )
            ended = True
        declared = int(stream.frames or 0)
        if not ended and problems is not None and 0 < decoded < declared and (cut.end is None or kept):
            problems.append(  # FFmpeg stops quietly at the end of what a truncated file holds
                f"{name} is cut short: only {decoded} of the {declared} frames it declares could be decoded; "
                f"the {kept} taken from them are kept"
            )
        if kept == 0:
            raise UnreadableImageError(f"cannot read video {name}: no frames (in the part asked for)")


def clip_rate(path: Path) -> float:
    """The clip's frame rate (frames a second), or 30 when it does not say."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            return float(stream.average_rate or stream.guessed_rate or 30)
    except Exception as exc:  # noqa: BLE001
        raise UnreadableImageError(f"cannot read video {Path(path).name}: {ffmpeg_reason(exc)}") from None


class VideoWriter:
    """Frames in, a browser-playable MP4 out (H.264, yuv420p, even sides, moov atom first), written atomically."""

    def __init__(self, path: Path, fps: float, quality: int = 20) -> None:
        self.path, self.fps, self.quality = Path(path), fps, quality
        self._context = None
        self._container = None
        self._stream = None
        self.frames = 0

    def __enter__(self) -> VideoWriter:
        self._context = atomic_path(self.path)
        self._tmp = self._context.__enter__()
        return self

    def write(self, image: Image.Image | np.ndarray) -> None:
        import av

        array = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image, np.uint8)
        height, width = array.shape[:2]
        if self._container is None:
            self._container = av.open(str(self._tmp), "w", format="mp4", options={"movflags": "+faststart"})
            rate = Fraction(self.fps).limit_denominator(1001)
            self._stream = self._container.add_stream("libx264", rate=rate)
            self._stream.width, self._stream.height = width - width % 2, height - height % 2
            self._stream.pix_fmt = "yuv420p"
            self._stream.options = {"crf": str(self.quality), "preset": "veryfast"}
        array = array[: self._stream.height, : self._stream.width]
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def __exit__(self, kind, value, traceback) -> None:
        try:
            if self._container is not None:
                if kind is None:
                    for packet in self._stream.encode():
                        self._container.mux(packet)
                self._container.close()
            if kind is None and self.frames == 0:
                raise OvsegError(f"no frames to write to {self.path}")
        finally:
            self._context.__exit__(kind, value, traceback)


def write_video(path: Path, frames: Iterable[Image.Image | np.ndarray], fps: float) -> int:
    """Write ``frames`` as an MP4 at ``fps``; returns how many frames it holds."""
    with VideoWriter(path, fps) as writer:
        for frame in frames:
            writer.write(frame)
    return writer.frames


@dataclass(frozen=True)
class Clip:
    """One video of a run: where it is (a file, or a folder of frames) and the name its outputs take."""

    location: str
    name: str

    @property
    def is_folder(self) -> bool:
        return Path(self.location).is_dir()


def list_clips(location: str | Path) -> list[Clip]:
    """The videos ``location`` names: a clip file; a folder of frames (one video); or a folder of clips and of
    frame folders (many videos, e.g. DAVIS's ``JPEGImages/480p``), sorted by name."""
    path = Path(location)
    if path.is_file():
        return [Clip(str(path), path.stem)]
    if not path.is_dir():
        raise OvsegError(f"video not found: {path}")
    entries = sorted(p for p in path.iterdir() if not p.name.startswith("."))
    if any(p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() for p in entries):
        return [Clip(str(path), path.name)]
    clips = [
        Clip(str(p), p.stem if p.is_file() else p.name)
        for p in entries
        if (p.is_file() and is_video_file(p))
        or (p.is_dir() and any(q.suffix.lower() in IMAGE_SUFFIXES for q in p.iterdir()))
    ]
    if not clips:
        raise OvsegError(f"no videos ({', '.join(VIDEO_SUFFIXES)}) or folders of frames in {path}")
    names = [c.name for c in clips]
    return [Clip(c.location, Path(c.location).name if names.count(c.name) > 1 else c.name) for c in clips]


FRAMES_INDEX = "frames.json"


class FrameFolder:
    """The frames of a decoded clip (a frames store: ``NNNNN.jpg`` and ``frames.json``), read one at a time.

    The :class:`~ovseg.video.backend.Frames` the propagation backends take; ``folder`` is what SAM 2's
    video predictor reads. ``index`` holds each frame's number in the clip and time, and the scene cuts.
    """

    def __init__(self, folder: Path) -> None:
        import json

        self.folder = Path(folder)
        self.index = json.loads((self.folder / FRAMES_INDEX).read_text())
        self.names = [f"{i:05d}.jpg" for i in range(len(self.index["frames"]))]

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> np.ndarray:
        with Image.open(self.folder / self.names[index]) as image:
            return np.asarray(image.convert("RGB"))

    def path(self, index: int) -> Path:
        return self.folder / self.names[index]

    @property
    def fps(self) -> float:
        return float(self.index["fps"])
