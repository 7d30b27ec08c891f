"""``ovseg settings``: every knob, what it does, the values it takes, and each preset's value, read from the code."""

from __future__ import annotations

import typer
from rich.table import Table

from ovseg.cli.common import app, console, fail
from ovseg.errors import OvsegError


@app.command("settings")
def settings(
    sections: list[str] = typer.Argument(None, help="Only these sections (masks, embed, score, select, ...)."),
) -> None:
    """Every setting: its values, its default, each preset's own value, and what it does (docs live in the code)."""
    from ovseg.config.describe import describe_settings
    from ovseg.editing import BACKENDS
    from ovseg.engines import ENGINES
    from ovseg.masks import GENERATORS
    from ovseg.video import PROPAGATORS
    from ovseg.video.fills import FILLS

    registries = {"masks.generator": GENERATORS, "edit.backend": BACKENDS, "video.propagator": PROPAGATORS,
                  "video.fill": FILLS}  # fmt: skip
    choices = {knob: registry.choices() for knob, registry in {**registries, "engine.kind": ENGINES}.items()}
    try:
        rows_by_section, presets = describe_settings(list(sections or []), choices)
    except OvsegError as exc:
        fail(exc)
    for section, rows in rows_by_section.items():
        table = Table(
            title=f"{section} (params.yaml: {section}.<knob>; --set {section}.<knob>=VALUE)", title_justify="left"
        )
        table.add_column("knob", no_wrap=True)
        table.add_column("values", overflow="fold")
        table.add_column("default", overflow="fold")
        for preset in presets:
            table.add_column(preset, overflow="fold")
        table.add_column("what it does", overflow="fold", ratio=3)
        for row in rows:
            table.add_row(row.name, row.values, row.default, *row.presets, row.doc)
        console.print(table)
    console.print("A preset's column is empty where it keeps the default.", highlight=False)
