"""``ovseg benchmark-video-remove``: removal from videos, scored against the true background, variants side by side.

A removal cannot be scored on the video it was made in, so holes with a known truth are built:
one DAVIS sequence's moving object (its pixels where its masks are, frame by frame) is laid over
another sequence's frames, and removed again through the hole its masks give (dilated by
``edit.dilate_px``, as the fill stage does). Which sequence goes over which comes from ``seed``.
Each variant fills the same holes in one run:

| variant          | what                                                                      |
| ---------------- | ------------------------------------------------------------------------- |
| ``temporal``     | :mod:`ovseg.video.fill`: pixels other frames saw, the rest painted once   |
| ``frame fsr``    | every frame alone, OpenCV's frequency-selective reconstruction (``cpu``)  |
| ``frame telea``  | every frame alone, Telea's fast marching                                  |

Scores: PSNR over the dilated hole (all frames' hole pixels together), SSIM over the box around
each frame's hole (averaged), flicker (the mean over hole pixels of
``|(fill_t - fill_t-1) - (true_t - true_t-1)|``: how much more the fill changes between frames
than the truth does), and milliseconds per frame, flows included.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ovseg.benchmarks.remove import psnr, ssim
from ovseg.config import Settings
from ovseg.media.rle import box_xywh

VARIANTS = ("temporal", "frame fsr", "frame telea")


@dataclass
class MovingHole:
    """One sequence's object moving over another's frames: what the remover sees, its holes, and the truth."""

    name: str
    frames: list[np.ndarray]
    holes: list[np.ndarray]
    truth: list[np.ndarray]


def moving_holes(root: Path, dilate_px: int, seed: int = 0, limit: int | None = None) -> list[MovingHole]:
    """Each sequence's object over the frames of the next one (in an order ``seed`` shuffles)."""
    from ovseg.editing import dilate
    from ovseg.evaluation.video import davis_sequences

    sequences = davis_sequences(root)
    order = np.random.default_rng(seed).permutation(len(sequences))
    cases = []
    for position, index in enumerate(order):
        source = sequences[index]
        target = sequences[order[(position + 1) % len(order)]]
        objects = sorted(source[1].glob("*.jpg"))
        masks = sorted(source[2].glob("*.png"))
        backgrounds = sorted(target[1].glob("*.jpg"))
        count = min(len(objects), len(masks), len(backgrounds), limit or 10**9)
        frames, holes, truth = [], [], []
        for t in range(count):
            background = np.asarray(Image.open(backgrounds[t]).convert("RGB"))
            thing = np.asarray(Image.open(objects[t]).convert("RGB"))
            mask = np.asarray(Image.open(masks[t])) > 0
            if thing.shape != background.shape:  # another size: the object is resized with its mask
                size = (background.shape[1], background.shape[0])
                thing = np.asarray(Image.fromarray(thing).resize(size))
                mask = np.asarray(Image.fromarray(mask).resize(size, Image.Resampling.NEAREST))
            composite = background.copy()
            composite[mask] = thing[mask]
            frames.append(composite)
            holes.append(dilate(mask, dilate_px))
            truth.append(background)
        cases.append(MovingHole(f"{source[0]} over {target[0]}", frames, holes, truth))
    return cases


def image_filler(
    settings: Settings, method: str, feather: bool = True
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """(frame, hole) -> the frame with its hole painted by OpenCV ``method`` through the photo edits' path
    (``feather``: the photo edits' soft edge inside the hole; off where the hole's edge may be the object)."""
    from ovseg.editing import edit_image, load_painter, request_for

    edit = dataclasses.replace(settings.edit, backend="opencv", opencv_method=method, dilate_px=0)
    if not feather:
        edit = dataclasses.replace(edit, feather_px=0)
    painter = load_painter(edit, request_for("remove", "", edit), "cpu")

    def fill(frame: np.ndarray, hole: np.ndarray) -> np.ndarray:
        return np.asarray(edit_image(Image.fromarray(frame), hole, edit, painter).convert("RGB"))

    return fill


def score(case: MovingHole, filled: list[np.ndarray]) -> dict[str, float]:
    """PSNR over every hole pixel, SSIM over each hole's box (mean), and flicker against the truth."""
    where = np.stack(case.holes)
    value_psnr = psnr(np.stack(filled), np.stack(case.truth), where)
    boxes = []
    for fill, truth, hole in zip(filled, case.truth, case.holes, strict=True):
        if hole.any():
            x, y, w, h = box_xywh(hole)
            boxes.append(ssim(fill[y : y + h, x : x + w], truth[y : y + h, x : x + w]))
    flicker = []
    for t in range(1, len(filled)):
        hole = case.holes[t]
        if hole.any():
            change = filled[t].astype(np.float64) - filled[t - 1]
            true_change = case.truth[t].astype(np.float64) - case.truth[t - 1]
            flicker.append(float(np.abs(change - true_change)[hole].mean()))
    return {"psnr": value_psnr, "ssim": float(np.mean(boxes)), "flicker": float(np.mean(flicker))}


def run_video_remove_benchmark(
    settings: Settings,
    root: Path,
    seed: int = 0,
    limit: int | None = None,
    variants: list[str] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every variant on the same moving holes, in one run; per case and overall."""
    from ovseg.video.fill import TemporalFiller, TemporalFillSettings

    cases = moving_holes(root, settings.edit.dilate_px, seed, limit)
    chosen = variants or list(VARIANTS)
    fills = {"frame fsr": image_filler(settings, "fsr_fast"), "frame telea": image_filler(settings, "telea")}
    inner = image_filler(settings, "fsr_fast", feather=False)  # what no frame saw, in the temporal fill
    video = settings.video
    rows = []
    for variant in chosen:
        for case in cases:
            started = time.perf_counter()
            if variant == "temporal":
                knobs = TemporalFillSettings(window=video.fill_window, flow_scale=video.flow_scale,
                                             consistency_px=video.fill_consistency)  # fmt: skip
                filler = TemporalFiller([f.copy() for f in case.frames], case.holes, inner, knobs)
                results = list(filler.run())
                filled = [result for _, result, _ in results]
                carried = float(np.mean([s.from_frames for *_, s in results]))
            else:
                filled = [fills[variant](frame, hole) for frame, hole in zip(case.frames, case.holes, strict=True)]
                carried = 0.0
            ms = (time.perf_counter() - started) * 1000 / len(case.frames)
            row = {"variant": variant, "case": case.name, "frames": len(case.frames), **score(case, filled),
                   "ms_per_frame": round(ms, 1), "from_frames": round(carried, 4)}  # fmt: skip
            rows.append(row)
            log(f"{variant:>12} {case.name:>26}: PSNR {row['psnr']:.2f} dB  SSIM {row['ssim']:.3f}  flicker "
                f"{row['flicker']:.2f}  {ms:.0f} ms/frame")  # fmt: skip
    summary = {}
    for variant in chosen:
        mine = [r for r in rows if r["variant"] == variant]
        summary[variant] = {k: round(float(np.mean([r[k] for r in mine])), 4)
                            for k in ("psnr", "ssim", "flicker", "ms_per_frame", "from_frames")}  # fmt: skip
    return {"dataset": str(root), "seed": seed, "dilate_px": settings.edit.dilate_px, "rows": rows,
            "variants": summary}  # fmt: skip
