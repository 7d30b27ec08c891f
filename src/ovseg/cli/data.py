"""``ovseg data``: the public data sets the benchmarks and ``evaluate`` read, where they are, and fetching them."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from ovseg.cli.common import console, data_app, fail
from ovseg.errors import OvsegError


@data_app.command("list")
def data_list() -> None:
    """Each data set ovseg can fetch, whether it is on disk ($OVSEG_DATA, default data/datasets), and its terms."""
    from ovseg.evaluation.sources import SOURCES, data_root

    table = Table(title=f"data sets in {data_root()}")
    for column in ("name", "on disk", "what", "layout", "licence"):
        table.add_column(column, overflow="fold")
    for name, spec in SOURCES.items():
        folder = data_root() / name
        where = str(folder) if folder.is_dir() else "[red]missing[/] (ovseg data download " + name + ")"
        table.add_row(name, where, spec.title, spec.layout, spec.licence)
    console.print(table)


@data_app.command("download")
def data_download(
    names: list[str] = typer.Argument(..., help="davis (DAVIS 2017 trainval 480p) and/or camvid (CamVid val)."),
    root: Path | None = typer.Option(None, "--root", help="Where the data sets go (default: $OVSEG_DATA)."),
    force: bool = typer.Option(False, "--force", help="Download again even if present."),
) -> None:
    """Fetch public data sets from their publishers into ovseg's layout (needs internet; a progress bar each)."""
    from ovseg.evaluation.sources import download_dataset, source

    try:
        for name in names:
            console.print(f"downloading {source(name).title} ...")
            console.print(f"  -> {download_dataset(name, root, force=force, log=console.print)}")
    except OvsegError as exc:
        fail(exc)
