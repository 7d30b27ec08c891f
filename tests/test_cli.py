"""The `ovseg` command: its options, outputs, exit codes and one-line errors.

The commands run in the test's process (`run_ovseg_in_process`, the same Typer app); what only a real
process shows (its imports, a kill, the interpreter's own traceback) is tested with `run_ovseg` in
test_fast_path.py, test_hostile.py and test_video_pipeline.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import needs_extra
from conftest import run_ovseg_in_process as ovseg

from ovseg.storage.locations import read_json

pytestmark = pytest.mark.slow


RUN_CAT = ("run", "--image", "data/images/chelsea.png", "--prompt", "the cat", "--config", "tiny", "--top-k", "2")


def test_run_segment_then_replace_and_inspect(workspace: Path) -> None:
    result = ovseg(*RUN_CAT, cwd=workspace)
    assert result.returncode == 0, result.stderr
    assert "masks: computed 1" in result.stdout
    selection = read_json(workspace / "data/output/segment/chelsea/selection.json")
    assert selection["settings"]["top_k"] == 2 and 1 <= len(selection["selected"]) <= 2
    assert (workspace / "data/output/segment/chelsea/overlay.png").is_file()

    result = ovseg(*RUN_CAT, "--mode", "replace", "--edit", "a small dog", cwd=workspace)
    assert result.returncode == 0, result.stderr
    assert "masks: computed 0, reused 1" in result.stdout and "score: computed 0, reused 1" in result.stdout
    assert (workspace / "data/output/edit/chelsea/before_after.png").is_file()

    # Another photo on its own keeps the first one's results (DVC's stages mirror the folder instead).
    result = ovseg("run", "--image", "data/images/shapes.png", "--prompt", "a disc", "--config", "tiny", cwd=workspace)
    assert result.returncode == 0, result.stderr
    assert (workspace / "data/output/segment/shapes/overlay.png").is_file()
    assert (workspace / "data/output/segment/chelsea/overlay.png").is_file()

    result = ovseg("inspect", "chelsea", cwd=workspace)
    assert result.returncode == 0, result.stderr
    assert "candidates" in result.stdout and "selection" in result.stdout and "replace" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--image", "data/images/broken.jpg", "--prompt", "x", "--config", "tiny"], "cannot read image"),
        (["run", "--images", "data/images", "--prompt", "", "--config", "tiny"], "prompt is empty"),
        (["run", "--images", "nowhere", "--prompt", "x", "--config", "tiny"], "image folder not found"),
        (["run", "--images", "data/images", "--prompt", "x", "--mode", "erase"], "mode must be one of"),
        (
            ["run", "--images", "data/images", "--prompt", "x", "--config", "tiny", "--mode", "replace"],
            "needs an edit prompt",
        ),
        (["run", "--images", "data/images", "--prompt", "x", "--config", "fast"], "ovseg weights download"),
        (["inspect", "nobody"], "no artifacts|not found"),
        (["cache", "gc", "--cache", "nowhere"], "cache folder nowhere not found"),
        (["run", "--image", "data/images/chelsea.png", "--point", "12", "--config", "tiny"], "--point '12': expected"),
        (["run", "--image", "data/images/chelsea.png", "--point", "1,2,7", "--config", "tiny"], "LABEL 1"),
        (["run", "--image", "data/images/chelsea.png", "--box", "9,9,1,1", "--config", "tiny"], "X2 must be right"),
        (["run", "--images", "data/images", "--point", "1,2", "--config", "tiny"], "give them with --image"),
        (["run", "--image", "data/images/chelsea.png", "--point", "1,2", "--dvc"], "without --dvc"),
        (["ui", "--config", "nonsense"], "unknown preset"),
        (["ui", "--host", "0.0.0.0", "--config", "cpu"], "add --auth USER:PASS, or --no-auth"),
        (["ui", "--auth", "nopassword", "--config", "cpu"], "--auth wants USER:PASS"),
        (["run", "--images", "data/images", "--prompt", "|", "--config", "tiny"], "prompt is empty"),
        pytest.param(
            ["run", "--images", "data/images", "--prompt", "x", "--config", "tiny", "-o", "s3://b/out"],
            "cannot reach s3://b/out",
            marks=needs_extra("s3"),
        ),
        (["sync", "nowhere", "elsewhere"], "nothing to sync: nowhere is not a folder"),
    ],
)
def test_user_mistakes_get_one_line_and_exit_2(workspace: Path, args: list[str], message: str) -> None:
    (workspace / "data/images/broken.jpg").write_bytes(b"garbage")
    if "broken" not in " ".join(args):
        (workspace / "data/images/broken.jpg").unlink()
    result = ovseg(*args, cwd=workspace)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("ovseg: error:")]
    assert len(lines) == 1, result.stderr
    import re

    assert re.search(message, " ".join(result.stderr.split())), result.stderr
    assert not list(workspace.glob("cache/*/*.done"))  # said before any photo is computed


def test_weights_commands(workspace: Path, tmp_path: Path) -> None:
    target = tmp_path / "ck"
    result = ovseg("weights", "make-tiny", "--root", str(target), cwd=workspace)
    assert result.returncode == 0, result.stderr
    env = {"OVSEG_CHECKPOINTS": str(target)}
    assert ovseg("weights", "verify", "--preset", "tiny", cwd=workspace, env=env).returncode == 0
    (target / "tiny-random-clip" / "open_clip_model.safetensors").write_bytes(b"\0" * 10)
    bad = ovseg("weights", "verify", "--preset", "tiny", cwd=workspace, env=env)
    assert bad.returncode == 1 and "not a readable safetensors" in bad.stdout
    offline = ovseg("weights", "download", "clip-vit-b-16", cwd=workspace, env={**env, "HF_HUB_OFFLINE": "1"})
    assert offline.returncode == 2 and "offline mode" in offline.stderr
    listing = ovseg("weights", "list", cwd=workspace, env=env)
    assert listing.returncode == 0 and "sam2.1-hiera-large" in listing.stdout


def test_stage_outside_the_venv_explains_itself() -> None:
    """DVC runs `python stages/x.py`; a Python without ovseg must say what to do, not crash."""
    from conftest import REPO

    base = getattr(sys, "_base_executable", sys.executable)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    if subprocess.run([base, "-c", "import ovseg"], env=env, capture_output=True).returncode == 0:
        pytest.skip("the base interpreter has ovseg installed too")
    result = subprocess.run([base, "stages/masks.py"], cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "activate the project's environment" in result.stderr


def test_a_folder_with_bad_files_completes_and_strict_stops(workspace: Path) -> None:
    images = workspace / "data/images"
    (images / "empty.jpg").write_bytes(b"")
    from PIL import Image

    Image.open(images / "chelsea.png").convert("RGB").save(images / "truncated.jpg", quality=90)
    (images / "truncated.jpg").write_bytes((images / "truncated.jpg").read_bytes()[:4000])  # cut mid-scan
    result = ovseg("run", "--images", "data/images", "--prompt", "the cat", "--config", "tiny", cwd=workspace)
    assert result.returncode == 0, result.stderr
    assert "skipping data/images/empty.jpg" in result.stderr and "skipping data/images/truncated.jpg" in result.stderr
    assert "2 of 4 files could not be read and were skipped" in " ".join(result.stdout.split())
    summary = read_json(workspace / "data/output/segment/summary.json")
    assert set(summary["images"]) == {"chelsea", "shapes"} and set(summary["skipped"]) == {"empty.jpg", "truncated.jpg"}
    strict = ovseg(
        "run", "--images", "data/images", "--prompt", "the cat", "--config", "tiny", "--strict", cwd=workspace
    )
    assert strict.returncode == 2 and "Traceback" not in strict.stderr and "cannot read image" in strict.stderr


def test_sync_copies_what_is_missing_or_changed_and_markers_last(tmp_path: Path) -> None:
    """`ovseg sync`: stores by name and size, results by content (a new prompt can keep a file's size)."""
    from ovseg.storage.folders import _sync_order, sync_folder

    source, target = tmp_path / "run", tmp_path / "copy"
    key = "7e07fc1432cf3b307aca161c"
    files = {
        f"cache/masks/{key}.zarr/zarr.json": b"{}",
        f"cache/masks/{key}.done": b'{"key": "k"}',
        "out/segment/cat/mask.png": b"png1",
        "out/segment/cat/selection.json": b'{"key": "aaaa", "prompt": "cat"}',
    }
    for name, data in files.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(data)
    ordered = sorted(files, key=_sync_order)
    assert ordered[-1].endswith(".done") and ordered[-2].endswith("selection.json")  # data first, markers last
    result = ovseg("sync", str(source), str(target), cwd=tmp_path)
    assert result.returncode == 0 and "copied 4 files, 0 already there" in result.stdout, result.stderr
    assert all((target / name).read_bytes() == data for name, data in files.items())
    # The same prompt's length, another prompt: same sizes, new bytes; the result is copied, the store is not read.
    (source / "out/segment/cat/selection.json").write_bytes(b'{"key": "bbbb", "prompt": "dog"}')
    assert sync_folder(str(source), str(target)) == (1, 3)
    assert read_json(target / "out/segment/cat/selection.json")["prompt"] == "dog"


def test_a_prompt_longer_than_clip_reads_is_warned_about_and_titled_short(workspace: Path) -> None:
    prompt = "the small brown cat sitting on the old wooden chair " * 40  # ~2000 characters, ~400 tokens
    env = {"COLUMNS": "200"}
    result = ovseg("run", "--images", "data/images", "--prompt", prompt, "--config", "tiny", cwd=workspace, env=env)
    assert result.returncode == 0, result.stderr
    warning = next(line for line in result.stderr.splitlines() if "longer than CLIP reads" in line)
    assert "it sees only 'the small brown cat" in warning and len(warning) < len(prompt)
    title = next(line for line in result.stdout.splitlines() if "segment: '" in line)
    assert len(title.strip()) < 90 and "…" in title
    assert read_json(workspace / "data/output/segment/summary.json")["prompt"] == prompt.strip()  # kept whole
