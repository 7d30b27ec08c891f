"""Edit stage: crop/paste geometry, the tiny SD 2 inpainting pipeline, and stage behaviour."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from conftest import Layout, load_run, stages, synthetic_photo, with_request, with_settings
from PIL import Image

from ovseg.config import settings_from_params
from ovseg.editing import dilate, edit_image, request_for
from ovseg.editing.diffusion import SCHEDULERS, diffusion_painter, load_inpaint_pipeline, set_scheduler
from ovseg.editing.geometry import crop_box, cut, feather
from ovseg.errors import OvsegError
from ovseg.storage.locations import read_json


def _edit_settings(**changes):
    return dataclasses.replace(settings_from_params({"preset": "tiny"}).edit, **changes)


def _solid_painter(colour=(0, 255, 0)):
    """A deterministic stand-in for the diffusion model, to test geometry alone."""

    def paint(image: Image.Image, mask: Image.Image) -> Image.Image:
        return Image.new("RGB", image.size, colour)

    return paint


def test_dilate_and_feather() -> None:
    mask = np.zeros((21, 21), bool)
    mask[10, 10] = True
    grown = dilate(mask, 3)
    assert grown.sum() == 29  # lattice points within a disc of radius 3
    alpha = feather(grown, 2)
    assert alpha[~grown].max() == 0.0 and alpha[10, 10] == 1.0
    assert 0 < alpha[grown].min() < 1


@pytest.mark.parametrize(
    ("size", "box"), [((101, 77), (40, 30, 10, 9)), ((64, 300), (0, 0, 5, 300)), ((33, 31), (30, 28, 3, 3))]
)
def test_crop_box_contains_the_mask_box(size, box) -> None:
    crop = crop_box(box, size, context=0.5, min_side=16)
    x, y, w, h = box
    assert crop.x0 <= x and crop.y0 <= y
    assert crop.x0 + crop.side >= x + w and crop.y0 + crop.side >= y + h
    if crop.side <= min(size):
        assert crop.x0 >= 0 and crop.y0 >= 0 and crop.x0 + crop.side <= size[0] and crop.y0 + crop.side <= size[1]
    window = cut(np.zeros((size[1], size[0], 3), np.uint8), crop)
    assert window.shape == (crop.side, crop.side, 3)


@pytest.mark.parametrize(
    ("width", "height", "region"),
    [
        (123, 77, (slice(20, 40), slice(30, 70))),  # odd sizes, mask inside
        (97, 61, (slice(0, 15), slice(80, 97))),  # mask touching top and right borders
        (50, 200, (slice(150, 200), slice(0, 50))),  # tall image, mask along the bottom
    ],
)
def test_edit_changes_only_the_dilated_mask(width, height, region) -> None:
    image = synthetic_photo(width, height)
    mask = np.zeros((height, width), bool)
    mask[region] = True
    settings = _edit_settings(resolution=64, dilate_px=3, feather_px=2)
    edited = edit_image(image, mask, settings, _solid_painter())
    assert edited.size == image.size
    before, after = np.asarray(image), np.asarray(edited)
    outside = ~dilate(mask, 3)
    np.testing.assert_array_equal(after[outside], before[outside])
    assert np.abs(after[mask].astype(int) - (0, 255, 0)).max() <= 2  # fully repainted inside


def test_empty_mask_returns_an_unchanged_copy() -> None:
    image = synthetic_photo(40, 30)
    edited = edit_image(image, np.zeros((30, 40), bool), _edit_settings(), _solid_painter())
    np.testing.assert_array_equal(np.asarray(edited), np.asarray(image))
    with pytest.raises(OvsegError, match="does not match"):
        edit_image(image, np.zeros((10, 10), bool), _edit_settings(), _solid_painter())


def test_tiny_sd_pipeline_is_deterministic_and_local(tiny_checkpoints) -> None:
    pipe = load_inpaint_pipeline("tiny-random-sd", "cpu")
    settings = _edit_settings(resolution=64, steps=2, seed=3)
    request = request_for("replace", "a green ball", settings)
    image = synthetic_photo(90, 70)
    mask = np.zeros((70, 90), bool)
    mask[20:50, 10:40] = True
    first = np.asarray(edit_image(image, mask, settings, diffusion_painter(pipe, request, settings)))
    second = np.asarray(edit_image(image, mask, settings, diffusion_painter(pipe, request, settings)))
    np.testing.assert_array_equal(first, second)
    outside = ~dilate(mask, settings.dilate_px)
    np.testing.assert_array_equal(first[outside], np.asarray(image)[outside])
    assert not np.array_equal(first[mask], np.asarray(image)[mask])
    more_steps = dataclasses.replace(settings, steps=6)  # PNDM's warm-up needs a few steps
    for name in SCHEDULERS:  # every scheduler params.yaml may name swaps in and runs
        set_scheduler(pipe, name)
        assert type(pipe.scheduler).__name__ == SCHEDULERS[name]
        edit_image(image, mask, more_steps, diffusion_painter(pipe, request, more_steps))


def test_modes_pick_prompts_and_strength() -> None:
    edit = settings_from_params({"preset": "tiny"}).edit
    remove = request_for("remove", "", edit)
    assert remove.prompt == edit.remove_prompt and "object" in remove.negative_prompt
    style = request_for("style", "like Monet", edit)
    assert style.prompt == "like Monet" and style.strength == edit.style_strength < 1
    with pytest.raises(OvsegError, match="needs an edit prompt"):
        request_for("replace", "", edit)


def test_edit_stage_outputs_and_caching(workspace: Path) -> None:
    run = load_run(mode="replace", edit_prompt="a dog")
    paths = Layout()
    report = stages(run, "masks", "embed", "score", "select", "edit")[-1]
    assert sorted(report.computed) == ["chelsea", "shapes"]
    out = paths.edit / "chelsea"
    assert Image.open(out / "edited.png").size == (451, 300)
    assert Image.open(out / "before_after.png").width > 2 * 451
    record = read_json(out / "edit.json")
    assert record["mode"] == "replace" and record["edit_prompt"] == "a dog"
    assert stages(run, "edit")[0].reused == ["chelsea", "shapes"]
    assert sorted(stages(with_request(run, edit_prompt="a fox"), "edit")[0].computed) == ["chelsea", "shapes"]
    stages(with_request(run, mode="segment"), "edit")
    assert not out.exists()  # segment mode leaves no stale edits behind


def test_no_selected_mask_copies_the_image_with_a_note(workspace: Path) -> None:
    run = with_settings(load_run(mode="remove"), "select", threshold=2.0)
    paths = Layout()
    report = stages(run, "masks", "embed", "score", "select", "edit")[-1]
    assert sorted(report.computed) == ["chelsea", "shapes"]
    record = read_json(paths.edit / "chelsea" / "edit.json")
    assert "no mask selected" in record["note"]
    original = np.asarray(Image.open(workspace / "data" / "images" / "chelsea.png").convert("RGB"))
    np.testing.assert_array_equal(np.asarray(Image.open(paths.edit / "chelsea" / "edited.png")), original)
