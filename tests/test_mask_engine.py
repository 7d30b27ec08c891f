"""The mask engine against a fake promptable model whose masks are known exactly.

The fake implements the same small :class:`~ovseg.masks.backend.PromptModel` interface as
the real backends: a point inside one of a few rectangles returns that rectangle, a point
elsewhere the background (everything outside the rectangles), and, as SAM's multimask
does, a "whole image" and a "part" mask too, with logits and predicted IoUs chosen so
each filter has something to keep and something to drop.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image

from ovseg.config import settings_from_params
from ovseg.errors import OvsegError
from ovseg.masks.engine import MaskEngine
from ovseg.masks.sampling import farthest_uncovered_points, grid_points

SIZE = 96  # image side in pixels
LOW = 48  # low-resolution grid side: one low-res cell is 2 x 2 pixels
# (x0, y0, x1, y1) in low-res cells; the last one is small, between coarse grid points
RECTS = [(0, 0, 48, 16), (4, 20, 20, 44), (26, 22, 44, 30), (32, 36, 37, 41)]


class FakeModel:
    """Rectangles as masks: crisp logits (+8 / -8) for each rectangle, a soft one for the 'part'."""

    name = "fake"

    def __init__(self) -> None:
        self.calls = 0
        self.upscaled: list[int] = []
        self.encoded = 0

    def set_image(self, image: np.ndarray) -> None:
        assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
        self.encoded += 1

    def _rect_at(self, x: float, y: float) -> np.ndarray:
        cx, cy = x * LOW / SIZE, y * LOW / SIZE
        logits = np.full((LOW, LOW), -8.0, np.float32)
        for x0, y0, x1, y1 in RECTS:
            if x0 <= cx < x1 and y0 <= cy < y1:
                logits[y0:y1, x0:x1] = 8.0
                break
        return logits

    def predict(self, coords: np.ndarray, labels: np.ndarray, multimask: bool) -> tuple[np.ndarray, np.ndarray]:
        out, ious = [], []
        for prompt, prompt_labels in zip(coords, labels, strict=True):
            include = prompt[prompt_labels == 1]
            if (prompt_labels == 2).any():  # a box: the rectangle at its centre
                corners = prompt[np.isin(prompt_labels, (2, 3))]
                include = corners.mean(0, keepdims=True)
            rect = self._rect_at(*include[0])
            if not (rect > 0).any():  # the background: everything that is in no rectangle
                rect = np.full((LOW, LOW), 8.0, np.float32)
                for x0, y0, x1, y1 in RECTS:
                    rect[y0:y1, x0:x1] = -8.0
            whole = np.full((LOW, LOW), 8.0, np.float32)
            soft = np.where(rect > 0, 0.5, -0.5).astype(np.float32)  # unstable: flips within +-1
            masks = np.stack([rect, whole, soft]) if multimask else rect[None]
            iou = np.array([0.95, 0.5, 0.9] if multimask else [0.95], np.float32)
            out.append(masks)
            ious.append(iou)
            self.calls += 1
        return np.stack(out), np.stack(ious)

    @property
    def low_res_valid(self) -> tuple[int, int]:
        return (LOW, LOW)

    def upscale(self, logits: np.ndarray) -> np.ndarray:
        self.upscaled.append(len(logits))
        return np.repeat(np.repeat(logits, SIZE // LOW, axis=1), SIZE // LOW, axis=2)


def _expected(rect: tuple[int, int, int, int]) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), bool)
    x0, y0, x1, y1 = (2 * v for v in rect)
    mask[y0:y1, x0:x1] = True
    return mask


def _settings(**changes):
    base = settings_from_params({"preset": "cpu"}).masks
    return dataclasses.replace(base, **{"pred_iou_thresh": 0.8, "stability_score_thresh": 0.9, **changes})


IMAGE = Image.new("RGB", (SIZE, SIZE), (120, 120, 120))


def test_grid_finds_each_rectangle_once_at_full_size_and_filters_the_rest() -> None:
    model = FakeModel()
    proposals, stats = MaskEngine(model, _settings(sampling="grid", points_per_side=16)).generate(IMAGE)
    found = {i for i, rect in enumerate(RECTS) for mask in proposals.masks if (mask == _expected(rect)).all()}
    assert found == set(range(len(RECTS)))
    assert any((mask == ~np.any([_expected(r) for r in RECTS], axis=0)).all() for mask in proposals.masks)
    # The whole-image masks (IoU 0.5) and the soft "parts" (unstable) are filtered;
    # duplicates from many points collapse in NMS: the rectangles and the background remain.
    assert len(proposals) == len(RECTS) + 1
    assert stats["decoder_calls"] == 256 and stats["raw_masks"] == 3 * 256
    # Only the survivors were upsampled, in one go.
    assert model.upscaled == [len(RECTS) + 1]
    for mask, box, area in zip(proposals.masks, proposals.boxes, proposals.areas, strict=True):
        ys, xs = np.nonzero(mask)
        assert box.tolist() == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        assert area == mask.sum()


def test_thresholds_decide_what_is_kept() -> None:
    loose = _settings(sampling="grid", points_per_side=16, pred_iou_thresh=0.4, stability_score_thresh=0.0)
    proposals, _ = MaskEngine(FakeModel(), loose).generate(IMAGE)
    assert any(mask.all() for mask in proposals.masks)  # the whole-image mask now passes
    strict = _settings(sampling="grid", points_per_side=16, pred_iou_thresh=0.99)
    assert len(MaskEngine(FakeModel(), strict).generate(IMAGE)[0]) == 0


def test_adaptive_sampling_finds_the_small_rectangle_with_few_calls() -> None:
    coarse = _settings(sampling="grid", points_per_side=3)
    masks = MaskEngine(FakeModel(), coarse).generate(IMAGE)[0].masks
    assert not any((mask == _expected(RECTS[-1])).all() for mask in masks)  # 9 points miss the small one
    model = FakeModel()
    settings = _settings(sampling="adaptive", points_per_side=3, max_prompts=30, points_per_round=4)
    proposals, stats = MaskEngine(model, settings).generate(IMAGE)
    assert any((mask == _expected(RECTS[-1])).all() for mask in proposals.masks)
    assert len(proposals) == len(RECTS) + 1
    assert stats["decoder_calls"] <= 30 and stats["rounds"] >= 2
    assert model.encoded == 1


def test_adaptive_sampling_respects_the_call_budget() -> None:
    settings = _settings(sampling="adaptive", points_per_side=4, max_prompts=10, points_per_round=8)
    _, stats = MaskEngine(FakeModel(), settings).generate(IMAGE)
    assert stats["decoder_calls"] == 10
    # Once every pixel is covered, the rest of the budget refines evenly instead of stopping.
    settings = _settings(sampling="adaptive", points_per_side=3, max_prompts=40, points_per_round=8)
    _, stats = MaskEngine(FakeModel(), settings).generate(IMAGE)
    assert stats["refined"] and stats["decoder_calls"] == 40


def test_prompted_masks_points_and_boxes() -> None:
    engine = MaskEngine(FakeModel(), _settings())
    x0, y0, x1, y1 = (2 * v for v in RECTS[2])
    result = engine.segment_prompt(IMAGE, points=[((x0 + x1) / 2, (y0 + y1) / 2)], labels=[1])
    np.testing.assert_array_equal(result.mask, _expected(RECTS[2]))
    assert result.score == pytest.approx(0.95)
    boxed = engine.segment_prompt(IMAGE, box=(x0, y0, x1, y1))
    np.testing.assert_array_equal(boxed.mask, _expected(RECTS[2]))
    assert engine.model.encoded == 1  # the same image is encoded once


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"points": [(10, 10)], "labels": [0]}, "at least one include point"),
        ({"points": [(10, 10), (20, 20)], "labels": [1]}, "one label per point"),
        ({"points": [(500, 10)], "labels": [1]}, "outside the 96x96 image"),
        ({"points": [(10, 10)], "labels": [7]}, "must be 1 \\(include\\) or 0"),
        ({"box": (50, 50, 10, 10)}, "x2 > x1"),
    ],
)
def test_prompted_mask_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(OvsegError, match=message):
        MaskEngine(FakeModel(), _settings()).segment_prompt(IMAGE, **kwargs)


def test_grid_points_are_cell_centres() -> None:
    points = grid_points(2, 100, 50)
    assert points.tolist() == [[25, 12.5], [75, 12.5], [25, 37.5], [75, 37.5]]


def test_farthest_uncovered_points() -> None:
    covered = np.ones((20, 20), bool)
    covered[2:9, 11:18] = False  # one 7 x 7 hole, centre (14, 5)
    picks = farthest_uncovered_points(covered, np.zeros((0, 2)), count=5, min_distance=2.5)
    assert picks.tolist() == [[14.0, 5.0]]  # one point fits; the rest of the hole is too close to it
    assert len(farthest_uncovered_points(covered, np.array([[14.0, 5.0]]), 5, 2.5)) == 0  # already tried
    spread = farthest_uncovered_points(np.zeros((20, 20), bool), np.zeros((0, 2)), count=2, min_distance=1)
    assert np.hypot(*(spread[0] - spread[1])) > 15  # nothing covered: picks spread out


def test_tiny_sam2_through_the_engine(tiny_checkpoints) -> None:
    """The torch SAM 2 backend behind the same interface (random weights: only shapes mean anything)."""
    from conftest import synthetic_photo

    from ovseg.masks import load_mask_generator

    settings = dataclasses.replace(settings_from_params({"preset": "tiny"}).masks, max_masks=5)
    generator = load_mask_generator(settings, "cpu")
    image = synthetic_photo(200, 150)
    proposals, stats = generator.generate(image)
    assert 1 <= len(proposals) <= 5 and stats["decoder_calls"] == 36
    assert proposals.masks.shape[1:] == (150, 200) and proposals.masks.dtype == bool
    np.testing.assert_array_equal(proposals.areas, proposals.masks.reshape(len(proposals), -1).sum(1))
    prompted = generator.segment_prompt(image, points=[(50, 75)], labels=[1])
    assert prompted.mask.shape == (150, 200)


class ThinLineModel(FakeModel):
    """The fake, plus a vertical line one low-res cell (two pixels) wide that only a point on it selects."""

    LINE = (41, 3, 42, 45)  # x0, y0, x1, y1 in low-res cells

    def _rect_at(self, x: float, y: float) -> np.ndarray:
        x0, y0, x1, y1 = self.LINE
        cx, cy = x * LOW / SIZE, y * LOW / SIZE
        if x0 <= cx < x1 and y0 <= cy < y1:
            logits = np.full((LOW, LOW), -8.0, np.float32)
            logits[y0:y1, x0:x1] = 8.0
            return logits
        return super()._rect_at(x, y)


def _thin_line_photo() -> Image.Image:
    pixels = np.full((SIZE, SIZE, 3), 120, np.uint8)
    x0, y0, x1, y1 = (2 * v for v in ThinLineModel.LINE)
    pixels[y0:y1, x0:x1] = 20  # a dark pole on a plain wall
    return Image.fromarray(pixels)


def test_edge_prompts_find_a_thin_line_that_grid_and_farthest_points_miss() -> None:
    line = np.zeros((SIZE, SIZE), bool)
    x0, y0, x1, y1 = (2 * v for v in ThinLineModel.LINE)
    line[y0:y1, x0:x1] = True
    found = {}
    for weight in (0.0, 4.0):
        settings = _settings(sampling="adaptive", points_per_side=3, max_prompts=24, edge_prompts=weight)
        proposals, _ = MaskEngine(ThinLineModel(), settings).generate(_thin_line_photo())
        found[weight] = any((mask == line).all() for mask in proposals.masks)
    assert found == {0.0: False, 4.0: True}


def test_coverage_counts_only_confident_pixels() -> None:
    from ovseg.masks.engine import _Candidates

    logits = np.full((2, 4, 4), -8.0, np.float16)
    logits[0, :, :2] = 8.0  # a confident mask on the left
    logits[1, :, 2:] = 1.0  # an unsure one on the right
    pool = _Candidates(logits, np.ones(2, np.float32), np.ones(2, np.float32))
    assert pool.coverage().all()
    confident = pool.coverage(2.0)
    assert confident[:, :2].all() and not confident[:, 2:].any()  # the unsure half is still a gap to prompt


def test_edge_strength_peaks_on_a_thin_line() -> None:
    from ovseg.masks.sampling import edge_strength

    gray = np.full((40, 40), 100.0)
    gray[:, 20] = 0.0  # a line one pixel wide
    strength = edge_strength(gray)
    assert strength.max() == 1.0 and int(np.argmax(strength[20])) == 20  # on the line, not beside it
