from __future__ import annotations

import numpy as np
import pytest

from ovseg.ranking.scoring import TEMPLATES, expand_templates, score_masks


def _unit(v) -> np.ndarray:
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v)


def test_cosine_scores_without_negatives() -> None:
    masks = np.stack([_unit([1, 0, 0]), _unit([0, 1, 0]), _unit([1, 1, 0])])
    scores = score_masks(masks, _unit([1, 0, 0]), np.zeros((0, 0)), temperature=100.0)
    np.testing.assert_allclose(scores.score, [1.0, 0.0, np.sqrt(0.5)], atol=1e-6)
    assert int(np.argmax(scores.score)) == 0


def test_softmax_against_negatives_matches_hand_computation() -> None:
    masks = np.stack([_unit([1, 0]), _unit([0, 1])])
    prompt, negative = _unit([1, 0]), _unit([0, 1])[None]
    scores = score_masks(masks, prompt, negative, temperature=10.0)
    expected_first = np.exp(10) / (np.exp(10) + np.exp(0))
    np.testing.assert_allclose(scores.score, [expected_first, 1 - expected_first], rtol=1e-5)
    np.testing.assert_allclose(scores.similarity, [1.0, 0.0], atol=1e-6)
    assert scores.negative_similarity.shape == (2, 1)


def test_templates_wrap_the_whole_phrase() -> None:
    expanded = expand_templates("  the red car in the background ", templates=True)
    assert len(expanded) == len(TEMPLATES)
    assert expanded[0] == "a photo of the red car in the background."
    assert expand_templates("a dog", templates=False) == ["a dog"]


@pytest.mark.parametrize("temperature", [1.0, 100.0])
def test_scores_are_probabilities(temperature: float) -> None:
    rng = np.random.default_rng(0)
    masks = rng.normal(size=(6, 8))
    masks /= np.linalg.norm(masks, axis=1, keepdims=True)
    negatives = rng.normal(size=(3, 8))
    negatives /= np.linalg.norm(negatives, axis=1, keepdims=True)
    scores = score_masks(masks, _unit(rng.normal(size=8)), negatives, temperature)
    assert np.all((scores.score >= 0) & (scores.score <= 1))


def test_each_text_is_encoded_once_per_run_for_many_images(workspace, monkeypatch) -> None:
    """30 photos, one prompt and two negatives: one encoder pass for the three texts, then none."""
    from conftest import load_run, segment_all, stages, synthetic_photo, with_request

    from ovseg.clip.text import OnnxTextEncoder

    images = workspace / "data" / "images"
    for i in range(28):
        synthetic_photo(64, 48, seed=10 + i).save(images / f"extra{i:02d}.png")
    sentences: list[int] = []
    original = OnnxTextEncoder.encode  # what encodes texts once the text tower is exported

    def counting(self, texts, *args, **kwargs):
        sentences.append(len(texts))
        return original(self, texts, *args, **kwargs)

    monkeypatch.setattr(OnnxTextEncoder, "encode", counting)
    run = load_run()
    reports = segment_all(run)
    assert len(reports[2].computed) == 30
    texts = 1 + len(run.settings.score.negatives)
    assert sentences == [texts * len(TEMPLATES)]  # one batched pass: each text once, all 30 images
    sentences.clear()
    assert len(stages(with_request(run, prompt="a red disc"), "score")[0].computed) == 30
    assert sentences == [len(TEMPLATES)]  # only the new prompt; the negatives come from cache/text
    sentences.clear()
    import shutil

    shutil.rmtree("cache/scores")
    assert len(stages(run, "score")[0].computed) == 30 and sentences == []  # every text cached
