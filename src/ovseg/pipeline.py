"""The stage functions: what each DVC stage (and `ovseg run`) does for a batch of images.

Each stage reads the previous stage's manifest (image name -> content keys), computes
only the per-image artifacts whose key is not on disk yet, loads its one heavy model
only if there is something to compute, frees it, and writes its own manifest.

Content keys chain: masks = hash(image bytes, mask settings, SAM 2 model);
embeddings = hash(masks key, embed settings, CLIP model); scores = hash(embeddings
key, prompt, score settings). So a new prompt reuses every mask and embedding, and a
new image computes only that image.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from ovseg import rle
from ovseg.coco import coco_annotations
from ovseg.config import Settings
from ovseg.errors import OvsegError
from ovseg.fileio import (
    content_key,
    list_images,
    load_image,
    mask_image,
    save_png,
    sha256_file,
    working_image,
    write_json,
)
from ovseg.remote import OutputFolder, StageFolder
from ovseg.selection import Selection, select_masks
from ovseg.store import (
    MaskProposals,
    is_complete,
    load_manifest,
    read_arrays,
    save_manifest,
    store_path,
    write_arrays,
    write_complete,
)
from ovseg.viz import candidates_preview, overlay, resize_mask, side_by_side
from ovseg.weights import CLIP, free_accelerator_memory, resolve_device, resolve_mask_model, resolve_model_dir

# Bump when an algorithm changes so old cached artifacts are not reused.
MASKS_VERSION = "masks-v2"
EMBED_VERSION = "embed-v1"
SCORE_VERSION = "score-v1"
TEXT_VERSION = "text-v1"
SELECT_VERSION = "select-v1"
EDIT_VERSION = "edit-v1"


@dataclass(frozen=True)
class Paths:
    """Where stages keep their artifacts; tests and evaluation point these elsewhere."""

    cache: Path = Path("cache")
    output: Path = Path("data/output")

    @property
    def masks(self) -> Path:
        return self.cache / "masks"

    @property
    def embeddings(self) -> Path:
        return self.cache / "embeddings"

    @property
    def scores(self) -> Path:
        return self.cache / "scores"

    @property
    def text(self) -> Path:
        return self.cache / "text"

    @property
    def segment(self) -> Path:
        return self.output / "segment"

    @property
    def edit(self) -> Path:
        return self.output / "edit"


@dataclass
class StageReport:
    """What a stage did, for logs and tests: which images it computed and which it reused."""

    stage: str
    computed: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: float | None = None  # wall time, when the engine measured it (images/s in the summary)

    def line(self) -> str:
        line = f"{self.stage}: computed {len(self.computed)}, reused {len(self.reused)} from cache"
        line += f", skipped {len(self.skipped)} unreadable" if self.skipped else ""
        if self.seconds and self.computed:
            line += f" ({self.seconds:.1f} s, {len(self.computed) / self.seconds:.2f} images/s computed)"
        return line

    def record(self, engine: str) -> dict[str, Any]:
        """The summary line as data (images, computed, reused, errors, seconds, images/s) for manifests."""
        seconds = self.seconds or 0.0
        return {
            "engine": engine,
            "images": len(self.computed) + len(self.reused) + len(self.skipped),
            "computed": len(self.computed),
            "reused": len(self.reused),
            "errors": len(self.skipped),
            "seconds": round(seconds, 3),
            "images_per_s": round(len(self.computed) / seconds, 4) if seconds and self.computed else None,
        }


class ModelPool:
    """Models kept loaded between calls, for faces that serve many requests (the Python API).

    Without a pool each stage loads its one model, uses it and frees it (the DAG's rule:
    one heavy model in memory at a time); with one, a model loads on first use and stays
    until :meth:`drop` (the API drops the diffusion model after an edit on a small GPU).
    """

    def __init__(self) -> None:
        self._models: dict[str, Any] = {}

    @staticmethod
    def key(kind: str, settings: Any) -> str:
        """The one naming of a pooled model: the stages and the API must find the same entry."""
        return f"{kind}:{content_key(settings)}"

    def get(self, key: str, load: Callable[[], Any]) -> Any:
        if key not in self._models:
            self._models[key] = load()
        return self._models[key]

    def drop(self, kind: str) -> None:
        for key in [k for k in self._models if k.startswith(f"{kind}:")]:
            del self._models[key]
        free_accelerator_memory()


@contextlib.contextmanager
def _model(pool: ModelPool | None, kind: str, settings: Any, load: Callable[[], Any]) -> Iterator[Any]:
    """The model for ``kind``: from the pool (kept), or loaded here and freed afterwards."""
    if pool is not None:
        yield pool.get(ModelPool.key(kind, settings), load)
        return
    model = load()
    try:
        yield model
    finally:
        del model
        free_accelerator_memory()


def pooled_mask_engine(settings: Settings, pool: ModelPool):
    """The mask engine for prompted masks: the same object the masks stage used, when it is ours."""
    from ovseg.masks import MaskEngine, load_mask_generator, load_prompt_model

    device = resolve_device(settings.device)
    generator = pool.get(
        ModelPool.key("masks", settings.section("masks")), lambda: load_mask_generator(settings.masks, device)
    )
    if isinstance(generator, MaskEngine):
        return generator
    model = pool.get(f"prompt:{settings.masks.model}", lambda: load_prompt_model(settings.masks.model, device))
    return MaskEngine(model, settings.masks)


def model_fingerprint(name: str, kind: str | None) -> str:
    """Name plus file sizes of the weights, so swapping the files under a name invalidates caches.

    ``kind`` None: a mask model, whose kind (SAM 2 or ONNX) its files tell.
    """
    folder = resolve_mask_model(name)[0] if kind is None else resolve_model_dir(name, kind)
    sizes = sorted((p.name, p.stat().st_size) for p in folder.rglob("*") if p.is_file())
    return content_key(name, sizes)


def masks_key(settings: Settings, sha256: str, fingerprint: str) -> str:
    """The masks store's key: image bytes, mask settings, mask weights (every engine names it so)."""
    return content_key(MASKS_VERSION, sha256, settings.section("masks"), fingerprint)


def embed_key(settings: Settings, masks: str, fingerprint: str) -> str:
    """The embeddings store's key: the masks key, embed settings, CLIP weights."""
    return content_key(EMBED_VERSION, masks, settings.section("embed"), fingerprint)


def _store(folder: Path, key: str) -> Path:
    return store_path(folder, key)


def run_masks(settings: Settings, images: list[Path], paths: Paths, pool: ModelPool | None = None) -> StageReport:
    """Stage 1: mask candidates for every image -> ``cache/masks/<key>.zarr`` (+ preview PNG).

    A file that cannot be read is skipped with a warning naming it and the reason, and is
    listed under ``skipped`` in the manifest (and from there in ``summary.json``), so one
    truncated JPEG does not stop a folder of photos, as with SAM's ``amg.py``. With
    ``strict: true`` the first unreadable file stops the stage before any work; when no
    file can be read at all, the stage fails either way.
    """
    report = StageReport("masks")
    fingerprint = model_fingerprint(settings.masks.model, None)
    entries, todo, skipped = {}, [], {}
    for image_path in images:
        try:
            sha = sha256_file(image_path)
            key = masks_key(settings, sha, fingerprint)
            if not is_complete(paths.masks, key):
                load_image(image_path)  # a store exists only for readable content; decode the rest first
        except (OvsegError, OSError) as exc:
            if settings.strict or len(images) == 1:
                raise OvsegError(
                    str(exc) if isinstance(exc, OvsegError) else f"cannot read {image_path}: {exc}"
                ) from None
            skipped[image_path.name] = str(exc)
            report.skipped.append(image_path.name)
            print(f"ovseg: warning: skipping {image_path}: {exc}", file=sys.stderr)
            continue
        entries[image_path.stem] = {"image": str(image_path), "sha256": sha, "masks": key}
        (report.reused if is_complete(paths.masks, key) else todo).append(image_path.stem)
    if not entries:
        first = next(iter(skipped.values()), "no images")
        raise OvsegError(f"none of the {len(images)} images could be read (first: {first})")
    if todo:
        from ovseg.masks import load_mask_generator

        device = resolve_device(settings.device)
        loader = lambda: load_mask_generator(settings.masks, device)  # noqa: E731
        with _model(pool, "masks", settings.section("masks"), loader) as generator:
            _propose_all(settings, paths, entries, todo, generator, report)
    for entry in entries.values():
        _, attrs = read_arrays(_store(paths.masks, entry["masks"]), names=[])
        entry["original_size"], entry["working_size"] = attrs["original_size"], attrs["working_size"]
    save_manifest(paths.masks, entries, skipped=skipped)
    return report


def propose_image(settings: Settings, image: Image.Image, generator) -> tuple[MaskProposals, dict, Image.Image, dict]:
    """One photo's mask candidates: the per-image work of the masks stage, for every engine.

    Returns the proposals, the store's attributes (what the result depends on: sizes, model,
    settings, decoder calls), the preview picture, and the run record (seconds), which goes
    into the completion marker so the store itself is the same bytes on every run.
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


def _propose_all(settings: Settings, paths: Paths, entries: dict, todo: list[str], generator, report) -> None:
    for stem in tqdm(todo, desc=f"masks ({settings.masks.model})", unit="image"):
        entry = entries[stem]
        proposals, attrs, preview, record = propose_image(settings, load_image(entry["image"]), generator)
        attrs = {"sha256": entry["sha256"], **attrs}
        save_png(paths.masks / f"{entry['masks']}.candidates.png", preview)
        write_complete(paths.masks, entry["masks"], proposals.arrays(), attrs, {**record, "engine": "local"})
        report.computed.append(stem)


def run_embed(settings: Settings, paths: Paths, pool: ModelPool | None = None) -> StageReport:
    """Stage 2: CLIP features for every candidate -> ``cache/embeddings/<key>.zarr`` (float16)."""
    report = StageReport("embed")
    entries = load_manifest(paths.masks)
    fingerprint = model_fingerprint(settings.embed.model, CLIP)
    todo = []
    for stem, entry in entries.items():
        entry["embeddings"] = embed_key(settings, entry["masks"], fingerprint)
        entry["clip_model"] = settings.embed.model
        (report.reused if is_complete(paths.embeddings, entry["embeddings"]) else todo).append(stem)
    if todo:
        from ovseg.clip_features import load_clip

        device = resolve_device(settings.device)
        with _model(pool, "clip", settings.embed.model, lambda: load_clip(settings.embed.model, device)) as bundle:
            for stem in tqdm(todo, desc=f"embed (CLIP, {settings.embed.strategy})", unit="image"):
                entry = entries[stem]
                proposals, attrs = MaskProposals.load(_store(paths.masks, entry["masks"]))
                arrays, attrs, record = embed_image(
                    settings, bundle, load_image(entry["image"]), proposals, attrs, entry["masks"]
                )
                write_complete(paths.embeddings, entry["embeddings"], arrays, attrs, {**record, "engine": "local"})
                report.computed.append(stem)
    save_manifest(paths.embeddings, entries)
    return report


def embed_image(
    settings: Settings, bundle, image: Image.Image, proposals: MaskProposals, mask_attrs: dict, masks_key: str
) -> tuple[dict[str, np.ndarray], dict, dict]:
    """One photo's CLIP features per candidate: the per-image work of the embed stage, for every engine."""
    from ovseg.clip_features import mask_embeddings

    started = time.perf_counter()
    work = working_image(image, settings.masks.max_image_side)
    if list(work.size) != mask_attrs["working_size"]:
        work = work.resize(tuple(mask_attrs["working_size"]), Image.Resampling.LANCZOS)
    features = mask_embeddings(bundle, work, proposals.masks, proposals.boxes, settings.embed)
    attrs = {"model": settings.embed.model, "masks": masks_key, "settings": settings.section("embed")}
    return {"embeddings": features.astype(np.float16)}, attrs, {"seconds": round(time.perf_counter() - started, 4)}


def score_key(settings: Settings, embeddings: str, prompt: str) -> str:
    """The scores store's key: the embeddings key, the prompt, score settings (every engine names it so)."""
    return content_key(SCORE_VERSION, embeddings, prompt.strip(), settings.section("score"))


def prompt_texts(settings: Settings, prompt: str) -> list[str]:
    """Every text a prompt is scored with: its synonyms and the negatives that are not the prompt itself."""
    from ovseg.scoring import negatives_for, prompt_synonyms

    return prompt_synonyms(prompt) + negatives_for(prompt, settings.score.negatives)


def score_store(
    settings: Settings, prompt: str, features: np.ndarray, vectors: dict[str, np.ndarray], temperature: float
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """One photo's scores store (arrays, attrs) from its candidates' features and the run's text vectors.

    The per-image work of the score stage, for every engine: texts are encoded once per run
    (:func:`text_embeddings`), so this is a few small matrix products per photo.
    """
    from ovseg.scoring import negatives_for, prompt_synonyms, score_synonyms

    negatives = negatives_for(prompt, settings.score.negatives)
    negative = np.stack([vectors[n] for n in negatives]) if negatives else np.zeros((0, 0), np.float32)
    synonyms = np.stack([vectors[t] for t in prompt_synonyms(prompt)])
    scores = score_synonyms(features.astype(np.float32), synonyms, negative, temperature)
    arrays = {
        "score": scores.score,
        "similarity": scores.similarity,
        "negative_similarity": scores.negative_similarity,
    }
    attrs = {"prompt": prompt.strip(), "negatives": settings.score.negatives, "settings": settings.section("score")}
    return arrays, attrs


def score_photo(
    settings: Settings,
    prompt: str,
    folders: tuple[StageFolder, StageFolder],
    embeddings: str,
    key: str,
    vectors: dict[str, np.ndarray],
    temperature: float,
) -> None:
    """Score one photo's candidates and publish the scores store: the score stage's per-image work.

    ``folders`` are the embeddings and scores folders of the cache, wherever it lives.
    """
    source, target = folders
    with tempfile.TemporaryDirectory(prefix="ovseg-score-") as scratch:
        features = read_arrays(source.fetch_store(embeddings, Path(scratch)), ["embeddings"])[0]["embeddings"]
    arrays, attrs = score_store(settings, prompt, features, vectors, temperature)
    target.publish(key, arrays, attrs, {})


def score_prompts(
    settings: Settings, paths: Paths, prompts: list[str], pool: ModelPool | None = None
) -> tuple[dict[str, dict], StageReport]:
    """Score every image's candidates against each prompt; returns prompt -> image -> entry.

    Each distinct text (prompt or negative) is encoded once per run, or not at all when its
    embedding is cached (``cache/text``, keyed by CLIP weights, text and templates); then
    each image that needs a prompt's scores gets them from its features and those vectors.
    CLIP's text tower is loaded only if some text is new.
    """
    report = StageReport("score")
    for prompt in prompts:
        if not prompt.strip():
            raise OvsegError('the prompt is empty: say what to find, e.g. prompt: "the red car"')
    base = load_manifest(paths.embeddings)
    per_prompt: dict[str, dict] = {}
    todo: dict[tuple[str, str], list[str]] = {}  # (prompt, CLIP model) -> images
    for prompt in prompts:
        per_prompt[prompt] = {}
        for stem, entry in base.items():
            key = score_key(settings, entry["embeddings"], prompt)
            per_prompt[prompt][stem] = {**entry, "scores": key, "prompt": prompt.strip()}
            if is_complete(paths.scores, key):
                report.reused.append(_label(stem, prompt, prompts))
            else:
                todo.setdefault((prompt, entry["clip_model"]), []).append(stem)
    if not todo:
        return per_prompt, report
    folders = (StageFolder(str(paths.cache), "embeddings"), StageFolder(str(paths.cache), "scores"))
    for model_name in sorted({model for _, model in todo}):
        prompts_here = sorted({p for p, m in todo if m == model_name})
        texts = sorted({t for p in prompts_here for t in prompt_texts(settings, p)})
        vectors, temperature = text_embeddings(settings, str(paths.cache), model_name, texts, pool)
        for (prompt, model), stems in todo.items():
            if model != model_name:
                continue
            for stem in tqdm(stems, desc="score", unit="image"):
                entry = per_prompt[prompt][stem]
                score_photo(settings, prompt, folders, entry["embeddings"], entry["scores"], vectors, temperature)
                report.computed.append(_label(stem, prompt, prompts))
    return per_prompt, report


def text_embeddings(
    settings: Settings, cache: str, model_name: str, texts: list[str], pool: ModelPool | None = None
) -> tuple[dict[str, np.ndarray], float]:
    """Unit-norm CLIP text embeddings (template-averaged) of ``texts``, and the scoring temperature.

    Cached per (CLIP weights, text, templates) in ``<cache>/text`` (a folder or a bucket): a
    prompt used before, or the negatives every run shares, costs no encoder call. The
    temperature is ``score.temperature``, or CLIP's own logit scale when that is unset.
    """
    fingerprint = model_fingerprint(model_name, CLIP)
    templates = settings.score.template_set if settings.score.templates else None
    keys = {t: content_key(TEXT_VERSION, fingerprint, t, templates) for t in texts}
    folder = StageFolder(cache, "text")
    done = folder.done_keys()
    missing = [t for t in texts if keys[t] not in done]
    if missing:
        from ovseg.clip_features import load_clip
        from ovseg.scoring import encode_texts

        device = resolve_device(settings.device)
        # With a pool the full CLIP (already loaded for embed) serves; alone, the text tower is enough.
        load = (
            (lambda: load_clip(model_name, device)) if pool else (lambda: load_clip(model_name, device, text_only=True))
        )
        with _model(pool, "clip", model_name, load) as bundle:
            encoded = encode_texts(bundle, missing, settings.score.templates, template_set=settings.score.template_set)
            logit_scale = bundle.logit_scale
        for text, vector in zip(missing, encoded, strict=True):
            attrs = {"text": text, "model": model_name, "templates": settings.score.templates}
            attrs["logit_scale"] = logit_scale
            folder.publish(keys[text], {"embedding": vector.astype(np.float32)}, attrs, {})
    vectors, scale = {}, 100.0
    with tempfile.TemporaryDirectory(prefix="ovseg-text-") as scratch:
        for text in texts:
            arrays, attrs = read_arrays(folder.fetch_store(keys[text], Path(scratch)), ["embedding"])
            vectors[text], scale = arrays["embedding"], float(attrs["logit_scale"])
    temperature = settings.score.temperature if settings.score.temperature is not None else scale
    return vectors, temperature


def _label(stem: str, prompt: str, prompts: list[str]) -> str:
    return stem if len(prompts) == 1 else f"{stem}:{prompt}"


def run_score(settings: Settings, paths: Paths) -> StageReport:
    """Stage 3: scores of every candidate for ``settings.prompt`` -> ``cache/scores/<key>.zarr``."""
    per_prompt, report = score_prompts(settings, paths, [settings.prompt])
    save_manifest(paths.scores, per_prompt[settings.prompt], prompt=settings.prompt)
    return report


def select_for(settings: Settings, paths: Paths, entry: dict[str, Any]) -> tuple[Selection, MaskProposals, np.ndarray]:
    """Selection for one image entry; also returns the candidates and all scores."""
    folders = (StageFolder(str(paths.cache), "masks"), StageFolder(str(paths.cache), "scores"))
    proposals, scores = scored_candidates(folders, entry)
    return select_masks(scores, proposals.masks, settings.select), proposals, scores


def scored_candidates(
    folders: tuple[StageFolder, StageFolder], entry: dict[str, Any]
) -> tuple[MaskProposals, np.ndarray]:
    """One photo's mask candidates and their scores, from the cache's masks and scores folders (path or URL)."""
    masks, scores = folders
    with tempfile.TemporaryDirectory(prefix="ovseg-select-") as scratch:
        proposals, _ = MaskProposals.load(masks.fetch_store(entry["masks"], Path(scratch)))
        score = read_arrays(scores.fetch_store(entry["scores"], Path(scratch)), ["score"])[0]["score"]
    return proposals, score


def box_xywh(mask: np.ndarray) -> list[int]:
    """XYWH box of a bool mask ([0, 0, 0, 0] when empty), as selection.json and COCO write it."""
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return [0, 0, 0, 0]
    return [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]


def _remove_stale(folder: Path, keep: set[str]) -> None:
    if folder.is_dir():
        for child in folder.iterdir():
            if child.is_dir() and child.name not in keep and not child.name.startswith("."):
                shutil.rmtree(child)


def select_key(settings: Settings, entry: dict[str, Any], visualize: bool) -> str:
    """The key a selection folder is written under (in its ``selection.json``): what it depends on."""
    return content_key(SELECT_VERSION, entry["scores"], entry["masks"], settings.section("select"), visualize)


def run_select(settings: Settings, paths: Paths, visualize: bool = True, prune: bool = True) -> StageReport:
    """Stage 4: top-K -> per image ``mask.png``, ``overlay.png``, ``selection.json``, ``selection.zarr``.

    ``visualize=False`` skips the overlay picture, which dominates the time on big batches.
    ``prune`` removes outputs of images no longer in the batch: the DVC stage mirrors the
    image folder, while `ovseg run` on one photo keeps earlier photos' results.
    """
    report = StageReport("select")
    entries = load_manifest(paths.scores)
    out = OutputFolder(str(paths.segment))
    folders = (StageFolder(str(paths.cache), "masks"), StageFolder(str(paths.cache), "scores"))
    records = {}
    for stem, entry in tqdm(entries.items(), desc="select", unit="image"):
        records[stem], computed = select_photo(settings, folders, out, stem, entry, visualize)
        (report.computed if computed else report.reused).append(stem)
    if prune:
        _remove_stale(paths.segment, set(entries))
    write_select_summary(settings, out, records, skipped_images(paths.cache))
    return report


def select_photo(
    settings: Settings,
    folders: tuple[StageFolder, StageFolder],
    out: OutputFolder,
    stem: str,
    entry: dict[str, Any],
    visualize: bool,
) -> tuple[dict[str, Any], bool]:
    """One photo's selection folder, unless an earlier run left the same one: the select stage's per-image work.

    ``folders`` are the masks and scores folders of the cache. Returns the selection record
    and whether it was computed (False: reused).
    """
    key = select_key(settings, entry, visualize)
    previous = previous_record(out, f"{stem}/selection.json")
    if previous is not None and previous.get("key") == key:
        return previous, False
    proposals, score = scored_candidates(folders, entry)
    return write_selection(settings, out, stem, entry, key, visualize, proposals, score), True


def write_select_summary(
    settings: Settings, out: OutputFolder, records: dict[str, dict[str, Any]], skipped: dict[str, str]
) -> None:
    """``summary.json`` (per photo: how many selected, top score, its mask) and the COCO ``annotations.json``."""
    summary = {
        stem: {
            "selected": len(record["selected"]),
            "top_score": record["selected"][0]["score"] if record["selected"] else None,
            "mask": out.join(f"{stem}/mask.png"),
        }
        for stem, record in records.items()
    }
    out.write_json({"prompt": settings.prompt, "images": summary, "skipped": skipped}, "summary.json")
    annotations = coco_annotations(list(records.values()), settings.prompt, f"ovseg {settings.preset}")
    out.write_json(annotations, "annotations.json")


def skipped_images(cache: str | Path) -> dict[str, str]:
    """File name -> reason, for the files the masks stage could not read in its latest run (cache: folder or URL)."""
    return (StageFolder(str(cache), "masks").read_json() or {}).get("skipped", {})


def write_selection(
    settings: Settings,
    out: OutputFolder,
    stem: str,
    entry: dict[str, Any],
    key: str,
    visualize: bool,
    proposals: MaskProposals,
    scores: np.ndarray,
) -> dict[str, Any]:
    """Write one image's selection folder whole (all files appear together); returns its record.

    The per-image work of the select stage, for every engine: ``proposals`` and ``scores``
    come from the cache, wherever it lives; ``out`` is a folder or a bucket.
    """
    selection = select_masks(scores, proposals.masks, settings.select)
    image = load_image(entry["image"])
    size = image.size
    merged_full = resize_mask(selection.merged, size)
    selected = []
    for rank, (index, score) in enumerate(zip(selection.indices, selection.scores, strict=True), start=1):
        full = resize_mask(proposals.masks[index], size)
        selected.append(
            {
                "rank": rank,
                "index": index,
                "score": round(score, 6),
                "bbox_xywh": box_xywh(full),
                "area": int(full.sum()),
                "predicted_iou": float(proposals.predicted_iou[index]),
                "rle": rle.encode(full),
            }
        )
    order = np.argsort(-scores)[:10]
    record = {
        "key": key,
        "image": entry["image"],
        "prompt": entry["prompt"],
        "image_size": list(size),
        "num_candidates": len(proposals),
        "settings": settings.section("select"),
        "selected": selected,
        "merged": {"area": int(merged_full.sum()), "bbox_xywh": box_xywh(merged_full), "rle": rle.encode(merged_full)},
        "top_candidates": [{"index": int(i), "score": round(float(scores[i]), 6)} for i in order],
        "artifacts": {k: entry[k] for k in ("masks", "embeddings", "scores")},
        "note": None if selected else "no candidate passed the thresholds; nothing selected",
    }
    with out.write(stem, last="selection.json") as tmp:
        mask_image(merged_full).save(tmp / "mask.png")
        if settings.select.mask_pngs:
            (tmp / "masks").mkdir()
            for picked in selected:
                mask_image(rle.decode(picked["rle"])).save(tmp / "masks" / f"{picked['rank']:02d}.png")
        if visualize:
            labels = [f"#{s['rank']} {s['score']:.2f}" for s in selected]
            masks = [proposals.masks[i] for i in selection.indices]
            overlay(image, masks, labels, title=entry["prompt"]).save(tmp / "overlay.png")
        write_arrays(
            tmp / "selection.zarr",
            {
                "indices": np.array(selection.indices, np.int64),
                "scores": np.array(selection.scores, np.float32),
                "merged": merged_full,
            },
            {"prompt": entry["prompt"], "key": key},
        )
        write_json(tmp / "selection.json", record)
    return record


def images_for(settings: Settings) -> list[Path]:
    return list_images(Path(settings.images))


def write_edit(out: OutputFolder, stem: str, before: Image.Image, after: Image.Image, record: dict[str, Any]) -> None:
    """One photo's edit folder, all at once: ``edited.png``, ``before_after.png``, ``edit.json`` (``record``)."""
    with out.write(stem, last="edit.json") as tmp:
        after.save(tmp / "edited.png")
        side_by_side(before, after, ("before", f"after: {record['mode']}")).save(tmp / "before_after.png")
        write_json(tmp / "edit.json", record)


def previous_record(out: OutputFolder, relative: str) -> dict[str, Any] | None:
    """An earlier run's ``selection.json``/``edit.json``, or None (missing, or unreadable: then it is redone)."""
    try:
        return out.read_json(relative)
    except (OSError, ValueError):
        return None


def edit_key(settings: Settings, request, fingerprint: str, sha256: str, selection_key: str) -> str:
    """The key an edit folder is written under (in its ``edit.json``): photo, selection, request, painter."""
    return content_key(
        EDIT_VERSION,
        sha256,
        selection_key,
        settings.mode,
        request.prompt,
        request.negative_prompt,
        request.strength,
        settings.section("edit"),
        fingerprint,
    )


def edit_photo(
    settings: Settings,
    request,
    out: OutputFolder,
    stem: str,
    entry: dict[str, Any],
    selection: dict[str, Any],
    key: str,
    image: Image.Image,
    painter: Callable[[], Callable],
) -> None:
    """Edit one photo's selected region and write its edit folder: the per-image work of every engine.

    ``painter`` gives the painter on first need, so a batch whose selections are all empty
    never loads the painting model. An empty selection copies the photo with a note.
    """
    from ovseg.editing import edit_image

    mask = rle.decode(selection["merged"]["rle"])
    started = time.perf_counter()
    note = None
    if mask.any():
        edited = edit_image(image, mask, settings.edit, painter())
    else:
        note = f"no mask selected for prompt {entry['prompt']!r}; image copied unchanged"
        print(f"ovseg edit: {stem}: {note}")
        edited = image.copy()
    record = {
        "key": key,
        "image": entry["image"],
        "mode": settings.mode,
        "segment_prompt": entry["prompt"],
        "edit_prompt": request.prompt,
        "negative_prompt": request.negative_prompt,
        "strength": request.strength,
        "settings": settings.section("edit"),
        "seconds": round(time.perf_counter() - started, 3),
        "note": note,
    }
    write_edit(out, stem, image, edited, record)


def write_edit_summary(settings: Settings, out: OutputFolder, stems: list[str]) -> None:
    """``edit/summary.json``: the mode and each photo's edited picture (none in segment mode)."""
    if settings.mode == "segment":
        out.write_json({"mode": "segment", "note": "segment mode: nothing edited", "images": {}}, "summary.json")
        return
    images = {stem: out.join(f"{stem}/edited.png") for stem in stems}
    out.write_json({"mode": settings.mode, "images": images}, "summary.json")


def run_edit(settings: Settings, paths: Paths, prune: bool = True, pool: ModelPool | None = None) -> StageReport:
    """Stage 5: remove / replace / style the selected region -> ``edited.png`` + before/after.

    In ``segment`` mode there is nothing to edit: the stage only records that (and, with
    ``prune``, removes edits that no longer match the parameters). An image
    whose selection is empty is copied unchanged with a note, not an error, so one
    miss does not stop a batch.
    """
    report = StageReport("edit")
    entries = load_manifest(paths.scores)
    out = OutputFolder(str(paths.edit))
    if settings.mode == "segment":
        if prune:
            _remove_stale(paths.edit, set())
        write_edit_summary(settings, out, [])
        return report
    from ovseg.editing import load_painting_model, painter_fingerprint, painter_for, request_for

    request = request_for(settings)
    fingerprint = painter_fingerprint(settings.edit)
    device = resolve_device(settings.device)
    painter = None

    def get_painter():  # the painting model, loaded only when some image needs it
        nonlocal painter
        if painter is None:
            load = lambda: load_painting_model(settings.edit, device)  # noqa: E731
            model = pool.get(ModelPool.key("painter", settings.edit), load) if pool is not None else load()
            painter = painter_for(model, settings.edit, request)
        return painter

    segment = OutputFolder(str(paths.segment))
    for stem, entry in tqdm(entries.items(), desc=f"edit ({settings.mode})", unit="image"):
        selection = previous_record(segment, f"{stem}/selection.json")
        if selection is None:
            raise OvsegError(f"no selection for {stem} in {paths.segment}: run the select stage first")
        key = edit_key(settings, request, fingerprint, entry["sha256"], selection["key"])
        previous = previous_record(out, f"{stem}/edit.json")
        if previous is not None and previous.get("key") == key:
            report.reused.append(stem)
            continue
        image = load_image(entry["image"])
        edit_photo(settings, request, out, stem, entry, selection, key, image, get_painter)
        report.computed.append(stem)
    painter = None
    free_accelerator_memory()
    if prune:
        _remove_stale(paths.edit, set(entries))
    write_edit_summary(settings, out, list(entries))
    return report
