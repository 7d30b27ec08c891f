"""The learned removal backends, LaMa (TorchScript) and MI-GAN (ONNX pipeline), through ovseg's own loading
and painting code, with small random-weight models of the real architectures made here in the files'
real formats; the registry entries and ``edit.backend: auto``."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import EXAMPLE
from conftest import run_ovseg_in_process as ovseg
from PIL import Image

from ovseg.config import settings_from_params
from ovseg.editing import dilate, edit_image, load_painter, request_for, resolve_backend
from ovseg.editing.geometry import fill_at_most
from ovseg.editing.lama import pad_to_multiple
from ovseg.errors import OvsegError
from ovseg.media.fileio import load_image
from ovseg.storage.locations import read_json
from ovseg.weights.downloads import record_download, verify
from ovseg.weights.registry import REGISTRY


@pytest.fixture(scope="module")
def small_lama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LaMa's architecture, narrow and with two blocks (seconds to build and run), as ``big-lama.pt``."""
    from ovseg.editing.lama_net import save_random_lama

    folder = tmp_path_factory.mktemp("lama")
    save_random_lama(folder / "big-lama.pt", width=8, blocks=2)
    return folder


@pytest.fixture(scope="module")
def small_migan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MI-GAN's pipeline at 64 px, random weights, exported to ONNX as the authors' pipeline is."""
    from ovseg.editing.migan_net import save_random_migan

    folder = tmp_path_factory.mktemp("migan")
    save_random_migan(folder / "migan_pipeline_v2.onnx", side=64)
    return folder


def _settings(**edit):
    return settings_from_params({"preset": "cpu", "edit": edit}).edit


def _remove(image: Image.Image, hole: np.ndarray, edit) -> np.ndarray:
    painter = load_painter(edit, request_for("remove", "", edit), "cpu")
    return np.asarray(edit_image(image, hole, edit, painter))


@pytest.mark.parametrize("backend", ["lama", "migan"])
def test_a_learned_backend_paints_the_hole_and_nothing_else(backend: str, small_lama: Path, small_migan: Path) -> None:
    folder = small_lama if backend == "lama" else small_migan
    edit = _settings(backend=backend, lama_model=str(small_lama), migan_model=str(small_migan))
    image = load_image(EXAMPLE)
    original = np.asarray(image)
    hole = np.zeros(original.shape[:2], bool)
    hole[120:170, 280:330] = True  # the cat's eye
    edited = _remove(image, hole, edit)
    outside = ~dilate(hole, edit.dilate_px)
    np.testing.assert_array_equal(edited[outside], original[outside])  # byte for byte
    assert np.abs(edited[hole].astype(int) - original[hole]).mean() > 5  # the hole is repainted
    assert (folder / ("big-lama.pt" if backend == "lama" else "migan_pipeline_v2.onnx")).is_file()


@pytest.mark.parametrize("backend", ["lama", "migan"])
@pytest.mark.parametrize("size", [(1, 300), (300, 1), (37, 53), (203, 129)])
def test_odd_sizes_and_strips(backend: str, size: tuple[int, int], small_lama: Path, small_migan: Path) -> None:
    """Sides that are not multiples of 8, and photos one pixel high or wide."""
    edit = _settings(backend=backend, lama_model=str(small_lama), migan_model=str(small_migan), dilate_px=1)
    height, width = size
    rng = np.random.default_rng(0)
    original = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    hole = np.zeros((height, width), bool)
    hole[height // 3 : height // 3 + max(1, height // 4), width // 3 : width // 3 + max(1, width // 4)] = True
    edited = _remove(Image.fromarray(original), hole, edit)
    assert edited.shape == original.shape
    outside = ~dilate(hole, edit.dilate_px)
    np.testing.assert_array_equal(edited[outside], original[outside])


def test_padding_to_eight_and_the_crop_limits() -> None:
    padded = pad_to_multiple(np.arange(3 * 10).reshape(3, 10))
    assert padded.shape == (8, 16)
    np.testing.assert_array_equal(padded[:3, :10], np.arange(30).reshape(3, 10))  # the photo stays where it was
    assert padded[3, 0] == padded[2, 0]  # mirrored, not zeros: LaMa sees no false edge
    seen = []

    def fill(rgb: np.ndarray, holes: np.ndarray) -> np.ndarray:
        seen.append(holes.shape)
        return np.full_like(rgb, 7)

    crop = Image.fromarray(np.full((600, 600, 3), 200, np.uint8))
    mask = np.zeros((600, 600), np.uint8)
    mask[100:400, 100:400] = 255
    out = np.asarray(fill_at_most(crop, Image.fromarray(mask), 150, fill))
    assert seen == [(150, 150)]  # painted at the cap ...
    assert (out[mask == 0] == 200).all() and (np.abs(out[150:350, 150:350].astype(int) - 7) <= 1).all()  # ... pasted


def test_a_small_hole_gets_a_crop_with_context(small_lama: Path) -> None:
    from ovseg.editing import painter_for
    from ovseg.editing.lama import MIN_CROP, load_lama

    edit = _settings(backend="lama", lama_model=str(small_lama))
    paint = painter_for(load_lama(str(small_lama), "cpu"), edit, request_for("remove", "", edit))
    sides = []

    def spy(image: Image.Image, mask: Image.Image) -> Image.Image:
        sides.append(image.size)
        return paint(image, mask)

    image = load_image(EXAMPLE)
    hole = np.zeros((300, 451), bool)
    hole[140:150, 300:310] = True
    edit_image(image, hole, edit, spy)
    assert sides == [(MIN_CROP, MIN_CROP)]  # 10 px hole, 256 px of the photo around it


def test_registry_entries_pin_sha256_and_say_their_licence() -> None:
    for name in ("lama", "migan"):
        spec = REGISTRY[name]
        assert spec.downloadable and spec.licence in ("Apache-2.0", "MIT")
        (file, digest), *_ = spec.sha256
        assert file in spec.files and re.fullmatch(r"[0-9a-f]{64}", digest)
    assert REGISTRY["lama"].url.startswith("https://") and REGISTRY["migan"].revision


def test_verify_catches_a_changed_byte(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_migan: Path) -> None:
    monkeypatch.setenv("OVSEG_CHECKPOINTS", str(tmp_path))
    # A file under the registry's name that is not the pinned one.
    (tmp_path / "lama").mkdir()
    (tmp_path / "lama" / "big-lama.pt").write_bytes(b"not big-lama")
    assert any("pinned sha256" in problem for problem in verify("lama"))
    # A downloaded folder (its record holds each file's digest), then one byte flipped.
    folder = tmp_path / "my-migan"
    folder.mkdir()
    data = bytearray((small_migan / "migan_pipeline_v2.onnx").read_bytes())
    (folder / "migan_pipeline_v2.onnx").write_bytes(bytes(data))
    record_download(folder, "test", None)
    assert verify(str(folder)) == []
    data[len(data) // 2] ^= 1
    (folder / "migan_pipeline_v2.onnx").write_bytes(bytes(data))
    assert any("sha256" in problem for problem in verify(str(folder)))


def test_auto_removes_with_lama_when_present_else_the_next(small_lama: Path, tmp_path: Path, tiny_checkpoints) -> None:
    from ovseg.pipeline import new_run
    from ovseg.request import RunRequest

    absent = str(tmp_path / "no-lama-here")
    cpu = settings_from_params({"preset": "cpu", "edit": {"lama_model": absent}})
    assert cpu.edit.backend == "auto"
    assert resolve_backend(cpu.edit, "remove").backend == "opencv"
    present = dataclasses.replace(cpu.edit, lama_model=str(small_lama))
    assert resolve_backend(present, "remove").backend == "lama"
    assert resolve_backend(present, "replace").backend == "diffusion"  # only diffusion paints new content
    run = new_run(dataclasses.replace(cpu, edit=present), RunRequest(prompt="the cat", mode="remove"))
    assert run.settings.edit.backend == "lama"  # resolved once, before any key
    balanced = settings_from_params({"preset": "balanced", "edit": {"lama_model": absent, "model": "tiny-random-sd"}})
    assert resolve_backend(balanced.edit, "remove").backend == "diffusion"  # SD 2 is there, LaMa is not
    nothing = dataclasses.replace(balanced.edit, model=absent)
    assert resolve_backend(nothing, "remove").backend == "lama"  # none is there: the first says what to download
    with pytest.raises(OvsegError, match="edit.remove_with"):
        resolve_backend(dataclasses.replace(cpu.edit, remove_with=["photoshop"]), "remove")


@pytest.mark.slow
def test_cpu_removal_uses_lama_once_its_weights_are_there_and_says_so(workspace: Path, small_lama: Path) -> None:
    result = ovseg("run", "--image", "data/images/chelsea.png", "--prompt", "the cat", "--config", "cpu",
                   "--mode", "remove", "--set", "embed.model=tiny-random-clip",
                   "--set", f"edit.lama_model={small_lama}", cwd=workspace)  # fmt: skip
    assert result.returncode == 0, result.stderr
    record = read_json(workspace / "data/output/edit/chelsea/edit.json")
    assert record["settings"]["backend"] == "lama"
    assert "edit (remove, lama)" in result.stderr + result.stdout
    edited = np.asarray(load_image(workspace / "data/output/edit/chelsea/edited.png"))
    assert edited.shape == (300, 451, 3) and (edited != np.asarray(load_image(EXAMPLE))).any()


def test_benchmark_remove_times_the_learned_backends_with_random_weights(tmp_path: Path) -> None:
    """Without their weights, both run with random weights of their real architecture: time and memory only."""
    from ovseg.benchmarks.remove import run_remove_benchmark

    dataset = Path(__file__).resolve().parents[2] / "shared" / "data" / "camvid-val"
    settings = settings_from_params({"preset": "cpu", "edit": {"lama_model": str(tmp_path / "none")}})
    report = run_remove_benchmark(settings, dataset, holes=1, variants=["migan", "fsr-fast"], log=lambda _: None)
    rows = {row["variant"]: row for row in report["variants"]}
    assert rows["migan"]["weights"].startswith("random") and rows["migan"]["psnr_db"] is None
    assert rows["migan"]["ms_per_photo"] > 0 and rows["migan"]["peak_rss_mb"] > 0
    assert rows["fsr-fast"]["psnr_db"] > 10
    json.dumps(report)
