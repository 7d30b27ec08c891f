"""Parameters: params.yaml + a preset from presets.yaml -> typed, validated :class:`~ovseg.config.settings.Settings`.

Why a preset plus overrides: users pick `fast|balanced|quality` with one key and still
tune any single knob; DVC tracks `preset` and each stage's section as params, so a
change reruns exactly the stages that read it.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from ovseg.config.settings import (
    SECTION_TYPES,
    Settings,
)
from ovseg.errors import OvsegError

PRESETS_FILE = "presets.yaml"
UNIONS = (typing.Union, types.UnionType)  # `Optional[X]` and `X | None` as typing reports them


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
    if origin in UNIONS:
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
    settings.check()
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
