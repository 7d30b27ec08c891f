"""The benchmarks that measure this round's targets, on small inputs: what they print and write is checked, not
their times (speed targets live in the benchmarks themselves, run by hand)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REPO
from conftest import run_ovseg_in_process as ovseg

pytestmark = pytest.mark.slow
DAVIS = REPO.parent / "shared" / "data" / "davis-dev"


def test_benchmark_track_scores_each_variant_and_times_the_masks_stage(tmp_path: Path, tiny_checkpoints) -> None:
    out = tmp_path / "track.json"
    result = ovseg("benchmark-track", "--dataset", str(DAVIS), "--sequence", "car-shadow", "--frames", "4",
                   "--variant", "copy", "--variant", "flow-sam", "--out", str(out), cwd=tmp_path,
                   env={"COLUMNS": "200"})  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert list(report["variants"]) == ["copy", "flow-sam"] and report["masks_stage_seconds_per_frame"] > 0
    assert report["variants"]["flow-sam"]["J"] > max(0.9, report["variants"]["copy"]["J"] + 0.05)  # the car drives off
    assert "x masks stage" in result.stdout


def test_benchmark_track_stress_puts_each_hardened_sequence_beside_the_plain_one(tmp_path: Path, tiny_checkpoints):
    out = tmp_path / "track.json"
    result = ovseg("benchmark-track", "--dataset", str(DAVIS), "--sequence", "dog", "--frames", "22", "--stress",
                   "--variant", "flow-sam", "--out", str(out), cwd=tmp_path, env={"COLUMNS": "200"})  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    cases = report["variants"]["flow-sam"]["cases"]
    assert list(cases) == ["plain", "occluder", "look-alike", "out of frame"]
    assert all(c["J_after"] is not None for name, c in cases.items() if name != "plain")  # the dog comes back
    assert len(report["rows"]) == 4
    assert "What breaks" in result.stdout and "J after return" in result.stdout


def test_benchmark_video_remove_puts_every_variant_on_the_same_holes(tmp_path: Path, tiny_checkpoints) -> None:
    out = tmp_path / "remove.json"
    result = ovseg("benchmark-video-remove", "--dataset", str(DAVIS), "--frames", "3", "--variant", "temporal",
                   "--variant", "frame telea", "--out", str(out), cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    cases = {row["case"] for row in report["rows"]}
    assert len(cases) == 8 and all(sum(r["case"] == c for r in report["rows"]) == 2 for c in cases)
    assert sum(c.endswith(", cast shadow") for c in cases) == 4  # each case again, casting a shadow
    variants = report["variants"]
    assert variants["temporal"]["from_frames"] > 0.05 and variants["frame telea"]["from_frames"] == 0
    for figures in variants.values():  # carried and invented parts, the shadow, the pixels the step changed
        assert figures["psnr_shadow"] > 0 and figures["psnr_changed"] > 0 and "psnr_carried" in figures
    assert variants["temporal"]["invented_share"] is not None and variants["frame telea"]["invented_share"] is None


def test_benchmark_video_remove_times_propainter_with_random_weights_at_a_short_side(tmp_path: Path) -> None:
    pytest.importorskip("pytorchcv", reason="the propainter extra is not installed")
    out = tmp_path / "remove.json"
    result = ovseg("benchmark-video-remove", "--dataset", str(DAVIS), "--frames", "2", "--variant", "propainter",
                   "--short-side", "128", "--no-shadow-cases", "--out", str(out), cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["short_side"] == 128 and len(report["rows"]) == 1  # the first case only: time, not quality
    assert report["variants"]["propainter"]["quality"] == "needs the weights"
    assert report["variants"]["propainter"]["ms_per_frame"] > 0 and "needs the weights" in result.stdout


def test_benchmark_score_compares_the_onnx_and_torch_text_encoders(tmp_path: Path, tiny_checkpoints) -> None:
    out = tmp_path / "score.json"
    result = ovseg("benchmark-score", "--images", "3", "--config", "tiny", "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["same_scores"] and report["text_encoder"] == "onnx" and report["onnx_vs_torch_max_abs"] < 1e-4
