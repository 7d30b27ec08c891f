"""``ovseg benchmark-score``: texts encoded per photo (before) versus once per run (now), in one run."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ovseg.benchmarks.kit import checkpoints_at
from ovseg.config import Settings
from ovseg.weights.registry import resolve_device


def run_score_benchmark(
    settings: Settings,
    prompt: str = "the red car",
    images: int = 100,
    candidates: int = 150,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Score ``images`` photos' candidates for one prompt, both ways, side by side in one run.

    *Before*: every image encodes the prompt, its templates and the negatives again
    (``score_for_prompt`` per image, what the stage did until it cached texts). *Now*:
    each text is encoded once, then one matrix product scores every image
    (``encode_texts`` + ``score_masks``, as the score stage does). The candidates'
    CLIP features are random unit vectors: scoring cost does not depend on their values.
    The preset's CLIP is used if its weights are present, else the same architecture with
    random weights.
    """
    import tempfile

    from ovseg.clip.features import load_clip
    from ovseg.clip.text import TorchTextEncoder, load_text_encoder
    from ovseg.errors import OvsegError
    from ovseg.ranking.scoring import encode_texts, negatives_for, prompt_synonyms, score_for_prompt, score_synonyms
    from ovseg.weights.tiny import build_random_like

    device = resolve_device(settings.device)
    negatives = negatives_for(prompt, settings.score.negatives)
    synonyms = prompt_synonyms(prompt)
    with tempfile.TemporaryDirectory(prefix="ovseg-score-bench-") as tmp:
        exports = Path(tmp) / "exports"
        try:
            load_clip(settings.embed.model, device, text_only=True)
            weights, root = "real", None
        except OvsegError:
            log(f"building {settings.embed.model} with random weights ...")
            build_random_like(settings.embed.model, Path(tmp) / settings.embed.model)
            weights, root = "random (timing only)", Path(tmp)
        with checkpoints_at(root) if root else contextlib.nullcontext():
            encoder = load_text_encoder(settings.embed.model, exports, device)
            reference = TorchTextEncoder(load_clip(settings.embed.model, device, text_only=True))
        texts = synonyms + negatives
        timed = {}
        for name, which in (("torch", reference), ("onnx", encoder)):
            encode_texts(which, texts[:1], settings.score.templates)  # first call: allocations, thread pools
            started = time.perf_counter()
            timed[name] = encode_texts(which, texts, settings.score.templates, template_set=settings.score.template_set)
            timed[f"{name}_s"] = time.perf_counter() - started
        dim = timed["onnx"].shape[1]
        rng = np.random.default_rng(0)
        features = [rng.standard_normal((candidates, dim)).astype(np.float32) for _ in range(images)]
        features = [f / np.linalg.norm(f, axis=1, keepdims=True) for f in features]
        log(f"before: encoding the texts for each of {images} images ...")
        started = time.perf_counter()
        before = [score_for_prompt(encoder, f, prompt, settings.score).score for f in features]
        before_s = time.perf_counter() - started
        log("now: encoding each text once, one matrix product ...")
        started = time.perf_counter()
        vectors = encode_texts(
            encoder, synonyms + negatives, settings.score.templates, template_set=settings.score.template_set
        )
        temperature = settings.score.temperature if settings.score.temperature is not None else encoder.logit_scale
        scores = score_synonyms(
            np.concatenate(features), vectors[: len(synonyms)], vectors[len(synonyms) :], temperature
        ).score
        now = np.split(scores, np.cumsum([len(f) for f in features])[:-1])
        now_s = time.perf_counter() - started
    same = all(np.allclose(a, b, atol=1e-5) for a, b in zip(before, now, strict=True))
    return {
        "clip": settings.embed.model,
        "weights": weights,
        "device": device,
        "images": images,
        "candidates_per_image": candidates,
        "texts": len(synonyms) + len(negatives),
        "templates": settings.score.templates,
        "before_s": round(before_s, 3),
        "now_s": round(now_s, 3),
        "speedup": round(before_s / now_s, 1) if now_s else None,
        "same_scores": bool(same),
        "text_encoder": encoder.kind,
        "encode_torch_s": round(timed["torch_s"], 4),
        "encode_onnx_s": round(timed["onnx_s"], 4),
        "onnx_vs_torch_max_abs": float(np.abs(timed["onnx"] - timed["torch"]).max()),
    }
