"""The local engine: every stage in this process, one heavy model at a time (what `ovseg run` always did)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from ovseg.config import Settings
from ovseg.errors import OvsegError
from ovseg.fileio import is_url
from ovseg.pipeline import Paths, StageReport, images_for, run_edit, run_embed, run_masks, run_score, run_select


def run_local(settings: Settings, cache: str, output: str, visualize: bool) -> list[StageReport]:
    if is_url(cache) or is_url(settings.images) or is_url(output):
        raise OvsegError("buckets (s3://, gs://) need the Ray engine: add --engine ray (README 'Many machines')")
    paths = Paths(cache=Path(cache), output=Path(output))
    stages: list[Callable[[], StageReport]] = [
        lambda: run_masks(settings, images_for(settings), paths),
        lambda: run_embed(settings, paths),
        lambda: run_score(settings, paths),
        lambda: run_select(settings, paths, visualize=visualize, prune=False),
        lambda: run_edit(settings, paths, prune=False),
    ]
    return [_timed(stage) for stage in stages]


def _timed(stage: Callable[[], StageReport]) -> StageReport:
    """Run a stage and keep its wall time in the report (the summary line's images/s, the engine benchmark)."""
    started = time.perf_counter()
    report = stage()
    report.seconds = time.perf_counter() - started
    return report
