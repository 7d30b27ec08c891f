"""The Ray engine: every stage as a Ray Data job, for folders and buckets too big for one machine.

It only schedules the stages' contracts (:mod:`ovseg.pipeline`): a stage's plan runs where
the run started, its light per-photo planning work (hashing bytes, reading records) as Ray
Data tasks, and its per-photo work as ``map_batches``: with an actor pool that loads the
stage's model once per actor (masks, embed, edit: ``engine.concurrency`` actors, each with
``engine.num_gpus`` and ``engine.num_cpus``), or as plain tasks for stages without a model
(score, select). Ray retries a failed task and may run one twice; that rewrites identical
bytes under the same names (content keys, markers and result records last), so results are
exactly-once although execution is at-least-once. A photo that cannot be decoded becomes an
error row, never a failed job. Stages run one after the other, so one model kind holds the
GPUs at a time.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import sys
from pathlib import Path
from typing import Any

from ovseg.config import EngineSettings
from ovseg.errors import OvsegError, UnreadableImageError
from ovseg.pipeline.common import LazyModel, Plan, Result, Run, Stage, StageReport
from ovseg.storage.folders import Folder, StageFolder
from ovseg.storage.locations import is_url

# Environment the workers need to find weights and buckets; forwarded to every one.
FORWARDED_ENV = ("OVSEG_", "FSSPEC_", "AWS_", "GOOGLE_", "HF_", "HUGGINGFACE_")
# The cache stages whose manifests a run copies into <output>/ray/.
RECORDED_STAGES = ("masks", "embeddings", "scores")
TASK_BATCH = 8


class RayEngine:
    """Ray Data jobs: plain tasks for planning and model-free stages, actor pools for model stages."""

    name = "ray"

    def prepare(self, run: Run) -> Run:
        """Connect to the cluster; local paths become absolute (actors run in their own working folders)."""
        run.check_places()
        connect(run.settings.engine)
        request = dataclasses.replace(run.request, images=_absolute(run.request.images))
        return dataclasses.replace(
            run, request=request, cache=_absolute(run.cache), output=_absolute(run.output), stop=None
        )  # a page's button lives in this process: actors cannot ask it

    def map(self, fn, items: list[Any], desc: str) -> list[Any]:
        import ray

        if not items:
            return []
        rows = (
            ray.data.from_items([{"item": pickle.dumps(item)} for item in items])
            .map_batches(_map_batch, fn_kwargs={"fn": fn}, batch_size=16, runtime_env=_runtime_env())
            .take_all()
        )
        return [pickle.loads(row["result"]) for row in rows]

    def compute(self, stage: Stage, run: Run, plan: Plan) -> list[Result]:
        import ray

        run = run.without_pool()
        data = ray.data.from_items([{"item": pickle.dumps(item)} for item in plan.items])
        arguments = {"stage": stage, "run": run, "shared": plan.shared}
        if not stage.has_model(run):
            data = data.map_batches(
                _compute_batch, fn_kwargs=arguments, batch_size=TASK_BATCH, runtime_env=_runtime_env()
            )
        else:
            data = data.map_batches(StageActor, fn_constructor_kwargs=arguments, **_actor_args(run.settings.engine))
        return [pickle.loads(row["result"]) for row in data.take_all()]

    def after(self, run: Run, reports: list[StageReport]) -> None:
        record_run(run, reports)


def _absolute(location: str) -> str:
    return location if is_url(location) else str(Path(location).resolve())


def record_run(run: Run, reports: list[StageReport]) -> None:
    """The run's records in ``<output>/ray/``: each cache stage's manifest, and ``run.json`` (every stage's numbers).

    They are small and change exactly when some photo's content key or result changes: what
    a DVC stage that submits the cluster run tracks (``ovseg sync <output>/ray data/output/ray``
    brings them next to the DVC project when the output is a bucket).
    """
    records = Folder(f"{run.output}/ray")
    for stage in RECORDED_STAGES:
        manifest = StageFolder(run.cache, stage).read_json()
        if manifest is not None:
            records.write_json(manifest, f"{stage}.json")
    records.write_json({report.stage: report.record("ray") for report in reports}, "run.json")


def connect(engine: EngineSettings) -> None:
    """Join the cluster at ``engine.address``, or start a local one (this machine's CPUs/GPUs)."""
    try:
        import ray
    except ImportError:
        raise OvsegError('the Ray engine needs the ray extra: pip install -e ".[ray]"') from None
    if ray.is_initialized():
        return
    try:
        ray.init(address=engine.address, runtime_env=_runtime_env(), logging_level="warning")
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise OvsegError(f"cannot reach the Ray cluster at {engine.address!r}: {exc}") from None


def forwarded_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV)}


def _runtime_env() -> dict[str, Any]:
    return {"env_vars": forwarded_env()}


def _actor_args(engine: EngineSettings) -> dict[str, Any]:
    """``map_batches`` arguments for a model stage: an actor pool, its resources and batch size."""
    from ray.data import ActorPoolStrategy

    return {
        "compute": ActorPoolStrategy(size=engine.concurrency),
        "num_gpus": engine.num_gpus,
        "num_cpus": engine.num_cpus,
        "batch_size": engine.batch_size,
        "runtime_env": _runtime_env(),
    }


def _map_batch(batch: dict[str, Any], fn) -> dict[str, list]:
    return {"result": [pickle.dumps(fn(pickle.loads(item))) for item in batch["item"]]}


def _compute_all(stage: Stage, run: Run, shared: Any, model: LazyModel, batch: dict[str, Any]) -> dict:
    results = []
    for data in batch["item"]:
        item = pickle.loads(data)  # our own Item, pickled by compute above
        result = stage.reuse(run, item)  # another run finished it meanwhile
        try:
            result = result or stage.compute(run, shared, model, item)
        except UnreadableImageError as exc:  # an error row, never a failed job
            result = Result(item.stem, error=str(exc))
        results.append(pickle.dumps(result))
    return {"result": results}


def _compute_batch(batch: dict[str, Any], stage: Stage, run: Run, shared: Any) -> dict[str, list]:
    """A plain task of a stage without a model (score, select)."""
    return _compute_all(stage, run, shared, LazyModel(None), batch)


class StageActor:
    """A Ray actor of a model stage: the stage's model loads once, on the actor's first photo."""

    def __init__(self, stage: Stage, run: Run, shared: Any) -> None:
        _share_cpus(run.settings.engine)
        self.stage, self.run, self.shared = stage, run, shared
        self.model = LazyModel(lambda: stage.load(run))

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        return _compute_all(self.stage, self.run, self.shared, self.model, batch)


def _share_cpus(engine: EngineSettings) -> None:
    """Size this actor's torch threads to its CPU share: OMP_NUM_THREADS, which a torch imported later reads, and
    torch's own setting when torch is already in. Importing torch here would cost an actor whose stage never uses
    it (the OpenCV painter's edit stage) ~3 s."""
    threads = max(1, int(engine.num_cpus))
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
