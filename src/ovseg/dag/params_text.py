"""Editing params.yaml's text in place: ``ovseg run --dvc`` sets the options it was given and keeps every comment."""

from __future__ import annotations

import re
from typing import Any

import yaml

from ovseg.errors import OvsegError


def _yaml_scalar(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def update_params_text(text: str, updates: dict[str, Any]) -> str:
    """Set keys (``prompt`` or ``select.top_k``) in params.yaml text, keeping its comments.

    Why not load and dump: users annotate params.yaml, and `ovseg run --dvc` should not
    erase their notes. Only the value on the key's own line changes; missing keys are
    added at the end of their block.
    """
    lines = text.splitlines()
    for dotted, value in updates.items():
        parts = dotted.split(".")
        if len(parts) > 2:
            raise OvsegError(f"cannot set nested parameter {dotted!r}")
        rendered = _yaml_scalar(value)
        if len(parts) == 1:
            start, stop, indent = 0, len(lines), ""
        else:
            header = next((i for i, line in enumerate(lines) if re.match(rf"^{re.escape(parts[0])}:", line)), None)
            if header is None:
                lines += [f"{parts[0]}:"]
                header = len(lines) - 1
            elif re.match(rf"^{re.escape(parts[0])}:\s*\{{\s*\}}", lines[header]):
                lines[header] = f"{parts[0]}:"
            stop = next(
                (
                    i
                    for i in range(header + 1, len(lines))
                    if lines[i] and not lines[i][0].isspace() and not lines[i].startswith("#")
                ),
                len(lines),
            )
            start, indent = header + 1, "  "
        key = parts[-1]
        pattern = re.compile(rf"^{indent}{re.escape(key)}:(\s*)([^#]*?)(\s*#.*)?$")
        for i in range(start, stop):
            match = pattern.match(lines[i])
            if match:
                comment = match.group(3) or ""
                lines[i] = f"{indent}{key}: {rendered}{comment}"
                break
        else:
            insert_at = stop
            while insert_at > start and not lines[insert_at - 1].strip():
                insert_at -= 1
            lines.insert(insert_at, f"{indent}{key}: {rendered}")
    return "\n".join(lines) + "\n"
