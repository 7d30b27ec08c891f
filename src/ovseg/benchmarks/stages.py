"""``ovseg benchmark``: every stage on one photo, model load, cold and warm compute, peak memory.

It times the same functions the stages call, bypassing the artifact cache so every number
is real work; ``--random-weights`` times the preset's real architectures with random weights
built in a temporary folder (speed and memory do not depend on weight values).
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ovseg.benchmarks.kit import checkpoints_at, machine, measure, synthetic_candidates, with_random_weights
from ovseg.config import Settings
from ovseg.request import RunRequest
from ovseg.weights.registry import resolve_device


def run_benchmark(
    settings: Settings,
    request: RunRequest,
    image_path: Path,
    runs: int = 2,
    edit: bool = True,
    min_candidates: int = 0,
) -> dict[str, Any]:
    """Benchmark every stage on one image; returns a JSON-ready report.

    ``min_candidates``: if SAM 2 proposes fewer, the later stages are timed on that many
    synthetic candidates instead (for random-weight runs), and the report says so.
    """
    from ovseg.clip.features import load_clip, mask_embeddings
    from ovseg.clip.text import load_text_encoder
    from ovseg.editing import edit_image, load_painter, request_for, resolve_backend
    from ovseg.masks import load_mask_generator
    from ovseg.media.fileio import load_image, working_image
    from ovseg.media.viz import overlay, resize_mask
    from ovseg.ranking.scoring import score_for_prompt
    from ovseg.ranking.selection import select_masks

    device = resolve_device(settings.device)
    image = load_image(image_path)
    work_image = working_image(image, settings.masks.max_image_side)
    rows = []

    row, proposals = measure(
        "masks",
        lambda: load_mask_generator(settings.masks, device),
        lambda generator: generator.generate(work_image)[0],
        runs,
    )
    rows.append({**row, "masks": len(proposals)})
    candidates_source = "SAM 2"
    if len(proposals) < min_candidates:
        proposals = synthetic_candidates(work_image.width, work_image.height, min_candidates)
        candidates_source = f"synthetic ({min_candidates} ellipses; SAM 2 proposed {rows[0]['masks']})"

    row, embeddings = measure(
        "embed",
        lambda: load_clip(settings.embed.model, device),
        lambda b: mask_embeddings(b, work_image, proposals.masks, proposals.boxes, settings.embed),
        runs,
    )
    rows.append(row)

    exports = Path(tempfile.mkdtemp(prefix="ovseg-bench-text-"))
    load_text_encoder(settings.embed.model, exports, device)  # the one-time ONNX export, outside the timing
    row, scores = measure(
        "score",
        lambda: load_text_encoder(settings.embed.model, exports, device),
        lambda b: score_for_prompt(b, embeddings, request.prompt or "an object", settings.score),
        runs,
    )
    rows.append(row)

    def select_and_draw(_: Any):
        selection = select_masks(scores.score, proposals.masks, settings.select)
        overlay(image, [proposals.masks[i] for i in selection.indices], title=request.prompt)
        return selection

    row, selection = measure("select", lambda: None, select_and_draw, runs)
    rows.append(row)

    if edit:
        mode = request.mode if request.edits else "remove"
        settings = dataclasses.replace(settings, edit=resolve_backend(settings.edit, mode))
        paint = request_for(mode, request.edit_prompt or "a potted plant", settings.edit)
        mask = resize_mask(selection.merged, image.size)

        row, _ = measure(
            f"edit ({mode}, {settings.edit.backend})",
            lambda: load_painter(settings.edit, paint, device),
            lambda paint: edit_image(image, mask, settings.edit, paint),
            max(0, runs - 1),
        )
        rows.append({**row, "steps": settings.edit.steps, "resolution": settings.edit.resolution})

    return {
        "image": str(image_path),
        "image_size": list(image.size),
        "working_size": list(work_image.size),
        "preset": settings.preset,
        "models": {"sam2": settings.masks.model, "clip": settings.embed.model, "inpaint": settings.edit.model},
        **machine(device),
        "runs": runs,
        "stages": rows,
        "total_warm_s": round(sum(r["warm_s"] or r["cold_s"] for r in rows), 3),
        "weights": "as found in the checkpoint folders",
        "candidates_timed": candidates_source,
    }


def run_benchmark_random_weights(
    settings: Settings,
    request: RunRequest,
    image_path: Path,
    runs: int = 2,
    edit: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The benchmark on the preset's real architectures with random weights, built in a temp folder.

    Speed and memory do not depend on the weight values, so this measures a preset on
    a machine that cannot download the weights. Random SAM 2 rates its own masks badly,
    so its quality filters are switched off, and since it still proposes only a blob or
    two, CLIP, scoring and selection are timed on 150 synthetic candidates.
    """
    import tempfile

    from ovseg.weights.registry import REGISTRY, SAM_ONNX
    from ovseg.weights.tiny import build_random_like

    names = [settings.masks.model, settings.embed.model]
    with tempfile.TemporaryDirectory(prefix="ovseg-random-weights-") as tmp:
        if edit:  # the backend that would paint with every weight present: auto's first choice
            chosen = settings.edit
            if chosen.backend == "auto":
                removes = not request.edits or request.mode == "remove"
                chosen = dataclasses.replace(chosen, backend=chosen.remove_with[0] if removes else "diffusion")
            settings = dataclasses.replace(settings, edit=with_random_weights(chosen, Path(tmp) / "edit", log))
        for name in names:
            if name in REGISTRY and REGISTRY[name].kind == SAM_ONNX:
                log(f"{name}: ONNX weights are used as found (real), not rebuilt with random weights")
                continue
            log(f"building {name} with random weights ...")
            build_random_like(name, Path(tmp) / name)
        with checkpoints_at(Path(tmp)):
            masks = dataclasses.replace(settings.masks, pred_iou_thresh=0.0, stability_score_thresh=0.0)
            report = run_benchmark(
                dataclasses.replace(settings, masks=masks),
                request,
                image_path,
                runs,
                edit,
                min_candidates=min(150, settings.masks.max_masks),
            )
    report["weights"] = "random weights in the real architectures (timing and memory only)"
    return report
