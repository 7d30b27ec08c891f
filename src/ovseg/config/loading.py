"""Parameters: params.yaml + a preset from presets.yaml -> typed, validated :class:`~ovseg.config.settings.Settings`.

Why a preset plus overrides: users pick `fast|balanced|quality` with one key and still
tune any single knob; DVC tracks `preset` and each stage's section as params, so a
change reruns exactly the stages that read it.
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from ovseg.config.settings import (
    SECTION_TYPES,
    MasksSettings,
    Settings,
    VideoSettings,
)
from ovseg.errors import OvsegError

PRESETS_FILE = "presets.yaml"


@cache
def load_presets() -> dict[str, Any]:
    text = resources.files("ovseg").joinpath(PRESETS_FILE).read_text()
    return yaml.safe_load(text)


def preset_names() -> list[str]:
    return [name for name in load_presets() if name != "defaults"]


def deep_merge(base: dict[str, Any], override: dict[str, Any] | None) -> dict[str, Any]:
    """Recursively overlay ``override`` on ``base``; ``None`` values in the override mean 'keep'."""
    merged = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if value is None:
            continue
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _check_type(section: str, name: str, value: Any, annotation: Any) -> Any:
    """Coerce ints to floats where a float is expected; reject anything else that does not fit."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        annotation = next(a for a in args if a is not type(None))
        origin = typing.get_origin(annotation)
        args = typing.get_args(annotation)
    where = f"{section}.{name}"
    if origin is Literal:  # a setting with a fixed set of values: the annotation is the one list of them
        if value not in args:
            raise OvsegError(f"{where} must be one of {', '.join(map(str, args))}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise OvsegError(f"parameter {where} must be a list, got {value!r}")
        return [_check_type(section, name, v, args[0]) for v in value]
    if annotation is bool:
        if not isinstance(value, bool):
            raise OvsegError(f"parameter {where} must be true or false, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise OvsegError(f"parameter {where} must be a number, got {value!r}")
        return float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise OvsegError(f"parameter {where} must be an integer, got {value!r}")
        return value
    if annotation is str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):  # `start: 12` in params.yaml
            return str(value)
        if not isinstance(value, str):
            raise OvsegError(f"parameter {where} must be text, got {value!r}")
        return value
    return value


def _build_section(name: str, data: dict[str, Any]) -> Any:
    cls = SECTION_TYPES[name]
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise OvsegError(f"unknown parameter {name}.{unknown[0]} (known: {', '.join(sorted(known))})")
    missing = sorted(known - set(data))
    if missing:
        raise OvsegError(f"parameter {name}.{missing[0]} is missing from the preset and params.yaml")
    values = {key: _check_type(name, key, data[key], hints[key]) for key in known}
    return cls(**values)


def _validate(settings: Settings) -> None:
    if settings.embed.strategy in ("crop", "ensemble") and not settings.embed.crop_scales:
        raise OvsegError("embed.crop_scales must list at least one scale")
    if settings.embed.strategy in ("dense", "ensemble") and not settings.embed.dense_scales:
        raise OvsegError("embed.dense_scales must list at least one scale")
    if any(s <= 0 for s in settings.embed.crop_scales + settings.embed.dense_scales):
        raise OvsegError("embed scales must be positive")
    if settings.embed.dense_window < 0 or settings.embed.dense_stride < 1 or settings.embed.mask_token_mix < 0:
        raise OvsegError("embed.dense_window must be >= 0 (0 = whole image), dense_stride >= 1, mask_token_mix >= 0")
    if settings.select.top_k < 1:
        raise OvsegError(f"select.top_k must be at least 1, got {settings.select.top_k}")
    instances = settings.instances
    if not 0.0 <= instances.threshold <= 1.0 or instances.top_k < 0 or not 0.0 < instances.overlap <= 1.0:
        raise OvsegError("instances.threshold must be in [0, 1], instances.top_k >= 0 and instances.overlap in (0, 1]")
    if not 0.0 < settings.edit.style_strength <= 1.0 or not 0.0 < settings.edit.strength <= 1.0:
        raise OvsegError("edit.strength and edit.style_strength must be in (0, 1]")
    if settings.edit.learned_max_side < 64:
        raise OvsegError(f"edit.learned_max_side must be >= 64, got {settings.edit.learned_max_side}")
    if settings.edit.resolution % 8 or settings.edit.resolution < 64:
        raise OvsegError(f"edit.resolution must be a multiple of 8 and >= 64, got {settings.edit.resolution}")
    _validate_masks(settings.masks)
    _validate_video(settings.video)
    engine = settings.engine
    if engine.concurrency < 1 or engine.batch_size < 1 or engine.num_gpus < 0 or engine.num_cpus <= 0:
        raise OvsegError("engine.concurrency and engine.batch_size must be >= 1, num_gpus >= 0 and num_cpus > 0")


def _validate_video(video: VideoSettings) -> None:
    from ovseg.media.videoio import Cut

    Cut(video.start, video.end, video.every, video.fps)  # one line for a bad start, end, every or fps
    if video.keyframe_every < 1 or video.folder_fps <= 0 or not 0 < video.cut_threshold <= 1:
        raise OvsegError("video.keyframe_every must be >= 1, video.folder_fps > 0 and video.cut_threshold in (0, 1]")
    if not 0 < video.flow_scale <= 1 or video.box_grow < 0 or video.negative_ring < 0:
        raise OvsegError("video.flow_scale must be in (0, 1], video.box_grow and video.negative_ring >= 0")
    if video.fill_window < 0 or video.fill_consistency <= 0:
        raise OvsegError("video.fill_window must be >= 0 and video.fill_consistency > 0")


def _validate_masks(masks: MasksSettings) -> None:
    if masks.points_per_side < 1 or masks.max_image_side < 64:
        raise OvsegError("masks.points_per_side must be >= 1 and masks.max_image_side >= 64")
    if masks.generator == "ovseg" and (masks.crop_n_layers or masks.use_m2m):
        raise OvsegError(
            "masks.crop_n_layers and masks.use_m2m are sam2's generator's: set masks.generator: sam2-amg to use them"
        )
    if masks.generator == "sam2-amg" and masks.sampling != "grid":
        raise OvsegError("masks.sampling adaptive needs masks.generator: ovseg (sam2's generator prompts a grid)")
    if masks.points_per_batch < 1 or masks.points_per_round < 1 or masks.max_prompts < 1 or masks.max_masks < 1:
        raise OvsegError("masks.points_per_batch, points_per_round, max_prompts and max_masks must be >= 1")


def settings_from_params(params: dict[str, Any]) -> Settings:
    """Resolve a params.yaml dict into :class:`Settings` (preset, then per-stage overrides).

    Only the model settings: the request (photos, prompt, mode) is read by
    :func:`ovseg.request.request_from_params`. Which edit backends exist, and what each can do,
    the edit backends say themselves (:func:`ovseg.editing.check_backend`).
    """
    presets = load_presets()
    preset = params.get("preset") or "balanced"
    if preset not in presets or preset == "defaults":
        raise OvsegError(f"unknown preset {preset!r}; choose one of {', '.join(preset_names())}")
    resolved = deep_merge(presets["defaults"], presets[preset])
    for name in SECTION_TYPES:
        override = params.get(name)
        if override is not None and not isinstance(override, dict):
            raise OvsegError(f"parameter {name} must be a mapping of settings, got {override!r}")
        resolved[name] = deep_merge(resolved.get(name, {}), override)
    settings = Settings(
        preset=preset,
        device=str(params.get("device") or "auto"),
        strict=_check_type("params", "strict", params.get("strict", False), bool),
        max_image_pixels=_check_type("params", "max_image_pixels", params.get("max_image_pixels"), int | None),
        **{name: _build_section(name, resolved[name]) for name in SECTION_TYPES},
    )
    _validate(settings)
    return settings


def load_params(path: Path | str = "params.yaml") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise OvsegError(f"parameters file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise OvsegError(f"cannot parse {path}: {exc}".replace("\n", " ")) from None
    if not isinstance(data, dict):
        raise OvsegError(f"{path} must contain a mapping of parameters")
    return data


def parse_override(item: str) -> tuple[str, Any]:
    """``section.key=value`` (value read as YAML: 16, 0.5, true, [1.0, 2.0], text) -> (dotted key, value)."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise OvsegError(f"--set wants KEY=VALUE (e.g. masks.sampling=grid), got {item!r}")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    return key, value


def apply_overrides(params: dict[str, Any], items: list[str]) -> dict[str, Any]:
    """``params`` with each ``--set section.key=value`` (or top-level ``key=value``) applied."""
    merged = copy.deepcopy(params)
    for item in items:
        key, value = parse_override(item)
        parts = key.split(".")
        if len(parts) > 2:
            raise OvsegError(f"--set {key}: settings are one level deep (section.key), e.g. masks.sampling")
        if len(parts) == 2:
            section = merged.get(parts[0])
            if parts[0] not in SECTION_TYPES:
                raise OvsegError(f"--set {key}: unknown section {parts[0]!r} (known: {', '.join(SECTION_TYPES)})")
            merged[parts[0]] = {**(section or {}), parts[1]: value}
        else:
            merged[key] = value
    return merged
