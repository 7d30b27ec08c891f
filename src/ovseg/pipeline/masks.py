"""Stage 1, ``masks``: mask candidates for every photo, stored as ``cache/masks/<key>.zarr`` (+ a preview).

The key is ``hash(version, image bytes, masks settings, mask weights)``, so a new prompt, a
new CLIP or a new edit never recomputes masks, and a photo seen before under another name
is not computed twice.

A file that cannot be read is skipped with a warning naming it and the reason, and is
listed under ``skipped`` in the manifest (and from there in ``summary.json``), so one
truncated JPEG does not stop a folder of photos, as with SAM's ``amg.py``. With
``strict: true`` (or a single photo) the first unreadable file stops the stage before any
work; when no file can be read at all, the stage fails either way. Photos are decoded while
planning, so a file that cannot be decoded never reaches a model.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from PIL import Image

from ovseg.config import Settings
from ovseg.errors import OvsegError, one_line
from ovseg.masks import finder_name, finds_by_words
from ovseg.media.fileio import (
    DEFAULT_MAX_IMAGE_PIXELS,
    content_key,
    decode_image,
    png_bytes,
    sha256_bytes,
    working_image,
)
from ovseg.media.viz import candidates_preview
from ovseg.pipeline.common import Engine, Item, LazyModel, ModelPool, Plan, Result, Run, Stage, StageReport
from ovseg.pipeline.plans import SourceCheck, unique_items, warn_skipped
from ovseg.storage.folders import StageFolder
from ovseg.storage.locations import is_url, list_photos, read_bytes
from ovseg.storage.store import MaskProposals
from ovseg.weights.registry import SAM3, model_fingerprint

# Bump when the algorithm changes so old cached artifacts are not reused.
VERSION = "masks-v3"  # v3: ONNX masks upsampled in one step; thin-thing sampling settings
FEATURES_VERSION = "finder-features-v1"  # a finder's image features (SAM 3), kept where masks are
FOLDER = "masks"


@dataclass
class MasksEntry:
    """One photo's entry in ``cache/masks/manifest.json`` (under ``images``, by file stem).

    ``image``: where the photo was read (path or URL). ``sha256``: of its bytes. ``masks``:
    the key of its masks store, ``cache/masks/<masks>.zarr``. ``original_size``: the photo's
    (width, height). ``working_size``: the (width, height) masks are stored at (the photo
    resized so its longer side is at most ``masks.max_image_side``).

    The manifest also holds ``skipped`` (file name -> why it could not be read) and ``run``
    (what the run computed, reused and skipped, its seconds and engine).
    """

    image: str
    sha256: str
    masks: str
    original_size: list[int] | None = None
    working_size: list[int] | None = None


@dataclass
class MasksItem(Item):
    """A photo whose mask candidates are to be computed: where it is and its bytes' hash (kept in the store)."""

    image: str = ""
    sha256: str = ""


@dataclass
class MasksResult(Result):
    """A computed photo's sizes, for the manifest: (width, height) as read, and as masks are stored."""

    original_size: list[int] | None = None
    working_size: list[int] | None = None


@dataclass
class MasksState:
    """What ``finish`` needs: the manifest entries, the files that could not be read, each photo's file name."""

    entries: dict[str, MasksEntry]
    errors: dict[str, str]
    files: dict[str, str]


def masks_key(settings: Settings, sha256: str, fingerprint: str) -> str:
    """The masks store's key: image bytes, mask settings, mask weights (every engine names it so).

    With a finder (SAM 3) the store holds its image features instead: the key is the image bytes, the working
    size and the finder's weights, so a new prompt (or any masks setting it does not read) reuses them.
    """
    if finds_by_words(settings):
        return content_key(FEATURES_VERSION, sha256, settings.masks.max_image_side, finder_name(settings), fingerprint)
    return content_key(VERSION, sha256, settings.section("masks"), fingerprint)


def weights_fingerprint(settings: Settings) -> str:
    """The fingerprint of the weights the masks stage runs: the finder's, or the mask model's."""
    if finds_by_words(settings):
        return model_fingerprint(settings.find.sam3_model, SAM3)
    return model_fingerprint(settings.masks.model, None)


def check_photo(photo: SourceCheck, settings: Settings, fingerprint: str, done: frozenset[str]) -> SourceCheck:
    """Hash one photo where it lives and, unless its store is done, make sure it decodes (a plain task)."""
    try:
        data = read_bytes(photo.location)
    except Exception as exc:  # noqa: BLE001 - whatever the filesystem says, the photo is skipped with it
        return dataclasses.replace(photo, error=f"cannot read {photo.location}: {one_line(exc)}")
    sha = sha256_bytes(data)
    key = masks_key(settings, sha, fingerprint)
    if key not in done:
        try:
            decode_image(data, photo.location, settings.max_image_pixels or DEFAULT_MAX_IMAGE_PIXELS)
        except OvsegError as exc:
            return dataclasses.replace(photo, error=str(exc))
    return dataclasses.replace(photo, sha256=sha, key=key, error="")


def plan(run: Run, engine: Engine) -> Plan[MasksState]:
    started = time.perf_counter()
    settings = run.settings
    photos = list_photos(run.request.images, run.request.recursive)
    _note_subfolders(run)
    folder = run.stage_folder(FOLDER)
    done = folder.done_keys()
    check = partial(check_photo, settings=settings, fingerprint=weights_fingerprint(settings), done=frozenset(done))
    checks = [SourceCheck(photo.name, photo.location) for photo in photos]
    rows: dict[str, SourceCheck] = {row.stem: row for row in engine.map(check, checks, "read")}
    errors: dict[str, str] = {}
    for photo in photos:
        row = rows[photo.name]
        if row.error:
            if settings.strict or len(photos) == 1:
                raise OvsegError(row.error)
            errors[photo.file] = row.error
            warn_skipped(photo.location, row.error)
    if len(errors) == len(photos):
        raise OvsegError(f"none of the {len(photos)} images could be read (first: {next(iter(errors.values()))})")
    previous = (folder.read_json() or {}).get("images", {})
    entries: dict[str, MasksEntry] = {}
    for photo in photos:
        row = rows[photo.name]
        if not row.error:
            entry = MasksEntry(row.location, row.sha256, row.key)
            old = previous.get(photo.name, {})
            if old.get("masks") == row.key:
                entry.original_size, entry.working_size = old.get("original_size"), old.get("working_size")
            entries[photo.name] = entry
    plan = unique_items(entries, "masks", done, lambda stem, e: MasksItem(stem, e.masks, e.image, e.sha256))
    plan.state = MasksState(entries, errors, {p.name: p.file for p in photos})
    plan.started = started
    return plan


def _note_subfolders(run: Run) -> None:
    """Say so when a folder has sub-folders that are not read (without ``recursive``)."""
    images = run.request.images
    if run.request.recursive or not isinstance(images, str) or is_url(images) or not Path(images).is_dir():
        return
    skipped = [p.name for p in Path(images).iterdir() if p.is_dir() and not p.name.startswith(".")]
    if skipped:
        print(
            f"ovseg: note: {len(skipped)} sub-folder(s) of {images} not read ({', '.join(sorted(skipped)[:3])}"
            f"{', ...' if len(skipped) > 3 else ''}); --recursive (params recursive: true) reads them too",
            file=sys.stderr,
        )


def propose_image(settings: Settings, image: Image.Image, generator) -> tuple[MaskProposals, dict, Image.Image, dict]:
    """One photo's mask candidates: the store's arrays, its attributes, the preview picture and the run record.

    The attributes say what the result depends on (sizes, model, settings, decoder calls);
    the run record (seconds) goes into the completion marker, so the store itself is the
    same bytes on every run and engine.
    """
    started = time.perf_counter()
    work = working_image(image, settings.masks.max_image_side)
    proposals, stats = generator.generate(work)
    stats = dict(stats)
    seconds = stats.pop("seconds", None)
    timings = {name: stats.pop(name) for name in [k for k in stats if k.endswith("_s")]}
    attrs = {
        "original_size": list(image.size),
        "working_size": list(work.size),
        "model": settings.masks.model,
        "settings": settings.section("masks"),
        "stats": stats,
    }
    record = {"seconds": round(seconds if seconds is not None else time.perf_counter() - started, 4), **timings}
    return proposals, attrs, candidates_preview(work, proposals.masks), record


def encode_image(settings: Settings, image: Image.Image, finder) -> tuple[dict, dict, dict]:
    """One photo's finder features (SAM 3's image encoding): the store's arrays, its attributes, the run record.

    No preview: there are no candidates until words are given (the score stage's store has them).
    """
    started = time.perf_counter()
    work = working_image(image, settings.masks.max_image_side)
    arrays, extra = finder.encode(work)
    attrs = {
        "original_size": list(image.size),
        "working_size": list(work.size),
        "finder": finder.name,
        "model": settings.find.sam3_model,
        **extra,
    }
    return arrays, attrs, {"seconds": round(time.perf_counter() - started, 4)}


def load(run: Run):
    from ovseg.masks import load_finder, load_mask_generator

    if finds_by_words(run.settings):
        return load_finder(run.settings, run.device)
    return load_mask_generator(run.settings.masks, run.device)


def finder_key(settings: Settings) -> str:
    """The pool key of the finder (SAM 3): the masks stage encodes with it and the score stage prompts it, so
    a kept pool (the API, the page) loads it once for both."""
    return ModelPool.key("finder", settings.section("find"))


def model_key(run: Run) -> str:
    if finds_by_words(run.settings):
        return finder_key(run.settings)
    return ModelPool.key("masks", run.settings.section("masks"))


def compute(run: Run, shared: None, model: LazyModel, item: MasksItem) -> MasksResult:
    photo = run.load_photo(item.image)
    if finds_by_words(run.settings):
        arrays, attrs, record = encode_image(run.settings, photo, model.get())
        preview = None
    else:
        proposals, attrs, picture, record = propose_image(run.settings, photo, model.get())
        arrays, preview = proposals.arrays(), png_bytes(picture)
    run.stage_folder(FOLDER).publish(
        item.key, arrays, {"sha256": item.sha256, **attrs}, {**record, "engine": run.engine}, preview
    )
    return MasksResult(item.stem, original_size=attrs["original_size"], working_size=attrs["working_size"])


def finish(run: Run, plan: Plan[MasksState], results: list[Result]) -> StageReport:
    entries = plan.state.entries
    errors = dict(plan.state.errors)
    for result in results:
        entry = entries[result.stem]
        if result.error:  # read fine while planning, failed in the worker: skipped the same way
            if run.settings.strict:
                raise OvsegError(result.error)
            errors[plan.state.files[result.stem]] = result.error
            warn_skipped(entry.image, result.error)
            del entries[result.stem]
            continue
        if isinstance(result, MasksResult):  # reused: a store another run finished; its sizes are read below
            entry.original_size, entry.working_size = result.original_size, result.working_size
    if not entries:
        raise OvsegError(f"none of the images could be read (first: {next(iter(errors.values()), 'no images')})")
    store = run.stage_folder(FOLDER)
    for entry in entries.values():
        if entry.working_size is None:  # reused from a store this manifest did not list yet
            attrs = store.read_store(entry.masks, names=[])[1]
            entry.original_size, entry.working_size = attrs["original_size"], attrs["working_size"]
    report = plan.report("masks", results, list(errors))
    images = {stem: dataclasses.asdict(entry) for stem, entry in entries.items()}
    store.update_json({"images": images, "skipped": errors, "run": report.record(run.engine)}, ignore=("run",))
    return report


def skipped_images(cache: str) -> dict[str, str]:
    """File name -> reason, for the files the masks stage could not read in its latest run (cache: folder or URL)."""
    return (StageFolder(str(cache), FOLDER).read_json() or {}).get("skipped", {})


def describe(run: Run) -> str:
    if finds_by_words(run.settings):
        return f"masks ({finder_name(run.settings)}: image features, words come later)"
    return f"masks ({run.settings.masks.model})"


def prompt_engine(run: Run):
    """The mask engine for prompted masks (clicks, boxes): the generator the masks stage pooled, when it is ours.

    Needs the run's pool, so the image encoded for everything mode is encoded once for both.
    """
    from ovseg.masks import load_prompt_model
    from ovseg.masks.engine import MaskEngine

    if run.pool is None:
        raise OvsegError("prompted masks need a model pool (the Python API keeps one)")
    generator = run.pool.get(model_key(run), lambda: load(run))
    if isinstance(generator, MaskEngine):
        return generator
    model = run.pool.get(
        f"prompt:{run.settings.masks.model}", lambda: load_prompt_model(run.settings.masks.model, run.device)
    )
    return MaskEngine(model, run.settings.masks)


STAGE = Stage.of(__name__, "masks", cache=FOLDER)
