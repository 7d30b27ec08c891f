"""``ovseg benchmark-track``: following variants side by side on the same DAVIS sequences, in one run.

Each variant follows each sequence from its first frame's mask (DAVIS's semi-supervised protocol)
and is scored with J and F (:mod:`ovseg.video.measures`, frames 1..n-2). Its time per frame counts
everything following costs, the mask model's image encoder included. Beside them, the ``cpu``
preset's masks stage (every candidate of a frame, as words need) is timed on the first frames of
each sequence, so following's cost is also a ratio that does not depend on the machine.

| variant            | what                                                                      |
| ------------------ | ------------------------------------------------------------------------- |
| ``copy``           | the first mask on every frame: the floor                                  |
| ``reprompt``       | the model asked each frame with the last mask's box and innermost point    |
| ``flow, no excl.`` | the same along optical flow, without the exclude clicks                   |
| ``flow-sam``       | the CPU tracker as configured (flow, exclude clicks, agreeing answer)     |
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ovseg.config import Settings

VARIANTS = ("copy", "reprompt", "flow, no excl.", "flow-sam")


def _sequences(root: Path, names: list[str] | None, frames: int | None) -> list[tuple[str, list[np.ndarray], list]]:
    from ovseg.video_eval import davis_sequences

    loaded = []
    for name, images, labels in davis_sequences(root):
        if names and name not in names:
            continue
        pictures = sorted(images.glob("*.jpg"))[: frames or None]
        truth = [np.asarray(Image.open(p)) > 0 for p in sorted(labels.glob("*.png"))[: len(pictures)]]
        loaded.append((name, [np.asarray(Image.open(p).convert("RGB")) for p in pictures], truth))
    return loaded


def run_track_benchmark(
    settings: Settings,
    root: Path,
    names: list[str] | None = None,
    frames: int | None = None,
    variants: list[str] | None = None,
    masks_frames: int = 2,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """J, F and seconds per frame of each variant on each sequence; the masks stage's seconds per frame beside."""
    from ovseg.masks import load_mask_generator, load_prompt_model
    from ovseg.video import FrameList, flow_tracker_settings
    from ovseg.video.flow_tracker import FlowTracker
    from ovseg.video.measures import sequence_scores
    from ovseg.video.tracking import FollowPlan, Seed, follow

    sequences = _sequences(root, names, frames)
    chosen = variants or list(VARIANTS)
    model = load_prompt_model(settings.masks.model, "cpu")
    tuned = flow_tracker_settings(settings)
    trackers = {
        "reprompt": dataclasses.replace(tuned, use_flow=False, negative_ring=0),
        "flow, no excl.": dataclasses.replace(tuned, negative_ring=0),
        "flow-sam": tuned,
    }
    rows = []
    for variant in chosen:
        for name, pictures, truth in sequences:
            started = time.perf_counter()
            if variant == "copy":
                predicted = [truth[0]] * len(truth)
            else:
                tracker = FlowTracker(model, trackers[variant])
                plan = FollowPlan(frames=len(pictures), seeds=[Seed(1, "mask", 0, mask=truth[0])])
                found = dict(follow(tracker, FrameList(pictures), plan, {}))
                predicted = [found[f][1].mask for f in range(len(pictures))]
            seconds = (time.perf_counter() - started) / max(1, len(pictures) - 1)
            scores = sequence_scores(predicted, truth)
            rows.append({"variant": variant, "sequence": name, "J": round(scores["J"], 4),
                         "F": round(scores["F"], 4), "seconds_per_frame": round(seconds, 3)})  # fmt: skip
            log(f"{variant:>16} {name:>12}: J {scores['J']:.3f}  F {scores['F']:.3f}  {seconds:.2f} s/frame")
    generator = load_mask_generator(settings.masks, "cpu")
    timed = []
    for _, pictures, _ in sequences:
        for picture in pictures[:masks_frames]:
            started = time.perf_counter()
            generator.generate(Image.fromarray(picture))
            timed.append(time.perf_counter() - started)
    masks_s = float(np.mean(timed))
    log(f"masks stage ({settings.masks.model}, {settings.preset}): {masks_s:.2f} s/frame over {len(timed)} frames")
    summary = {}
    for variant in chosen:
        mine = [r for r in rows if r["variant"] == variant]
        per_frame = float(np.mean([r["seconds_per_frame"] for r in mine]))
        summary[variant] = {
            "J": round(float(np.mean([r["J"] for r in mine])), 4),
            "F": round(float(np.mean([r["F"] for r in mine])), 4),
            "min_J": round(float(min(r["J"] for r in mine)), 4),
            "seconds_per_frame": round(per_frame, 3),
            "vs_masks_stage": round(per_frame / masks_s, 3),
        }
    return {"dataset": str(root), "preset": settings.preset, "frames_per_sequence": frames,
            "masks_stage_seconds_per_frame": round(masks_s, 3), "rows": rows, "variants": summary}  # fmt: skip
