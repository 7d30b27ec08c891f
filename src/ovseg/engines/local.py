"""The local engine: every stage in this process, one heavy model at a time (what `ovseg run` always did)."""

from __future__ import annotations

from pathlib import Path

from ovseg.config import Settings
from ovseg.errors import OvsegError
from ovseg.fileio import is_url
from ovseg.pipeline import Paths, StageReport, images_for, run_edit, run_embed, run_masks, run_score, run_select


def run_local(settings: Settings, cache: str, output: str, visualize: bool) -> list[StageReport]:
    if is_url(cache) or is_url(settings.images) or is_url(output):
        raise OvsegError("buckets (s3://, gs://) need the Ray engine: add --engine ray (README 'Many machines')")
    paths = Paths(cache=Path(cache), output=Path(output))
    return [
        run_masks(settings, images_for(settings), paths),
        run_embed(settings, paths),
        run_score(settings, paths),
        run_select(settings, paths, visualize=visualize, prune=False),
        run_edit(settings, paths, prune=False),
    ]
