"""Videos that users bring, and mistakes users make, as `ovseg run --video(s)` meets them: a clip too small, frames of
mixed sizes, a file that is not a video, a clip cut short, clicks off the frame, a frame that was not taken, a mask of
another size. Each gets one line (a warning and the batch goes on, or an error and exit 2, never a traceback), and
the good clips of the same folder are done."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_ovseg_in_process as ovseg
from PIL import Image
from test_video_pipeline import shapes_video

from ovseg.media.videoio import write_video
from ovseg.video.measures import region_j

pytestmark = pytest.mark.slow
CPU = ["--config", "cpu", "--set", "embed.model=tiny-random-clip", "--no-visualize"]


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("ovseg: error:")]


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("ovseg: warning:")]


def _write_clip(path: Path, frames: list[np.ndarray], codec: str = "libx264") -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=24)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "rgb24" if codec == "png" else "yuv420p"
        for picture in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_a_folder_of_bad_videos_skips_each_with_one_line_and_does_the_good_ones(tmp_path: Path, tiny_checkpoints):
    clips = tmp_path / "clips"
    good, discs, _ = shapes_video(clips / "good", count=4)
    mixed = shapes_video(clips / "mixed", count=4, seed=1)[0]  # its third frame is smaller than the others
    Image.open(mixed / "00002.jpg").resize((120, 90)).save(mixed / "00002.jpg")
    _write_clip(clips / "thin.mov", [np.full((64, 1, 3), 90, np.uint8)] * 3, codec="png")  # 1 px wide
    (clips / "junk.mp4").write_bytes(np.random.default_rng(0).integers(0, 255, 4000, dtype=np.uint8).tobytes())
    whole = [np.asarray(Image.open(p)) for p in sorted(shapes_video(tmp_path / "long", count=24, seed=2)[0].iterdir())]
    write_video(tmp_path / "whole.mp4", whole, 24)  # its index first, as phones and ovseg write them
    data = (tmp_path / "whole.mp4").read_bytes()
    (clips / "short.mp4").write_bytes(data[: int(len(data) * 0.6)])  # cut short: a download that stopped
    shapes_video(clips / "small", count=3, size=(48, 64), seed=3)  # the click below lies outside its frames
    result = ovseg("run", "--videos", str(clips), "--point", "100,40", *CPU, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "[Errno" not in result.stderr
    warnings = " ".join(_warnings(result.stderr))
    assert len(_warnings(result.stderr)) == 5, result.stderr
    assert "skipping" in warnings and "thin.mov" in warnings and "1x64 pixels is too small" in warnings
    assert "junk.mp4: invalid data found when processing input (not a video?)" in warnings
    assert "short.mp4 is cut short: only" in warnings
    assert "mixed: 1 of its 4 frames are not 160x120 like the first; they were resized to it" in warnings
    assert "point (100, 40) is outside the 64x48 frame of small" in warnings
    summary = json.loads((tmp_path / "data/output/video/summary.json").read_text())
    assert sorted(summary["clips"]) == ["good", "mixed", "short"]
    assert sorted(summary["skipped"]) == ["junk", "small", "thin"]
    for clip in ("good", "mixed", "short"):
        record = json.loads((tmp_path / f"data/output/video/{clip}/video.json").read_text())
        assert record["objects"] and record["objects"][0]["present"] >= 1, clip
    masks = [np.asarray(Image.open(tmp_path / f"data/output/video/good/masks/{f:05d}.png")) for f in range(4)]
    assert all(mask.shape == (120, 160) for mask in masks)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--point", "30,40", "--frame", "50"], "--frame 50 is not in the part of frames taken: its frames 0 to 5"),
        (["--point", "30,40", "--frame", "5", "--end", "2"], "--frame 5 is not in the part of frames taken"),
        (["--point", "500,500"], r"point \(500, 500\) is outside the 160x120 frame"),
        (["--point=-5,10"], r"point \(-5, 10\) is outside the 160x120 frame"),
        (["--box", "10,10,200,60"], r"box \(10, 10, 200, 60\) goes outside the 160x120 frame"),
        (["--mask", "wrong-size.png"], "the mask wrong-size.png is 80x60; the frames of frames are 160x120"),
        (["--mask", "first.png", "--prompt", "the disc"], "follow words, or clicks / a box / a mask: not both"),
    ],
)
def test_seeds_that_do_not_fit_the_clip_are_one_line_and_exit_2(tmp_path: Path, tiny_checkpoints, args, message):
    shapes_video(tmp_path / "frames", count=6)
    Image.new("L", (80, 60), 255).save(tmp_path / "wrong-size.png")
    Image.new("L", (160, 120), 255).save(tmp_path / "first.png")
    result = ovseg("run", "--video", "frames", *args, *CPU, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert len(_errors(result.stderr)) == 1, result.stderr
    import re

    assert re.search(message, " ".join(result.stderr.split())), result.stderr
    assert not list(tmp_path.glob("cache/tracks/*.done"))


def test_frame_is_the_clips_own_frame_number_whatever_every_keeps(tmp_path: Path, tiny_checkpoints):
    frames, discs, _ = shapes_video(tmp_path / "frames", count=10)
    x, y = 30 + 8 * 4, 40  # the red disc's centre on the clip's frame 4, which is kept frame 2 with --every 2
    result = ovseg("run", "--video", "frames", "--point", f"{x},{y}", "--frame", "4", "--every", "2", *CPU,
                   cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    on = np.asarray(Image.open(tmp_path / "data/output/video/frames/masks/00002.png")) == 1
    assert region_j(on, discs[4]) > 0.8
    tracks = json.loads((tmp_path / "data/output/video/frames/tracks.json").read_text())
    assert len(tracks["videos"][0]["file_names"]) == 5
    # Frame 5 was not taken: the click goes on the nearest frame taken, and a note says so.
    result = ovseg("run", "--video", "frames", "--point", f"{x},{y}", "--frame", "5", "--every", "2", *CPU,
                   cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "frame 5 of frames is not among the frames taken; what is given on it goes on frame 4" in result.stderr


def test_a_mask_over_the_whole_frame_warns_before_removing_it(tmp_path: Path, tiny_checkpoints):
    shapes_video(tmp_path / "frames", count=3)
    Image.new("L", (160, 120), 255).save(tmp_path / "all.png")
    result = ovseg("run", "--video", "frames", "--mask", "all.png", "--mode", "remove", *CPU, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert _warnings(result.stderr) == [
        "ovseg: warning: the mask covers 100% of the frame: removing it repaints nearly every pixel, with little of "
        "the video left to fill from"
    ]


def test_a_click_on_the_command_line_replaces_the_params_prompt(tmp_path: Path, tiny_checkpoints):
    frames, discs, _ = shapes_video(tmp_path / "frames", count=3)
    (tmp_path / "params.yaml").write_text("prompt: the cat\nmode: segment\n")
    result = ovseg("run", "--video", "frames", "--point", "30,40", *CPU, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "data/output/video/frames/video.json").read_text())
    assert [o["label"] for o in record["objects"]] == ["click"]


def _leaving(folder: Path, count: int = 16, size=(120, 160), radius: int = 16) -> list[np.ndarray]:
    """A red disc rolls right out of the frame (gone on frames 7-9) and comes back, over grey noise: the true masks."""
    folder.mkdir(parents=True)
    yy, xx = np.mgrid[0 : size[0], 0 : size[1]]
    texture = np.clip(128 + np.random.default_rng(0).normal(0, 12, (*size, 3)), 0, 255).astype(np.uint8)
    truth = []
    for t in range(count):
        disc = (xx - (40 + 20 * min(t, 16 - t))) ** 2 + (yy - 60) ** 2 <= radius**2
        frame = texture.copy()
        frame[disc] = (220, 30, 30)
        Image.fromarray(frame).save(folder / f"{t:05d}.png")
        truth.append(disc)
    return truth


def test_an_object_that_leaves_the_frame_is_absent_there_and_removal_leaves_those_frames_alone(
    tmp_path: Path, tiny_checkpoints
):
    truth = _leaving(tmp_path / "frames")
    gone = [f for f, mask in enumerate(truth) if not mask.any()]
    assert gone == [7, 8, 9]
    Image.fromarray(truth[0].astype(np.uint8) * 255).save(tmp_path / "first.png")
    changed = {}
    for memory in ("true", "false"):
        out = f"out-{memory}"
        sets = ["--set", "video.fill_frames=true", "--set", f"video.memory={memory}"]
        result = ovseg("run", "--video", "frames", "--mask", "first.png", "--mode", "remove", *CPU, *sets, "-o", out,
                       cwd=tmp_path)  # fmt: skip
        assert result.returncode == 0, result.stderr
        tracks = json.loads((tmp_path / out / "video/frames/tracks.json").read_text())
        present = tracks["annotations"][0]["present"]
        edited = [np.asarray(Image.open(tmp_path / out / f"video_edit/frames/frames/{f:05d}.png")) for f in range(16)]
        (decoded,) = (tmp_path / "cache/frames").glob("*.files")  # the frames as the fill read them
        originals = [np.asarray(Image.open(decoded / f"{f:05d}.jpg").convert("RGB")) for f in range(16)]
        changed[memory] = [int((e != o).any(axis=2).sum()) for e, o in zip(edited, originals, strict=True)]
        if memory == "true":
            assert [present[f] for f in gone] == [False] * 3 and all(present[f] for f in (0, 5, 11, 15))
    assert all(changed["true"][f] == 0 for f in gone), changed  # nothing there to remove: not one pixel changes
    assert all(changed["true"][f] > 500 for f in (0, 5, 11, 15)), changed  # the disc is removed where it is
    assert any(changed["false"][f] > 100 for f in gone), changed  # without memory a ghost at the edge was "removed"
