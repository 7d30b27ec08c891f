"""Removal measured against the true pixels: holes from the labels, reproducible; scores that cannot pass by chance."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

from ovseg.benchmarks.remove import holes_from, psnr, run_remove_benchmark, score_fill, ssim
from ovseg.config import settings_from_params

CAMVID = REPO.parent / "shared" / "data" / "camvid-val"
FRAMES = ("0016E5_07959", "0016E5_08091")


@pytest.fixture(scope="module")
def two_frames(tmp_path_factory) -> Path:
    """Two labelled CamVid frames in the VOC layout."""
    root = tmp_path_factory.mktemp("camvid2")
    for folder in ("JPEGImages", "SegmentationClass"):
        (root / folder).mkdir()
        for frame in FRAMES:
            shutil.copy(CAMVID / folder / f"{frame}.png", root / folder / f"{frame}.png")
    shutil.copy(CAMVID / "classes.txt", root / "classes.txt")
    return root


def test_holes_are_object_shaped_laid_on_other_frames_and_the_same_for_a_seed(two_frames: Path) -> None:
    holes = holes_from(two_frames, 4, seed=7)
    again = holes_from(two_frames, 4, seed=7)
    assert [(h.source, h.target, h.label) for h in holes] == [(h.source, h.target, h.label) for h in again]
    assert all(np.array_equal(a.mask, b.mask) for a, b in zip(holes, again, strict=True))
    for hole in holes:
        share = hole.mask.mean()
        assert 0.005 <= share <= 0.06 and hole.label in ("car", "pedestrian", "traffic sign", "bicyclist")
        assert hole.target.stem != hole.source  # the truth under the hole is known: another frame's pixels
    other = holes_from(two_frames, 4, seed=8)
    assert any(not np.array_equal(a.mask, b.mask) for a, b in zip(holes, other, strict=False))


def test_a_perfect_fill_scores_infinite_psnr_and_full_ssim_and_a_bad_one_does_not() -> None:
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    hole = np.zeros((60, 80), bool)
    hole[20:40, 30:50] = True
    assert score_fill(truth, truth, hole) == (float("inf"), 1.0)
    grey = truth.copy()
    grey[hole] = 128
    value, similarity = score_fill(grey, truth, hole)
    assert value < 15 and similarity < 0.5
    assert psnr(truth, np.clip(truth.astype(int) + 1, 0, 255).astype(np.uint8), hole) > 45
    assert ssim(truth, truth) == pytest.approx(1.0)


def test_the_benchmark_report_names_every_backend_with_its_numbers(two_frames: Path, tiny_checkpoints: Path) -> None:
    settings = settings_from_params({"preset": "tiny"})  # device auto, as users run it
    edit = dataclasses.replace(settings.edit, opencv_radius=3)
    report = run_remove_benchmark(
        dataclasses.replace(settings, edit=edit),
        two_frames,
        holes=3,
        variants=["fsr-fast", "telea", "shiftmap", "diffusion"],
        slow_holes=1,
        log=lambda line: None,
    )
    assert report["holes"] == 3 and report["seed"] == 0 and report["dilate_px"] == settings.edit.dilate_px
    rows = {row["variant"]: row for row in report["variants"]}
    assert set(rows) == {"fsr-fast", "telea", "shiftmap", "diffusion"}
    for name in ("fsr-fast", "telea"):
        row = rows[name]
        assert row["holes"] == 3 and 5 < row["psnr_db"] < 60 and 0 < row["ssim"] <= 1 and row["ms_per_photo"] > 0
    assert rows["diffusion"]["holes"] == 1 and rows["diffusion"]["ms_per_photo"] > 0  # tiny SD: time only matters
    # Weights on disk (here the tiny SD, loaded as real weights are) are scored, beside fsr-fast on the same hole.
    assert rows["diffusion"]["weights"] == "real" and rows["diffusion"]["psnr_db"] is not None
    assert rows["diffusion"]["reference"]["variant"] == "fsr-fast"
    assert "reference" not in rows["telea"]  # all holes: its own mean is comparable
    # A slow variant ran on 1 hole: the first full variant's scores on that same hole stand beside it.
    assert rows["shiftmap"]["holes"] == 1 and rows["shiftmap"]["reference"]["variant"] == "fsr-fast"
    assert 5 < rows["shiftmap"]["reference"]["psnr_db"] < 60
