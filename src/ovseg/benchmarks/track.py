"""``ovseg benchmark-track``: following variants side by side on the same DAVIS sequences, in one run.

Each variant follows each sequence from its first frame's mask (DAVIS's semi-supervised protocol)
and is scored with J and F (:mod:`ovseg.video.measures`, frames 1..n-2). Its time per frame counts
everything following costs, the mask model's image encoder included. Beside them, the ``cpu``
preset's masks stage (every candidate of a frame, as words need) is timed on the first frames of
each sequence, so following's cost is also a ratio that does not depend on the machine.

With ``stress``, every sequence is also followed in its harder versions
(:mod:`.track_stress`: an occluder, an occluder with a look-alike standing by, the object
leaving the frame), and each row adds J on the frames from the object's return on and the share
of frames whose presence is wrong.

| variant                 | what                                                                      |
| ----------------------- | ------------------------------------------------------------------------- |
| ``copy``                | the first mask on every frame: the floor                                  |
| ``reprompt``            | the model asked each frame with the last mask's box and innermost point   |
| ``flow, no excl.``      | the same along optical flow, without the exclude clicks                   |
| ``flow-sam, no memory`` | the CPU tracker as it was: flow, exclude clicks, the agreeing answer      |
| ``flow-sam``            | the CPU tracker as configured: with its memory (:mod:`ovseg.video.memory`) |

(``reprompt`` and ``flow, no excl.`` have no memory either: they show what each part of it buys.)
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

VARIANTS = ("copy", "reprompt", "flow, no excl.", "flow-sam, no memory", "flow-sam")
DEFAULT_VARIANTS = ("copy", "flow-sam, no memory", "flow-sam")
PLAIN = "plain"


def _sequences(root: Path, names: list[str] | None, frames: int | None) -> list[tuple[str, list[np.ndarray], list]]:
    from ovseg.evaluation.video import davis_sequences

    loaded = []
    for name, images, labels in davis_sequences(root):
        if names and name not in names:
            continue
        pictures = sorted(images.glob("*.jpg"))[: frames or None]
        truth = [np.asarray(Image.open(p)) > 0 for p in sorted(labels.glob("*.png"))[: len(pictures)]]
        loaded.append((name, [np.asarray(Image.open(p).convert("RGB")) for p in pictures], truth))
    return loaded


def _followed(tracker, pictures: list[np.ndarray], first: np.ndarray) -> tuple[list[np.ndarray], list[bool]]:
    from ovseg.video import FrameList
    from ovseg.video.tracking import FollowPlan, Seed, follow

    plan = FollowPlan(frames=len(pictures), seeds=[Seed(1, "mask", 0, mask=first)])
    found = dict(follow(tracker, FrameList(pictures), plan, {}))
    return [found[f][1].mask for f in range(len(pictures))], [found[f][1].present for f in range(len(pictures))]


def run_track_benchmark(
    settings: Settings,
    root: Path,
    names: list[str] | None = None,
    frames: int | None = None,
    variants: list[str] | None = None,
    masks_frames: int = 2,
    log: Callable[[str], None] = print,
    stress: bool = False,
) -> dict[str, Any]:
    """J, F and seconds per frame of each variant on each sequence (and, with ``stress``, on its harder versions:
    J after the object's return and presence errors too); the masks stage's seconds per frame beside."""
    from ovseg.benchmarks.track_stress import STRESS_VARIANTS, stress_case, stress_scores
    from ovseg.masks import load_mask_generator, load_prompt_model
    from ovseg.video import flow_tracker_settings
    from ovseg.video.flow_tracker import FlowTracker
    from ovseg.video.measures import sequence_scores

    sequences = _sequences(root, names, frames)
    chosen = variants or list(DEFAULT_VARIANTS)
    model = load_prompt_model(settings.masks.model, "cpu")
    tuned = flow_tracker_settings(settings)
    forgetful = dataclasses.replace(tuned, memory=False)
    trackers = {
        "reprompt": dataclasses.replace(forgetful, use_flow=False, negative_ring=0),
        "flow, no excl.": dataclasses.replace(forgetful, negative_ring=0),
        "flow-sam, no memory": forgetful,
        "flow-sam": tuned,
    }
    cases = [PLAIN, *(STRESS_VARIANTS if stress else ())]
    rows = []
    for case_name in cases:
        for name, pictures, truth in sequences:
            case = None if case_name == PLAIN else stress_case(case_name, name, pictures, truth)
            clip, visible = (pictures, truth) if case is None else (case.frames, case.truth)
            for variant in chosen:  # each variant on the same frames, one after the other
                started = time.perf_counter()
                if variant == "copy":
                    masks, present = [visible[0]] * len(visible), [True] * len(visible)
                else:
                    masks, present = _followed(FlowTracker(model, trackers[variant]), clip, visible[0])
                seconds = (time.perf_counter() - started) / max(1, len(clip) - 1)
                if case is None:
                    plain = sequence_scores(masks, visible)
                    wrong = sum(not p for p in present[1:]) / max(1, len(present) - 1)
                    scores = {"J": plain["J"], "F": plain["F"], "J_after": None, "presence_wrong": wrong}
                else:
                    scores = stress_scores(case, masks, present)
                rows.append({"variant": variant, "case": case_name, "sequence": name,
                             **{k: None if v is None else round(v, 4) for k, v in scores.items()},
                             "seconds_per_frame": round(seconds, 3)})  # fmt: skip
                after = f"  J after return {scores['J_after']:.3f}" if scores["J_after"] is not None else ""
                log(f"{variant:>20} {case_name:>12} {name:>12}: J {scores['J']:.3f}  F {scores['F']:.3f}{after}  "
                    f"presence wrong {scores['presence_wrong']:.1%}  {seconds:.2f} s/frame")  # fmt: skip
    generator = load_mask_generator(settings.masks, "cpu")
    timed = []
    for _, pictures, _ in sequences:
        for picture in pictures[:masks_frames]:
            started = time.perf_counter()
            generator.generate(Image.fromarray(picture))
            timed.append(time.perf_counter() - started)
    masks_s = float(np.mean(timed))
    log(f"masks stage ({settings.masks.model}, {settings.preset}): {masks_s:.2f} s/frame over {len(timed)} frames")
    return {"dataset": str(root), "preset": settings.preset, "frames_per_sequence": frames,
            "masks_stage_seconds_per_frame": round(masks_s, 3), "rows": rows,
            "variants": _summaries(rows, chosen, cases, masks_s)}  # fmt: skip


def _summaries(rows: list[dict], variants: list[str], cases: list[str], masks_s: float) -> dict[str, Any]:
    """Per variant, its plain figures (as before the stress cases existed) and, per case, the means over sequences."""

    def mean(values: list) -> float | None:
        values = [v for v in values if v is not None]
        return round(float(np.mean(values)), 4) if values else None

    summary: dict[str, Any] = {}
    for variant in variants:
        per_case = {}
        for case in cases:
            mine = [r for r in rows if r["variant"] == variant and r["case"] == case]
            per_frame = float(np.mean([r["seconds_per_frame"] for r in mine]))
            per_case[case] = {
                "J": mean([r["J"] for r in mine]),
                "F": mean([r["F"] for r in mine]),
                "min_J": round(float(min(r["J"] for r in mine)), 4),
                "J_after": mean([r["J_after"] for r in mine]),
                "presence_wrong": mean([r["presence_wrong"] for r in mine]),
                "seconds_per_frame": round(per_frame, 3),
                "vs_masks_stage": round(per_frame / masks_s, 3),
            }
        summary[variant] = {**per_case[PLAIN], "cases": per_case}
    return summary
