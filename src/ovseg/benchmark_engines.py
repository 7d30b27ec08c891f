"""Masks-stage throughput per engine: the local engine and Ray Data with 1..N actors, side by side.

Same photos, same settings, one run, each variant into a fresh cache (so every image is
computed), model loading included: what a user sees from `ovseg run` with each engine. The
stores the variants write are compared byte for byte, so the report also says whether the
engines agree.
"""

from __future__ import annotations

import hashlib
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ovseg.config import Settings
from ovseg.pipeline import Paths, run_masks


def _digest(folder: Path) -> str:
    """One hash over every store file (not markers, not the manifest) of a masks folder."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix != ".done" and path.name != "manifest.json":
            digest.update(str(path.relative_to(folder)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def run_engine_benchmark(
    settings: Settings, images: list[Path], workers: list[int], cpus: int, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Images/s of the masks stage for the local engine and for Ray with each actor count in ``workers``."""
    import ray

    from ovseg.engines.ray_data import ray_masks

    folder = Path(tempfile.mkdtemp(prefix="ovseg-engines-"))
    for image in images:  # one folder of the chosen photos, as a user would point --images at
        (folder / image.name).symlink_to(image.resolve())
    settings = replace(settings, images=str(folder))
    rows = []

    def record(label: str, engine: str, actors: int, seconds: float, cache: Path) -> None:
        row = {
            "variant": label,
            "engine": engine,
            "actors": actors,
            "seconds": round(seconds, 2),
            "images_per_s": round(len(images) / seconds, 4),
            "stores_digest": _digest(cache / "masks"),
        }
        rows.append(row)
        log(f"{label}: {seconds:.1f} s, {row['images_per_s']:.3f} images/s")

    cache = Path(tempfile.mkdtemp(prefix="ovseg-local-"))
    started = time.perf_counter()
    run_masks(settings, sorted(folder.iterdir()), Paths(cache=cache))
    record("local", "local", 1, time.perf_counter() - started, cache)

    ray.init(num_cpus=cpus, num_gpus=0, include_dashboard=False, logging_level="warning")
    try:
        for count in workers:
            engine = replace(settings.engine, kind="ray", concurrency=count, num_cpus=cpus / count, batch_size=1)
            cache = Path(tempfile.mkdtemp(prefix=f"ovseg-ray{count}-"))
            started = time.perf_counter()
            ray_masks(replace(settings, engine=engine), str(cache))
            record(f"ray x{count}", "ray", count, time.perf_counter() - started, cache)
    finally:
        ray.shutdown()
    local = rows[0]["images_per_s"]
    for row in rows:
        row["throughput_vs_local"] = round(row["images_per_s"] / local, 3)
    return {
        "images": len(images),
        "model": settings.masks.model,
        "sampling": settings.masks.sampling,
        "max_prompts": settings.masks.max_prompts,
        "cpus": cpus,
        "machine": platform.processor() or platform.machine(),
        "same_stores": len({row["stores_digest"] for row in rows}) == 1,
        "variants": rows,
    }
