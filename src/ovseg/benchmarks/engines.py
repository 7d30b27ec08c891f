"""Throughput per engine: the local engine and Ray Data with 1..N actors, side by side.

Same photos, same settings, one run, each variant into a fresh cache (so every image is
computed), model loading included: what a user sees from `ovseg run` with each engine. By
default the masks stage alone (the expensive one); with ``all_stages`` the whole run, masks
to edit. What the variants write is compared byte for byte, so the report also says whether
the engines agree.
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
from ovseg.pipeline import masks, new_run, select
from ovseg.pipeline.common import run_stages
from ovseg.request import RunRequest
from ovseg.storage.folders import EDIT_RECORD
from ovseg.storage.store import MANIFEST

# Files that name the run's folders or times, not its results: left out of the digest.
NOT_RESULTS = {MANIFEST, select.SUMMARY_FILE, EDIT_RECORD}


def digest(*folders: Path) -> str:
    """One hash over every store and result file (not markers, manifests, timings) under ``folders``."""
    digest = hashlib.sha256()
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.suffix != ".done" and path.name not in NOT_RESULTS:
                digest.update(str(path.relative_to(folder)).encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def run_engine_benchmark(
    settings: Settings,
    request: RunRequest,
    images: list[Path],
    workers: list[int],
    cpus: int,
    log: Callable[[str], None] = print,
    all_stages: bool = False,
) -> dict[str, Any]:
    """Images/s of the masks stage (or of every stage) for the local engine and Ray with each count in ``workers``."""
    import ray

    from ovseg.engines import engine_for, run_pipeline

    folder = Path(tempfile.mkdtemp(prefix="ovseg-engines-"))
    for image in images:  # one folder of the chosen photos, as a user would point --images at
        (folder / image.name).symlink_to(image.resolve())
    request = replace(request, images=str(folder))
    rows = []

    def record(label: str, engine: str, actors: int, seconds: float, root: Path, reports) -> None:
        row = {
            "variant": label,
            "engine": engine,
            "actors": actors,
            "seconds": round(seconds, 2),
            "images_per_s": round(len(images) / seconds, 4),
            "stores_digest": digest(root / "cache" / "masks", *(root / "output" / stage for stage in results)),
            "stage_seconds": {r.stage: round(r.seconds, 2) for r in reports if r.seconds is not None},
        }
        rows.append(row)
        log(f"{label}: {seconds:.1f} s, {row['images_per_s']:.3f} images/s")

    results = ("segment", "edit") if all_stages else ()

    def run(label: str, engine: str, actors: int, settings: Settings) -> None:
        root = Path(tempfile.mkdtemp(prefix=f"ovseg-{label.replace(' ', '')}-"))
        cache, output = str(root / "cache"), str(root / "output")
        started = time.perf_counter()
        run = new_run(settings, request, cache=cache, output=output)
        if all_stages:
            reports = run_pipeline(run)
        else:
            scheduler = engine_for(run)
            reports = run_stages(scheduler.prepare(run), scheduler, [masks.STAGE])
        record(label, engine, actors, time.perf_counter() - started, root, reports)

    run("local", "local", 1, settings)

    started_here = not ray.is_initialized()  # a cluster already joined (a test's) is used as it is
    if started_here:
        ray.init(num_cpus=cpus, num_gpus=0, include_dashboard=False, logging_level="warning")
    try:
        for count in workers:
            engine = replace(settings.engine, kind="ray", concurrency=count, num_cpus=cpus / count, batch_size=1)
            run(f"ray x{count}", "ray", count, replace(settings, engine=engine))
    finally:
        if started_here:
            ray.shutdown()
    local = rows[0]["images_per_s"]
    for row in rows:
        row["throughput_vs_local"] = round(row["images_per_s"] / local, 3)
    return {
        "images": len(images),
        "stages": "all" if all_stages else "masks",
        "model": settings.masks.model,
        "sampling": settings.masks.sampling,
        "max_prompts": settings.masks.max_prompts,
        "cpus": cpus,
        "machine": platform.processor() or platform.machine(),
        "same_stores": len({row["stores_digest"] for row in rows}) == 1,
        "variants": rows,
    }
