"""The stages of a run, each one module that owns its whole contract.

| stage    | module       | writes                                        | key depends on                         |
| -------- | ------------ | --------------------------------------------- | -------------------------------------- |
| masks    | :mod:`.masks`  | ``cache/masks/<key>.zarr`` + preview          | image bytes, masks settings, weights   |
| embed    | :mod:`.embed`  | ``cache/embeddings/<key>.zarr``               | masks key, embed settings, CLIP        |
| score    | :mod:`.score`  | ``cache/scores/<key>.zarr`` (+ ``cache/text``) | embeddings key, prompt, score settings |
| select   | :mod:`.select` | ``<output>/segment/<photo>/``                 | scores and masks keys, select settings |
| edit     | :mod:`.edit`   | ``<output>/edit/<photo>/``                    | photo, selection key, request, painter |

Videos have stages of their own, for the work that needs order (:data:`VIDEO_STAGES`):

| stage     | module            | writes                                  | unit        |
| --------- | ----------------- | --------------------------------------- | ----------- |
| frames    | :mod:`.frames`    | ``cache/frames/<key>.files/`` (JPEGs)   | one clip    |
| follow    | :mod:`.follow`    | ``cache/tracks/<key>.files/`` (masks)   | one clip, in order |
| video_out | :mod:`.video_out` | ``<output>/video/<clip>/``              | one clip    |
| fill      | :mod:`.fill`      | ``<output>/video_edit/<clip>/``         | one clip, in order |

Words on a video run the photo stages (masks, embed, score) on each clip's keyframes first, from
the follow stage's plan, so those frames are photos to them: cached, and computed in parallel by
the engine.

Each module holds its version and key, its plan (what to compute, what to reuse), its
per-photo function, the typed record it writes (a dataclass documenting the manifest entry
or ``selection.json`` / ``edit.json``) and its ``STAGE`` contract (:class:`.common.Stage`).
:data:`STAGES` is the registry the engines run, in order; adding a stage is one module and
one entry here (and one ``dvc.yaml`` stanza).
"""

from __future__ import annotations

import dataclasses

from ovseg.config import Settings
from ovseg.editing import check_backend, request_for, resolve_backend
from ovseg.pipeline import edit, embed, fill, follow, frames, masks, score, select, video_out
from ovseg.pipeline.common import ModelPool, Run, Stage, StageReport
from ovseg.request import RunRequest

STAGES: tuple[Stage, ...] = (masks.STAGE, embed.STAGE, score.STAGE, select.STAGE, edit.STAGE)
VIDEO_STAGES: tuple[Stage, ...] = (frames.STAGE, follow.STAGE, video_out.STAGE, fill.STAGE)

__all__ = ["STAGES", "VIDEO_STAGES", "ModelPool", "Run", "Stage", "StageReport", "new_run", "stage_named", "stages_for"]


def stage_named(name: str) -> Stage:
    """The stage called ``name`` (what a DVC stage script runs)."""
    return next(stage for stage in (*STAGES, *VIDEO_STAGES) if stage.name == name)


def stages_for(request: RunRequest) -> tuple[Stage, ...]:
    """The stages a request runs: the photo DAG, or the video stages for a run on videos."""
    return VIDEO_STAGES if request.videos is not None else STAGES


def new_run(settings: Settings, request: RunRequest, **where) -> Run:
    """A run, checked before any work: a request the settings cannot do stops here with one line."""
    from ovseg.masks import GENERATORS, finder_name
    from ovseg.video import PROPAGATORS
    from ovseg.video.fills import FILLS

    GENERATORS.check(settings.masks.generator)
    # auto made concrete once, so every stage (and what it records) sees the same finder
    settings = dataclasses.replace(settings, find=dataclasses.replace(settings.find, finder=finder_name(settings)))
    if request.videos is not None:
        PROPAGATORS.check(settings.video.propagator)
        FILLS.check(settings.video.fill)
    if request.edits:
        settings = dataclasses.replace(settings, edit=resolve_backend(settings.edit, request.mode))
        check_backend(settings.edit, request.mode)
        request_for(request.mode, request.edit_prompt, settings.edit)  # replace and style need words to paint
    return Run(settings, request, **where)
