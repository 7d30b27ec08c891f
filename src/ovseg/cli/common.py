"""What every ``ovseg`` command shares: the Typer app, the consoles, and the one way to fail."""

from __future__ import annotations

import os
from typing import Any

import typer
from rich.console import Console

from ovseg.errors import OvsegError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="`ovseg` command line: run the pipeline, inspect artifacts, manage weights and cache, benchmark.",
)
weights_app = typer.Typer(no_args_is_help=True, help="List, download, verify or build model weights.")
app.add_typer(weights_app, name="weights")
cache_app = typer.Typer(no_args_is_help=True, help="Manage the content-addressed stage cache.")
app.add_typer(cache_app, name="cache")
data_app = typer.Typer(no_args_is_help=True, help="List or download the public data sets the benchmarks read.")
app.add_typer(data_app, name="data")
console = Console()
err_console = Console(stderr=True)

PRESET_HELP = "Preset: cpu | fast | balanced | quality | tiny (docs/presets.md)."


def fail(exc: OvsegError) -> None:
    """One line on stderr, exit code 2: how every user mistake ends."""
    err_console.print(f"[bold red]ovseg: error:[/] {exc}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


ENV_SETTINGS = "OVSEG_SET"


def with_settings(params: dict[str, Any], sets: list[str]) -> dict[str, Any]:
    """``params`` with the environment's settings (``OVSEG_SET="video.end=3; masks.max_prompts=64"``), then the
    command line's ``--set``s, applied: a shell, a CI job or a test can shorten or point every ``ovseg run`` and
    ``ovseg evaluate`` the same way without editing the commands. The command line wins over the environment.
    (``ovseg run --dvc`` ignores it: what DVC runs is what params.yaml says, or its cache would not know.)"""
    from ovseg.config import apply_overrides

    environment = [part.strip() for part in os.environ.get(ENV_SETTINGS, "").split(";") if part.strip()]
    try:
        params = apply_overrides(params, environment)
    except OvsegError as exc:
        raise OvsegError(f"{ENV_SETTINGS}: {exc}") from None
    return apply_overrides(params, sets)


def given(**values: Any) -> dict[str, Any]:
    """The options the user gave (None: not given, the params file or preset decides)."""
    return {k: v for k, v in values.items() if v is not None}


def preset_models(preset: str, removal: bool = False) -> list[str]:
    """The weights a preset needs: its mask model, its CLIP, its inpainting model; with ``removal``, also
    the learned removers its ``edit.remove_with`` prefers (LaMa), which it uses once they are on disk."""
    from ovseg.config import settings_from_params
    from ovseg.editing import BACKENDS

    settings = settings_from_params({"preset": preset})
    names = [settings.masks.model, settings.embed.model, settings.edit.model]
    if removal:
        for backend in (BACKENDS.create(name) for name in settings.edit.remove_with):
            model = getattr(settings.edit, backend.weights_setting) if backend.weights_setting else None
            if model is not None and model not in names:
                names.append(model)
    return names
