"""What a stage's plan reads before it decides: the previous stage's manifest, records where they live, and
which keys are new; and how a skipped file is reported. The contract's types are in :mod:`.common`."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from ovseg.errors import OvsegError
from ovseg.pipeline.common import Engine, Item, Plan
from ovseg.storage.folders import OutputFolder


@dataclass
class SourceCheck:
    """A photo or clip as planning finds it (a plain task where it lives): its bytes' hash and its store key, or
    why it cannot be read."""

    stem: str
    location: str
    sha256: str = ""
    key: str = ""
    error: str = ""


def warn_skipped(name: str, reason: str) -> None:
    """The one line a skipped photo gets on stderr."""
    print(f"ovseg: warning: skipping {name}: {reason}", file=sys.stderr)


def entries_of(manifest: dict[str, Any] | None, stage: str, before: str) -> dict[str, dict[str, Any]]:
    """The per-photo entries of the previous stage's manifest, or one line naming the stage to run first."""
    if manifest is None:
        raise OvsegError(f"{stage}/manifest.json not found: run the {before} stage first (`dvc repro` or `ovseg run`)")
    return manifest["images"]


def unique_items(entries: dict[str, Any], key_field: str, done: set[str], item: Callable[[str, Any], Item]) -> Plan:
    """A plan over ``entries``: each entry's key (attribute ``key_field``) reused when done, else computed once.

    Two photos with the same content share a key: the first computes it, the second reuses it.
    """
    plan, queued = Plan(), set()
    for stem, entry in entries.items():
        key = getattr(entry, key_field)
        if key in done or key in queued:
            plan.reused.append(stem)
        else:
            queued.add(key)
            plan.items.append(item(stem, entry))
    return plan


def record_fields(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``data`` that are fields of dataclass ``cls`` (a manifest may carry more)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}


def read_record(stem: str, folder: str, name: str) -> tuple[str, dict[str, Any] | None]:
    """A plain task: one photo's record (``selection.json``, ``edit.json``) in a results folder, or None."""
    return stem, OutputFolder(folder).record(f"{stem}/{name}")


def read_records(engine: Engine, out: OutputFolder, name: str, stems: list[str]) -> dict[str, dict[str, Any] | None]:
    """Each photo's record ``name`` in ``out`` (None where there is none), read by the engine where they live."""
    return dict(engine.map(partial(read_record, folder=out.url, name=name), list(stems), f"read {name}"))
