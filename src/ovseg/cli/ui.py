"""``ovseg ui``: the web page."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path

import typer

from ovseg.cli.common import PRESET_HELP, app, console, err_console, fail, preset_models
from ovseg.errors import OvsegError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def parse_auth(auth: str | None, no_auth: bool, host: str) -> tuple[str, str] | None:
    """``--auth USER:PASS``; a page served beyond this computer needs it, or an explicit ``--no-auth``."""
    if auth is not None:
        user, sep, password = auth.partition(":")
        if not sep or not user or not password:
            raise OvsegError("--auth wants USER:PASS, e.g. --auth ana:s3cret")
        return user, password
    if host not in LOOPBACK and not no_auth:
        raise OvsegError(
            f"--host {host} serves the page to your network, where anyone could use it and read your photos: "
            "add --auth USER:PASS, or --no-auth to serve it open anyway"
        )
    return None


@app.command()
def ui(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to serve on (127.0.0.1: this computer only)."),
    port: int = typer.Option(7860, "--port"),
    config: str | None = typer.Option(
        None, "--config", "-c", help=PRESET_HELP + " Default: balanced if its weights exist, else cpu."
    ),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | mps"),
    cache: Path = typer.Option(Path("cache"), "--cache", help="The stage cache shared with `ovseg run`."),
    sets: list[str] = typer.Option([], "--set", help="Override any stage setting, e.g. --set embed.model=..."),
    open_browser: bool = typer.Option(False, "--open", help="Open the page in the default browser."),
    auth: str | None = typer.Option(None, "--auth", help="USER:PASS a visitor must give (needed off 127.0.0.1)."),
    no_auth: bool = typer.Option(False, "--no-auth", help="Serve off 127.0.0.1 without a password (warns)."),
    max_video_frames: int = typer.Option(
        900, "--max-video-frames", help="The Video tab asks for a shorter part of a clip over this many frames."
    ),
) -> None:
    """Serve the web page: drop a photo (or a clip), say what to find, click to correct, remove / replace / style it."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline by default: no usage reports
    from ovseg.config import apply_overrides, preset_names, settings_from_params
    from ovseg.weights.downloads import verify

    try:
        credentials = parse_auth(auth, no_auth, host)
        if config is None:
            config = "balanced" if not any(verify(name) for name in preset_models("balanced")) else "cpu"
        if config not in preset_names():
            raise OvsegError(f"unknown preset {config!r}; choose from {', '.join(preset_names())}")
        settings_from_params(apply_overrides({"preset": config, "device": device}, sets))
    except OvsegError as exc:
        fail(exc)
    if host not in LOOPBACK and credentials is None:
        err_console.print(f"[bold yellow]ovseg: warning:[/] serving on {host} without a password (--no-auth)")
    # One folder per server for every file the page writes (Gradio's copies included), removed at exit.
    scratch = Path(tempfile.mkdtemp(prefix="ovseg-ui-"))
    os.environ["GRADIO_TEMP_DIR"] = str(scratch / "gradio")  # read when gradio is imported: set it first
    (scratch / "tmp").mkdir()
    os.environ["TMPDIR"] = str(scratch / "tmp")  # what libraries write there too (torch's kernel cache)
    tempfile.tempdir = None
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        try:
            from ovseg.web.page import Workbench, serve
        except ImportError as exc:
            fail(OvsegError(f'the web page needs the ui extra ({exc.name} is missing): pip install -e ".[ui]"'))
        missing = [name for name in preset_models(config) if verify(name)]
        if missing and not sets:
            console.print(f"[yellow]note: preset {config} is missing weights for {', '.join(missing)}[/]")
        console.print(f"ovseg ui: http://{host}:{port}  (preset {config}, cache {cache}; Ctrl+C stops it)")
        bench = Workbench(cache, device, sets, scratch / "requests")
        bench.preload(config)  # the page says "Loading models…" until they are in memory
        serve(bench, config, host, port, open_browser, credentials, max_video_frames)
    except KeyboardInterrupt:
        console.print("ovseg ui: stopped")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
