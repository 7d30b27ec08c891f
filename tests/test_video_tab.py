"""The Video tab's actions without a browser (:class:`ovseg.web.video_tab.VideoBench`) and the API they stand on
(`Segmenter.decode`, `track(part=...)`, `remove_from_video`), on real DAVIS frames with the cpu preset."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import needs_extra
from PIL import Image
from scipy import ndimage

from ovseg.errors import OvsegError

DAVIS = Path(__file__).resolve().parents[2] / "shared" / "data" / "davis-dev"
SETS = ["embed.model=tiny-random-clip"]


def _zip_of_frames(folder: Path, count: int) -> Path:
    archive = folder / "dog.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in sorted((DAVIS / "JPEGImages/480p/dog").glob("*.jpg"))[:count]:
            bundle.write(path, f"dog/{path.name}")
        bundle.writestr("dog/notes.txt", "not a frame")
    return archive


@needs_extra("ui")
def test_the_video_tab_opens_a_zip_clicks_follows_and_removes(tiny_checkpoints: Path, tmp_path: Path) -> None:
    from ovseg.web.page import Workbench
    from ovseg.web.video_bench import VideoBench
    from ovseg.web.video_tab import frame_view

    bench = Workbench(tmp_path / "cache", "cpu", SETS, tmp_path / "scratch")
    videos = VideoBench(bench, max_frames=8)
    with pytest.raises(OvsegError, match="12 frames to follow, over this page's 8"):
        videos.open(str(_zip_of_frames(tmp_path, 12)), "cpu", "", "", 1)
    state = videos.open(str(_zip_of_frames(tmp_path, 12)), "cpu", "", "", 2)  # every 2nd frame: 6
    assert len(state.clip) == 6 and state.clip.numbers == [0, 2, 4, 6, 8, 10] and state.clip.size == (854, 480)
    with pytest.raises(OvsegError, match="outside the 854x480 frame"):
        videos.click(state, "cpu", 900, 10, "include")
    state.shown = 2  # the clip's frame 4
    truth = np.asarray(Image.open(DAVIS / "Annotations/480p/dog/00004.png")) > 0
    ys, xs = np.nonzero(truth)
    state = videos.click(state, "cpu", float(np.median(xs)), float(np.median(ys)), "include")
    assert state.clicked == 2 and state.first_mask.merged.shape == truth.shape
    assert (state.first_mask.merged & truth).sum() > 0.5 * truth.sum()
    assert frame_view(state).size == (854, 480)
    with pytest.raises(OvsegError, match="not both"):
        videos.follow(state, "cpu", "the dog")
    state = videos.follow(state, "cpu", "")
    assert state.result.frames == 6 and [Path(f).name for f in state.files] == ["overlay.mp4", "tracks.json",
                                                                                 "masks.zip"]  # fmt: skip
    tracks = json.loads(Path(state.files[1]).read_text())
    assert tracks["videos"][0]["length"] == 6
    state, folder = videos.remove(state, "cpu")
    assert Path(state.files[0]).name == "edited.mp4" and (folder / "before_after.mp4").is_file()


@needs_extra("ui")
def test_the_video_tab_corrects_from_a_later_frame_draws_boxes_and_stops(
    tiny_checkpoints: Path, tmp_path: Path
) -> None:
    import threading

    from ovseg.errors import Stopped
    from ovseg.web.page import Workbench
    from ovseg.web.video_bench import VideoBench
    from ovseg.web.video_tab import frame_view

    frames = sorted((DAVIS / "JPEGImages/480p/dog").glob("*.jpg"))[:8]
    folder = tmp_path / "dog8"
    folder.mkdir()
    for path in frames:
        (folder / path.name).write_bytes(path.read_bytes())
    truth = [np.asarray(Image.open(DAVIS / "Annotations/480p/dog" / f"{p.stem}.png")) > 0 for p in frames]
    videos = VideoBench(Workbench(tmp_path / "cache", "cpu", SETS, tmp_path / "scratch"), max_frames=100)
    state = videos.open(str(folder), "cpu", "", "", 1)
    with pytest.raises(OvsegError, match="follow something first"):
        videos.correct(state, "cpu")

    # a box: two clicks at opposite corners of the dog on frame 0; the first one alone segments nothing
    ys, xs = np.nonzero(truth[0])
    state = videos.click(state, "cpu", float(xs.min()), float(ys.min()), "box")
    assert state.first_mask is None and state.corner is not None
    state = videos.click(state, "cpu", float(xs.max()), float(ys.max()), "box")
    assert state.box == (float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()))
    assert (state.first_mask.merged & truth[0]).sum() > 0.6 * truth[0].sum()
    state = videos.follow(state, "cpu", "", session="a")
    before = [np.asarray(state.result.labels(i)) for i in range(8)]
    assert state.result.objects[0]["label"] == "box"

    # frame 5: a click on the grass far from the dog, Correct: object 1 is there from frame 5 on, not before
    state.shown = 5
    grass = np.argwhere(~np.isin(np.arange(854), np.arange(xs.min() - 60, xs.max() + 60)))[0][0]
    state = videos.click(state, "cpu", float(grass), 40.0, "include")
    assert state.pending and np.array_equal(np.asarray(frame_view(state)).shape, (480, 854, 3))
    state = videos.correct(state, "cpu", 0, session="a")
    assert state.followed["corrections"] == [{"frame": 5, "points": [(float(grass), 40.0, 1)], "box": None, "obj": 1}]
    after = [np.asarray(state.result.labels(i)) for i in range(8)]
    assert all(np.array_equal(after[i], before[i]) for i in range(5))
    assert all(after[i][40, grass] == 1 and not (after[i] == 1)[truth[i]].any() for i in range(5, 8))

    # frame 3: an exclude click first, on the followed dog, cuts from its mask there (its box and innermost point
    # are the rest of the prompt); Correct then follows the cut dog from frame 3 on
    state.shown = 3
    dog = after[3] == 1
    depth = ndimage.distance_transform_edt(dog)
    cy, cx = np.unravel_index(int(np.argmax(depth)), depth.shape)
    far = np.argwhere(depth >= 6)
    ey, ex = far[int(np.argmax(np.hypot(far[:, 0] - cy, far[:, 1] - cx)))]
    state = videos.click(state, "cpu", float(ex), float(ey), "exclude")
    assert [label for *_, label in state.clicks] == [1, 0] and state.box is not None
    cut = state.first_mask.merged
    assert not cut[ey, ex] and (cut & dog).sum() > 0.5 * cut.sum()
    state = videos.correct(state, "cpu", session="a")
    again = [np.asarray(state.result.labels(i)) for i in range(8)]
    assert all(np.array_equal(again[i], after[i]) for i in range(3)) and again[3][cy, cx] == 1
    state, removed = videos.remove(state, "cpu", session="a")
    assert (removed / "edited.mp4").is_file()

    # Stop from another thread (the page's button) while a new follow runs: one line, and following again goes on
    state = videos.clear(state)
    state = videos.click(state, "cpu", float(np.median(xs)), float(np.median(ys)), "include")
    partial = tmp_path / "cache" / "tracks"
    stopper = threading.Thread(target=lambda: _stop_once_following(videos, partial, "b"))
    stopper.start()
    with pytest.raises(Stopped, match="stopped after") as caught:
        videos.follow(state, "cpu", "", session="b")
    stopper.join()
    assert "\n" not in str(caught.value)
    state = videos.follow(state, "cpu", "", session="b")  # the flag is cleared when a follow starts
    assert state.result.frames == 8


def _stop_once_following(videos, tracks: Path, session: str) -> None:
    import time

    deadline = time.time() + 300
    while not list(tracks.glob(".ovseg-partial-*/masks/*.png")) and time.time() < deadline:
        time.sleep(0.05)
    videos.stop(session)


@needs_extra("ui")
def test_the_video_tab_says_what_is_wrong_in_one_line(tiny_checkpoints: Path, tmp_path: Path) -> None:
    from ovseg.web.page import Workbench
    from ovseg.web.video_bench import ClipState, VideoBench, clip_part

    videos = VideoBench(Workbench(tmp_path / "cache", "cpu", SETS, tmp_path / "scratch"), max_frames=100)
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "empty.zip").write_bytes(
        zipfile.ZipFile(tmp_path / "e.zip", "w").close() or (tmp_path / "e.zip").read_bytes()
    )
    (tmp_path / "broken.mp4").write_bytes(b"\\x00" * 4000)
    cases = {
        None: "drop a clip",
        str(tmp_path / "notes.txt"): "notes.txt is not a video",
        str(tmp_path / "empty.zip"): "holds no frames",
        str(tmp_path / "broken.mp4"): "broken.mp4",
    }
    for path, expected in cases.items():
        with pytest.raises(OvsegError, match=expected) as caught:
            videos.open(path, "cpu", "", "", 1)
        assert "\n" not in str(caught.value)
    with pytest.raises(OvsegError, match="drop a clip first"):
        videos.follow(ClipState(), "cpu", "the dog")
    with pytest.raises(OvsegError, match="every must be 1 or more"):
        clip_part("", "", 0)
    assert clip_part(" 1.5s ", "40", 3) == {"start": "1.5s", "end": "40", "every": 3}


@needs_extra("ui")
def test_benchmark_page_video_compares_the_tab_with_the_command_line(tiny_checkpoints: Path, tmp_path: Path) -> None:
    from conftest import run_ovseg_in_process

    out = tmp_path / "page.json"
    result = run_ovseg_in_process(
        "benchmark-page-video", "--clip", str(DAVIS / "JPEGImages/480p/dog"), "--frames", "4", "--point", "400,250",
        "--set", SETS[0], "--out", str(out), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["frames"] == 4 and report["frame_size"] == [854, 480]
    assert report["cli_s"] > 0 and report["page_s"] > 0 and report["page_over_cli"] > 0
    assert report["video_click_s"] > 0 and report["photo_click_s"] > 0 and report["page_peak_rss_mb"] > 0
    assert report["corrected_from"] == 2 and report["correct_s"] > 0 and report["correct_over_follow"] > 0
