"""What ``Segmenter.track`` returns: a followed video, read from the cache one frame at a time."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ovseg.api.results import one_line_errors


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
