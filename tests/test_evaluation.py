"""Evaluation math on hand-computed cases, the dataset readers, reports and the benchmark."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ovseg.config import settings_from_params
from ovseg.errors import OvsegError
from ovseg.evaluation.datasets import make_synthetic_dataset, read_dataset
from ovseg.evaluation.prompt import PairResult, evaluate, iou, overlap, precision_recall, summarize, write_reports
from ovseg.storage.cache_gc import collect_garbage
from ovseg.storage.locations import read_json


def test_iou_hand_computed() -> None:
    pred = np.zeros((4, 4), bool)
    gt = np.zeros((4, 4), bool)
    pred[:2, :2] = True  # 4 px
    gt[:2, 1:3] = True  # 4 px, 2 shared
    assert overlap(pred, gt) == (2, 6, 4, 4)
    assert iou(pred, gt) == pytest.approx(2 / 6)
    assert precision_recall(pred, gt) == (0.5, 0.5)


def test_empty_prediction_and_empty_ground_truth() -> None:
    empty = np.zeros((3, 3), bool)
    some = np.zeros((3, 3), bool)
    some[1, 1] = True
    assert iou(empty, some) == 0.0
    assert precision_recall(empty, some) == (0.0, 0.0)
    assert iou(some, empty) == 0.0
    assert precision_recall(some, empty) == (0.0, 0.0)
    assert iou(empty, empty) == 1.0  # nothing to find, nothing found
    assert precision_recall(empty, empty) == (1.0, 1.0)


def test_ignore_pixels_count_neither_way() -> None:
    pred = np.array([[1, 1, 0, 0]], bool)
    gt = np.array([[1, 0, 0, 1]], bool)
    ignore = np.array([[0, 1, 0, 1]], bool)  # the false positive and the miss are both ignored
    assert overlap(pred, gt, ignore) == (1, 1, 1, 1)
    assert iou(pred, gt, ignore) == 1.0
    assert iou(pred, gt) == pytest.approx(1 / 3)


def test_summary_is_voc_style_per_class() -> None:
    pairs = [
        PairResult("a", "cat", 0.5, 1.0, 0.5, 1, intersection=10, union=20),
        PairResult("b", "cat", 1.0, 1.0, 1.0, 1, intersection=30, union=30),
        PairResult("a", "dog", 0.0, 0.0, 0.0, 0, intersection=0, union=10),
    ]
    metrics = summarize(pairs)
    assert metrics["classes"]["cat"] == {"iou": pytest.approx(40 / 50), "pairs": 2}
    assert metrics["classes"]["dog"]["iou"] == 0.0
    assert metrics["miou"] == pytest.approx((0.8 + 0.0) / 2)
    assert metrics["mean_pair_iou"] == pytest.approx(0.5)
    assert metrics["top1_hit_rate"] == pytest.approx(2 / 3)
    assert metrics["pairs"] == 3 and metrics["images"] == 2


def test_voc_reader_with_palette_masks_and_ignore(tmp_path: Path) -> None:
    root = tmp_path / "voc"
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClass").mkdir()
    (root / "classes.txt").write_text("background\ncat\ndog\n")
    Image.new("RGB", (6, 4), "white").save(root / "JPEGImages" / "x.jpg")
    labels = np.zeros((4, 6), np.uint8)
    labels[0, :2] = 2
    labels[3, 5] = 255
    palette_png = Image.fromarray(labels, mode="P")
    palette_png.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (256 * 3 - 9))
    palette_png.save(root / "SegmentationClass" / "x.png")
    (sample,) = read_dataset(root)
    assert sample.name == "x" and [t.prompt for t in sample.targets] == ["dog"]
    assert sample.targets[0].mask.sum() == 2 and sample.targets[0].ignore.sum() == 1
    labels[1, 1] = 7
    Image.fromarray(labels, mode="L").save(root / "SegmentationClass" / "x.png")
    with pytest.raises(OvsegError, match="label 7"):
        read_dataset(root)


def test_binary_reader_and_bad_folder(tmp_path: Path) -> None:
    root = tmp_path / "bin"
    (root / "images").mkdir(parents=True)
    (root / "masks" / "photo").mkdir(parents=True)
    Image.new("RGB", (5, 5)).save(root / "images" / "photo.png")
    mask = np.zeros((5, 5), np.uint8)
    mask[2:, 2:] = 255
    Image.fromarray(mask).save(root / "masks" / "photo" / "the_red_car.png")
    (sample,) = read_dataset(root)
    assert sample.targets[0].prompt == "the red car" and sample.targets[0].mask.sum() == 9
    with pytest.raises(OvsegError, match="is not a dataset"):
        read_dataset(tmp_path)


def test_evaluate_end_to_end_and_reports(tiny_checkpoints: Path, tmp_path: Path) -> None:
    dataset = make_synthetic_dataset(tmp_path / "eval", count=3, seed=1)
    samples = read_dataset(dataset)
    settings = settings_from_params({"preset": "tiny", "prompt": "-", "device": "cpu"})
    metrics, pairs, regions = evaluate(settings, samples, tmp_path / "cache")
    assert metrics["pairs"] == sum(len(s.targets) for s in samples) == len(pairs) == len(regions)
    proposals = metrics["proposals"]
    assert 0.0 <= proposals["oracle_miou"] <= proposals["union_oracle_miou"] + 1e-9 <= 1.0 + 1e-9
    assert proposals["candidates_per_image"] > 0 and proposals["seconds_per_image"] > 0
    assert 0.0 <= metrics["miou"] <= 1.0
    assert set(metrics["classes"]) <= {"a red circle", "a blue square", "a green triangle"}
    write_reports(metrics, pairs, regions, tmp_path / "metrics", "test")
    assert read_json(tmp_path / "metrics" / "metrics.json") == metrics
    rows = (tmp_path / "metrics" / "per_class.tsv").read_text().splitlines()
    assert rows[0] == "class\tiou\tpairs" and len(rows) == len(metrics["classes"]) + 1
    assert Image.open(tmp_path / "metrics" / "per_class_iou.png").size[0] > 100
    rows = (tmp_path / "metrics" / "proposals_per_class.tsv").read_text().splitlines()
    assert rows[0] == "class\toracle_iou\tunion_oracle_iou\trecall_at_50\tregions"
    assert len(rows) == len(proposals["classes"]) + 1
    # Every score store is in the manifest, so `ovseg cache gc` keeps the evaluation's cache.
    assert collect_garbage(tmp_path / "cache", [], dry_run=True).removed == []
    prompts = {t.prompt for s in samples for t in s.targets}
    assert len(list((tmp_path / "cache" / "scores").glob("*.zarr"))) == len(prompts) * len(samples)


def test_benchmark_report_schema(tiny_checkpoints: Path) -> None:
    from conftest import EXAMPLE

    from ovseg.benchmarks.stages import run_benchmark
    from ovseg.request import RunRequest

    settings = settings_from_params({"preset": "tiny", "device": "cpu"})
    report = run_benchmark(settings, RunRequest(str(EXAMPLE), "the cat", "remove"), EXAMPLE, runs=1, min_candidates=20)
    assert report["device"] == "cpu" and report["image_size"] == [451, 300]
    assert report["candidates_timed"].startswith("synthetic (20")  # tiny SAM 2 proposes fewer
    assert [row["stage"] for row in report["stages"]] == [
        "masks",
        "embed",
        "score",
        "select",
        "edit (remove, diffusion)",
    ]
    for row in report["stages"]:
        assert {"load_s", "cold_s", "warm_s", "peak_rss_mb", "peak_cuda_mb"} <= set(row)
        assert row["cold_s"] >= 0 and row["peak_rss_mb"] > 0 and row["peak_cuda_mb"] is None
    assert report["stages"][0]["masks"] >= 1


def test_synthetic_candidates_have_consistent_boxes() -> None:
    from ovseg.benchmarks.kit import synthetic_candidates

    proposals = synthetic_candidates(64, 48, 12, seed=3)
    assert proposals.masks.shape == (12, 48, 64) and proposals.masks.any(axis=(1, 2)).all()
    for mask, (x, y, w, h) in zip(proposals.masks, proposals.boxes.astype(int), strict=True):
        ys, xs = np.nonzero(mask)
        assert (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1) == (x, y, w, h)
