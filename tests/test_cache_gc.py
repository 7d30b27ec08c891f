"""`ovseg cache gc`: stores nothing uses any more go, stores any result still needs stay."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

from conftest import Layout, load_run, manifest, run_ovseg_in_process, segment_all, with_request

from ovseg.storage.cache_gc import TEMP_GRACE_SECONDS, collect_garbage
from ovseg.storage.locations import read_json


def _stores(folder: Path) -> set[str]:
    return {p.name.removesuffix(".zarr") for p in folder.glob("*.zarr")}


def test_gc_keeps_what_results_use_and_drops_the_rest(workspace: Path) -> None:
    run, paths = load_run(), Layout()
    segment_all(run)
    old_scores = {e["scores"] for e in manifest(paths.scores).values()}
    red = with_request(run, prompt="a red disc")
    segment_all(red)
    red_chelsea = manifest(paths.scores)["chelsea"]
    # Like `ovseg run --image shapes.png`: the manifests now name one photo only, chelsea's
    # selection (made with "a red disc") stays on disk and must keep its inputs alive.
    alone = dataclasses.replace(with_request(run, images="data/images/shapes.png", prompt="a blue box"), prune=False)
    segment_all(alone)
    assert set(manifest(paths.masks)) == {"shapes"}
    blue = manifest(paths.scores)["shapes"]["scores"]
    assert read_json(paths.segment / "chelsea/selection.json")["artifacts"]["scores"] == red_chelsea["scores"]

    old_temp = paths.masks / ".abc.zarr.x1.tmp"
    young_temp = paths.masks / ".def.zarr.x2.tmp"
    for temp in (old_temp, young_temp):
        (temp / "partial").mkdir(parents=True)
    past = time.time() - TEMP_GRACE_SECONDS - 60
    os.utime(old_temp, (past, past))

    scores_before = _stores(paths.scores)
    preview = collect_garbage(paths.cache, [paths.output], dry_run=True)
    assert preview.removed and preview.freed_bytes > 0
    assert _stores(paths.scores) == scores_before and old_temp.exists()

    report = collect_garbage(paths.cache, [paths.output])
    assert {p.name for p in report.removed} == {p.name for p in preview.removed}
    assert not old_temp.exists() and young_temp.exists()
    left = _stores(paths.scores)
    assert red_chelsea["scores"] in left and blue in left
    assert not old_scores & left and len(left) == 2
    assert red_chelsea["masks"] in _stores(paths.masks) and red_chelsea["embeddings"] in _stores(paths.embeddings)
    assert (paths.masks / f"{red_chelsea['masks']}.candidates.png").is_file()

    # Nothing in use was lost: the whole batch again reuses every mask and feature.
    again = segment_all(red)
    assert again[0].computed == [] and again[1].computed == [] and again[2].computed == ["shapes"]
    # ... and the "a blue box" scores of shapes are what is unused now.
    # (its completion marker goes first, so a gc that stops half-way never leaves a marker without a store)
    unused = collect_garbage(paths.cache, [paths.output], dry_run=True).removed
    assert unused == [paths.scores / f"{blue}.done", paths.scores / f"{blue}.zarr"]


def test_gc_command(workspace: Path) -> None:
    run, paths = load_run(), Layout()
    segment_all(run)
    segment_all(with_request(run, prompt="a red disc"))
    result = run_ovseg_in_process("cache", "gc", cwd=workspace)
    assert result.returncode == 0, result.stderr
    assert "unused: 2 (freed" in result.stdout  # two stores (each with its marker)
    assert len(_stores(paths.scores)) == 2
