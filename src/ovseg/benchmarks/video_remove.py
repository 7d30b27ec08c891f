"""``ovseg benchmark-video-remove``: removal from videos, scored against the true background, variants side by side.

A removal cannot be scored on the video it was made in, so holes with a known truth are built:
one DAVIS sequence's moving object (its pixels where its masks are, frame by frame) is laid over
another sequence's frames, and removed again through the hole its masks give (dilated by
``edit.dilate_px``, as the fill stage does). Which sequence goes over which comes from ``seed``.
With ``shadows`` every case comes twice: the second time the object also casts a synthetic shadow
(its silhouette sheared from its base, darkening the ground to ``SHADOW_FACTOR``) that no mask
covers. Each variant fills the same holes in one run:

| variant                        | what                                                                      |
| ------------------------------ | ------------------------------------------------------------------------- |
| ``temporal``                   | :mod:`ovseg.video.fill` as the stage runs it: direct alignment, shadows   |
| ``temporal, no shadow step``   | the same without :mod:`ovseg.video.shadows`                               |
| ``chained``                    | pixels followed frame by frame along completed flows (the old default)    |
| ``frame fsr``                  | every frame alone, OpenCV's frequency-selective reconstruction (``cpu``)  |
| ``frame telea``                | every frame alone, Telea's fast marching                                  |
| ``propainter``                 | :mod:`ovseg.video.propainter` (``video.propainter_model``); without its   |
|                                | weights, random ones time it on the first case's first frames: quality    |
|                                | "needs the weights"                                                       |

Scores: PSNR over the dilated hole (all frames' hole pixels together), and separately over the
pixels carried from other frames and those no frame saw (invented); SSIM over the box around
each frame's hole (averaged); flicker (the mean over hole pixels of
``|(fill_t - fill_t-1) - (true_t - true_t-1)|``: how much more the fill changes between frames
than the truth does); on cast-shadow cases PSNR over the shadow; PSNR over every pixel the shadow
step changed (the same pixels for every variant); and milliseconds per frame, flows included.
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

VARIANTS = ("temporal", "temporal, no shadow step", "chained", "frame fsr", "frame telea", "propainter")
TIMING_FRAMES = 12  # without ProPainter's weights: random weights of its architecture time this many frames


@dataclass
class MovingHole:
    """One sequence's object moving over another's frames: what the remover sees, its holes, and the truth."""

    name: str
    frames: list[np.ndarray]
    holes: list[np.ndarray]
    truth: list[np.ndarray]
    shadows: list[np.ndarray] | None = None  # where a synthetic cast shadow darkens the truth (outside the holes)


SHADOW_SHEAR = 0.8  # the cast shadow: the object's silhouette leaning sideways from its base, this much per row
SHADOW_FACTOR = 0.5  # the brightness it leaves of the ground under it


def cast_shadow(background: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``background`` darkened by the shadow of ``mask``'s object (its silhouette sheared from its lowest row, soft
    edged) and that shadow's mask: a sun low to one side, the ground flat."""
    import cv2

    rows = np.flatnonzero(mask.any(1))
    if not len(rows):
        return background, np.zeros(mask.shape, bool)
    base = float(rows.max())
    shear = np.float32([[1, -SHADOW_SHEAR, SHADOW_SHEAR * base], [0, 1, 0]])
    height, width = mask.shape
    leaning = cv2.warpAffine(mask.astype(np.float32), shear, (width, height), flags=cv2.INTER_LINEAR)
    soft = cv2.GaussianBlur(leaning, (0, 0), 2.0)
    shaded = background.astype(np.float32) * (1 - (1 - SHADOW_FACTOR) * soft[..., None])
    return np.clip(np.rint(shaded), 0, 255).astype(np.uint8), soft > 0.5


def moving_holes(
    root: Path, dilate_px: int, seed: int = 0, limit: int | None = None, shadows: bool = False
) -> list[MovingHole]:
    """Each sequence's object over the frames of the next one (in an order ``seed`` shuffles); with ``shadows``,
    each case again with the object casting a synthetic shadow (:func:`cast_shadow`) that no mask covers."""
    from ovseg.evaluation.video import davis_sequences

    sequences = davis_sequences(root)
    order = np.random.default_rng(seed).permutation(len(sequences))
    cases = []
    for position, index in enumerate(order):
        source = sequences[index]
        target = sequences[order[(position + 1) % len(order)]]
        count = min(len(list(source[1].glob("*.jpg"))), len(list(source[2].glob("*.png"))),
                    len(list(target[1].glob("*.jpg"))), limit or 10**9)  # fmt: skip
        for shadowed in (False, True) if shadows else (False,):
            cases.append(_case(source, target, count, dilate_px, shadowed))
    return cases


def _case(source: tuple, target: tuple, count: int, dilate_px: int, shadowed: bool) -> MovingHole:
    from ovseg.editing import dilate

    objects = sorted(source[1].glob("*.jpg"))
    masks = sorted(source[2].glob("*.png"))
    backgrounds = sorted(target[1].glob("*.jpg"))
    frames, holes, truth, shadow_masks = [], [], [], []
    for t in range(count):
        background = np.asarray(Image.open(backgrounds[t]).convert("RGB"))
        thing = np.asarray(Image.open(objects[t]).convert("RGB"))
        mask = np.asarray(Image.open(masks[t])) > 0
        if thing.shape != background.shape:  # another size: the object is resized with its mask
            size = (background.shape[1], background.shape[0])
            thing = np.asarray(Image.fromarray(thing).resize(size))
            mask = np.asarray(Image.fromarray(mask).resize(size, Image.Resampling.NEAREST))
        composite = background.copy()
        hole = dilate(mask, dilate_px)
        if shadowed:
            composite, shadow = cast_shadow(background, mask)
            shadow_masks.append(shadow & ~hole)
        composite[mask] = thing[mask]
        frames.append(composite)
        holes.append(hole)
        truth.append(background)
    name = f"{source[0]} over {target[0]}" + (", cast shadow" if shadowed else "")
    return MovingHole(name, frames, holes, truth, shadow_masks if shadowed else None)


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


def score(
    case: MovingHole,
    filled: list[np.ndarray],
    invented: list[np.ndarray] | None = None,
) -> dict[str, Any]:
    """PSNR over every hole pixel, SSIM over each hole's box (mean), and flicker against the truth; with
    ``invented`` (hole pixels no frame saw), PSNR over the carried and the invented parts and their shares; on a
    case with a cast shadow, PSNR over the shadow."""
    where = np.stack(case.holes)
    stack, truth = np.stack(filled), np.stack(case.truth)
    row: dict[str, Any] = {"psnr": psnr(stack, truth, where)}
    boxes = []
    for fill, true, hole in zip(filled, case.truth, case.holes, strict=True):
        if hole.any():
            x, y, w, h = box_xywh(hole)
            boxes.append(ssim(fill[y : y + h, x : x + w], true[y : y + h, x : x + w]))
    flicker = []
    for t in range(1, len(filled)):
        hole = case.holes[t]
        if hole.any():
            change = filled[t].astype(np.float64) - filled[t - 1]
            true_change = case.truth[t].astype(np.float64) - case.truth[t - 1]
            flicker.append(float(np.abs(change - true_change)[hole].mean()))
    row.update(ssim=float(np.mean(boxes)), flicker=float(np.mean(flicker)))
    if invented is not None:
        made = np.stack(invented) & where
        row["invented_share"] = float(made.sum() / max(1, where.sum()))
        row["psnr_carried"] = psnr(stack, truth, where & ~made) if (where & ~made).any() else None
        row["psnr_invented"] = psnr(stack, truth, made) if made.any() else None
    if case.shadows is not None:
        row["psnr_shadow"] = psnr(stack, truth, np.stack(case.shadows))
    return row


def changed_psnr(case: MovingHole, filled: list[np.ndarray], grown: list[np.ndarray] | None) -> float:
    """PSNR over every pixel a shadow step changed: the holes and what it added (``grown``: the widened holes),
    the same pixels for every variant, so growing into what is not a shadow costs here."""
    where = np.stack(case.holes)
    changed = where | np.stack(grown) if grown is not None else where
    return psnr(np.stack(filled), np.stack(case.truth), changed)


def resized(cases: list[MovingHole], short_side: int) -> list[MovingHole]:
    """The cases at ``short_side`` px on their shorter side (ProPainter's protocol is 432x240)."""
    import cv2

    def size(image: np.ndarray) -> tuple[int, int]:
        height, width = image.shape[:2]
        factor = short_side / min(height, width)
        return max(8, round(width * factor)), max(8, round(height * factor))

    def picture(image: np.ndarray) -> np.ndarray:
        return cv2.resize(image, size(image), interpolation=cv2.INTER_AREA)

    def mask(image: np.ndarray) -> np.ndarray:
        return cv2.resize(image.astype(np.uint8), size(image), interpolation=cv2.INTER_NEAREST) > 0

    return [MovingHole(case.name, [picture(f) for f in case.frames], [mask(h) for h in case.holes],
                       [picture(t) for t in case.truth], None if case.shadows is None else
                       [mask(s) for s in case.shadows]) for case in cases]  # fmt: skip


def run_video_remove_benchmark(
    settings: Settings,
    root: Path,
    seed: int = 0,
    limit: int | None = None,
    variants: list[str] | None = None,
    log: Callable[[str], None] = print,
    shadows: bool = True,
    short_side: int | None = None,
) -> dict[str, Any]:
    """Every variant on the same moving holes (and, with ``shadows``, the same again casting a shadow), in one run;
    per case and overall. The shadow step's added pixels are scored by every variant over the same pixels."""
    from ovseg.video.fill import TemporalFiller, TemporalFillSettings

    cases = moving_holes(root, settings.edit.dilate_px, seed, limit, shadows)
    if short_side:
        cases = resized(cases, short_side)
    chosen = variants or list(VARIANTS)
    fills = {"frame fsr": image_filler(settings, "fsr_fast"), "frame telea": image_filler(settings, "telea")}
    inner = image_filler(settings, "fsr_fast", feather=False)  # what no frame saw, in the temporal fills
    base = TemporalFillSettings.of(settings.video)
    temporal = {
        "temporal": base,
        "temporal, no shadow step": dataclasses.replace(base, shadows=False),
        "chained": dataclasses.replace(base, align="chained", shadows=False),
    }
    rows, grown = [], {}
    for variant in chosen:
        if variant == "propainter":
            rows.extend(_propainter_rows(settings, cases, log))
            continue
        for case in cases:
            started = time.perf_counter()
            invented = None
            if variant in temporal:
                filler = TemporalFiller([f.copy() for f in case.frames], case.holes, inner, temporal[variant])
                results = list(filler.run())
                filled = [result for _, result, _ in results]
                carried = float(np.mean([s.from_frames for *_, s in results]))
                invented = filler.invented
                if temporal[variant].shadows:
                    grown[case.name] = filler.holes
            else:
                filled = [fills[variant](frame, hole) for frame, hole in zip(case.frames, case.holes, strict=True)]
                carried = 0.0
            ms = (time.perf_counter() - started) * 1000 / len(case.frames)
            row = {"variant": variant, "case": case.name, "frames": len(case.frames), "ms_per_frame": round(ms, 1),
                   "from_frames": round(carried, 4), "filled": filled, **score(case, filled, invented)}  # fmt: skip
            rows.append(row)
            log(f"{variant:>24} {case.name:>40}: PSNR {row['psnr']:.2f} dB  SSIM {row['ssim']:.3f}  flicker "
                f"{row['flicker']:.2f}  {ms:.0f} ms/frame")  # fmt: skip
    for row, case in ((r, c) for r in rows for c in cases if c.name == r["case"]):  # every variant, the same pixels
        if "filled" in row:
            row["psnr_changed"] = changed_psnr(case, row.pop("filled"), grown.get(case.name))
    masks_s = masks_stage_seconds(settings, cases, log)
    summary = summarize(rows, chosen)
    for figures in summary.values():
        figures["vs_masks_stage"] = None if masks_s is None else round(figures["ms_per_frame"] / 1000 / masks_s, 3)
    return {"dataset": str(root), "seed": seed, "dilate_px": settings.edit.dilate_px, "short_side": short_side,
            "masks_stage_seconds_per_frame": masks_s, "rows": rows, "variants": summary}  # fmt: skip


def masks_stage_seconds(settings: Settings, cases: list[MovingHole], log: Callable[[str], None],
                        frames: int = 2) -> float | None:  # fmt: skip
    """The masks stage's seconds per frame on the same frames (the first ``frames`` of each case), in the same run:
    what a removal's cost is put beside. None when its model's weights are not here."""
    from ovseg.errors import WeightsMissingError
    from ovseg.masks import load_mask_generator

    try:
        generator = load_mask_generator(settings.masks, "cpu")
    except WeightsMissingError as exc:
        log(f"masks stage not timed: {exc}")
        return None
    timed = []
    for case in cases:
        for picture in case.frames[:frames]:
            started = time.perf_counter()
            generator.generate(Image.fromarray(picture))
            timed.append(time.perf_counter() - started)
    seconds = float(np.mean(timed))
    log(f"masks stage ({settings.masks.model}, {settings.preset}): {seconds:.2f} s/frame over {len(timed)} frames")
    return round(seconds, 3)


def _propainter_rows(settings: Settings, cases: list[MovingHole], log: Callable[[str], None]) -> list[dict[str, Any]]:
    """ProPainter on every case with its weights; without them, random weights of its real architecture on the
    first case's first :data:`TIMING_FRAMES` frames: time only, quality "needs the weights"."""
    import tempfile

    from ovseg.video.propainter import ProPainterFiller, load_propainter, save_random_propainter
    from ovseg.weights.registry import PROPAINTER, resolve_device, weights_present

    video = settings.video
    real = weights_present(video.propainter_model, PROPAINTER)
    rows = []
    with tempfile.TemporaryDirectory(prefix="ovseg-propainter-") as tmp:
        name = video.propainter_model if real else str(save_random_propainter(Path(tmp) / "random"))
        device = resolve_device(settings.device)
        nets = load_propainter(name, device if device.startswith("cuda") else "cpu", log=log)
        for case in cases if real else cases[:1]:
            count = len(case.frames) if real else min(TIMING_FRAMES, len(case.frames))
            started = time.perf_counter()
            filler = ProPainterFiller(case.frames[:count], case.holes[:count], nets, video.fill_short_side)
            filled = [result for _, result, _ in filler.run()]
            ms = (time.perf_counter() - started) * 1000 / count
            row: dict[str, Any] = {"variant": "propainter", "case": case.name, "frames": count,
                                   "ms_per_frame": round(ms, 1), "from_frames": 0.0, "weights": real}  # fmt: skip
            if real:
                row.update(score(case, filled), filled=filled)
                log(f"{'propainter':>24} {case.name:>40}: PSNR {row['psnr']:.2f} dB  {ms:.0f} ms/frame")
            else:
                log(f"{'propainter':>24} {case.name:>40}: {ms:.0f} ms/frame on {count} frames (random weights: "
                    "quality needs the weights)")  # fmt: skip
            rows.append(row)
    return rows


def summarize(rows: list[dict[str, Any]], variants: list[str]) -> dict[str, dict[str, Any]]:
    """Per variant: means over the plain cases, the shadow PSNR over the cast-shadow cases, and the ratios to
    per-frame FSR (PSNR gain in dB, flicker as a share) where it ran."""
    summary: dict[str, dict[str, Any]] = {}
    for variant in variants:
        mine = [r for r in rows if r["variant"] == variant]
        if mine and "psnr" not in mine[0]:  # timed only (ProPainter without its weights)
            timing = round(float(np.mean([r["ms_per_frame"] for r in mine])), 4)
            frames = int(sum(r["frames"] for r in mine))
            summary[variant] = {"ms_per_frame": timing, "frames": frames, "quality": "needs the weights"}
            continue
        plain = [r for r in mine if "psnr_shadow" not in r]
        shadowed = [r for r in mine if "psnr_shadow" in r]
        figures = {k: round(float(np.mean([r[k] for r in plain])), 4)
                   for k in ("psnr", "ssim", "flicker", "ms_per_frame", "from_frames", "psnr_changed")}  # fmt: skip
        for k in ("psnr_carried", "psnr_invented", "invented_share"):
            values = [r[k] for r in plain if r.get(k) is not None]
            figures[k] = round(float(np.mean(values)), 4) if values else None
        if shadowed:
            figures["psnr_shadow"] = round(float(np.mean([r["psnr_shadow"] for r in shadowed])), 4)
            figures["psnr_shadow_cases"] = round(float(np.mean([r["psnr"] for r in shadowed])), 4)
        summary[variant] = figures
    if "frame fsr" in summary:
        fsr = summary["frame fsr"]
        for figures in (f for f in summary.values() if "psnr" in f):
            figures["psnr_vs_fsr_db"] = round(figures["psnr"] - fsr["psnr"], 3)
            figures["flicker_vs_fsr"] = round(figures["flicker"] / max(fsr["flicker"], 1e-9), 3)
    return summary
