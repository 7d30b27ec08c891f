"""Every knob described from the code: its documentation, the values its type allows, and each preset's value.

What ``ovseg settings`` prints, kept below the command line so that the page or a notebook can show the same.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass
from typing import Any, Literal

from ovseg.config.loading import UNIONS, deep_merge, load_presets, preset_names
from ovseg.config.settings import SECTION_TYPES
from ovseg.errors import OvsegError


@dataclass(frozen=True)
class KnobRow:
    """One knob as a person reads it: ``values`` in words, values as params.yaml spells them."""

    name: str
    values: str
    default: str
    presets: tuple[str, ...]  # each preset's value, "" where it keeps the default
    doc: str


def values_of(annotation: Any) -> str:
    """The values a knob's type allows, in words: ``grid | adaptive``, ``number or null``, ``list of numbers``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return " | ".join(map(str, args))
    if origin in UNIONS:
        return " or ".join("null" if a is type(None) else values_of(a) for a in args)
    if origin is list:
        return f"list of {values_of(args[0])}s"
    return {bool: "true | false", int: "integer", float: "number", str: "text"}.get(annotation, str(annotation))


def _shown(value: Any) -> str:
    """A value as params.yaml spells it."""
    if isinstance(value, str):
        return value
    return json.dumps(value) if isinstance(value, (list, dict)) or value is None else str(value).lower()


def describe_settings(
    sections: list[str] | None = None, choices: dict[str, list[str]] | None = None
) -> tuple[dict[str, list[KnobRow]], list[str]]:
    """Section -> a row per knob, and the presets the rows' ``presets`` columns name (in that order).

    ``choices``: ``section.knob`` -> the names a registry allows, for the knobs that pick an implementation (their
    type is text; the registries live above this layer, so the caller passes them).
    """
    unknown = [s for s in sections or [] if s not in SECTION_TYPES]
    if unknown:
        raise OvsegError(f"unknown settings section {unknown[0]!r}; choose among {', '.join(SECTION_TYPES)}")
    presets = load_presets()
    names = preset_names()
    result: dict[str, list[KnobRow]] = {}
    for section in sections or list(SECTION_TYPES):
        cls = SECTION_TYPES[section]
        hints = typing.get_type_hints(cls)
        default = presets["defaults"][section]
        resolved = {name: deep_merge(default, presets[name].get(section)) for name in names}
        rows = []
        for field in dataclasses.fields(cls):
            base = default[field.name]
            own = tuple(
                "" if resolved[name][field.name] == base else _shown(resolved[name][field.name]) for name in names
            )
            allowed = (choices or {}).get(f"{section}.{field.name}")
            values = " | ".join(allowed) if allowed else values_of(hints[field.name])
            rows.append(KnobRow(field.name, values, _shown(base), own, field.metadata["doc"]))
        result[section] = rows
    return result, names
