"""Editing the selected region: one path for every backend, one registry that chooses the backend.

| ``edit.backend`` | module            | modes                   | weights                                 |
| ---------------- | ----------------- | ----------------------- | --------------------------------------- |
| ``diffusion``    | :mod:`.diffusion` | remove, replace, style  | SD 2 inpainting (diffusers)             |
| ``lama``         | :mod:`.lama`      | remove                  | big-lama, TorchScript                   |
| ``migan``        | :mod:`.migan`     | remove                  | MI-GAN's ONNX pipeline (onnxruntime)    |
| ``opencv``       | :mod:`.opencv`    | remove                  | none                                    |

:data:`BACKENDS` is the one place a backend is chosen (``edit.backend: auto`` is resolved here too,
by :func:`resolve_backend`); everything else asks it through the functions below. Every backend
paints through :func:`.geometry.edit_image` (dilate, crop, paint, paste feathered), so what an edit
leaves untouched does not depend on the backend.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from PIL import Image

from ovseg.config import AUTO, EditSettings, Registry
from ovseg.editing import geometry
from ovseg.editing.backend import EditBackend, EditRequest, Painter
from ovseg.editing.geometry import dilate
from ovseg.errors import OvsegError
from ovseg.request import MODES
from ovseg.weights.registry import weights_present


def _diffusion() -> EditBackend:
    from ovseg.editing.diffusion import DiffusionBackend

    return DiffusionBackend()


def _lama() -> EditBackend:
    from ovseg.editing.lama import LamaBackend

    return LamaBackend()


def _migan() -> EditBackend:
    from ovseg.editing.migan import MiganBackend

    return MiganBackend()


def _opencv() -> EditBackend:
    from ovseg.editing.opencv import OpenCVBackend

    return OpenCVBackend()


def _auto(settings: EditSettings, mode: str) -> str:
    """``auto``: removal by the first of ``edit.remove_with`` whose weights are on disk, the rest by diffusion."""
    if mode != "remove":
        return "diffusion"
    unknown = [name for name in settings.remove_with if name not in BACKENDS]
    if unknown or not settings.remove_with:
        names = ", ".join(BACKENDS.names())
        raise OvsegError(f"edit.remove_with must list backends among {names}, got {settings.remove_with}")
    for name in settings.remove_with:
        if weights_on_disk(BACKENDS.create(name), settings):
            return name
    return settings.remove_with[0]  # none can run: the first says what it is missing


BACKENDS: Registry[EditBackend] = Registry(
    "edit.backend", {"diffusion": _diffusion, "lama": _lama, "migan": _migan, "opencv": _opencv}, auto=_auto
)

__all__ = [
    "BACKENDS",
    "EditBackend",
    "EditRequest",
    "Painter",
    "backend_for",
    "check_backend",
    "dilate",
    "edit_image",
    "fingerprint",
    "load_painter",
    "load_painting_model",
    "painter_for",
    "request_for",
    "resolve_backend",
    "weights_on_disk",
]


def weights_on_disk(backend: EditBackend, settings: EditSettings) -> bool:
    """Whether ``backend``'s weights (as ``settings`` name them) are on disk; True when it needs none."""
    if backend.weights_setting is None:
        return True
    return weights_present(getattr(settings, backend.weights_setting), backend.weights_kind)


def resolve_backend(settings: EditSettings, mode: str) -> EditSettings:
    """``settings`` with ``edit.backend: auto`` made concrete for ``mode``; any other backend as it is.

    Removal takes the first of ``edit.remove_with`` that can run here (LaMa once its weights are
    downloaded, else the next: FSR on ``cpu``, SD 2 elsewhere); replace and style paint new content,
    which only diffusion can. Resolved once per run, before any cache key is made, so a key, the
    run's table and ``edit.json`` all name the backend that really painted.
    """
    if settings.backend != AUTO:
        return settings
    return dataclasses.replace(settings, backend=BACKENDS.resolve(AUTO, settings, mode))


def backend_for(settings: EditSettings) -> EditBackend:
    """The backend ``edit.backend`` names (``auto`` resolved first), or one line listing those that exist."""
    return BACKENDS.create(settings.backend)


def check_backend(settings: EditSettings, mode: str) -> None:
    """Fail before any work when the backend's settings are wrong or it cannot do ``mode``."""
    settings = resolve_backend(settings, mode) if mode in MODES else settings
    backend = backend_for(settings)
    backend.check(settings)
    if mode not in MODES:
        raise OvsegError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode != "segment" and mode not in backend.modes:
        able = [name for name in BACKENDS.names() if mode in BACKENDS.create(name).modes]
        raise OvsegError(
            f"mode {mode} paints new content and needs edit.backend: {' or '.join(able)} "
            f"(edit.backend {backend.name} can only {', '.join(backend.modes)}); e.g. --set edit.backend={able[0]}"
        )


def request_for(mode: str, edit_prompt: str, settings: EditSettings) -> EditRequest:
    """remove: a background fill; replace: the edit prompt; style: the edit prompt at strength < 1."""
    if mode == "remove":
        return EditRequest(settings.remove_prompt, settings.remove_negative, settings.strength)
    if mode not in ("replace", "style"):
        raise OvsegError(f"mode {mode} does not edit images")
    if not edit_prompt:
        raise OvsegError(f'mode {mode} needs an edit prompt: set edit_prompt (or --edit "...")')
    strength = settings.strength if mode == "replace" else settings.style_strength
    return EditRequest(edit_prompt, settings.negative_prompt, strength)


def fingerprint(settings: EditSettings) -> str:
    """What identifies the painting model in the edit's cache key."""
    return backend_for(settings).fingerprint(settings)


def load_painting_model(settings: EditSettings, device: str) -> Any:
    """The heavy part of ``edit.backend`` (SD's pipeline; nothing for OpenCV), loaded once per run."""
    return backend_for(settings).load(settings, device)


def painter_for(model: Any, settings: EditSettings, request: EditRequest) -> Painter:
    """A painter for one request (prompt, negative prompt, strength) from a loaded painting model."""
    return backend_for(settings).painter(model, settings, request)


def edit_image(image: Image.Image, mask: np.ndarray, settings: EditSettings, paint: Painter) -> Image.Image:
    """Paint ``mask`` of ``image`` through the shared path, at the size ``edit.backend`` paints at."""
    backend = backend_for(settings)
    return geometry.edit_image(
        image, mask, settings, paint, resize=backend.resizes_to_model, min_side=backend.min_crop_side(settings)
    )


def load_painter(settings: EditSettings, request: EditRequest, device: str) -> Painter:
    """Load ``edit.backend``'s model and make its painter for ``request``, in one call."""
    return painter_for(load_painting_model(settings, device), settings, request)
