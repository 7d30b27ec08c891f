"""The weights registry and download bookkeeping, without network: a fake hub folder stands in."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_ovseg_in_process

from ovseg.config import settings_from_params
from ovseg.errors import OvsegError, WeightsMissingError
from ovseg.storage.locations import read_json
from ovseg.weights.downloads import download, record_download, verify
from ovseg.weights.registry import DOWNLOAD_RECORD, INPAINT, REGISTRY, REMOVED_REPOS, resolve_model_dir


def test_no_registry_entry_points_at_a_removed_repository() -> None:
    assert not [spec.name for spec in REGISTRY.values() if spec.repo_id in REMOVED_REPOS]
    assert REGISTRY["sd2-inpainting"].repo_id == "sd2-community/stable-diffusion-2-inpainting"
    for preset in ("cpu", "fast", "balanced", "quality"):
        assert settings_from_params({"preset": preset}).edit.model == "sd2-inpainting"
    with pytest.raises(OvsegError, match="deleted in Nov 2025"):
        download("stabilityai/stable-diffusion-2-inpainting")


def _fake_hub_folder(folder: Path) -> Path:
    """What snapshot_download leaves for a diffusers inpainting repo (small files, real layout)."""
    (folder / "unet").mkdir(parents=True)
    (folder / "model_index.json").write_text('{"_class_name": "StableDiffusionInpaintPipeline"}')
    (folder / "unet" / "config.json").write_text('{"in_channels": 9}')
    (folder / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"\x08" + b"\0" * 7 + b"{}" + b" " * 6)
    (folder / ".cache").mkdir()
    (folder / ".cache" / "ignored").write_text("hub bookkeeping")
    return folder


def test_download_record_and_verify_catch_a_changed_byte(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OVSEG_CHECKPOINTS", str(tmp_path / "ck"))
    folder = _fake_hub_folder(tmp_path / "ck" / "some-org" / "inpaint-model")
    record = record_download(folder, "hf:some-org/inpaint-model", "0123abc")
    assert record["revision"] == "0123abc" and set(record["files"]) == {
        "model_index.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
    }
    assert read_json(folder / DOWNLOAD_RECORD)["bytes"] == sum(f["size"] for f in record["files"].values())
    # `edit.model: ORG/REPO` finds the download; a missing one names the command to run.
    assert resolve_model_dir("some-org/inpaint-model", INPAINT) == folder
    with pytest.raises(WeightsMissingError, match="ovseg weights download other-org/model"):
        resolve_model_dir("other-org/model", INPAINT)
    assert not [p for p in verify("some-org/inpaint-model") if "safetensors" not in p]
    config = folder / "unet" / "config.json"
    config.write_text(config.read_text().replace("9", "4"))
    problems = verify("some-org/inpaint-model")
    assert any("unet/config.json does not match its pinned sha256" in p for p in problems), problems


def test_weights_verify_command_names_the_changed_file(tmp_path: Path) -> None:
    folder = _fake_hub_folder(tmp_path / "ck" / "some-org" / "inpaint-model")
    record_download(folder, "hf:some-org/inpaint-model", "0123abc")
    (folder / "model_index.json").write_text("{}")
    result = run_ovseg_in_process(
        "weights", "verify", "some-org/inpaint-model", cwd=tmp_path, env={"OVSEG_CHECKPOINTS": str(tmp_path / "ck")}
    )
    assert result.returncode == 1 and "model_index.json does not match" in " ".join(result.stdout.split())
