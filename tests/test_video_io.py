"""Reading and writing videos: frames in order with their times, phones' rotation, cuts, and one line per bad file."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from ovseg.errors import OvsegError, UnreadableImageError
from ovseg.media.videoio import Cut, FrameFolder, decode, list_clips, write_video


def moving_square(count: int = 12, size=(64, 96), side: int = 16, step: int = 6) -> list[np.ndarray]:
    """A white square moving right over a dark gradient, one position per frame."""
    frames = []
    for i in range(count):
        frame = np.zeros((*size, 3), np.uint8)
        frame[..., 2] = np.linspace(20, 80, size[1], dtype=np.uint8)[None, :]
        frame[20 : 20 + side, 4 + i * step : 4 + i * step + side] = 255
        frames.append(frame)
    return frames


def square_x(frame: np.ndarray) -> float:
    bright = frame[..., 0] > 150
    return float(np.nonzero(bright)[1].mean())


def write_clip(path: Path, frames: list[np.ndarray], fps: float = 10) -> Path:
    assert write_video(path, frames, fps) == len(frames)
    return path


def rotate_display(path: Path, target: Path) -> Path:
    """The clip with a phone's display matrix in its track header: shown turned 90 degrees clockwise."""
    data = bytearray(path.read_bytes())
    at = data.find(b"tkhd")
    version = data[at + 4]
    # after the box type: version and flags, times, track id, reserved, duration, reserved, layer ... volume
    matrix = at + 4 + 4 + (8 + 8 + 4 + 4 + 8 if version == 1 else 4 * 5) + 8 + 8
    data[matrix : matrix + 36] = struct.pack(">9i", 0, 65536, 0, -65536, 0, 0, 0, 0, 1 << 30)
    target.write_bytes(bytes(data))
    return target


def test_an_mp4_made_here_reads_back_in_order_with_its_times(tmp_path: Path) -> None:
    source = moving_square()
    clip = write_clip(tmp_path / "square.mp4", source)
    frames = list(decode(clip))
    assert [f.index for f in frames] == list(range(12))
    assert [f.time for f in frames] == pytest.approx([i / 10 for i in range(12)], abs=1e-3)
    xs = [square_x(np.asarray(f.image)) for f in frames]
    assert xs == sorted(xs) and xs[-1] - xs[0] == pytest.approx(11 * 6, abs=2)  # in order, the square moved right
    assert frames[0].image.size == (96, 64)
    every = list(decode(clip, Cut(every=3)))
    assert [f.index for f in every] == [0, 3, 6, 9]
    part = list(decode(clip, Cut(start="0.25s", end="7")))
    assert [f.index for f in part] == [3, 4, 5, 6, 7]
    assert [f.index for f in decode(clip, Cut(fps=5))] == [0, 2, 4, 6, 8, 10]


def test_a_video_with_a_phones_rotation_comes_out_upright(tmp_path: Path) -> None:
    source = moving_square(count=3)
    clip = rotate_display(write_clip(tmp_path / "flat.mp4", source), tmp_path / "phone.mp4")
    frame = np.asarray(next(iter(decode(clip))).image)
    assert frame.shape[:2] == (96, 64)  # stored 96 wide, shown 96 tall
    np.testing.assert_allclose(frame.astype(float), np.rot90(source[0], -1).astype(float), atol=40)


def test_bad_videos_are_one_line_each(tmp_path: Path) -> None:
    good = write_clip(tmp_path / "good.mp4", moving_square())
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(good.read_bytes()[:600])
    (tmp_path / "notes.mp4").write_text("this is not a video\n")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    for bad in (cut, tmp_path / "notes.mp4", empty):
        with pytest.raises(UnreadableImageError) as error:
            list(decode(bad))
        assert bad.name in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(UnreadableImageError, match="no frames"):
        list(decode(good, Cut(start="5s")))  # nothing in the part asked for
    with pytest.raises(OvsegError, match="--every or --fps"):
        Cut(every=2, fps=5)
    with pytest.raises(OvsegError, match="seconds"):
        Cut(start="soon")


def test_clips_are_named_and_a_folder_of_frames_is_one_clip(tmp_path: Path) -> None:
    write_clip(tmp_path / "clips" / "a.mp4", moving_square(3))
    frames = tmp_path / "clips" / "b"
    frames.mkdir()
    from PIL import Image

    for i, frame in enumerate(moving_square(3)):
        Image.fromarray(frame).save(frames / f"{i:05d}.jpg")
    assert [(c.name, c.is_folder) for c in list_clips(tmp_path / "clips")] == [("a", False), ("b", True)]
    assert [c.name for c in list_clips(frames)] == ["b"]
    with pytest.raises(OvsegError, match="not found"):
        list_clips(tmp_path / "missing.mp4")


def test_the_frames_stage_decodes_once_and_keeps_jpeg_frames_byte_for_byte(tmp_path: Path, tiny_checkpoints) -> None:
    from conftest import stages

    from ovseg.config import settings_from_params
    from ovseg.pipeline import new_run
    from ovseg.request import RunRequest

    folder = tmp_path / "frames"
    folder.mkdir()
    from PIL import Image

    for i, frame in enumerate(moving_square(5)):
        Image.fromarray(frame).save(folder / f"{i:05d}.jpg", quality=90)
    write_clip(tmp_path / "clip.mp4", moving_square(6))
    settings = settings_from_params({"preset": "tiny", "device": "cpu"})
    from ovseg.pipeline.frames import clip_entries
    from ovseg.storage.store import files_name

    decoded = {}
    for source in (folder, tmp_path / "clip.mp4"):
        run = new_run(settings, RunRequest(videos=str(source), prompt="x"), cache=str(tmp_path / "cache"))
        report = stages(run, "frames")[0]
        name = source.stem if source.is_file() else source.name
        assert report.computed == [name]
        assert stages(run, "frames")[0].reused == report.computed  # a second run decodes nothing
        entry = clip_entries(str(tmp_path / "cache"))[name]
        decoded[name] = FrameFolder(tmp_path / "cache" / "frames" / files_name(entry.frames))
    assert len(decoded["frames"]) == 5 and decoded["frames"].fps == 24.0  # a folder: video.folder_fps
    assert (decoded["frames"].folder / "00002.jpg").read_bytes() == (folder / "00002.jpg").read_bytes()
    assert len(decoded["clip"]) == 6 and decoded["clip"].fps == pytest.approx(10.0)
    assert [f["time"] for f in decoded["clip"].index["frames"]] == pytest.approx([i / 10 for i in range(6)], abs=1e-3)
