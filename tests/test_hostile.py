"""Hostile inputs and places: every file a photo folder may hold, bad cache and output places, full disks,
and two runs on one cache. No traceback, one line per problem, good photos always processed."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import EXAMPLE, run_ovseg, synthetic_photo
from conftest import run_ovseg_in_process as ovseg
from PIL import Image

from ovseg.errors import OvsegError
from ovseg.storage.locations import read_json

pytestmark = pytest.mark.timeout(600)


def _png(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **options)
    return buffer.getvalue()


def _jpeg(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", **options)
    return buffer.getvalue()


def hostile_corpus(folder: Path) -> tuple[set[str], set[str]]:
    """Write every kind of file a real photo folder may hold; returns (files that must be skipped, photos to read)."""
    photo = synthetic_photo(96, 72, seed=3)
    bad = {
        "bomb.png": _png(Image.new("1", (40000, 40000))),  # 190 KB that decodes to 1.6 gigapixels
        "truncated.png": _png(photo)[:300],
        "truncated.jpg": _jpeg(photo, quality=90)[:700],
        "empty.jpg": b"",
        "notes.jpg": b"this is a text file that says it is a JPEG\n",
        "page.png": b"<!doctype html><html><body>not a picture</body></html>",
        "drawing.png": b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>',
        "tiny.png": _png(Image.new("RGB", (2, 2), "red")),  # decodes, but is no photo to segment
        "bad-crc.png": _png(photo)[:40] + b"\x00\x00\x00\x00" + _png(photo)[44:],
        "zeros.tif": b"II*\x00" + b"\x00" * 64,
    }
    good = {
        "rgba.png": _png(photo.convert("RGBA")),
        "gray.png": _png(photo.convert("L")),
        "palette.png": _png(photo.convert("P"), transparency=0),
        "sixteen.png": _png(Image.fromarray(np.asarray(photo.convert("L")).astype(np.uint16) * 257)),
        "cmyk.jpg": _jpeg(photo.convert("CMYK")),
        "UPPER.JPG": _jpeg(photo),
        "photo.webp": _webp(photo),
        "scan.tif": _tiff(photo),
        "space name é.bmp": _bmp(photo),
    }
    for name, data in {**bad, **good}.items():
        (folder / name).write_bytes(data)
    (folder / "notes.txt").write_text("not an image suffix: not read\n")
    (folder / ".DS_Store").write_bytes(b"\x00\x01")
    (folder / "._shadow.jpg").write_bytes(b"\x00\x05\x16\x07")  # macOS AppleDouble: hidden, not read
    (folder / "dangling.png").symlink_to(folder / "nowhere.png")  # a broken link is no file: not read
    (folder / "folder.jpg").mkdir()  # a folder with a photo's name: not read
    return set(bad), {Path(n).stem for n in good}


def _webp(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="WEBP")
    return buffer.getvalue()


def _tiff(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="TIFF", compression="tiff_lzw")
    return buffer.getvalue()


def _bmp(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="BMP")
    return buffer.getvalue()


def test_a_folder_of_hostile_files_completes_with_one_warning_per_bad_file(workspace: Path) -> None:
    images = workspace / "data/images"
    bad, good = hostile_corpus(images)
    good |= {"chelsea", "shapes"}
    result = ovseg("run", "--images", "data/images", "--prompt", "the cat", "--config", "tiny", cwd=workspace)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stdout + result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("ovseg: warning: skipping")]
    assert sorted(line.split("skipping data/images/")[1].split(":")[0] for line in warnings) == sorted(bad)
    bomb = next(line for line in warnings if "bomb.png" in line)
    assert "max_image_pixels" in bomb and "--set max_image_pixels=1600000000" in bomb
    summary = read_json(workspace / "data/output/segment/summary.json")
    assert set(summary["images"]) == good and set(summary["skipped"]) == bad  # every good photo processed

    # A single bad photo is one error line and exit 2; raising the limit reads the bomb's header only.
    alone = ovseg("run", "--image", "data/images/bomb.png", "--prompt", "x", "--config", "tiny", cwd=workspace)
    assert alone.returncode == 2 and "Traceback" not in alone.stderr
    assert [line for line in alone.stderr.splitlines() if line.startswith("ovseg: error:")], alone.stderr


def test_the_api_says_one_line_for_each_hostile_file(tmp_path: Path, tiny_checkpoints: Path) -> None:
    from ovseg import Segmenter

    bad, _ = hostile_corpus(tmp_path)
    seg = Segmenter(preset="tiny", device="cpu", cache=tmp_path / "cache")
    for name in sorted(bad):
        with pytest.raises(OvsegError, match="cannot read|not found|too small"):
            seg.segment(tmp_path / name, "the cat")
    for image, message in (
        (np.zeros((0, 0, 3), np.uint8), "at least 8 pixels"),
        ("http://127.0.0.1:9/x.png", "cannot read http://127.0.0.1:9/x.png"),
        (12, "a path, a URL"),
    ):
        with pytest.raises(OvsegError, match=message):
            seg.segment(image, "the cat")
    with pytest.raises(OvsegError, match="prompt is empty"):
        seg.segment(EXAMPLE, "|")


def test_same_stems_get_their_own_names_and_subfolders_are_read_only_when_asked(workspace: Path) -> None:
    images = workspace / "data/images"
    Image.open(EXAMPLE).convert("RGB").save(images / "chelsea.jpg")  # next to chelsea.png
    (images / "trip" / "day1").mkdir(parents=True)
    synthetic_photo(80, 60, seed=7).save(images / "trip" / "day1" / "beach.png")
    flat = ovseg("run", "--images", "data/images", "--prompt", "the cat", "--config", "tiny", cwd=workspace)
    assert flat.returncode == 0, flat.stderr
    assert "1 sub-folder(s) of data/images not read (trip)" in flat.stderr
    segment = workspace / "data/output/segment"
    assert {p.name for p in segment.iterdir() if p.is_dir()} == {"chelsea.jpg", "chelsea.png", "shapes"}
    deep = ovseg(
        "run", "--images", "data/images", "--prompt", "the cat", "--config", "tiny", "--recursive", cwd=workspace
    )
    assert deep.returncode == 0, deep.stderr
    assert (segment / "trip" / "day1" / "beach" / "selection.json").is_file()
    coco = read_json(segment / "annotations.json")
    assert sorted(i["file_name"] for i in coco["images"]) == [
        "chelsea.jpg",
        "chelsea.png",
        "shapes.png",
        "trip/day1/beach.png",
    ]


def test_bad_places_are_one_line_and_exit_2_before_any_work(workspace: Path) -> None:
    run = ("run", "--images", "data/images", "--prompt", "the cat", "--config", "tiny")
    (workspace / "a-file").write_text("x")
    for option in ("--output", "--cache"):
        result = run_ovseg(*run, option, "a-file", cwd=workspace)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert "a-file is a file, not a folder" in result.stderr
        result = run_ovseg(*run, option, "a-file/below", cwd=workspace)
        assert result.returncode == 2 and "lies under a-file, which is a file" in result.stderr
    assert not (workspace / "cache").exists()  # nothing was computed


def _as_non_root(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`ovseg` without the power to write where permissions forbid it (tests run as root)."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is not installed")
    command = [setpriv, "--bounding-set=-dac_override,-dac_read_search", sys.executable, "-m", "ovseg.cli", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600, env=dict(os.environ))


def _tree(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*"))}


def test_a_read_only_cache_works_when_everything_is_computed_and_says_so_when_not(workspace: Path) -> None:
    run = ("run", "--images", "data/images", "--prompt", "the cat", "--config", "tiny")
    assert ovseg(*run, cwd=workspace).returncode == 0
    cache = workspace / "cache"
    before = _tree(cache)
    for path in [cache, *cache.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        again = _as_non_root(*run, cwd=workspace)  # everything computed: nothing to write in the cache
        assert again.returncode == 0, again.stderr
        assert _tree(cache) == before
        synthetic_photo(70, 50, seed=9).save(workspace / "data/images/new.png")
        more = _as_non_root(*run, cwd=workspace)  # one new photo: the masks stage must write
        assert more.returncode == 2 and "Traceback" not in more.stderr, more.stderr
        errors = [line for line in more.stderr.splitlines() if line.startswith("ovseg: error:")]
        assert len(errors) == 1 and "cannot write to" in errors[0] and "cache/masks" in errors[0]
        assert _tree(cache) == before
    finally:
        for path in [cache, *cache.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)


FULL_DISK = """
import errno, os, sys
real, markers = os.replace, [0]
def replace(src, dst, *args, **kwargs):  # the disk fills up as the second photo's masks are marked done
    if str(dst).endswith(".done"):
        markers[0] += 1
        if markers[0] == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
    return real(src, dst, *args, **kwargs)
os.replace = replace
from ovseg.cli import app
sys.argv = ["ovseg", *sys.argv[1:]]
app()
"""


def test_a_full_disk_is_one_line_leaves_nothing_half_written_and_the_next_run_resumes(workspace: Path) -> None:
    run = ["run", "--images", "data/images", "--prompt", "the cat", "--config", "tiny"]
    full = subprocess.run(
        [sys.executable, "-c", FULL_DISK, *run], cwd=workspace, capture_output=True, text=True, timeout=600
    )
    assert full.returncode == 2 and "Traceback" not in full.stderr, full.stderr
    errors = [line for line in full.stderr.splitlines() if line.startswith("ovseg: error:")]
    assert len(errors) == 1 and "No space left on device" in errors[0] and "cache gc" in errors[0]
    leftovers = [p for p in workspace.rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers, leftovers
    for marker in (workspace / "cache").rglob("*.done"):  # every store a marker claims is whole
        assert marker.with_suffix(".zarr").is_dir()
    again = ovseg(*run, cwd=workspace)
    assert again.returncode == 0, again.stderr
    assert "masks: computed 1, reused 1" in again.stdout  # the photo finished before the disk filled is kept


def test_two_runs_at_once_compute_each_key_once_and_agree(workspace: Path) -> None:
    for seed in range(4):
        synthetic_photo(120, 90, seed=20 + seed).save(workspace / f"data/images/extra{seed}.png")
    run = ["run", "--images", "data/images", "--prompt", "the cat", "--config", "tiny", "--mode", "remove"]
    command = [sys.executable, "-m", "ovseg.cli", *run]
    started = time.perf_counter()
    first = subprocess.Popen(command, cwd=workspace, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    second = subprocess.Popen(command, cwd=workspace, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outputs = [process.communicate(timeout=600) for process in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outputs
    print(f"two overlapping runs: {time.perf_counter() - started:.1f} s")
    for stage in ("masks", "embed", "score", "select", "edit"):
        computed = [int(out.split(f"{stage}: computed ")[1].split(",")[0]) for out, _ in outputs]
        assert sum(computed) == 6, (stage, computed, outputs)  # six photos: each computed once, by one run
    assert not list((workspace / "cache" / ".locks").rglob("*.lock"))
    again = ovseg(*run, cwd=workspace)
    assert "masks: computed 0, reused 6" in again.stdout and "edit: computed 0, reused 6" in again.stdout


def test_pictures_for_people_stay_viewable_for_huge_photos() -> None:
    from ovseg.media.viz import PREVIEW_SIDE, preview, side_by_side

    big = Image.new("RGB", (8000, 6000), "gray")
    assert max(side_by_side(big, big).size) <= PREVIEW_SIDE + 60  # two halves and the gap between them
    assert preview(big).size == (PREVIEW_SIDE, 3072)
    small = Image.new("RGB", (451, 300))
    assert preview(small) is small and side_by_side(small, small).size == (451 * 2 + 4, 300)
