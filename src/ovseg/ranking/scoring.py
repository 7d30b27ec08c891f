"""Score mask candidates against a text prompt.

The prompt is embedded with CLIP's text tower, averaged over photo templates (the
standard zero-shot trick: "a photo of {}." etc. matches how CLIP was trained). With
negative prompts, each mask's score is the softmax probability of the prompt against
the negatives at CLIP's temperature, which is comparable across images and prompts;
without them it is the plain cosine similarity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ovseg.clip.text import TextEncoder, tokens_kept
from ovseg.config import ScoreSettings
from ovseg.errors import OvsegError
from ovseg.request import EMPTY_PROMPT, prompt_synonyms

TEMPLATES = (
    "a photo of {}.",
    "a photo of the {}.",
    "a cropped photo of {}.",
    "a close-up photo of {}.",
    "a good photo of {}.",
    "there is {} in the scene.",
    "an image of {}.",
)


def expand_templates(text: str, templates: bool, template_set: str = "ovseg7") -> list[str]:
    """The sentences a text is encoded as: itself, ovseg's 7 photo templates, or CLIP's 80 ImageNet ones."""
    text = text.strip()
    if not templates:
        return [text]
    if template_set == "imagenet80":
        from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

        return [template(text) for template in OPENAI_IMAGENET_TEMPLATES]
    return [t.format(text) for t in TEMPLATES]


def _bare(text: str) -> str:
    words = text.lower().strip().split()
    return " ".join(words[1:] if words and words[0] in ("a", "an", "the") else words)


def negatives_for(prompt: str, negatives: list[str]) -> list[str]:
    """The negatives that are not the prompt itself (nor one of its synonyms): "the sky" drops "sky"."""
    own = {_bare(name) for name in prompt_synonyms(prompt)}
    return [n.strip() for n in negatives if n.strip() and _bare(n) not in own]


def encode_texts(
    encoder: TextEncoder, texts: list[str], templates: bool, batch_size: int = 256, template_set: str = "ovseg7"
) -> np.ndarray:
    """(T, D) unit-norm text embeddings, each the normalised mean over its templates.

    Every (text, template) sentence goes through the encoder (:mod:`ovseg.clip.text`) in batches
    of ``batch_size``, so a run encodes its prompts and negatives in one or two calls.
    """
    for text in texts:
        if not text.strip():
            raise OvsegError(EMPTY_PROMPT)
    if not texts:
        return np.zeros((0, 0), np.float32)
    sentences = [expand_templates(text, templates, template_set) for text in texts]
    flat = [sentence for group in sentences for sentence in group]
    features = np.concatenate(
        [_unit(encoder.encode(flat[start : start + batch_size])) for start in range(0, len(flat), batch_size)]
    )
    rows, offset = [], 0
    for group in sentences:
        rows.append(_unit(features[offset : offset + len(group)].mean(0, keepdims=True))[0])
        offset += len(group)
    return np.stack(rows).astype(np.float32)


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.maximum(np.linalg.norm(rows, axis=-1, keepdims=True), 1e-8)).astype(np.float32)


@dataclass
class Scores:
    score: np.ndarray  # (N,) what selection ranks by
    similarity: np.ndarray  # (N,) cosine similarity to the prompt
    negative_similarity: np.ndarray  # (N, M)


def softmax_rows(logits: np.ndarray) -> np.ndarray:
    """Softmax of each row (max subtracted first, so CLIP's temperature of 100 cannot overflow)."""
    logits = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    return probs / probs.sum(axis=1, keepdims=True)


def score_masks(
    mask_embeddings: np.ndarray,
    prompt_embedding: np.ndarray,
    negative_embeddings: np.ndarray,
    temperature: float,
) -> Scores:
    """Score each mask: P(prompt | mask) against negatives, or cosine similarity without them."""
    emb = mask_embeddings.astype(np.float32)
    similarity = emb @ prompt_embedding.astype(np.float32)
    if negative_embeddings.size == 0:
        return Scores(similarity, similarity, np.zeros((emb.shape[0], 0), np.float32))
    negative = emb @ negative_embeddings.astype(np.float32).T
    probs = softmax_rows(temperature * np.concatenate([similarity[:, None], negative], axis=1))
    return Scores(probs[:, 0].astype(np.float32), similarity, negative.astype(np.float32))


def score_synonyms(
    mask_embeddings: np.ndarray, synonym_embeddings: np.ndarray, negative_embeddings: np.ndarray, temperature: float
) -> Scores:
    """:func:`score_masks` for each synonym (S, D); per mask, the synonym that scores best wins."""
    results = [score_masks(mask_embeddings, vec, negative_embeddings, temperature) for vec in synonym_embeddings]
    best = np.argmax(np.stack([r.score for r in results]), axis=0)
    rows = np.arange(len(best))
    pick = lambda name: np.stack([getattr(r, name) for r in results])[best, rows]  # noqa: E731
    return Scores(pick("score"), pick("similarity"), pick("negative_similarity"))


@dataclass
class ClassScores:
    """Every candidate against every class of a run (several classes, or a benchmark's class list)."""

    probability: np.ndarray  # (N, C): softmax over the classes and the negatives, at CLIP's temperature
    similarity: np.ndarray  # (N, C): cosine to each class's best synonym
    negative_similarity: np.ndarray  # (N, M)


def score_classes(
    mask_embeddings: np.ndarray,
    class_embeddings: list[np.ndarray],
    negative_embeddings: np.ndarray,
    temperature: float,
) -> ClassScores:
    """P(class | candidate) for C classes at once, from one matrix product over every text.

    ``class_embeddings``: per class, its synonyms' (S_c, D) unit vectors; a class's logit is its
    best synonym's (the papers' practice with class-name files: "sofa, couch" max-pooled). The
    softmax runs over all classes and the negatives together, so classes compete: a candidate
    cannot be a car and a person at once, and a crowded list does not inflate every score.
    With one class this is :func:`score_synonyms`'s score.
    """
    emb = mask_embeddings.astype(np.float32)
    texts = [vec for group in class_embeddings for vec in group]
    negatives = list(negative_embeddings) if negative_embeddings.size else []
    similarity_all = emb @ np.stack(texts + negatives).astype(np.float32).T
    similarity = np.empty((emb.shape[0], len(class_embeddings)), np.float32)
    start = 0
    for c, group in enumerate(class_embeddings):
        similarity[:, c] = similarity_all[:, start : start + len(group)].max(axis=1)
        start += len(group)
    negative = similarity_all[:, start:]
    probs = softmax_rows(temperature * np.concatenate([similarity, negative], axis=1))
    return ClassScores(probs[:, : len(class_embeddings)].astype(np.float32), similarity, negative.astype(np.float32))


def negatives_for_classes(classes: list[str], negatives: list[str]) -> list[str]:
    """The negatives that name none of the classes (nor their synonyms)."""
    kept = list(negatives)
    for name in classes:
        kept = negatives_for(name, kept)
    return kept


def score_for_prompt(encoder: TextEncoder, mask_embeddings: np.ndarray, prompt: str, settings: ScoreSettings) -> Scores:
    """Encode prompt and negatives, then score one image: for one-off use (the benchmark's "before").

    The ``score`` stage encodes each text once per run instead (:mod:`ovseg.pipeline.score`).
    """
    synonyms = encode_texts(encoder, prompt_synonyms(prompt), settings.templates, template_set=settings.template_set)
    negatives = negatives_for(prompt, settings.negatives)
    neg_emb = (
        encode_texts(encoder, negatives, settings.templates, template_set=settings.template_set)
        if negatives
        else np.zeros((0, 0))
    )
    temperature = settings.temperature if settings.temperature is not None else encoder.logit_scale
    return score_synonyms(mask_embeddings, synonyms, neg_emb, temperature)


def clip_reads(tokenizer, text: str, templates: bool, template_set: str = "ovseg7") -> str | None:
    """What of ``text`` CLIP's text encoder sees inside the templates, when not all of it: None when it all fits."""
    return tokens_kept(tokenizer, text, expand_templates("", templates, template_set))
