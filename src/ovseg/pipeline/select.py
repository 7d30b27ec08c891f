"""Stage 4, ``select``: the top-K candidates for the prompt, merged into one region per photo.

Writes ``<output>/segment/<photo>/`` whole (``mask.png``, ``masks/NN.png``, ``overlay.png``,
``selection.zarr``, and ``selection.json`` last, which names the key the folder was made
under), then the run's ``summary.json`` and COCO ``annotations.json``. A photo whose
``selection.json`` already names the current key is not redone.

:func:`write_selection` is the one writer of ``selection.json`` (and :func:`write_coco` of
``annotations.json``): the stage, the Python API, the web page and the CLI's clicks all
write through them, so every ``selection.json`` has the schema of :class:`SelectionRecord`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ovseg.config import Settings
from ovseg.media import rle
from ovseg.media.coco import coco_annotations
from ovseg.media.fileio import content_key, mask_image
from ovseg.media.viz import label_image, overlay, palette, preview, resize_mask
from ovseg.pipeline import masks, score
from ovseg.pipeline.common import Engine, Item, LazyModel, Plan, Result, Run, Stage, StageReport
from ovseg.pipeline.plans import entries_of, read_records, record_fields
from ovseg.ranking.selection import Instances, Selection, paint_label_map, select_instances, select_masks
from ovseg.storage.folders import SELECTION_RECORD, OutputFolder
from ovseg.storage.locations import write_json
from ovseg.storage.store import write_arrays

VERSION = "select-v1"
CLASSES_VERSION = "instances-v1"
LABELS_FILE = "labels.png"
RESULTS = "segment"
COCO_FILE = "annotations.json"
SUMMARY_FILE = "summary.json"
TOP_CANDIDATES = 10


@dataclass
class SelectedMask:
    """One selected mask, at the photo's size."""

    rank: int  # 1 = best
    index: int | None  # its candidate in the masks store; None for a region re-drawn from clicks
    score: float  # the prompt's score (a click's mask: the model's predicted IoU), 6 decimals
    bbox_xywh: list[int]
    area: int  # pixels
    predicted_iou: float | None  # the mask model's own rating
    rle: dict[str, Any]  # COCO run-length encoding (pycocotools reads it)
    category: int | None = None  # a run with several classes: its class, 1 = the first (as in labels.png and COCO)


@dataclass
class MergedRegion:
    """The union of the selected masks: what remove / replace / style edit."""

    area: int
    bbox_xywh: list[int]
    rle: dict[str, Any]


@dataclass
class SelectionRecord:
    """``selection.json``: what was selected in one photo, and from what.

    ``key``: what the folder depends on (scores, masks, select settings), None for clicks,
    which are not cached. ``image``: the photo's path or URL. ``prompt``: the words (None for
    clicks alone). ``image_size``: (width, height). ``num_candidates``: how many the mask model
    proposed. ``settings``: the ``select`` settings used. ``selected``: the masks, best first.
    ``merged``: their union. ``top_candidates``: the 10 best-scoring candidates, selected or
    not (``index``, ``score``). ``artifacts``: the cache keys it came from (``masks``,
    ``embeddings``, ``scores``). ``note``: why nothing was selected, when nothing was.
    ``clicks``: the points, labels and box that shaped the selection (only when there were any).
    ``classes``: a run with several classes: them, in order (class c is ``category`` c of a
    selected mask and value c of ``labels.png``); then ``selected`` holds every instance found
    and ``settings`` are the ``instances`` settings.
    """

    key: str | None
    image: str
    prompt: str | None
    image_size: list[int]
    num_candidates: int | None
    settings: dict[str, Any] | None
    selected: list[SelectedMask]
    merged: MergedRegion
    top_candidates: list[dict[str, Any]] = field(default_factory=list)
    artifacts: dict[str, str] | None = None
    note: str | None = None
    clicks: dict[str, Any] | None = None
    classes: list[str] | None = None

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for name in ("clicks", "classes"):
            if data[name] is None:
                del data[name]
        for picked in data["selected"]:
            if picked["category"] is None:
                del picked["category"]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SelectionRecord:
        values = record_fields(cls, data)
        values["selected"] = [SelectedMask(**s) for s in data["selected"]]
        values["merged"] = MergedRegion(**data["merged"])
        return cls(**values)

    @classmethod
    def of_masks(
        cls,
        image: str,
        prompt: str | None,
        full_masks: list[np.ndarray],
        scores: list[float],
        indices: list[int | None],
        predicted_iou: list[float | None],
        merged: np.ndarray,
        categories: list[int] | None = None,
        **fields: Any,
    ) -> SelectionRecord:
        """A record from the selected masks and their merged region, all at the photo's size.

        The merged region is given, not derived: it is the union drawn at the mask model's
        resolution and resized once, which is not always the union of the resized masks.
        ``categories``: each mask's class (1-based), in a run with several classes.
        """
        classes = categories or [None] * len(full_masks)
        selected = [
            SelectedMask(rank, index, round(float(s), 6), rle.box_xywh(m), int(m.sum()), iou, rle.encode(m), c)
            for rank, (m, s, index, iou, c) in enumerate(
                zip(full_masks, scores, indices, predicted_iou, classes, strict=True), 1
            )
        ]
        region = MergedRegion(int(merged.sum()), rle.box_xywh(merged), rle.encode(merged))
        size = [int(merged.shape[1]), int(merged.shape[0])]
        return cls(image=image, prompt=prompt, image_size=size, selected=selected, merged=region, **fields)


def write_selection(
    out: OutputFolder,
    stem: str,
    record: SelectionRecord,
    image: Image.Image,
    masks_shown: list[np.ndarray],
    scores: list[float],
    *,
    visualize: bool,
    mask_pngs: bool,
    coco: bool = False,
) -> None:
    """Write one photo's selection folder whole (all files appear together, ``selection.json`` last).

    ``masks_shown``: the selected masks at any resolution, for the overlay; ``scores``: their
    scores unrounded (``selection.zarr`` keeps them so). ``coco``: also a COCO file of this one
    photo (what a folder saved on its own carries; a run writes one for all its photos).
    """
    merged = rle.decode(record.merged.rle)
    with out.write(stem, last=SELECTION_RECORD) as tmp:
        mask_image(merged).save(tmp / "mask.png")
        if mask_pngs or record.classes:
            (tmp / "masks").mkdir()
            for picked in record.selected:
                mask_image(rle.decode(picked.rle)).save(tmp / "masks" / f"{instance_name(record, picked)}.png")
        if record.classes:
            label_image(paint_labels(record), len(record.classes)).save(tmp / LABELS_FILE)
        if visualize:
            labels = [f"#{s.rank} {s.score:.2f}" for s in record.selected]
            colours = None
            if record.classes:
                names, palette_of = record.classes, palette(len(record.classes))
                labels = [f"{names[s.category - 1]} {s.score:.2f}" for s in record.selected]
                colours = [palette_of[s.category - 1] for s in record.selected]
            title = record.prompt or "clicks"
            overlay(preview(image), masks_shown, labels, title=title, colours=colours).save(tmp / "overlay.png")
        indices = [-1 if s.index is None else s.index for s in record.selected]
        arrays = {"indices": np.array(indices, np.int64), "scores": np.array(scores, np.float32), "merged": merged}
        if record.classes:
            arrays["categories"] = np.array([s.category for s in record.selected], np.int64)
        write_arrays(tmp / "selection.zarr", arrays, {"prompt": record.prompt, "key": record.key})
        if coco:
            write_coco(tmp, [record], record.prompt or "clicks", "ovseg")
        write_json(tmp / SELECTION_RECORD, record.to_json())


def instance_name(record: SelectionRecord, picked: SelectedMask) -> str:
    """A selected mask's file name under ``masks/``: its rank, and its class when the run has several."""
    if not record.classes or picked.category is None:
        return f"{picked.rank:02d}"
    slug = "".join(ch if ch.isalnum() else "_" for ch in record.classes[picked.category - 1].split("|")[0].strip())
    return f"{picked.rank:02d}_{slug.strip('_') or 'class'}"


def paint_labels(record: SelectionRecord) -> np.ndarray:
    """``labels.png``'s ids at the photo's size, by :func:`~ovseg.ranking.selection.paint_label_map`'s rule
    (``selected`` is best first, so an overlap goes to the higher score)."""
    width, height = record.image_size
    masks = [rle.decode(picked.rle) for picked in record.selected]
    return paint_label_map(masks, [p.category for p in record.selected], (height, width), len(record.classes or []))


def write_coco(
    folder: Path | OutputFolder,
    records: list[SelectionRecord],
    category: str,
    description: str,
    root: str | None = None,
) -> None:
    """``annotations.json``: the selections as one COCO dataset (images with sizes, categories, RLE masks).

    One category (``category``) for a prompt; one per class, in order, for a run with several.
    """
    classes = next((r.classes for r in records if r.classes), None)
    data = coco_annotations([r.to_json() for r in records], category, description, root, classes)
    if isinstance(folder, OutputFolder):
        folder.update_json(data, COCO_FILE)
    else:
        write_json(Path(folder) / COCO_FILE, data)


def select_key(settings: Settings, entry: score.ScoreEntry, visualize: bool) -> str:
    """The key a selection folder is written under (in its ``selection.json``): what it depends on."""
    if entry.classes:
        sections = [settings.section("select"), settings.section("instances")]
        return content_key(CLASSES_VERSION, entry.scores, entry.masks, sections, visualize)
    return content_key(VERSION, entry.scores, entry.masks, settings.section("select"), visualize)


def select_for(run: Run, entry: score.ScoreEntry) -> tuple[Selection, Any, np.ndarray]:
    """The top-K selection for one photo's scores entry; also its candidates and all their scores."""
    proposals, scores = score.scored_candidates(run, entry)
    return select_masks(scores, proposals.masks, run.settings.select), proposals, scores


def instances_for(run: Run, entry: score.ScoreEntry) -> tuple[Instances, Any, np.ndarray]:
    """Every instance of each class in one photo (a scores entry with classes); its candidates and their
    (N, C) class probabilities."""
    proposals, class_scores = score.scored_classes(run, entry)
    settings = run.settings
    return (
        select_instances(class_scores, proposals.masks, settings.instances, settings.select.min_area_frac),
        (proposals),
        class_scores,
    )


@dataclass
class SelectItem(Item):
    """A photo whose selection is to be made: its score entry (the stores it reads, the prompt or classes)."""

    entry: score.ScoreEntry | None = None


@dataclass
class SelectState:
    """What ``finish`` needs: every photo's score entry, and the records of the photos reused."""

    entries: dict[str, score.ScoreEntry]
    records: dict[str, dict[str, Any]]


def plan(run: Run, engine: Engine) -> Plan[SelectState]:
    entries = {
        stem: score.ScoreEntry(**record_fields(score.ScoreEntry, data))
        for stem, data in entries_of(run.stage_folder(score.FOLDER).read_json(), score.FOLDER, "score").items()
    }
    keys = {stem: select_key(run.settings, entry, run.visualize) for stem, entry in entries.items()}
    previous = read_records(engine, run.results(RESULTS), SELECTION_RECORD, list(entries))
    plan = Plan(state=SelectState(entries, {}))
    for stem, entry in entries.items():
        record = previous.get(stem)
        if record is not None and record.get("key") == keys[stem]:
            plan.reused.append(stem)
            plan.state.records[stem] = record
        else:
            plan.items.append(SelectItem(stem, keys[stem], entry))
    return plan


def compute(run: Run, shared: None, model: LazyModel, item: SelectItem) -> Result:
    entry = item.entry
    if entry.classes:
        return compute_classes(run, item, entry)
    selection, proposals, scores = select_for(run, entry)
    image = run.load_photo(entry.image)
    full = [resize_mask(proposals.masks[i], image.size) for i in selection.indices]
    record = SelectionRecord.of_masks(
        entry.image,
        entry.prompt,
        full,
        selection.scores,
        list(selection.indices),
        [float(proposals.predicted_iou[i]) for i in selection.indices],
        resize_mask(selection.merged, image.size),
        key=item.key,
        num_candidates=len(proposals),
        settings=run.settings.section("select"),
        top_candidates=[
            {"index": int(i), "score": round(float(scores[i]), 6)} for i in np.argsort(-scores)[:TOP_CANDIDATES]
        ],
        artifacts={"masks": entry.masks, "embeddings": entry.embeddings, "scores": entry.scores},
        note=None if selection.indices else "no candidate passed the thresholds; nothing selected",
    )
    masks_kept = [proposals.masks[i] for i in selection.indices]
    return _written(run, item, record, image, masks_kept, selection.scores, run.settings.select.mask_pngs)


def compute_classes(run: Run, item: SelectItem, entry: score.ScoreEntry) -> Result:
    """One photo of a run with several classes: every instance of each class, a label map, one mask each."""
    found, proposals, class_scores = instances_for(run, entry)
    image = run.load_photo(entry.image)
    best = class_scores.max(axis=1) if len(class_scores) else np.zeros(0)
    top = np.argsort(-best, kind="stable")[:TOP_CANDIDATES]
    record = SelectionRecord.of_masks(
        entry.image,
        entry.prompt,
        [resize_mask(proposals.masks[i], image.size) for i in found.indices],
        found.scores,
        list(found.indices),
        [float(proposals.predicted_iou[i]) for i in found.indices],
        resize_mask(found.merged, image.size),
        categories=[c + 1 for c in found.classes],
        key=item.key,
        num_candidates=len(proposals),
        settings=run.settings.section("instances"),
        top_candidates=[
            {"index": int(i), "score": round(float(best[i]), 6), "category": int(np.argmax(class_scores[i])) + 1}
            for i in top
        ],
        artifacts={"masks": entry.masks, "embeddings": entry.embeddings, "scores": entry.scores},
        note=None if found.indices else "no candidate passed instances.threshold for any class; nothing selected",
        classes=list(entry.classes),
    )
    masks_kept = [proposals.masks[i] for i in found.indices]
    return _written(run, item, record, image, masks_kept, found.scores, mask_pngs=True)


def _written(
    run: Run, item: SelectItem, record: SelectionRecord, image: Image.Image, masks_kept: list, scores, mask_pngs: bool
) -> Result:
    """The photo's selection written (``write_selection``), and the result that hands its record to ``finish``."""
    out = run.results(RESULTS)
    write_selection(out, item.stem, record, image, masks_kept, scores, visualize=run.visualize, mask_pngs=mask_pngs)
    return Result(item.stem, record=record.to_json())


def finish(run: Run, plan: Plan[SelectState], results: list[Result]) -> StageReport:
    done = {r.stem: r.record for r in results if not r.error}
    records = {**plan.state.records, **done}
    entries = plan.state.entries
    ordered = {stem: SelectionRecord.from_json(records[stem]) for stem in entries if stem in records}
    out = run.results(RESULTS)
    write_select_summary(run, out, ordered, masks.skipped_images(run.cache))
    if run.prune:
        out.prune(set(entries), SELECTION_RECORD)
    return plan.report("select", results)


def write_select_summary(
    run: Run, out: OutputFolder, records: dict[str, SelectionRecord], skipped: dict[str, str]
) -> None:
    """``summary.json`` (per photo: how many selected, top score, its mask) and the run's COCO ``annotations.json``."""
    summary = {
        stem: {
            "selected": len(record.selected),
            "top_score": record.selected[0].score if record.selected else None,
            "mask": out.join(f"{stem}/mask.png"),
            **({"instances": instance_counts(record)} if record.classes else {}),
        }
        for stem, record in records.items()
    }
    prompt = run.request.title
    out.update_json({"prompt": prompt, "images": summary, "skipped": skipped}, SUMMARY_FILE)
    images = run.request.images
    root = images if isinstance(images, str) and not Path(images).is_file() else None
    write_coco(out, list(records.values()), prompt, f"ovseg {run.settings.preset}", root)


def instance_counts(record: SelectionRecord) -> dict[str, int]:
    """How many instances of each class a photo has (every class listed, 0 included)."""
    counts = dict.fromkeys(record.classes or [], 0)
    for picked in record.selected:
        counts[record.classes[picked.category - 1]] += 1
    return counts


def describe(run: Run) -> str:
    return "select"


STAGE = Stage.of(__name__, "select", results=RESULTS, record=SELECTION_RECORD, hands_back_record=True)
