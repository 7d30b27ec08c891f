"""Engines: how a run's images are scheduled. Chosen here, once, from ``engine.kind``.

``local`` runs the stage functions in this process, one after the other; ``ray`` runs each
stage as a Ray Data job over a cluster, with cache and results in folders or buckets. Both
call the same per-image stage code and write the same cache layout, so either can reuse what
the other computed.
"""

from __future__ import annotations

from collections.abc import Callable

from ovseg.config import Settings
from ovseg.pipeline import StageReport


def _local(settings: Settings, cache: str, output: str, visualize: bool) -> list[StageReport]:
    from ovseg.engines.local import run_local

    return run_local(settings, cache, output, visualize)


def _ray(settings: Settings, cache: str, output: str, visualize: bool) -> list[StageReport]:
    from ovseg.engines.ray_data import run_ray

    return run_ray(settings, cache, output, visualize)


ENGINES: dict[str, Callable[[Settings, str, str, bool], list[StageReport]]] = {"local": _local, "ray": _ray}


def run_pipeline(settings: Settings, cache: str, output: str, visualize: bool = True) -> list[StageReport]:
    """Every stage for ``settings.images`` with the engine ``settings.engine.kind`` names."""
    return ENGINES[settings.engine.kind](settings, cache, output, visualize)
