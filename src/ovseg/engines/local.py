"""The local engine: every stage in this process, one heavy model at a time (what `ovseg run` always did)."""

from __future__ import annotations

from typing import Any

from tqdm import tqdm

from ovseg.errors import UnreadableImageError
from ovseg.pipeline.common import Item, LazyModel, Plan, Result, Run, Stage, StageReport
from ovseg.storage.claims import Claims
from ovseg.weights.registry import free_accelerator_memory

# Fewer items than this are planned without a progress bar (reading a few records is instant).
PROGRESS_FROM = 20


class LocalEngine:
    """Plain loops with progress bars; a stage's model loads on its first photo and is freed after the stage
    (or kept in the run's pool, for the Python API and the web page)."""

    name = "local"

    def prepare(self, run: Run) -> Run:
        return run

    def map(self, fn, items: list[Any], desc: str) -> list[Any]:
        return [fn(item) for item in tqdm(items, desc=desc, unit="image", disable=len(items) < PROGRESS_FROM)]

    def compute(self, stage: Stage, run: Run, plan: Plan) -> list[Result]:
        if not stage.has_model(run):
            model = LazyModel(None)
        elif run.pool is not None:
            pool, key = run.pool, stage.model_key(run)
            model = LazyModel(lambda: pool.get(key, lambda: stage.load(run)))
        else:
            model = LazyModel(lambda: stage.load(run))
        folder = stage.folder(run)
        claims = Claims(folder.url)
        results, busy = [], []

        def one(item: Item) -> Result:
            done = stage.reuse(run, item)  # another run may have finished it
            if done is not None:
                return done
            try:
                return stage.compute(run, plan.shared, model, item)
            except UnreadableImageError as exc:  # a photo that fails only now is skipped like any other
                return Result(item.stem, error=str(exc))

        try:
            for item in tqdm(plan.items, desc=stage.describe(run) if stage.describe else stage.name, unit="image"):
                with claims.attempt(stage.claim_name(item)) as claimed:
                    if claimed:
                        results.append(one(item))
                    else:  # another run is computing it: come back when the rest is done
                        busy.append(item)
            for item in busy:
                with claims.wait(stage.claim_name(item)):
                    results.append(one(item))
        finally:
            if run.pool is None and model.loaded:
                del model
                free_accelerator_memory()
        return results

    def after(self, run: Run, reports: list[StageReport]) -> None:
        return None
