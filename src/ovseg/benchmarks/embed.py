"""``ovseg benchmark-embed``: CLIP features per candidate, crops versus dense variants and mask tokens."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ovseg.benchmarks.kit import checkpoints_at, measure, synthetic_candidates
from ovseg.config import Settings
from ovseg.weights.registry import resolve_device

EMBED_VARIANTS: dict[str, dict[str, Any]] = {
    "crops": {"strategy": "crop", "crop_scales": [1.0, 1.5, 2.5]},
    "dense-identity": {"strategy": "dense", "dense_attention": "identity", "mask_tokens": False},
    "dense-mask": {"strategy": "dense", "dense_attention": "mask", "mask_tokens": False},
    "dense-mask+tokens": {"strategy": "dense", "dense_attention": "mask", "mask_tokens": True},
}


def run_embed_benchmark(
    settings: Settings,
    image_path: Path,
    candidates: int = 150,
    variants: list[str] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Time and peak memory of each embed variant on the same photo and the same synthetic candidates.

    The preset's CLIP is used with its real weights if present, else the same architecture
    with random weights (speed and memory do not depend on weight values). Candidates are
    ``candidates`` ellipses (:func:`synthetic_candidates`), the same for every variant.
    """
    import tempfile

    from ovseg.clip.features import load_clip, mask_embeddings
    from ovseg.errors import OvsegError
    from ovseg.media.fileio import load_image, working_image
    from ovseg.weights.tiny import build_random_like

    variants = variants or list(EMBED_VARIANTS)
    unknown = [v for v in variants if v not in EMBED_VARIANTS]
    if unknown:
        raise OvsegError(f"unknown embed variant {unknown[0]!r}; choose from {', '.join(EMBED_VARIANTS)}")
    device = resolve_device(settings.device)
    image = working_image(load_image(image_path), settings.masks.max_image_side)
    proposals = synthetic_candidates(image.width, image.height, candidates)
    rows = []
    with tempfile.TemporaryDirectory(prefix="ovseg-embed-bench-") as tmp:
        try:
            load_clip(settings.embed.model, device)
            weights, where = "real", contextlib.nullcontext
        except OvsegError:
            log(f"building {settings.embed.model} with random weights ...")
            build_random_like(settings.embed.model, Path(tmp) / settings.embed.model)
            weights, where = "random (timing and memory only)", lambda: checkpoints_at(Path(tmp))
        for key in variants:
            embed = dataclasses.replace(settings.embed, **EMBED_VARIANTS[key])
            log(f"{key} ...")
            with where():
                row, _ = measure(
                    key,
                    lambda: load_clip(settings.embed.model, device),
                    lambda bundle, embed=embed: mask_embeddings(bundle, image, proposals.masks, proposals.boxes, embed),
                    runs=1,
                )
            rows.append({**row, "settings": {k: getattr(embed, k) for k in EMBED_VARIANTS[key]}})
    reference = rows[0]["cold_s"] if rows else None
    for row in rows:
        row["time_vs_" + variants[0]] = round(row["cold_s"] / reference, 3) if reference else None
    return {
        "image": str(image_path),
        "working_size": list(image.size),
        "candidates": candidates,
        "clip": settings.embed.model,
        "weights": weights,
        "device": device,
        "dense_scales": settings.embed.dense_scales,
        "variants": rows,
    }
