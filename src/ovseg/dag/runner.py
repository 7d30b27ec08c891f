"""Shared entry point for the stage scripts in ``stages/``.

Why: each stage must fail the same way on user mistakes (one line on stderr, exit 2,
no traceback), and report what it computed versus reused from the cache. The DVC stages
run on the local engine and mirror the image folder (results of photos no longer in it
are removed).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from ovseg.config import Settings, load_params, settings_from_params
from ovseg.errors import OvsegError, from_os_error
from ovseg.request import request_from_params


def run_stage(name: str, params_file: str = "params.yaml") -> None:
    """The DAG's stage ``name`` (masks, embed, score, select, edit) with params.yaml's settings and request."""

    def one(settings: Settings, params: dict) -> str:
        from ovseg.engines.local import LocalEngine
        from ovseg.pipeline import VIDEO_STAGES, new_run, stage_named
        from ovseg.pipeline.common import run_stages

        stage = stage_named(name)
        request = request_from_params(params)
        run = new_run(settings, request, prune=True)
        if stage in VIDEO_STAGES and request.videos is None:  # a project of photos: its video stages rest
            stage.folder(run).ensure_writable()  # DVC wants a stage's output folder to exist
            return f"{name}: no videos (params.yaml: videos: null), nothing to do"
        return run_stages(run, LocalEngine(), [stage])[0].line()

    run_job(name, one, params_file)


def run_job(name: str, job: Callable[[Settings, dict], str], params_file: str = "params.yaml") -> None:
    """Run ``job(settings, params)``; print the line it returns, or the one-line error and exit 2."""
    try:
        params = load_params(params_file)
        line = job(settings_from_params(params), params)
    except (OvsegError, OSError) as exc:
        message = from_os_error(exc) if isinstance(exc, OSError) else exc
        print(f"ovseg {name}: error: {message}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"ovseg {name}: interrupted; finished artifacts are kept, partial ones were discarded", file=sys.stderr)
        sys.exit(130)
    print(line)
