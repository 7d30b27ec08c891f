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
    from ovseg.web.video_tab import VideoBench, frame_view

    bench = Workbench(tmp_path / "cache", "cpu", SETS, tmp_path / "scratch")
    videos = VideoBench(bench, max_frames=8)
    with pytest.raises(OvsegError, match="12 frames to follow, over this page's 8"):
        videos.open(str(_zip_of_frames(tmp_path, 12)), "cpu", "", "", 1)
    state = videos.open(str(_zip_of_frames(tmp_path, 12)), "cpu", "", "", 2)  # every 2nd frame: 6
    assert len(state.clip) == 6 and state.clip.numbers == [0, 2, 4, 6, 8, 10] and state.clip.size == (854, 480)
    with pytest.raises(OvsegError, match="outside the 854x480 frame"):
        videos.click(state, "cpu", 900, 10, True)
    state.shown = 2  # the clip's frame 4
    truth = np.asarray(Image.open(DAVIS / "Annotations/480p/dog/00004.png")) > 0
    ys, xs = np.nonzero(truth)
    state = videos.click(state, "cpu", float(np.median(xs)), float(np.median(ys)), True)
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
def test_the_video_tab_says_what_is_wrong_in_one_line(tiny_checkpoints: Path, tmp_path: Path) -> None:
    from ovseg.web.page import Workbench
    from ovseg.web.video_tab import ClipState, VideoBench, clip_part

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
