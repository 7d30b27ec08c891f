"""Stage 5, ``edit``: remove / replace / style the selected region of every photo.

Writes ``<output>/edit/<photo>/`` whole (``edited.png``, ``before_after.png``, and
``edit.json`` last, naming the key), then ``summary.json``. In segment mode there is
nothing to edit: the stage only records that. A photo whose selection is empty is copied
unchanged with a note, not an error, so one miss does not stop a batch; a batch whose
selections are all empty never loads the painting model.

:func:`write_edit` is the one writer of ``edit.json``: the stage and the CLI's clicks (through
the Python API) write through it, so every ``edit.json`` has the schema of :class:`EditRecord`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ovseg.config import Settings
from ovseg.editing import EditRequest, Painter, edit_image, fingerprint, load_painting_model, painter_for, request_for
from ovseg.errors import OvsegError
from ovseg.media import rle
from ovseg.media.fileio import content_key
from ovseg.media.viz import side_by_side
from ovseg.pipeline import score, select
from ovseg.pipeline.common import Engine, Item, LazyModel, ModelPool, Plan, Result, Run, Stage, StageReport
from ovseg.pipeline.plans import entries_of, read_records
from ovseg.storage.folders import EDIT_RECORD, SELECTION_RECORD, OutputFolder
from ovseg.storage.locations import write_json

VERSION = "edit-v1"
RESULTS = "edit"
SUMMARY_FILE = "summary.json"


@dataclass
class EditRecord:
    """``edit.json``: how one photo was edited.

    ``key``: what the folder depends on (the photo, its selection, the request, the painting
    model), None for clicks, which are not cached. ``image``: the photo's path or URL.
    ``mode``: remove, replace or style. ``segment_prompt``: what was found (None for clicks
    alone). ``edit_prompt``, ``negative_prompt``, ``strength``: the painting request the mode
    resolved to (remove: ``edit.remove_prompt`` and ``edit.remove_negative``; replace and
    style: the user's edit prompt). ``settings``: the ``edit``
    settings used (backend, model, steps, seed ...). ``seconds``: the time it took. ``note``:
    why the photo was copied unchanged, when it was. ``clicks``: the points, labels and box
    that shaped the selection (only when there were any).
    """

    key: str | None
    image: str
    mode: str
    segment_prompt: str | None
    edit_prompt: str
    negative_prompt: str
    strength: float
    settings: dict[str, Any]
    seconds: float
    note: str | None = None
    clicks: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if data["clicks"] is None:
            del data["clicks"]
        return data


def edit_key(settings: Settings, mode: str, request: EditRequest, painter: str, sha256: str, selection: str) -> str:
    """The key an edit folder is written under (in its ``edit.json``): photo, selection, request, painter."""
    return content_key(
        VERSION,
        sha256,
        selection,
        mode,
        request.prompt,
        request.negative_prompt,
        request.strength,
        settings.section("edit"),
        painter,
    )


def write_edit(out: OutputFolder, stem: str, before: Image.Image, after: Image.Image, record: EditRecord) -> None:
    """One photo's edit folder, all at once: ``edited.png``, ``before_after.png``, ``edit.json`` (last)."""
    with out.write(stem, last=EDIT_RECORD) as tmp:
        after.save(tmp / "edited.png")
        side_by_side(before, after, ("before", f"after: {record.mode}")).save(tmp / "before_after.png")
        write_json(tmp / EDIT_RECORD, record.to_json())


def write_clip_edit(out: OutputFolder, stem: str, write_files: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """A clip's edit folder (``edited.mp4``, ``before_after.mp4`` ...; :mod:`ovseg.pipeline.fill`), all at
    once: ``write_files`` fills it and returns its record, written last as ``edit.json``. This module writes
    every ``edit.json``, a photo's or a clip's."""
    with out.write(stem, last=EDIT_RECORD) as tmp:
        record = write_files(tmp)
        write_json(tmp / EDIT_RECORD, record)
    return record


def edit_photo(
    settings: Settings,
    mode: str,
    edit_prompt: str,
    photo: Image.Image,
    mask: np.ndarray,
    painter: Callable[[], Painter],
    **fields: Any,
) -> tuple[Image.Image, EditRecord]:
    """Paint one photo's region and describe it: the edited photo and its :class:`EditRecord`.

    ``painter`` gives the :data:`~ovseg.editing.Painter` on first need, so an empty selection
    never loads the painting model; it copies the photo with a note. ``fields``: the record's
    ``key``, ``image``, ``segment_prompt`` and ``clicks``.
    """
    request = request_for(mode, edit_prompt, settings.edit)
    started = time.perf_counter()
    note = None
    if mask.any():
        edited = edit_image(photo, mask, settings.edit, painter())
    else:
        note = f"no mask selected for prompt {fields.get('segment_prompt')!r}; image copied unchanged"
        edited = photo.copy()
    record = EditRecord(
        mode=mode,
        edit_prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        strength=request.strength,
        settings=settings.section("edit"),
        seconds=round(time.perf_counter() - started, 3),
        note=note,
        **{"key": None, "segment_prompt": None, **fields},
    )
    return edited, record


@dataclass
class EditItem(Item):
    """A photo to edit: where it is, its merged selection (COCO RLE) and the prompt that selected it."""

    image: str = ""
    merged: dict[str, Any] | None = None
    segment_prompt: str = ""


@dataclass
class EditState:
    """What ``finish`` needs: every photo of the run (the summary lists those edited)."""

    stems: list[str]


def plan(run: Run, engine: Engine) -> Plan[EditState]:
    if not run.request.edits:
        return Plan(state=EditState([]))
    mode, settings = run.request.mode, run.settings
    request = request_for(mode, run.request.edit_prompt, settings.edit)
    painter = fingerprint(settings.edit)
    entries = entries_of(run.stage_folder(score.FOLDER).read_json(), score.FOLDER, "score")
    selections = read_records(engine, run.results(select.RESULTS), SELECTION_RECORD, list(entries))
    edits = read_records(engine, run.results(RESULTS), EDIT_RECORD, list(entries))
    plan = Plan(shared=request, state=EditState(list(entries)))
    for stem, entry in entries.items():
        selection = selections[stem]
        if selection is None:
            raise OvsegError(
                f"no selection for {stem} in {run.results(select.RESULTS).url}: run the select stage first"
            )
        key = edit_key(settings, mode, request, painter, entry["sha256"], selection["key"])
        if (edits[stem] or {}).get("key") == key:
            plan.reused.append(stem)
        else:
            plan.items.append(EditItem(stem, key, entry["image"], selection["merged"]["rle"], entry["prompt"]))
    return plan


def load(run: Run):
    return load_painting_model(run.settings.edit, run.device)


def model_key(run: Run) -> str:
    return ModelPool.key("painter", run.settings.edit)


class _PainterOnNeed:
    """The request's painter, from the stage's model loaded only when a photo has something to paint."""

    def __init__(self, run: Run, model: LazyModel, request: EditRequest) -> None:
        self.run, self.model, self.request = run, model, request

    def __call__(self) -> Painter:
        return painter_for(self.model.get(), self.run.settings.edit, self.request)


def compute(run: Run, shared: EditRequest, model: LazyModel, item: EditItem) -> Result:
    image = run.load_photo(item.image)
    mask = rle.decode(item.merged)
    edited, record = edit_photo(
        run.settings,
        run.request.mode,
        run.request.edit_prompt,
        image,
        mask,
        _PainterOnNeed(run, model, shared),
        key=item.key,
        image=item.image,
        segment_prompt=item.segment_prompt,
    )
    if record.note:
        print(f"ovseg edit: {item.stem}: {record.note}")
    write_edit(run.results(RESULTS), item.stem, image, edited, record)
    return Result(item.stem)


def finish(run: Run, plan: Plan[EditState], results: list[Result]) -> StageReport:
    out = run.results(RESULTS)
    failed = {r.stem for r in results if r.error}
    stems = [stem for stem in plan.state.stems if stem not in failed]
    if not run.request.edits:
        out.update_json({"mode": "segment", "note": "segment mode: nothing edited", "images": {}}, SUMMARY_FILE)
    else:
        images = {stem: out.join(f"{stem}/edited.png") for stem in stems}
        out.update_json({"mode": run.request.mode, "images": images}, SUMMARY_FILE)
    if run.prune:
        out.prune(set(stems), EDIT_RECORD)
    return plan.report("edit", results, sorted(failed))


def describe(run: Run) -> str:
    """The progress label, naming the backend that paints (``edit.backend: auto`` resolved)."""
    return f"edit ({run.request.mode}, {run.settings.edit.backend})" if run.request.edits else "edit (segment)"


STAGE = Stage.of(__name__, "edit", results=RESULTS, record=EDIT_RECORD)
