"""The Ray engine: every stage as a Ray Data job, for folders and buckets too big for one machine.

Each model stage is one job: list (and hash) the inputs, drop the rows whose store is already
complete (one listing of the stage folder), then ``map_batches`` with a callable class that
loads the stage's model once per actor and runs the same per-image function as the local
engine (:func:`ovseg.pipeline.propose_image`, :func:`ovseg.pipeline.embed_image`), writing
each store under its content key with its ``.done`` marker last. Ray retries a failed task
and may run one twice; that rewrites identical bytes under the same names, so results are
exactly-once although execution is at-least-once. An image that cannot be read becomes an
error row (listed under ``skipped`` in the manifest, as with the local engine), never a
failed job. Stages run one after the other, so one model kind holds the GPUs at a time.

Score and select are jobs of plain Ray tasks (no model: the prompt's text vectors are
encoded once, here, and shipped with the tasks); edit is again an actor pool (the painting
model, once per actor). Their per-image functions are the local engine's too
(:func:`ovseg.pipeline.score_photo`, :func:`~ovseg.pipeline.select_photo`,
:func:`~ovseg.pipeline.edit_photo`), reading the cache and writing the results wherever
they live: folders, shared folders or buckets. A result folder is complete when its
``selection.json``/``edit.json`` names the current key (written last), so a rerun redoes
exactly the photos whose key changed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ovseg.config import EngineSettings, Settings
from ovseg.errors import OvsegError
from ovseg.fileio import decode_image, is_url, png_bytes
from ovseg.pipeline import (
    StageReport,
    edit_key,
    edit_photo,
    embed_image,
    embed_key,
    masks_key,
    model_fingerprint,
    previous_record,
    prompt_texts,
    propose_image,
    score_key,
    score_photo,
    select_photo,
    skipped_images,
    text_embeddings,
    write_edit_summary,
    write_select_summary,
)
from ovseg.remote import Folder, OutputFolder, StageFolder, image_name, image_stem, list_image_urls, read_bytes
from ovseg.store import MaskProposals
from ovseg.weights import CLIP, resolve_device

# Environment the actors need to find weights and buckets; forwarded to every worker.
FORWARDED_ENV = ("OVSEG_", "FSSPEC_", "AWS_", "GOOGLE_", "HF_", "HUGGINGFACE_")
RESULT_COLUMNS = ("stem", "key", "status", "error", "seconds", "sizes")


def run_ray(settings: Settings, cache: str, output: str, visualize: bool) -> list[StageReport]:
    """Every stage as a Ray Data job, one after the other; cache and output may be buckets.

    Local paths are made absolute: actors run in their own working folders (and, on a
    cluster, on other machines, where cache and output must be shared folders or buckets).
    """
    connect(settings.engine)
    cache, output = _absolute(cache), _absolute(output)
    settings = dataclasses.replace(settings, images=_absolute(settings.images))
    reports = [ray_masks(settings, cache), ray_embed(settings, cache), ray_score(settings, cache)]
    select, records = ray_select(settings, cache, output, visualize)
    reports += [select, ray_edit(settings, cache, output, records)]
    record_run(cache, output, reports)
    return reports


def _absolute(location: str) -> str:
    return location if is_url(location) else str(Path(location).resolve())


def record_run(cache: str, output: str, reports: list[StageReport]) -> None:
    """The run's records in ``<output>/ray/``: each cache stage's manifest, and ``run.json`` (every stage's numbers).

    They are small and change exactly when some photo's content key or result changes: what
    a DVC stage that submits the cluster run tracks (``ovseg sync <output>/ray data/output/ray``
    brings them next to the DVC project when the output is a bucket).
    """
    records = Folder(f"{output}/ray")
    for stage in ("masks", "embeddings", "scores"):
        manifest = StageFolder(cache, stage).read_json()
        if manifest is not None:
            records.write_json(manifest, f"{stage}.json")
    records.write_json({report.stage: report.record("ray") for report in reports}, "run.json")


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
    _run_actors(MasksWorker, todo, settings, {"cache": cache}, (entries, errors, report))
    if errors and settings.strict:  # photos that could not be decoded are only known once actors read them
        raise OvsegError(next(iter(errors.values())))
    report.skipped = sorted(errors)
    if not entries:
        first = next(iter(errors.values()), "no images")
        raise OvsegError(f"none of the {len(images)} images could be read (first: {first})")
    report.seconds = time.perf_counter() - started
    failed = {keys[name]: reason for name, reason in errors.items() if name in keys}
    run = report.record("ray")
    folder.write_json({"skipped": errors, "failed": failed, "images": entries, "run": run})
    return report


def _run_actors(worker: type, todo: list[dict], settings: Settings, location: dict[str, str], into: tuple) -> None:
    """One Ray Data job: ``todo`` rows through an actor pool of ``worker``; results collected ``into``.

    ``location`` is where the worker reads and writes (``{"cache": ...}`` or ``{"output": ...}``).
    """
    import ray

    if not todo:
        return
    results = (
        ray.data.from_items(todo)
        .map_batches(worker, fn_constructor_kwargs={"settings": settings, **location}, **_actor_args(settings.engine))
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
    _run_actors(EmbedWorker, todo, settings, {"cache": cache}, (entries, errors, report))
    report.seconds = time.perf_counter() - started
    report.skipped = sorted(set(errors) - set(masks.get("skipped", {})))
    folder.write_json({"images": entries, "run": report.record("ray")})
    return report


# --- score and select: plain tasks, no model ------------------------------------------------


def _tasks(rows: list[dict], fn, **kwargs) -> list[dict[str, Any]]:
    """One Ray Data job of plain tasks (no actor, no model): ``fn`` over ``rows`` in small batches."""
    import ray

    if not rows:
        return []
    return (
        ray.data.from_items(rows)
        .map_batches(fn, fn_kwargs=kwargs, batch_size=8, runtime_env={"env_vars": forwarded_env()})
        .take_all()
    )


def _manifest(cache: str, stage: str, before: str) -> dict[str, Any]:
    manifest = StageFolder(cache, stage).read_json()
    if manifest is None:
        raise OvsegError(f"{cache}/{stage}/manifest.json not found: run the {before} stage first")
    return manifest


def ray_score(settings: Settings, cache: str) -> StageReport:
    """The score stage as one Ray Data job: texts encoded once here, each photo scored by a task."""
    started = time.perf_counter()
    report = StageReport("score")
    entries = _manifest(cache, "embeddings", "embed")["images"]
    folder = StageFolder(cache, "scores")
    done, queued, todo = folder.done_keys(), set(), []
    for stem, entry in entries.items():
        entry["scores"] = score_key(settings, entry["embeddings"], settings.prompt)
        entry["prompt"] = settings.prompt.strip()
        if entry["scores"] in done or entry["scores"] in queued:
            report.reused.append(stem)
        else:
            queued.add(entry["scores"])
            todo.append({"stem": stem, "embeddings": entry["embeddings"], "key": entry["scores"]})
    if todo:
        texts = sorted(set(prompt_texts(settings, settings.prompt)))
        vectors, temperature = text_embeddings(settings, cache, settings.embed.model, texts)
        kwargs = {"settings": settings, "cache": cache, "vectors": vectors, "temperature": temperature}
        report.computed = [row["stem"] for row in _tasks(todo, _score_batch, **kwargs)]
    report.seconds = time.perf_counter() - started
    folder.write_json({"prompt": settings.prompt, "images": entries, "run": report.record("ray")})
    return report


def _score_batch(batch: dict[str, Any], settings: Settings, cache: str, vectors: dict, temperature: float) -> dict:
    folders = (StageFolder(cache, "embeddings"), StageFolder(cache, "scores"))
    for embeddings, key in zip(batch["embeddings"], batch["key"], strict=True):
        score_photo(settings, settings.prompt, folders, str(embeddings), str(key), vectors, temperature)
    return {"stem": [str(stem) for stem in batch["stem"]]}


def ray_select(
    settings: Settings, cache: str, output: str, visualize: bool
) -> tuple[StageReport, dict[str, dict[str, Any]]]:
    """The select stage as one Ray Data job: each task writes a photo's selection folder (or finds it done).

    Returns the report and every photo's selection record, from which ``summary.json`` and
    the COCO ``annotations.json`` are written here (and the edit stage takes its masks).
    """
    started = time.perf_counter()
    report = StageReport("select")
    entries = _manifest(cache, "scores", "score")["images"]
    rows = [{"stem": stem, "entry": json.dumps(entry)} for stem, entry in entries.items()]
    kwargs = {"settings": settings, "cache": cache, "output": output, "visualize": visualize}
    results = {row["stem"]: row for row in _tasks(rows, _select_batch, **kwargs)}
    records = {}
    for stem in entries:  # the manifest's order, as the local engine writes them
        records[stem] = json.loads(results[stem]["record"])
        (report.computed if results[stem]["computed"] else report.reused).append(stem)
    write_select_summary(settings, OutputFolder(f"{output}/segment"), records, skipped_images(cache))
    report.seconds = time.perf_counter() - started
    return report, records


def _select_batch(batch: dict[str, Any], settings: Settings, cache: str, output: str, visualize: bool) -> dict:
    folders = (StageFolder(cache, "masks"), StageFolder(cache, "scores"))
    out = OutputFolder(f"{output}/segment")
    result: dict[str, list] = {"stem": [], "record": [], "computed": []}
    for stem, entry in zip(batch["stem"], batch["entry"], strict=True):
        record, computed = select_photo(settings, folders, out, str(stem), json.loads(str(entry)), visualize)
        for name, value in (("stem", str(stem)), ("record", json.dumps(record)), ("computed", computed)):
            result[name].append(value)
    return result


# --- edit: an actor pool around the painting model ------------------------------------------


def ray_edit(settings: Settings, cache: str, output: str, records: dict[str, dict[str, Any]]) -> StageReport:
    """The edit stage as one Ray Data job: photos whose edit is not done go to painting-model actors.

    Which edits are done is read first by plain tasks (each photo's ``edit.json`` key), so a
    rerun with nothing to do starts no actor and loads no model.
    """
    from ovseg.editing import painter_fingerprint, request_for

    started = time.perf_counter()
    report = StageReport("edit")
    out = OutputFolder(f"{output}/edit")
    entries = _manifest(cache, "scores", "score")["images"]
    if settings.mode == "segment":
        write_edit_summary(settings, out, [])
        return report
    request, fingerprint = request_for(settings), painter_fingerprint(settings.edit)
    rows = []
    for stem, entry in entries.items():
        selection = {"key": records[stem]["key"], "merged": records[stem]["merged"]}
        key = edit_key(settings, request, fingerprint, entry["sha256"], selection["key"])
        rows.append({"image": entry["image"], "stem": stem, "key": key, "entry": json.dumps(entry)})
        rows[-1]["selection"] = json.dumps(selection)
    done = {row["stem"] for row in _tasks(rows, _edits_done, output=output) if row["done"]}
    report.reused = [row["stem"] for row in rows if row["stem"] in done]
    errors: dict[str, str] = {}
    _run_actors(
        EditWorker, [r for r in rows if r["stem"] not in done], settings, {"output": output}, (entries, errors, report)
    )
    report.skipped = sorted(errors)
    write_edit_summary(settings, out, list(entries))  # a photo that failed here left ``entries``
    report.seconds = time.perf_counter() - started
    return report


def _edits_done(batch: dict[str, Any], output: str) -> dict[str, list]:
    out = OutputFolder(f"{output}/edit")
    done = []
    for stem, key in zip(batch["stem"], batch["key"], strict=True):
        previous = previous_record(out, f"{stem}/edit.json")
        done.append(previous is not None and previous.get("key") == str(key))
    return {"stem": [str(stem) for stem in batch["stem"]], "done": done}


class EditWorker(_StageWorker):
    """The edit stage's actor: loads the painting model once (SD on a GPU, or OpenCV), then edits each photo."""

    def __init__(self, settings: Settings, output: str) -> None:
        from ovseg.editing import load_painting_model, painter_for, request_for

        _share_cpus(settings)
        self.settings = settings
        self.request = request_for(settings)
        model = load_painting_model(settings.edit, resolve_device(settings.device))
        self.painter = painter_for(model, settings.edit, self.request)
        self.out = OutputFolder(f"{output}/edit")

    def process(self, row: dict[str, str], photo) -> tuple[float, list[int] | None]:
        started = time.perf_counter()
        entry, selection = json.loads(row["entry"]), json.loads(row["selection"])
        edit_photo(
            self.settings, self.request, self.out, row["stem"], entry, selection, row["key"], photo, self._painter
        )
        return time.perf_counter() - started, None

    def _painter(self):
        return self.painter
