"""The Ray engine: the model stages as Ray Data jobs, for folders and buckets too big for one machine.

Each model stage is one job: list (and hash) the inputs, drop the rows whose store is already
complete (one listing of the stage folder), then ``map_batches`` with a callable class that
loads the stage's model once per actor and runs the same per-image function as the local
engine (:func:`ovseg.pipeline.propose_image`, :func:`ovseg.pipeline.embed_image`), writing
each store under its content key with its ``.done`` marker last. Ray retries a failed task
and may run one twice; that rewrites identical bytes under the same names, so results are
exactly-once although execution is at-least-once. An image that cannot be read becomes an
error row (listed under ``skipped`` in the manifest, as with the local engine), never a
failed job. Stages run one after the other, so one model kind holds the GPUs at a time.

Scoring, selection and editing then run on the driver with the local stage functions when
the cache is a local (or shared) folder; with a bucket cache the run stops after the model
stages, whose stores are the expensive, reusable part (sync the cache down to go on).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ovseg.config import EngineSettings, Settings
from ovseg.errors import OvsegError
from ovseg.fileio import decode_image, is_url, png_bytes, write_json
from ovseg.pipeline import (
    Paths,
    StageReport,
    embed_image,
    embed_key,
    masks_key,
    model_fingerprint,
    propose_image,
    run_edit,
    run_score,
    run_select,
)
from ovseg.remote import StageFolder, image_name, image_stem, list_image_urls, read_bytes
from ovseg.store import MaskProposals
from ovseg.weights import CLIP, resolve_device

# Environment the actors need to find weights and buckets; forwarded to every worker.
FORWARDED_ENV = ("OVSEG_", "FSSPEC_", "AWS_", "GOOGLE_", "HF_", "HUGGINGFACE_")
RESULT_COLUMNS = ("stem", "key", "status", "error", "seconds", "sizes")


def run_ray(settings: Settings, cache: str, output: Path, visualize: bool) -> list[StageReport]:
    """Masks and embed as Ray Data jobs, then (local cache) score, select and edit here.

    Local paths are made absolute: actors run in their own working folders (and, on a
    cluster, on other machines, where the cache must be a shared folder or a bucket).
    """
    connect(settings.engine)
    if not is_url(cache):
        cache = str(Path(cache).resolve())
    if not is_url(settings.images):
        settings = dataclasses.replace(settings, images=str(Path(settings.images).resolve()))
    reports = [ray_masks(settings, cache), ray_embed(settings, cache)]
    record_locally(cache, output)
    if is_url(cache):
        print(
            f"ovseg: masks and CLIP features are in {cache}; score/select/edit read a local cache: "
            f"sync it down (e.g. `aws s3 sync {cache} cache`) and run `ovseg run` there",
            file=sys.stderr,
        )
        return reports
    paths = Paths(cache=Path(cache), output=output)
    return [
        *reports,
        run_score(settings, paths),
        run_select(settings, paths, visualize=visualize, prune=False),
        run_edit(settings, paths, prune=False),
    ]


def record_locally(cache: str, output: Path) -> None:
    """Copy the model stages' manifests (keys per image, errors, the run's summary) to ``<output>/ray/``.

    With a bucket cache these small files are what a DVC stage that submits the cluster run
    can track as its outputs: they change exactly when some image's content key changes.
    """
    for stage in ("masks", "embeddings"):
        manifest = StageFolder(cache, stage).read_json()
        if manifest is not None:
            write_json(Path(output) / "ray" / f"{stage}.json", manifest)


def connect(engine: EngineSettings) -> None:
    """Join the cluster at ``engine.address``, or start a local one (this machine's CPUs/GPUs)."""
    try:
        import ray
    except ImportError:
        raise OvsegError('the Ray engine needs the ray extra: pip install -e ".[ray]"') from None
    if ray.is_initialized():
        return
    try:
        ray.init(address=engine.address, runtime_env={"env_vars": forwarded_env()}, logging_level="warning")
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise OvsegError(f"cannot reach the Ray cluster at {engine.address!r}: {exc}") from None


def _share_cpus(settings: Settings) -> None:
    """Size this actor's thread pools to its CPU share (torch, and onnxruntime via OMP_NUM_THREADS)."""
    import torch

    threads = max(1, int(settings.engine.num_cpus))
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)


def forwarded_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV)}


def _actor_args(engine: EngineSettings) -> dict[str, Any]:
    """``map_batches`` arguments for a model stage: an actor pool, its resources and batch size."""
    from ray.data import ActorPoolStrategy

    return {
        "compute": ActorPoolStrategy(size=engine.concurrency),
        "num_gpus": engine.num_gpus,
        "num_cpus": engine.num_cpus,
        "batch_size": engine.batch_size,
        "runtime_env": {"env_vars": forwarded_env()},
    }


# --- masks ----------------------------------------------------------------------------------


def _hash_batch(batch: dict[str, Any], settings: Settings, fingerprint: str) -> dict[str, list]:
    """Content keys for a batch of images (bytes hashed where they live); unreadable ones get an error."""
    import hashlib

    out: dict[str, list] = {"image": [], "stem": [], "sha256": [], "key": [], "error": []}
    for image, stem in zip(batch["image"], batch["stem"], strict=True):
        sha, key, error = "", "", ""
        try:
            sha = hashlib.sha256(read_bytes(str(image))).hexdigest()
            key = masks_key(settings, sha, fingerprint)
        except OSError as exc:
            error = f"cannot read {image}: {exc}"
        for name, value in (("image", str(image)), ("stem", str(stem)), ("sha256", sha), ("key", key)):
            out[name].append(value)
        out["error"].append(error)
    return out


class _StageWorker:
    """A Ray actor of a model stage: the model loads once in ``__init__``; each row is one photo.

    A photo that cannot be read becomes an error row; everything else a subclass's
    :meth:`process` does per photo, writing its store, and returning its seconds and sizes.
    """

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        out: dict[str, list] = {name: [] for name in RESULT_COLUMNS}
        for values in zip(*batch.values(), strict=True):
            row = {name: str(value) for name, value in zip(batch, values, strict=True)}
            try:
                photo = decode_image(read_bytes(row["image"]), row["image"])
            except (OvsegError, OSError) as exc:
                _row(out, row["stem"], row["key"], "error", str(exc))
                continue
            seconds, sizes = self.process(row, photo)
            _row(out, row["stem"], row["key"], "computed", "", seconds, sizes)
        return out

    def process(self, row: dict[str, str], photo) -> tuple[float, list[int] | None]:
        raise NotImplementedError


class MasksWorker(_StageWorker):
    """The masks stage's actor: loads the mask model once, then proposes masks per photo."""

    def __init__(self, settings: Settings, cache: str) -> None:
        from ovseg.masks import load_mask_generator

        _share_cpus(settings)
        self.settings = settings
        self.folder = StageFolder(cache, "masks")
        self.generator = load_mask_generator(settings.masks, resolve_device(settings.device))

    def process(self, row: dict[str, str], photo) -> tuple[float, list[int] | None]:
        proposals, attrs, preview, record = propose_image(self.settings, photo, self.generator)
        self.folder.publish(
            row["key"],
            proposals.arrays(),
            {"sha256": row["sha256"], **attrs},
            {**record, "engine": "ray"},
            {f"{row['key']}.candidates.png": png_bytes(preview)},
        )
        return record["seconds"], [*attrs["original_size"], *attrs["working_size"]]


def _row(out: dict[str, list], stem, key, status: str, error: str, seconds: float = 0.0, sizes=None) -> None:
    for name, value in zip(
        RESULT_COLUMNS, (str(stem), str(key), status, error, float(seconds), list(sizes or [0, 0, 0, 0])), strict=True
    ):
        out[name].append(value)


def ray_masks(settings: Settings, cache: str) -> StageReport:
    """The masks stage as one Ray Data job; writes ``<cache>/masks/manifest.json`` like the local engine."""
    import ray

    started = time.perf_counter()
    report = StageReport("masks")
    folder = StageFolder(cache, "masks")
    images = list_image_urls(settings.images)
    fingerprint = model_fingerprint(settings.masks.model, None)
    listed = ray.data.from_items([{"image": u, "stem": image_stem(u)} for u in images])
    hashed = listed.map_batches(
        _hash_batch,
        fn_kwargs={"settings": settings, "fingerprint": fingerprint},
        batch_size=16,
        runtime_env={"env_vars": forwarded_env()},
    ).take_all()
    by_stem = {row["stem"]: row for row in hashed}
    errors = {image_name(row["image"]): row["error"] for row in hashed if row["error"]}
    if errors and settings.strict:
        raise OvsegError(next(iter(errors.values())))
    done = folder.done_keys()
    manifest = folder.read_json() or {}
    previous = manifest.get("images", {})
    # Bytes that failed to decode fail again: remembered by key, so a rerun starts no actor for them.
    failed_before, keys = manifest.get("failed", {}), {}
    entries: dict[str, dict[str, Any]] = {}
    todo, queued = [], set()
    for image in images:
        row = by_stem[image_stem(image)]
        if row["error"]:
            continue
        name = image_name(row["image"])
        keys[name] = row["key"]
        if row["key"] in failed_before:
            errors[name] = failed_before[row["key"]]
            print(f"ovseg: warning: skipping {name}: {errors[name]}", file=sys.stderr)
            continue
        entry = {"image": row["image"], "sha256": row["sha256"], "masks": row["key"]}
        old = previous.get(row["stem"], {})
        if old.get("masks") == row["key"]:
            entry.update({k: old[k] for k in ("original_size", "working_size") if k in old})
        entries[row["stem"]] = entry
        if row["key"] in done or row["key"] in queued:  # done, or the same picture under another name
            report.reused.append(row["stem"])
        else:
            queued.add(row["key"])
            todo.append({k: row[k] for k in ("image", "stem", "sha256", "key")})
    _run_actors(MasksWorker, todo, settings, cache, (entries, errors, report))
    if errors and settings.strict:  # photos that could not be decoded are only known once actors read them
        raise OvsegError(next(iter(errors.values())))
    report.skipped = sorted(errors)
    if not entries:
        first = next(iter(errors.values()), "no images")
        raise OvsegError(f"none of the {len(images)} images could be read (first: {first})")
    report.seconds = time.perf_counter() - started
    failed = {keys[name]: reason for name, reason in errors.items() if name in keys}
    run = _run_record(report, len(images))
    folder.write_json({"skipped": errors, "failed": failed, "images": entries, "run": run})
    return report


def _run_actors(worker: type, todo: list[dict], settings: Settings, cache: str, into: tuple) -> None:
    """One Ray Data job: ``todo`` rows through an actor pool of ``worker``; results collected ``into``."""
    import ray

    if not todo:
        return
    results = (
        ray.data.from_items(todo)
        .map_batches(
            worker, fn_constructor_kwargs={"settings": settings, "cache": cache}, **_actor_args(settings.engine)
        )
        .take_all()
    )
    for result in results:
        _collect(result, *into)


def _collect(result: dict[str, Any], entries: dict, errors: dict, report: StageReport) -> None:
    stem = result["stem"]
    if result["status"] == "error":
        name = image_name(entries[stem]["image"])
        errors[name] = result["error"]
        entries.pop(stem, None)
        print(f"ovseg: warning: skipping {name}: {result['error']}", file=sys.stderr)
        return
    report.computed.append(stem)
    sizes = [int(v) for v in result["sizes"]]
    if any(sizes):
        entries[stem]["original_size"], entries[stem]["working_size"] = sizes[:2], sizes[2:]


def _run_record(report: StageReport, images: int) -> dict[str, Any]:
    """The stage's summary line as data: images, computed, reused, errors, images/s."""
    seconds = report.seconds or 0.0
    return {
        "engine": "ray",
        "images": images,
        "computed": len(report.computed),
        "reused": len(report.reused),
        "errors": len(report.skipped),
        "seconds": round(seconds, 3),
        "images_per_s": round(len(report.computed) / seconds, 4) if seconds and report.computed else None,
    }


# --- embed ----------------------------------------------------------------------------------


class EmbedWorker(_StageWorker):
    """The embed stage's actor: loads CLIP once, then embeds every candidate of each photo."""

    def __init__(self, settings: Settings, cache: str) -> None:
        from ovseg.clip_features import load_clip

        _share_cpus(settings)
        self.settings = settings
        self.masks = StageFolder(cache, "masks")
        self.folder = StageFolder(cache, "embeddings")
        self.bundle = load_clip(settings.embed.model, resolve_device(settings.device))

    def process(self, row: dict[str, str], photo) -> tuple[float, list[int] | None]:
        with tempfile.TemporaryDirectory(prefix="ovseg-masks-") as scratch:
            proposals, mask_attrs = MaskProposals.load(self.masks.fetch_store(row["masks"], Path(scratch)))
        arrays, attrs, record = embed_image(self.settings, self.bundle, photo, proposals, mask_attrs, row["masks"])
        self.folder.publish(row["key"], arrays, attrs, {**record, "engine": "ray"})
        return record["seconds"], None


def ray_embed(settings: Settings, cache: str) -> StageReport:
    """The embed stage as one Ray Data job over the masks manifest; writes the embeddings manifest."""

    started = time.perf_counter()
    report = StageReport("embed")
    masks = StageFolder(cache, "masks").read_json()
    if masks is None:
        raise OvsegError(f"{cache}/masks/manifest.json not found: run the masks stage first")
    entries, errors = masks["images"], dict(masks.get("skipped", {}))
    folder = StageFolder(cache, "embeddings")
    fingerprint = model_fingerprint(settings.embed.model, CLIP)
    done = folder.done_keys()
    todo, queued = [], set()
    for stem, entry in entries.items():
        entry["embeddings"] = embed_key(settings, entry["masks"], fingerprint)
        entry["clip_model"] = settings.embed.model
        if entry["embeddings"] in done or entry["embeddings"] in queued:
            report.reused.append(stem)
        else:
            queued.add(entry["embeddings"])
            todo.append({"image": entry["image"], "stem": stem, "masks": entry["masks"], "key": entry["embeddings"]})
    _run_actors(EmbedWorker, todo, settings, cache, (entries, errors, report))
    report.seconds = time.perf_counter() - started
    report.skipped = sorted(set(errors) - set(masks.get("skipped", {})))
    folder.write_json({"images": entries, "run": _run_record(report, len(entries))})
    return report
