"""Shared entry point for the stage scripts in ``stages/``.

Why: each stage must fail the same way on user mistakes (one line on stderr, exit 2,
no traceback), and report what it computed versus reused from the cache.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from ovseg.config import Settings, load_settings
from ovseg.errors import OvsegError
from ovseg.pipeline import Paths, StageReport


def run_stage(name: str, stage: Callable[[Settings, Paths], StageReport], params_file: str = "params.yaml") -> None:
    try:
        settings = load_settings(params_file)
        report = stage(settings, Paths())
    except OvsegError as exc:
        print(f"ovseg {name}: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"ovseg {name}: interrupted; finished artifacts are kept, partial ones were discarded", file=sys.stderr)
        sys.exit(130)
    print(report.line())
