"""Engines: how a run's stages are scheduled. Chosen here, once, from ``engine.kind``.

``local`` runs every stage in this process, one after the other; ``ray`` runs each stage as
a Ray Data job over a cluster, with cache and results in folders or buckets. Engines only
schedule: each stage's plan, per-photo work and records are its contract's
(:mod:`ovseg.pipeline`), so both engines compute the same photos and write the same bytes,
and either reuses what the other computed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from ovseg.config import Registry
from ovseg.pipeline.common import Plan, Result, Run, Stage, StageReport, run_stages


class Scheduler(Protocol):
    """An engine: plain tasks for planning, and the stages' per-photo work with their models."""

    name: str

    def prepare(self, run: Run) -> Run:
        """The run as this engine needs it (connected to its cluster, paths made absolute)."""

    def map(self, fn, items: list[Any], desc: str) -> list[Any]:
        """``fn`` over ``items`` as plain tasks (hashing bytes, reading records)."""

    def compute(self, stage: Stage, run: Run, plan: Plan) -> list[Result]:
        """``stage.compute`` over the plan's items, the stage's model loaded once per worker."""

    def after(self, run: Run, reports: list[StageReport]) -> None:
        """Anything the engine records about a whole run."""


def _local() -> Scheduler:
    from ovseg.engines.local import LocalEngine

    return LocalEngine()


def _ray() -> Scheduler:
    from ovseg.engines.ray_data import RayEngine

    return RayEngine()


ENGINES: Registry[Scheduler] = Registry("engine.kind", {"local": _local, "ray": _ray})


def engine_for(run: Run) -> Scheduler:
    """The engine ``engine.kind`` names (the one place it is chosen)."""
    return ENGINES.create(run.settings.engine.kind)


def run_pipeline(run: Run, stages: Iterable[Stage] | None = None) -> list[StageReport]:
    """Every stage (or ``stages``) for the run's photos, with the engine its settings name."""
    from ovseg.pipeline import stages_for

    engine = engine_for(run)
    run = engine.prepare(run)
    reports = run_stages(run, engine, stages_for(run.request) if stages is None else stages)
    engine.after(run, reports)
    return reports
