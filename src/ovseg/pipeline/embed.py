"""Stage 2, ``embed``: CLIP features for every mask candidate, ``cache/embeddings/<key>.zarr`` (float16).

Independent of the prompt: the key is ``hash(version, masks key, embed settings, CLIP
weights)``, so every new prompt reuses them and only scores anew.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ovseg.config import Settings
from ovseg.errors import OvsegError
from ovseg.masks import finds_by_words
from ovseg.media.fileio import content_key, working_image
from ovseg.pipeline import masks
from ovseg.pipeline.common import Engine, Item, LazyModel, ModelPool, Plan, Result, Run, Stage, StageReport
from ovseg.pipeline.plans import entries_of, record_fields, unique_items, warn_skipped
from ovseg.storage.locations import image_name
from ovseg.storage.store import MaskProposals
from ovseg.weights.registry import CLIP, model_fingerprint

VERSION = "embed-v1"
FOLDER = "embeddings"


@dataclass
class EmbedEntry(masks.MasksEntry):
    """One photo's entry in ``cache/embeddings/manifest.json``: its masks entry plus

    ``embeddings``: the key of its features store, ``cache/embeddings/<embeddings>.zarr``
    (``embeddings``: N x D float16, unit norm, one row per mask candidate). ``clip_model``:
    the CLIP that computed them.
    """

    embeddings: str = ""
    clip_model: str = ""


def embed_key(settings: Settings, masks_key: str, fingerprint: str) -> str:
    """The embeddings store's key: the masks key, embed settings, CLIP weights."""
    return content_key(VERSION, masks_key, settings.section("embed"), fingerprint)


@dataclass
class EmbedItem(Item):
    """A photo whose candidates CLIP is to describe: where it is, and its masks store."""

    image: str = ""
    masks: str = ""


@dataclass
class EmbedState:
    """What ``finish`` needs: the manifest entries, by photo."""

    entries: dict[str, EmbedEntry]


def plan(run: Run, engine: Engine) -> Plan[EmbedState]:
    """Each photo's CLIP features to compute; none with a finder (SAM 3), whose photos pass through as they are."""
    settings = run.settings
    source = entries_of(run.stage_folder(masks.FOLDER).read_json(), masks.FOLDER, "masks")
    if finds_by_words(settings):  # the finder scores its own instances: no CLIP features, no CLIP weights read
        entries = {stem: EmbedEntry(**record_fields(masks.MasksEntry, data)) for stem, data in source.items()}
        return Plan(state=EmbedState(entries))
    fingerprint = model_fingerprint(settings.embed.model, CLIP)
    entries = {}
    for stem, data in source.items():
        entry = EmbedEntry(**record_fields(masks.MasksEntry, data))
        entry.embeddings = embed_key(settings, entry.masks, fingerprint)
        entry.clip_model = settings.embed.model
        entries[stem] = entry
    done = run.stage_folder(FOLDER).done_keys()
    plan = unique_items(entries, "embeddings", done, lambda stem, e: EmbedItem(stem, e.embeddings, e.image, e.masks))
    plan.state = EmbedState(entries)
    return plan


def embed_image(
    settings: Settings, bundle, image: Image.Image, proposals: MaskProposals, mask_attrs: dict, masks_key: str
) -> tuple[dict[str, np.ndarray], dict, dict]:
    """One photo's CLIP features per candidate: the store's arrays, its attributes and the run record."""
    from ovseg.clip.features import mask_embeddings

    started = time.perf_counter()
    work = working_image(image, settings.masks.max_image_side)
    if list(work.size) != mask_attrs["working_size"]:
        work = work.resize(tuple(mask_attrs["working_size"]), Image.Resampling.LANCZOS)
    features = mask_embeddings(bundle, work, proposals.masks, proposals.boxes, settings.embed)
    attrs = {"model": settings.embed.model, "masks": masks_key, "settings": settings.section("embed")}
    return {"embeddings": features.astype(np.float16)}, attrs, {"seconds": round(time.perf_counter() - started, 4)}


def load(run: Run):
    from ovseg.clip.features import load_clip

    return load_clip(run.settings.embed.model, run.device)


def model_key(run: Run) -> str:
    return ModelPool.key("clip", run.settings.embed.model)


def compute(run: Run, shared: None, model: LazyModel, item: EmbedItem) -> Result:
    proposals, mask_attrs = run.stage_folder(masks.FOLDER).proposals(item.masks)
    photo = run.load_photo(item.image)
    arrays, attrs, record = embed_image(run.settings, model.get(), photo, proposals, mask_attrs, item.masks)
    run.stage_folder(FOLDER).publish(item.key, arrays, attrs, {**record, "engine": run.engine})
    return Result(item.stem)


def finish(run: Run, plan: Plan[EmbedState], results: list[Result]) -> StageReport:
    entries = plan.state.entries
    errors = {}
    for result in results:
        if result.error:
            if run.settings.strict:
                raise OvsegError(result.error)
            entry = entries.pop(result.stem)
            errors[image_name(entry.image)] = result.error
            warn_skipped(entry.image, result.error)
    report = plan.report("embed", results, list(errors))
    images = {stem: dataclasses.asdict(entry) for stem, entry in entries.items()}
    manifest = {"images": images, "skipped": errors, "run": report.record(run.engine)}
    run.stage_folder(FOLDER).update_json(manifest, ignore=("run",))
    return report


def describe(run: Run) -> str:
    if finds_by_words(run.settings):
        return "embed (not needed: the finder scores its own instances)"
    return f"embed (CLIP, {run.settings.embed.strategy})"


STAGE = Stage.of(__name__, "embed", cache=FOLDER)
