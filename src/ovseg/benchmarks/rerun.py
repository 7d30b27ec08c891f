"""``ovseg benchmark-rerun``: the seconds a user waits when there is little or nothing left to do.

Three commands, each a real process as a user starts it, timed side by side in one run in a
throwaway copy of the project (git + DVC, one photo, computed once first):

* **cached run**: ``ovseg run`` with the prompt it was computed for (every stage reused);
* **no-op dvc repro**: ``dvc repro`` of the same pipeline with nothing changed (the yardstick);
* **new prompt**: ``ovseg run`` with a prompt not seen before (its texts encoded, one scoring,
  one selection; the photo's masks and CLIP features reused).

Rounds interleave the three so a busy machine slows each alike; after a new prompt the project
is put back (the old prompt run again, then ``dvc repro``) untimed, so the next no-op is one.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from ovseg.config import apply_overrides
from ovseg.errors import OvsegError

NEW_PROMPTS = (
    "a striped cat lying down",
    "the green eyes",
    "a wooden door",
    "the pink nose",
    "a blurred background",
    "long white whiskers",
    "a small ear",
    "the fur",
)
PROJECT_FILES = ("dvc.yaml", ".gitignore", "stages", "src/ovseg")


def _environment() -> dict[str, str]:
    from ovseg.weights.registry import checkpoint_roots

    checkpoints, *shared = (str(root.resolve()) for root in checkpoint_roots())
    return {  # the project is a copy elsewhere: the weights are where this one finds them
        **os.environ,
        "OVSEG_CHECKPOINTS": checkpoints,
        **({"OVSEG_SHARED_WEIGHTS": shared[0]} if shared else {}),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "DVC_NO_ANALYTICS": "1",
        "PYTHONWARNINGS": "ignore",
    }


def _timed(args: list[str], cwd: Path) -> tuple[float, str]:
    """Seconds one command took, as a user waits for it (process start to exit), and what it printed."""
    started = time.perf_counter()
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=_environment(), timeout=1800)
    seconds = time.perf_counter() - started
    if result.returncode:
        raise OvsegError(f"{' '.join(args[:4])} ... failed in the benchmark's project: {result.stderr[-500:]}")
    return seconds, result.stdout + result.stderr


def make_project(source: Path, folder: Path, photo: Path, params: dict[str, Any]) -> Path:
    """A copy of the project at ``source`` in ``folder``: its pipeline and code, ``photo`` as the only image,
    ``params`` as params.yaml; a git repository with DVC initialised."""
    for part in PROJECT_FILES:
        if not (source / part).exists():
            raise OvsegError(f"{source / part} not found: run benchmark-rerun in the ovseg project folder")
        target = folder / part
        if (source / part).is_dir():
            shutil.copytree(source / part, target, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source / part, target)
    (folder / "data" / "images").mkdir(parents=True)
    shutil.copy(photo, folder / "data" / "images" / photo.name)
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _timed(["git", "init", "-q"], folder)
    _timed([sys.executable, "-m", "dvc", "init", "-q"], folder)
    return folder


def run_rerun_benchmark(
    photo: Path,
    params: dict[str, Any],
    sets: list[str],
    rounds: int,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Time the three commands ``rounds`` times each in a copy of the current project; medians and ratios."""
    if rounds > len(NEW_PROMPTS):
        raise OvsegError(f"--rounds is at most {len(NEW_PROMPTS)} (one new prompt per round)")
    settings = apply_overrides({**params, "images": "data/images", "mode": "segment"}, sets)
    prompt = str(settings.get("prompt") or "the cat")
    settings["prompt"] = prompt
    ovseg = [sys.executable, "-m", "ovseg.cli", "run", "--images", "data/images", "--mode", "segment"]
    dvc = [sys.executable, "-m", "dvc", "repro", "edit"]  # the stages `ovseg run` runs (not evaluate)
    times: dict[str, list[float]] = {"cached_run": [], "noop_dvc_repro": [], "new_prompt": []}
    with tempfile.TemporaryDirectory(prefix="ovseg-rerun-") as tmp:
        project = make_project(Path.cwd(), Path(tmp), photo, settings)
        first, _ = _timed(dvc, project)
        log(f"first dvc repro (everything computed): {first:.1f} s")
        _timed([*ovseg, "--prompt", prompt], project)  # the same results: from here on nothing is left to do
        _timed(dvc, project)
        for round_ in range(rounds):
            seconds, output = _timed(dvc, project)
            if "Running stage" in output:
                raise OvsegError(f"dvc repro was not a no-op in round {round_ + 1}: {output[-300:]}")
            times["noop_dvc_repro"].append(seconds)
            seconds, output = _timed([*ovseg, "--prompt", prompt], project)
            if "computed 1" in output:
                raise OvsegError(f"the cached run computed something in round {round_ + 1}: {output[-300:]}")
            times["cached_run"].append(seconds)
            times["new_prompt"].append(_timed([*ovseg, "--prompt", NEW_PROMPTS[round_]], project)[0])
            _timed([*ovseg, "--prompt", prompt], project)  # put the project back: the next no-op is one
            _timed(dvc, project)
            log(
                f"round {round_ + 1}: no-op dvc repro {times['noop_dvc_repro'][-1]:.2f} s, cached run "
                f"{times['cached_run'][-1]:.2f} s, new prompt {times['new_prompt'][-1]:.2f} s"
            )
    medians = {name: round(statistics.median(values), 3) for name, values in times.items()}
    return {
        "photo": str(photo),
        "preset": settings.get("preset"),
        "sets": sets,
        "rounds": rounds,
        "seconds": {name: [round(v, 3) for v in values] for name, values in times.items()},
        "median_s": medians,
        "cached_run_vs_noop_dvc": round(medians["cached_run"] / medians["noop_dvc_repro"], 3),
        "first_dvc_repro_s": round(first, 3),
    }
