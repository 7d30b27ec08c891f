"""Top-K logic on hand-made masks and scores where the right answer is known."""

from __future__ import annotations

import numpy as np

from ovseg.config import settings_from_params
from ovseg.ranking.selection import mask_iou, select_masks


def _settings(**select):
    return settings_from_params(
        {"prompt": "x", "select": {"relative_threshold": 0.0, "min_area_frac": 0.0, **select}}
    ).select


def _masks() -> np.ndarray:
    masks = np.zeros((5, 10, 10), bool)
    masks[0, :5, :5] = True  # top-left quadrant
    masks[1, :5, :4] = True  # almost the same as 0 (IoU 0.8)
    masks[2, 5:, 5:] = True  # bottom-right quadrant
    masks[3, 0, 9] = True  # one-pixel speck
    masks[4, 5:, :5] = True  # bottom-left quadrant
    return masks


def test_top_k_takes_best_scores_in_order() -> None:
    scores = np.array([0.9, 0.1, 0.8, 0.2, 0.7])
    selection = select_masks(scores, _masks(), _settings(top_k=2))
    assert selection.indices == [0, 2]
    assert selection.scores == [0.9, 0.8]
    assert selection.merged.sum() == 50 and selection.merged[0, 0] and selection.merged[9, 9]


def test_near_duplicates_are_suppressed() -> None:
    scores = np.array([0.9, 0.85, 0.5, 0.0, 0.4])
    assert mask_iou(_masks()[0], _masks()[1]) == 0.8
    assert select_masks(scores, _masks(), _settings(top_k=2, nms_iou=0.7)).indices == [0, 2]
    assert select_masks(scores, _masks(), _settings(top_k=2, nms_iou=0.9)).indices == [0, 1]


def test_thresholds_and_min_area() -> None:
    scores = np.array([0.3, 0.1, 0.6, 0.99, 0.2])
    # The speck (index 3) has the best score but is below the minimum area.
    selection = select_masks(scores, _masks(), _settings(top_k=5, min_area_frac=0.05, threshold=0.25))
    assert selection.indices == [2, 0]
    relative = select_masks(scores, _masks(), _settings(top_k=5, min_area_frac=0.05, relative_threshold=0.9))
    assert relative.indices == [2]


def test_merge_best_keeps_only_the_top_mask() -> None:
    scores = np.array([0.2, 0.1, 0.9, 0.0, 0.8])
    selection = select_masks(scores, _masks(), _settings(top_k=3, merge="best"))
    assert selection.indices == [2]
    np.testing.assert_array_equal(selection.merged, _masks()[2])


def test_nothing_passes_gives_an_empty_selection() -> None:
    scores = np.array([0.1, 0.1, 0.1, 0.1, 0.1])
    selection = select_masks(scores, _masks(), _settings(threshold=0.5))
    assert selection.indices == [] and not selection.merged.any()
    empty = select_masks(np.zeros(0), np.zeros((0, 4, 4), bool), _settings())
    assert empty.indices == [] and empty.merged.shape == (4, 4)
