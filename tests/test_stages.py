"""The stage functions on a real (tiny-model) run: artifact formats and per-image caching."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import Layout, load_run, manifest, segment_all, stages, synthetic_photo, with_request, with_settings
from PIL import Image

from ovseg.errors import OvsegError
from ovseg.media import rle
from ovseg.storage.locations import read_json
from ovseg.storage.store import read_arrays


def test_artifact_formats(workspace: Path) -> None:
    run = load_run()
    paths = Layout()
    reports = segment_all(run)
    assert [r.computed for r in reports[:3]] == [["chelsea", "shapes"]] * 3

    masks_manifest = manifest(paths.masks)
    entry = masks_manifest["chelsea"]
    arrays, attrs = read_arrays(paths.masks / f"{entry['masks']}.zarr")
    n = arrays["masks"].shape[0]
    assert n >= 1 and arrays["masks"].dtype == bool
    assert arrays["masks"].shape[1:] == (attrs["working_size"][1], attrs["working_size"][0])
    assert attrs["original_size"] == [451, 300] and max(attrs["working_size"]) == 256
    assert arrays["boxes"].shape == (n, 4) and arrays["areas"].shape == (n,)
    assert {"predicted_iou", "stability_score"} <= set(arrays)
    assert (paths.masks / f"{entry['masks']}.candidates.png").is_file()

    emb_entry = manifest(paths.embeddings)["chelsea"]
    emb, emb_attrs = read_arrays(paths.embeddings / f"{emb_entry['embeddings']}.zarr")
    assert emb["embeddings"].dtype == np.float16 and emb["embeddings"].shape == (n, 32)
    assert emb_attrs["model"] == "tiny-random-clip" and emb_attrs["settings"]["strategy"] == "dense"

    score_entry = manifest(paths.scores)["chelsea"]
    scores, score_attrs = read_arrays(paths.scores / f"{score_entry['scores']}.zarr")
    assert scores["score"].shape == (n,) and score_attrs["prompt"] == "the cat"

    out = paths.segment / "chelsea"
    selection = read_json(out / "selection.json")
    assert selection["prompt"] == "the cat" and selection["image_size"] == [451, 300]
    assert 1 <= len(selection["selected"]) <= run.settings.select.top_k
    mask_png = np.asarray(Image.open(out / "mask.png")) > 0
    assert mask_png.shape == (300, 451)
    np.testing.assert_array_equal(rle.decode(selection["merged"]["rle"]), mask_png)
    union = np.zeros_like(mask_png)
    for picked in selection["selected"]:
        union |= rle.decode(picked["rle"])
    np.testing.assert_array_equal(union, mask_png)
    assert Image.open(out / "overlay.png").size == (451, 300)
    stored, _ = read_arrays(out / "selection.zarr")
    assert stored["indices"].tolist() == [s["index"] for s in selection["selected"]]
    assert read_json(paths.segment / "summary.json")["images"].keys() == {"chelsea", "shapes"}


def test_new_prompt_reuses_masks_and_embeddings(workspace: Path) -> None:
    run = load_run()
    paths = Layout()
    segment_all(run)
    again = segment_all(with_request(run, prompt="a red disc"))
    assert [r.computed for r in again[:2]] == [[], []]
    assert again[2].computed and again[3].computed
    assert read_json(paths.segment / "shapes" / "selection.json")["prompt"] == "a red disc"


def test_added_image_computes_only_that_image(workspace: Path) -> None:
    run = load_run()
    paths = Layout()
    segment_all(run)
    synthetic_photo(100, 90, seed=5).save(workspace / "data" / "images" / "new.png")
    reports = segment_all(run)
    assert [r.computed for r in reports] == [["new"]] * 4
    assert sorted(reports[0].reused) == ["chelsea", "shapes"]
    (workspace / "data" / "images" / "new.png").unlink()
    segment_all(run)
    assert not (paths.segment / "new").exists()  # removed images leave no stale outputs


def test_bad_image_fails_before_any_work_when_strict(workspace: Path) -> None:
    (workspace / "data" / "images" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    run = dataclasses.replace(load_run(), settings=dataclasses.replace(load_run().settings, strict=True))
    with pytest.raises(OvsegError, match="cannot read image .*broken.jpg"):
        stages(run, "masks")
    assert not Path("cache/masks").exists()


def test_bad_images_are_skipped_and_reported(workspace: Path) -> None:
    images = workspace / "data" / "images"
    (images / "empty.png").write_bytes(b"")
    from PIL import Image as PILImage

    PILImage.open(images / "shapes.png").convert("RGB").save(images / "truncated.jpg", quality=90)
    data = (images / "truncated.jpg").read_bytes()
    (images / "truncated.jpg").write_bytes(data[: len(data) // 2])
    run = load_run()
    reports = segment_all(run)
    assert sorted(reports[0].skipped) == ["empty.png", "truncated.jpg"]
    assert sorted(reports[0].computed) == ["chelsea", "shapes"]
    summary = read_json(Path("data/output/segment/summary.json"))
    assert set(summary["images"]) == {"chelsea", "shapes"} and set(summary["skipped"]) == {"empty.png", "truncated.jpg"}
    assert "cannot read image" in summary["skipped"]["truncated.jpg"]
    for name in ("empty.png", "truncated.jpg"):
        (images / name).unlink()
    (images / "chelsea.png").write_bytes(b"")
    (images / "shapes.png").write_bytes(b"")
    with pytest.raises(OvsegError, match="none of the 2 images could be read"):
        stages(run, "masks")


def test_empty_prompt_is_refused(workspace: Path) -> None:
    run = load_run()
    stages(run, "masks", "embed")
    with pytest.raises(OvsegError, match="prompt is empty"):
        stages(with_request(run, prompt=""), "score")
    assert not Layout().scores.exists()


def test_later_stage_without_earlier_one_says_what_to_run(workspace: Path) -> None:
    shutil.rmtree("cache", ignore_errors=True)
    with pytest.raises(OvsegError, match="run the masks stage first"):
        stages(load_run(), "embed")


def test_run_writes_one_coco_file_that_pycocotools_reads_back(workspace: Path) -> None:
    from pycocotools.coco import COCO

    segment_all(with_settings(load_run(), "select", mask_pngs=True))
    coco = COCO(str(Path("data/output/segment/annotations.json")))
    assert {img["file_name"] for img in coco.dataset["images"]} == {"chelsea.png", "shapes.png"}
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["the cat"]
    for image in coco.dataset["images"]:
        selection = read_json(Path("data/output/segment") / Path(image["file_name"]).stem / "selection.json")
        assert (image["width"], image["height"]) == tuple(selection["image_size"])
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=image["id"]))
        assert len(annotations) == len(selection["selected"]) >= 1
        for ann, picked in zip(annotations, selection["selected"], strict=True):
            mask = coco.annToMask(ann).astype(bool)
            np.testing.assert_array_equal(mask, rle.decode(picked["rle"]))
            assert ann["area"] == mask.sum() and ann["score"] == picked["score"] and ann["bbox"] == picked["bbox_xywh"]
            png = np.asarray(
                Image.open(
                    Path("data/output/segment") / Path(image["file_name"]).stem / "masks" / f"{picked['rank']:02d}.png"
                )
            )
            np.testing.assert_array_equal(png > 0, mask)


def test_scores_for_several_prompts_finishes_like_the_stage(workspace: Path) -> None:
    """The one helper the API, evaluation and keyframes use: it computes only what is missing, and its manifest
    names every (photo, prompt) pair, so `ovseg cache gc` keeps the stores it made."""
    from ovseg.engines.local import LocalEngine
    from ovseg.pipeline import score, stage_named
    from ovseg.pipeline.common import run_stages

    run = load_run()
    paths = Layout()
    run_stages(run, LocalEngine(), [stage_named("masks"), stage_named("embed")])
    queries = ["the cat", ("a red disc", "sky")]
    found = score.scores_for(run, LocalEngine(), queries)
    assert set(found) == set(queries) and set(found["the cat"]) == {"chelsea", "shapes"}
    assert found[("a red disc", "sky")]["shapes"].classes == ["a red disc", "sky"]
    listed = manifest(paths.scores)
    assert set(listed) == {"chelsea:the cat", "shapes:the cat", "chelsea:a red disc + sky", "shapes:a red disc + sky"}
    for by_photo in found.values():
        for entry in by_photo.values():
            assert (paths.scores / f"{entry.scores}.zarr").is_dir()
            assert listed[f"{Path(entry.image).stem}:{entry.prompt}"]["scores"] == entry.scores
    again = score.plan_prompts(run, queries)
    assert again.items == [] and len(again.reused) == 4
