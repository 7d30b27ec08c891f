"""Integration test with real pretrained weights, when a copy is on disk (skipped otherwise).

Looks in $OVSEG_CHECKPOINTS / checkpoints/ and ../shared/weights/ for the `fast` preset's
models (SAM 2.1 Hiera-T, CLIP ViT-B/32, SD 2 inpainting); `ovseg weights download --preset
fast` puts them there.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import EXAMPLE, REPO, Layout, stages
from PIL import Image

from ovseg.config import settings_from_params
from ovseg.errors import OvsegError
from ovseg.pipeline import new_run
from ovseg.request import RunRequest
from ovseg.weights.registry import CLIP, INPAINT, SAM2, resolve_model_dir

pytestmark = [pytest.mark.realweights, pytest.mark.slow]


def _real_weights_or_skip() -> None:
    try:
        settings = settings_from_params({"preset": "fast"})
        for name, kind in ((settings.masks.model, SAM2), (settings.embed.model, CLIP), (settings.edit.model, INPAINT)):
            resolve_model_dir(name, kind)
    except OvsegError as exc:
        pytest.skip(f"real weights not available: {exc}")


def test_fast_preset_finds_the_cat_and_removes_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    monkeypatch.delenv("OVSEG_CHECKPOINTS", raising=False)  # the real folders, not the tiny test models
    _real_weights_or_skip()
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(EXAMPLE, images / "chelsea.png")
    settings = settings_from_params({"preset": "fast", "edit": {"steps": 10}})
    request = RunRequest(images=str(images), prompt="the cat's face", mode="remove")
    paths = Layout(cache=tmp_path / "cache", output=tmp_path / "output")
    run = new_run(settings, request, cache=str(paths.cache), output=str(paths.output))
    stages(run, "masks")
    assert len(list(paths.masks.glob("*.zarr"))) == 1
    stages(run, "embed", "score", "select")
    mask = np.asarray(Image.open(paths.segment / "chelsea" / "mask.png")) > 0
    # The photo is a close-up of a cat: the nose (about x=260, y=245) must be selected.
    assert mask[235:255, 250:270].mean() > 0.5
    stages(run, "edit")
    edited = np.asarray(Image.open(paths.edit / "chelsea" / "edited.png"))
    assert edited.shape == np.asarray(Image.open(EXAMPLE).convert("RGB")).shape
