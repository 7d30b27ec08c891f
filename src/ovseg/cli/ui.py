"""``ovseg ui``: the web page."""

from __future__ import annotations

from pathlib import Path

import typer

from ovseg.cli.common import app, console, fail, preset_models
from ovseg.errors import OvsegError


@app.command()
def ui(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to serve on (127.0.0.1: this computer only)."),
    port: int = typer.Option(7860, "--port"),
    config: str | None = typer.Option(
        None, "--config", "-c", help="Preset selected at start (default: balanced if its weights exist, else cpu)."
    ),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | mps"),
    cache: Path = typer.Option(Path("cache"), "--cache", help="The stage cache shared with `ovseg run`."),
    sets: list[str] = typer.Option([], "--set", help="Override any stage setting, e.g. --set embed.model=..."),
    open_browser: bool = typer.Option(False, "--open", help="Open the page in the default browser."),
) -> None:
    """Serve the web page: drop a photo, say what to find, click to correct, remove / replace / style it."""
    import os

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline by default: no usage reports
    try:
        from ovseg.ui import Workbench, serve
    except ImportError as exc:
        fail(OvsegError(f'the web page needs the ui extra ({exc.name} is missing): pip install -e ".[ui]"'))
    from ovseg.config import apply_overrides, preset_names, settings_from_params
    from ovseg.downloads import verify

    try:
        if config is None:
            config = "balanced" if not any(verify(name) for name in preset_models("balanced")) else "cpu"
        if config not in preset_names():
            raise OvsegError(f"unknown preset {config!r}; choose from {', '.join(preset_names())}")
        settings_from_params(apply_overrides({"preset": config, "device": device}, sets))
    except OvsegError as exc:
        fail(exc)
    missing = [name for name in preset_models(config) if verify(name)]
    if missing and not sets:
        console.print(f"[yellow]note: preset {config} is missing weights for {', '.join(missing)}[/]", highlight=False)
    console.print(f"ovseg ui: http://{host}:{port}  (preset {config}, cache {cache}; Ctrl+C stops it)")
    serve(Workbench(cache, device, sets), config, host, port, open_browser)
