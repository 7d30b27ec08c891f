"""What every stage contract shares: the run it belongs to, its plan, its report, and how models are held.

A stage is a :class:`Stage`: four functions an engine calls in order.

1. ``plan(run, engine)``: given the photos and the keys already done, which photos to compute
   and which to reuse. It may ask the engine to ``map`` a light per-photo function (hash the
   bytes, read a record) where the photos live.
2. ``load(run)``: the stage's model, once per worker and only if some photo needs it (None:
   a stage of plain tasks without a model).
3. ``compute(run, shared, model, item)``: one photo (an :class:`Item`); writes its store or result folder and
   hands back a :class:`Result`.
4. ``finish(run, plan, results)``: the stage's manifest or summary, and its report.

Plans, items and results are dataclasses, each stage's own subclass naming the fields it reads, so what
crosses from plan to worker to finish is spelled out in one place and checked where it is built.

Engines (``ovseg.engines``) only schedule these: the local engine in this process, the Ray
engine as Ray Data jobs. Neither plans anything of its own, so both compute exactly the same
photos and write exactly the same bytes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from PIL import Image

from ovseg.config import Settings
from ovseg.errors import OvsegError
from ovseg.media.fileio import DEFAULT_MAX_IMAGE_PIXELS, content_key, load_image
from ovseg.request import RunRequest
from ovseg.storage.folders import Folder, OutputFolder, StageFolder
from ovseg.storage.locations import check_folder, check_reachable, is_url
from ovseg.weights.registry import free_accelerator_memory, resolve_device


class ModelPool:
    """Models kept loaded between calls, for faces that serve many requests (the Python API, the page).

    Without a pool each stage loads its one model, uses it and frees it (the DAG's rule:
    one heavy model in memory at a time); with one, a model loads on first use and stays
    until :meth:`drop` (the API drops the diffusion model after an edit on a small GPU).
    """

    def __init__(self) -> None:
        self._models: dict[str, Any] = {}

    @staticmethod
    def key(kind: str, settings: Any) -> str:
        """The one naming of a pooled model: the stages and the API must find the same entry."""
        return f"{kind}:{content_key(settings)}"

    def get(self, key: str, load: Callable[[], Any]) -> Any:
        if key not in self._models:
            self._models[key] = load()
        return self._models[key]

    def drop(self, kind: str) -> None:
        for key in [k for k in self._models if k.startswith(f"{kind}:")]:
            del self._models[key]
        free_accelerator_memory()


@dataclass(frozen=True)
class Run:
    """One run: the model settings, the user's request, and where the cache and results live.

    ``cache`` and ``output`` are folders or bucket URLs. ``prune``: remove results of photos no
    longer in the batch (the DVC stages mirror the image folder; ``ovseg run`` on one photo keeps
    the others'). ``pool``: keep models loaded between runs (the Python API). ``stop``: asked between frames of
    the video stages; True stops the run with :class:`~ovseg.errors.Stopped`.
    """

    settings: Settings
    request: RunRequest
    cache: str = "cache"
    output: str = "data/output"
    visualize: bool = True
    prune: bool = False
    pool: ModelPool | None = field(default=None, compare=False, repr=False)
    stop: Callable[[], bool] | None = field(default=None, compare=False, repr=False)  # a page's Stop button

    @property
    def stopping(self) -> bool:
        """Whether whoever started the run asked it to stop: per-frame loops ask between frames, so a Stop button
        ends a long follow or fill within a frame, not after it (a thread cannot be killed from outside)."""
        return bool(self.stop is not None and self.stop())

    def stage_folder(self, name: str) -> StageFolder:
        """A stage's folder of the cache (``<cache>/<name>``)."""
        return StageFolder(self.cache, name)

    def results(self, name: str) -> OutputFolder:
        """A results folder (``<output>/<name>``): one subfolder per photo."""
        return OutputFolder(f"{str(self.output).rstrip('/')}/{name}")

    @property
    def device(self) -> str:
        return resolve_device(self.settings.device)

    @property
    def engine(self) -> str:
        """Which engine runs it, as markers and manifests record it."""
        return self.settings.engine.kind

    def load_photo(self, location: str) -> Image.Image:
        """A photo as every stage reads it (``max_image_pixels`` applies), or an UnreadableImageError."""
        return load_image(location, self.settings.max_image_pixels or DEFAULT_MAX_IMAGE_PIXELS)

    def check_places(self) -> None:
        """The places a run reads and writes, before any work: buckets answer; the cache and the output are
        folders (not files); the output can be written. The cache is checked when a stage is about to write
        to it, so a run with nothing left to compute works on a cache it may only read."""
        for location in (self.request.images, self.cache, self.output):
            if isinstance(location, str) and is_url(location):
                check_reachable(location)
        if not is_url(self.cache):
            check_folder(Path(self.cache), "the cache")
        if not is_url(self.output):
            check_folder(Path(self.output), "the output")
            Folder(self.output).ensure_writable()

    def without_pool(self) -> Run:
        """The same run, picklable: to send to another process (a Ray worker)."""
        return dataclasses.replace(self, pool=None)


@dataclass
class StageReport:
    """What a stage did, for logs and tests: which images it computed and which it reused."""

    stage: str
    computed: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: float | None = None  # wall time from plan to finish (images/s in the summary)

    def line(self) -> str:
        line = f"{self.stage}: computed {len(self.computed)}, reused {len(self.reused)} from cache"
        line += f", skipped {len(self.skipped)} unreadable" if self.skipped else ""
        if self.seconds and self.computed:
            line += f" ({self.seconds:.1f} s, {len(self.computed) / self.seconds:.2f} images/s computed)"
        return line

    def record(self, engine: str) -> dict[str, Any]:
        """The summary line as data (images, computed, reused, errors, seconds, images/s) for manifests."""
        seconds = self.seconds or 0.0
        return {
            "engine": engine,
            "images": len(self.computed) + len(self.reused) + len(self.skipped),
            "computed": len(self.computed),
            "reused": len(self.reused),
            "errors": len(self.skipped),
            "seconds": round(seconds, 3),
            "images_per_s": round(len(self.computed) / seconds, 4) if seconds and self.computed else None,
        }


@dataclass
class Item:
    """One photo's or clip's work in a stage: what a worker needs, as plain values (a Ray worker gets a pickled copy).

    ``stem`` names the photo or clip (its subfolder in a results stage); ``key`` is the content key its result is
    stored or recorded under. Each stage subclasses it with the fields its ``compute`` reads.
    """

    stem: str
    key: str

    @property
    def name(self) -> str:
        """What reports name this item by: the photo or clip (the score stage names a photo and a prompt)."""
        return self.stem


@dataclass
class Result:
    """What a worker hands back for one item: its name, or the error that made it skip the item.

    ``reused``: another run finished the item meanwhile. ``record``: the item's record (``selection.json``,
    ``edit.json``, ...) for a stage whose ``finish`` summarizes records.
    """

    stem: str
    error: str = ""
    reused: bool = False
    record: dict[str, Any] | None = None


StateT = TypeVar("StateT")


@dataclass
class Plan(Generic[StateT]):
    """What a stage will do in a run, decided before any model loads.

    ``items``: one :class:`Item` per photo to compute. ``reused``: photos whose result is already there.
    ``shared``: what every item needs (the prompt's text vectors, the edit request), sent to the workers once.
    ``state``: the stage's own dataclass of what ``finish`` needs besides the results (the manifest entries being
    built); it stays where the run started.
    """

    items: list[Any] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    shared: Any = None
    state: StateT | None = None
    started: float = field(default_factory=time.perf_counter)

    def report(self, stage: str, results: list[Result], skipped: list[str] | None = None) -> StageReport:
        """The stage's report from its results: computed, reused (planned so, or found done when claimed), skipped."""
        computed = [r.stem for r in results if not r.error and not r.reused]
        reused = list(self.reused) + [r.stem for r in results if r.reused]
        return StageReport(stage, computed, reused, sorted(skipped or []), time.perf_counter() - self.started)


class LazyModel:
    """A stage's model, loaded on first :meth:`get`: a batch that never needs it never loads it."""

    def __init__(self, load: Callable[[], Any] | None) -> None:
        self._load = load
        self._model: Any = None
        self.loaded = False

    def get(self) -> Any:
        if not self.loaded:
            if self._load is None:
                raise OvsegError("this stage has no model")
            self._model, self.loaded = self._load(), True
        return self._model


class Engine(Protocol):
    """What a stage asks of the engine that runs it (``ovseg.engines``)."""

    name: str

    def map(self, fn: Callable[[Any], Any], items: list[Any], desc: str) -> list:
        """``fn`` over ``items`` as plain tasks (no model): hashing bytes, reading records."""


_CONTRACT = ("plan", "compute", "finish", "load", "model_key", "describe", "needs_model")


@dataclass(frozen=True)
class Stage:
    """A stage's contract: the functions an engine calls (module docstring), its name, and where it writes.

    A stage writes either a cache folder (``cache``: ``<cache>/<cache>``, content-addressed stores, one marker per
    key) or a results folder (``results``: ``<output>/<results>``, one subfolder per photo or clip, whose
    ``record`` file is written last and names the key it was made under). That decides, once for every stage,
    where it writes (:meth:`folder`), what a claim names (:attr:`claim_by`) and when another run has already done an
    item's work (:meth:`reuse`).
    """

    name: str
    plan: Callable[[Run, Engine], Plan]
    compute: Callable[[Run, Any, LazyModel, Any], Result]
    finish: Callable[[Run, Any, list[Result]], StageReport]
    cache: str | None = None  # the cache folder it writes, or
    results: str | None = None  # the results folder it writes
    record: str | None = None  # results stages: the file naming the key each subfolder was made under
    hands_back_record: bool = False  # results stages: a reused item's result row carries its record (finish reads it)
    load: Callable[[Run], Any] | None = None  # the stage's one heavy model; None: plain tasks
    model_key: Callable[[Run], str] | None = None  # its name in a ModelPool
    describe: Callable[[Run], str] | None = None  # the progress bar's label
    needs_model: Callable[[Run], bool] | None = None  # a stage whose model some runs do not need (score: SAM 3's)

    def has_model(self, run: Run) -> bool:
        """Whether this run of the stage has a heavy model (an engine gives its items plain tasks otherwise)."""
        return self.load is not None and (self.needs_model is None or self.needs_model(run))

    def __post_init__(self) -> None:
        if (self.cache is None) == (self.results is None) or (self.results is not None and self.record is None):
            raise ValueError(f"stage {self.name}: give cache, or results and record")

    @classmethod
    def of(cls, module: str, name: str, **where: Any) -> Stage:
        """The stage whose module ``module`` defines the contract's functions by their names: ``plan``, ``compute``
        and ``finish``, and ``load``, ``model_key``, ``describe`` and ``needs_model`` where it has them.
        ``where``: ``cache=``, or ``results=`` and ``record=`` (and ``hands_back_record``)."""
        functions = vars(sys.modules[module])
        parts = {part: functions[part] for part in _CONTRACT if part in functions}
        return cls(name=name, **parts, **where)

    def folder(self, run: Run) -> Folder:
        """Where it writes: its cache folder, or its results folder."""
        return run.stage_folder(self.cache) if self.cache is not None else run.results(self.results)

    def claim_name(self, item: Item) -> str:
        """What a claim names: a cache store's key, or a result's subfolder (the photo or clip)."""
        return item.key if self.cache is not None else item.stem

    def reuse(self, run: Run, item: Item) -> Result | None:
        """The result of an item whose work another run finished meanwhile, or None: asked after claiming it."""
        if self.cache is not None:
            return Result(item.name, reused=True) if run.stage_folder(self.cache).is_done(item.key) else None
        record = run.results(self.results).record(f"{item.stem}/{self.record}")
        if (record or {}).get("key") != item.key:
            return None
        return Result(item.name, reused=True, record=record if self.hands_back_record else None)


@contextlib.contextmanager
def pooled(run: Run, key: str, load: Callable[[], Any]) -> Iterator[Any]:
    """A model from the run's pool (kept loaded), or loaded here and freed afterwards."""
    if run.pool is not None:
        yield run.pool.get(key, load)
        return
    model = load()
    try:
        yield model
    finally:
        del model
        free_accelerator_memory()


def run_stages(run: Run, engine: Any, stages: Iterable[Stage]) -> list[StageReport]:
    """Each stage in turn with ``engine`` (``ovseg.engines``): plan, compute what the plan says, finish.

    The places are checked first; a stage's own folder only when it has something to write there.
    """
    run.check_places()
    return [carry_out(run, engine, stage, stage.plan(run, engine)) for stage in stages]


def carry_out(run: Run, engine: Any, stage: Stage, plan: Plan) -> StageReport:
    """A stage's plan carried out: its folder checked for writing only when there is something to compute, the
    items computed by ``engine``, then ``finish``. For a plan the stage's own ``plan`` did not make (the score
    stage's for queries of a face's own: :func:`ovseg.pipeline.score.scores_for`)."""
    results = []
    if plan.items:
        stage.folder(run).ensure_writable()
        results = engine.compute(stage, run, plan)
    return stage.finish(run, plan, results)
