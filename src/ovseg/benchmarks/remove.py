"""``ovseg benchmark-remove``: how well each edit backend removes an object, measured against the true pixels.

A removal cannot be scored on the photo it was made in: nobody knows what was behind the
car. So object-shaped holes are cut from labelled frames (the instances of cars,
pedestrians, signs and bicyclists in CamVid's labels: connected components of 0.5-6 % of
the frame) and laid, with the object's own pixels, onto *other* frames, where the pixels under
it are known: the photo a user would ask to remove that object from. Each backend fills the
hole through the edit stage's own path (dilated by ``edit.dilate_px``, cropped, painted at the
backend's size, pasted back feathered), and the fill is compared with the truth: PSNR over the
dilated hole, SSIM over the box around it. Every backend gets the same holes (fixed
seed), in one run, so the numbers are side by side.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage

from ovseg.benchmarks.kit import PeakMemory, with_random_weights
from ovseg.config import Settings
from ovseg.editing import backend_for, check_backend, dilate, edit_image, load_painter, request_for
from ovseg.errors import OvsegError
from ovseg.evaluation.datasets import read_dataset
from ovseg.media.fileio import load_image
from ovseg.media.rle import box_xywh
from ovseg.weights.registry import resolve_device

OBJECT_CLASSES = ("car", "pedestrian", "traffic sign", "bicyclist")
HOLE_FRACTION = (0.005, 0.06)  # of the frame: smaller is a speck, bigger is a scene, not an object

# name -> (label, overrides of the edit settings); the comparison docs/benchmarks.md reports.
REMOVE_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "fsr-fast": ("OpenCV xphoto FSR, fast", {"backend": "opencv", "opencv_method": "fsr_fast"}),
    "telea": ("OpenCV Telea, radius 3", {"backend": "opencv", "opencv_method": "telea", "opencv_radius": 3}),
    "ns": ("OpenCV Navier-Stokes, radius 3", {"backend": "opencv", "opencv_method": "ns", "opencv_radius": 3}),
    "fsr-best": ("OpenCV xphoto FSR, best (slow)", {"backend": "opencv", "opencv_method": "fsr_best"}),
    "shiftmap": ("OpenCV xphoto shift-map (patches)", {"backend": "opencv", "opencv_method": "shiftmap"}),
    "lama": ("big-lama (TorchScript)", {"backend": "lama"}),
    "migan": ("MI-GAN 512 (ONNX pipeline)", {"backend": "migan"}),
    "diffusion": ("SD 2 inpainting, removal prompts", {"backend": "diffusion"}),
}
# Slow variants run on fewer holes unless asked otherwise (their time per photo is what they add).
SLOW_VARIANTS = {"fsr-best": 20, "shiftmap": 20, "lama": 10, "migan": 20, "diffusion": 2}


@dataclasses.dataclass
class Hole:
    """An object's shape from one frame, laid onto another whose pixels under it are the truth."""

    source: str  # the frame the shape comes from
    target: Path  # the frame it is laid onto
    label: str  # the object's class
    mask: np.ndarray  # (H, W) bool at the target frame's size
    source_image: Path  # whose pixels under ``mask`` are the object, pasted onto the target

    def photo(self, truth: np.ndarray) -> Image.Image:
        """The target frame with the object pasted in: what a user would ask to remove."""
        photo = truth.copy()
        photo[self.mask] = np.asarray(load_image(self.source_image))[self.mask]
        return Image.fromarray(photo)


def holes_from(dataset: Path, count: int, seed: int = 0) -> list[Hole]:
    """``count`` object-shaped holes, each on another frame than its own, the same for the same seed."""
    samples = read_dataset(dataset)
    rng = np.random.default_rng(seed)
    shapes = []
    for sample in samples:
        for target in sample.targets:
            if target.prompt not in OBJECT_CLASSES:
                continue
            labelled, n = ndimage.label(target.mask)
            frame = target.mask.size
            for index in range(1, n + 1):
                component = labelled == index
                if HOLE_FRACTION[0] <= component.sum() / frame <= HOLE_FRACTION[1]:
                    shapes.append((sample, target.prompt, component))
    if not shapes:
        raise OvsegError(f"no object instances of {', '.join(OBJECT_CLASSES)} in {dataset}")
    holes = []
    for pick in rng.permutation(len(shapes))[:count]:
        sample, label, component = shapes[int(pick)]
        others = [s for s in samples if s.image != sample.image and s.targets[0].mask.shape == component.shape]
        target = others[int(rng.integers(len(others)))] if others else sample
        holes.append(Hole(sample.name, target.image, label, component, sample.image))
    return holes


def psnr(filled: np.ndarray, truth: np.ndarray, where: np.ndarray) -> float:
    """Peak signal-to-noise ratio (dB) over the pixels ``where``; infinite when they are equal."""
    error = np.mean((filled[where].astype(np.float64) - truth[where].astype(np.float64)) ** 2)
    return float("inf") if error == 0 else float(10 * np.log10(255.0**2 / error))


def ssim(filled: np.ndarray, truth: np.ndarray, sigma: float = 1.5) -> float:
    """Structural similarity (Wang et al. 2004, Gaussian window, per colour channel, averaged)."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for channel in range(filled.shape[2]):
        x, y = filled[..., channel].astype(np.float64), truth[..., channel].astype(np.float64)
        mx, my = ndimage.gaussian_filter(x, sigma), ndimage.gaussian_filter(y, sigma)
        vx = ndimage.gaussian_filter(x * x, sigma) - mx * mx
        vy = ndimage.gaussian_filter(y * y, sigma) - my * my
        cov = ndimage.gaussian_filter(x * y, sigma) - mx * my
        value = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
        values.append(float(value.mean()))
    return float(np.mean(values))


def score_fill(filled: np.ndarray, truth: np.ndarray, hole: np.ndarray) -> tuple[float, float]:
    """(PSNR over the hole, SSIM over the box around it) of a filled photo against the truth."""
    x, y, w, h = box_xywh(hole)
    return psnr(filled, truth, hole), ssim(filled[y : y + h, x : x + w], truth[y : y + h, x : x + w])


def _add_same_hole_references(rows: list[dict[str, Any]], scored: dict[str, tuple[list, list]]) -> None:
    """A variant run on fewer holes is set beside the first full variant on those same holes.

    Means over different holes cannot be compared: the first holes may be easier than the rest.
    """
    most = max((row["holes"] for row in rows), default=0)
    full = next((row for row in rows if row["variant"] in scored and row["holes"] == most), None)
    if full is None:
        return
    psnrs, ssims = scored[full["variant"]]
    for row in rows:
        if row["variant"] in scored and row["holes"] < full["holes"]:
            n = row["holes"]
            row["reference"] = {
                "variant": full["variant"],
                "psnr_db": round(float(np.mean(psnrs[:n])), 3),
                "ssim": round(float(np.mean(ssims[:n])), 4),
            }


def run_remove_benchmark(
    settings: Settings,
    dataset: Path,
    holes: int = 100,
    variants: list[str] | None = None,
    seed: int = 0,
    slow_holes: int | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Fill the same holes with each variant; PSNR, SSIM and ms per photo for each, in one run.

    The diffusion variant uses the preset's SD 2 inpainting weights when they are on disk,
    else the same architecture with random weights, for its time and memory only.
    """
    from ovseg.weights.downloads import verify

    names = variants or list(REMOVE_VARIANTS)
    unknown = [v for v in names if v not in REMOVE_VARIANTS]
    if unknown:
        raise OvsegError(f"unknown remove variant {unknown[0]!r}; choose from {', '.join(REMOVE_VARIANTS)}")
    device = resolve_device(settings.device)
    cases = holes_from(dataset, holes, seed)
    truths = {hole.target: np.asarray(load_image(hole.target)) for hole in cases}
    photos = [hole.photo(truths[hole.target]) for hole in cases]  # decoded once, outside the timing
    rows, scored = [], {}
    with tempfile.TemporaryDirectory(prefix="ovseg-remove-bench-") as tmp:
        for name in names:
            label, overrides = REMOVE_VARIANTS[name]
            edit = dataclasses.replace(settings.edit, **overrides)
            check_backend(edit, "remove")
            weights = "none"
            setting = backend_for(edit).weights_setting
            if setting is not None:
                real = not verify(getattr(edit, setting))
                weights = "real" if real else "random (time and memory only)"
                if not real:
                    edit = with_random_weights(edit, Path(tmp), log)
            limit = len(cases) if weights in ("none", "real") and name not in SLOW_VARIANTS else None
            limit = limit or (slow_holes if slow_holes is not None else SLOW_VARIANTS.get(name, len(cases)))
            log(f"{label}: {min(limit, len(cases))} holes ...")
            started = time.perf_counter()
            painter = load_painter(edit, request_for("remove", "", edit), device)
            load_s = time.perf_counter() - started
            psnrs, ssims, seconds = [], [], []
            with PeakMemory() as memory:
                for hole, photo in zip(cases[:limit], photos, strict=False):
                    truth = truths[hole.target]
                    one = time.perf_counter()
                    filled = np.asarray(edit_image(photo, hole.mask, edit, painter))
                    seconds.append(time.perf_counter() - one)
                    p, s = score_fill(filled, truth, dilate(hole.mask, edit.dilate_px))
                    psnrs.append(p)
                    ssims.append(s)
            measured = weights != "random (time and memory only)"
            if measured:
                scored[name] = (psnrs, ssims)
            rows.append(
                {
                    "variant": name,
                    "label": label,
                    "weights": weights,
                    "holes": len(seconds),
                    "psnr_db": round(float(np.mean(psnrs)), 3) if measured else None,
                    "ssim": round(float(np.mean(ssims)), 4) if measured else None,
                    "ms_per_photo": round(1000 * float(np.mean(seconds)), 1),
                    "load_s": round(load_s, 3),
                    "peak_rss_mb": round(memory.peak_rss / 2**20, 1),
                    "peak_cuda_mb": round(memory.peak_cuda / 2**20, 1) if memory.peak_cuda is not None else None,
                    "settings": overrides,
                }
            )
    _add_same_hole_references(rows, scored)
    return {
        "dataset": str(dataset),
        "holes": len(cases),
        "seed": seed,
        "dilate_px": settings.edit.dilate_px,
        "classes": list(OBJECT_CLASSES),
        "hole_fraction": list(HOLE_FRACTION),
        "variants": rows,
    }
