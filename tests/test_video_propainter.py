"""``video.fill: propainter``: ProPainter's real architecture with random weights, saved as the download's files and
loaded by the same loader a user's download goes through (its weights cannot be fetched here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytorchcv", reason="the propainter extra (pip install 'ovseg[propainter]') is not installed")

from ovseg.video.propainter import ProPainterFiller, load_propainter, save_random_propainter, working_size  # noqa: E402


@pytest.fixture(scope="module")
def random_propainter(tmp_path_factory) -> Path:
    return save_random_propainter(tmp_path_factory.mktemp("weights") / "propainter", seed=0)


def test_working_size_keeps_the_aspect_in_multiples_of_8_and_never_under_raft_s_minimum() -> None:
    assert working_size(480, 854, 240) == (424, 240)
    assert working_size(100, 160, 240) == (200, 128)  # too small for RAFT: brought up to 128
    assert working_size(200, 300, 240) == (296, 200)  # never above the frame's own size


def test_random_propainter_loads_through_the_users_loader_and_fills_only_the_holes(random_propainter, capsys) -> None:
    from tests.test_video_fill import texture

    lines: list[str] = []
    nets = load_propainter(str(random_propainter), "cpu", log=lines.append)
    assert any("non-commercial" in line for line in lines)  # the licence, when its weights are first used
    frames, holes = [], []
    for i in range(6):  # a grey square moving right over a texture
        frame, hole = texture(128, 176, seed=2).copy(), np.zeros((128, 176), bool)
        hole[40:80, 20 + 10 * i : 60 + 10 * i] = True
        frame[hole] = 128
        frames.append(frame)
        holes.append(hole)
    results = list(ProPainterFiller(frames, holes, nets, short_side=128).run())
    assert [index for index, _, _ in results] == list(range(6))
    for index, filled, stats in results:
        assert filled.shape == frames[index].shape and filled.dtype == np.uint8
        np.testing.assert_array_equal(filled[~holes[index]], frames[index][~holes[index]])  # outside: untouched
        assert np.abs(filled[holes[index]].astype(int) - 128).mean() > 1  # the hole was painted (random weights)
        assert stats.hole_px == holes[index].sum()


def test_a_folder_without_propainter_files_is_one_line(tmp_path) -> None:
    from ovseg.errors import OvsegError

    (tmp_path / "empty").mkdir()
    with pytest.raises(OvsegError, match="no propainter weights"):
        load_propainter(str(tmp_path / "empty"), "cpu")


def test_run_remove_with_propainter_writes_the_edited_video(
    tmp_path: Path, random_propainter, tiny_checkpoints
) -> None:
    import json

    import av
    from conftest import run_ovseg_in_process as ovseg
    from PIL import Image
    from test_video_pipeline import shapes_video

    frames, discs, _ = shapes_video(tmp_path / "frames")
    Image.fromarray(discs[0].astype(np.uint8) * 255).save(tmp_path / "disc.png")
    result = ovseg("run", "--video", str(frames), "--mask", str(tmp_path / "disc.png"), "--mode", "remove",
                   "--config", "cpu", "--set", "embed.model=tiny-random-clip", "--set", "video.fill=propainter",
                   "--set", f"video.propainter_model={random_propainter}", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "non-commercial" in result.stdout + result.stderr
    out = tmp_path / "data/output/video_edit/frames"
    record = json.loads((out / "edit.json").read_text())
    assert record["fill"] == "propainter" and len(record["frames"]) == 8
    with av.open(str(out / "edited.mp4")) as container:
        pictures = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(pictures) == 8 and pictures[0].shape[:2] == (120, 160)
    wrong = ovseg("run", "--video", str(frames), "--mask", str(tmp_path / "disc.png"), "--mode", "remove",
                  "--config", "cpu", "--set", "video.fill=lama", cwd=tmp_path)  # fmt: skip
    assert wrong.returncode != 0 and "video.fill must be one of temporal, propainter" in wrong.stderr


def test_weights_list_shows_propainters_licence(tmp_path: Path) -> None:
    from conftest import run_ovseg_in_process as ovseg

    listing = ovseg("weights", "list", cwd=tmp_path, env={"COLUMNS": "400"})
    assert listing.returncode == 0, listing.stderr
    row = next(line for line in listing.stdout.splitlines() if line.strip("│ ").startswith("propainter"))
    assert "pytorchcv model store" in row and "NTU S-Lab License 1.0 (non-commercial use only)" in row
