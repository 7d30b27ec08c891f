"""The measuring kit every benchmark shares: peak memory, timers, random-weight checkpoints, synthetic candidates.

*load* is building a model from its checkpoint, *cold* is the first call after loading (lazy
initialisation, allocator warm-up), *warm* the mean of the following calls; peak RSS is
sampled in a thread, peak GPU memory read from CUDA's own counters.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch

from ovseg.weights.registry import free_accelerator_memory


class PeakMemory:
    """Samples this process's RSS in a thread; resets CUDA peak stats on entry."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.peak_rss = 0
        self._stop = threading.Event()
        self._process = psutil.Process(os.getpid())

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_rss = max(self.peak_rss, self._process.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self) -> PeakMemory:
        self.peak_rss = self._process.memory_info().rss
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_rss = max(self.peak_rss, self._process.memory_info().rss)

    @property
    def peak_cuda(self) -> int | None:
        return int(torch.cuda.max_memory_allocated()) if torch.cuda.is_available() else None


def machine(device: str) -> dict[str, Any]:
    """What a report was measured on: the device, its name, the CPU threads torch uses, torch's version."""
    import platform

    name = torch.cuda.get_device_name() if device.startswith("cuda") else platform.processor() or platform.machine()
    return {"device": device, "device_name": name, "cpu_threads": torch.get_num_threads(), "torch": torch.__version__}


def sync_device() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


@contextmanager
def timer(out: dict[str, float], key: str) -> Iterator[None]:
    sync_device()
    start = time.perf_counter()
    yield
    sync_device()
    out[key] = time.perf_counter() - start


@contextmanager
def checkpoints_at(folder: Path) -> Iterator[None]:
    """Look for weights in ``folder`` first (random-weight builds), then put the setting back."""
    previous = os.environ.get("OVSEG_CHECKPOINTS")
    os.environ["OVSEG_CHECKPOINTS"] = str(folder)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("OVSEG_CHECKPOINTS", None)
        else:
            os.environ["OVSEG_CHECKPOINTS"] = previous


def measure(name: str, load: Callable[[], Any], work: Callable[[Any], Any], runs: int) -> tuple[dict, Any]:
    times: dict[str, float] = {}
    with PeakMemory() as memory:
        with timer(times, "load_s"):
            model = load()
        with timer(times, "cold_s"):
            result = work(model)
        warm = []
        for _ in range(runs):
            one: dict[str, float] = {}
            with timer(one, "s"):
                result = work(model)
            warm.append(one["s"])
    del model
    free_accelerator_memory()
    row = {
        "stage": name,
        **{k: round(v, 4) for k, v in times.items()},
        "warm_s": round(float(np.mean(warm)), 4) if warm else None,
        "peak_rss_mb": round(memory.peak_rss / 2**20, 1),
        "peak_cuda_mb": round(memory.peak_cuda / 2**20, 1) if memory.peak_cuda is not None else None,
    }
    return row, result


def synthetic_candidates(width: int, height: int, count: int, seed: int = 0):
    """``count`` elliptical masks of mixed sizes: a stand-in for SAM 2's output when its weights are random.

    Random SAM 2 proposes one or two image-sized blobs, which would make the CLIP and
    selection timings meaningless; real photos give 100-300 candidates.
    """
    from ovseg.storage.store import MaskProposals

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    masks = np.zeros((count, height, width), bool)
    boxes = np.zeros((count, 4), np.float32)
    for i in range(count):
        rx, ry = rng.uniform(0.02, 0.4) * width, rng.uniform(0.02, 0.4) * height
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        masks[i] = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
        ys, xs = np.nonzero(masks[i])
        if len(xs) == 0:
            masks[i, int(min(cy, height - 1)), int(min(cx, width - 1))] = True
            ys, xs = np.nonzero(masks[i])
        boxes[i] = (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
    quality = np.ones(count, np.float32)
    return MaskProposals(masks, boxes, masks.reshape(count, -1).sum(1), quality, quality)


def with_random_weights(edit, folder: Path, log: Callable[[str], None] = print):
    """``edit`` settings whose backend's model is rebuilt with random weights in ``folder``, named by path.

    By path, not by registry name: a name is checked against the real file's pinned digest, and a
    random build must never pass for the real model under ``checkpoints/``.
    """
    import dataclasses

    from ovseg.editing import backend_for
    from ovseg.weights.tiny import build_random_like

    setting = backend_for(edit).weights_setting
    if setting is None:
        return edit
    name = getattr(edit, setting)
    log(f"building {name} with random weights ...")
    return dataclasses.replace(edit, **{setting: str(build_random_like(name, Path(folder) / name))})
