from __future__ import annotations

import pytest
import yaml
from conftest import REPO

from ovseg.config import deep_merge, load_params, preset_names, settings_from_params
from ovseg.dag.params_text import update_params_text
from ovseg.errors import OvsegError


def test_presets_resolve_and_differ() -> None:
    assert {"fast", "balanced", "quality", "tiny"} <= set(preset_names())
    fast = settings_from_params({"preset": "fast"})
    quality = settings_from_params({"preset": "quality"})
    assert fast.masks.model == "sam2.1-hiera-tiny" and quality.masks.model == "sam2.1-hiera-large"
    assert fast.masks.points_per_side < quality.masks.points_per_side
    assert len(quality.embed.crop_scales) > 1 and quality.embed.strategy == "ensemble"


def test_overrides_win_over_preset_and_ints_become_floats() -> None:
    settings = settings_from_params({"preset": "balanced", "select": {"top_k": 1, "threshold": 0}})
    assert settings.select.top_k == 1
    assert isinstance(settings.select.threshold, float)
    assert settings.masks.model == "sam2.1-hiera-small"  # untouched sections keep the preset


def test_deep_merge_keeps_base_for_none() -> None:
    assert deep_merge({"a": {"b": 1, "c": 2}}, {"a": {"b": None, "c": 3}}) == {"a": {"b": 1, "c": 3}}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"preset": "nope"}, "unknown preset"),
        ({"mode": "erase"}, "mode must be one of"),
        ({"masks": {"points_per_sid": 4}}, "unknown parameter masks.points_per_sid"),
        ({"select": {"top_k": "three"}}, "select.top_k must be an integer"),
        ({"select": {"top_k": 0}}, "top_k must be at least 1"),
        ({"embed": {"strategy": "magic"}}, "embed.strategy"),
        ({"edit": {"resolution": 500}}, "multiple of 8"),
        ({"score": ["x"]}, "must be a mapping"),
        ({"edit": {"backend": "diffusion", "scheduler": "lms"}}, "edit.scheduler must be one of"),
        ({"edit": {"backend": "diffusion", "offload": "disk"}}, "edit.offload must be one of"),
        ({"edit": {"backend": "photoshop"}}, "edit.backend must be one of auto, diffusion, lama"),
        ({"edit": {"remove_with": ["photoshop"]}}, "edit.remove_with must list"),
        ({"edit": {"learned_max_side": 10}}, "edit.learned_max_side must be >= 64"),
        ({"masks": {"generator": "sam3"}}, "masks.generator must be one of ovseg, sam2-amg, got 'sam3'"),
    ],
)
def test_bad_params_give_clear_errors(params: dict, message: str) -> None:
    """Model settings, the request, and what the edit backend accepts: each wrong one is one line, before any work."""
    from ovseg.pipeline import new_run
    from ovseg.request import request_from_params

    values = {"prompt": "x", "mode": "remove", **params}
    with pytest.raises(OvsegError, match=message):
        new_run(settings_from_params(values), request_from_params(values))


def test_load_params_rejects_broken_yaml(tmp_path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("prompt: [unclosed\n")
    with pytest.raises(OvsegError, match="cannot parse"):
        load_params(path)
    with pytest.raises(OvsegError, match="not found"):
        load_params(tmp_path / "missing.yaml")


def test_update_params_text_keeps_comments(tmp_path) -> None:
    text = (REPO / "params.yaml").read_text()
    changes = {
        "prompt": "the red car: left",
        "select.top_k": 2,
        "mode": "remove",
        "score.negatives": ["sky"],
        "new_key": 1,
    }
    updated = update_params_text(text, changes)
    assert "# what to find, in plain language" in updated and updated.count("top_k:") == text.count("top_k:")
    loaded = yaml.safe_load(updated)
    assert loaded["prompt"] == "the red car: left" and loaded["mode"] == "remove" and loaded["new_key"] == 1
    assert loaded["select"]["top_k"] == 2 and loaded["select"]["threshold"] is None
    assert loaded["score"]["negatives"] == ["sky"]
    assert yaml.safe_load(update_params_text("select: {}\nedit: {}\n", {"select.top_k": 4}))["select"] == {"top_k": 4}


def test_a_wrong_engine_or_propagator_is_one_line_naming_what_exists() -> None:
    """Every choice among implementations is a Registry: the same one line, listing the names, for each kind."""
    from ovseg.engines import ENGINES
    from ovseg.request import RunRequest
    from ovseg.video import PROPAGATORS

    with pytest.raises(OvsegError, match="engine.kind must be one of local, ray, got 'spark'"):
        ENGINES.create("spark")
    assert PROPAGATORS.choices() == ["auto", "flow-sam", "sam2", "sam3", "edgetam"]
    from ovseg.pipeline import new_run

    settings = settings_from_params({"preset": "cpu", "video": {"propagator": "cotracker"}})
    with pytest.raises(
        OvsegError, match="video.propagator must be one of auto, flow-sam, sam2, sam3, edgetam, got 'cotracker'"
    ):
        new_run(settings, RunRequest(videos="clip.mp4", prompt="the dog"))


def test_every_knob_is_documented_once_in_code_and_presets_hold_values_only() -> None:
    """Each settings field carries its doc; presets.yaml has values only (a two-line header aside)."""
    import dataclasses
    from importlib import resources

    from ovseg.config import SECTION_TYPES

    undocumented = [
        f"{name}.{f.name}"
        for name, cls in SECTION_TYPES.items()
        for f in dataclasses.fields(cls)
        if not f.metadata.get("doc")
    ]
    assert not undocumented, undocumented
    lines = resources.files("ovseg").joinpath("presets.yaml").read_text().splitlines()
    assert [n for n, line in enumerate(lines) if "#" in line] == [0, 1]


def test_ovseg_settings_prints_each_knob_its_values_presets_and_doc(tmp_path) -> None:
    from conftest import run_ovseg_in_process

    result = run_ovseg_in_process("settings", "masks", "edit", cwd=tmp_path, env={"COLUMNS": "400"})
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if "│ sampling " in line)
    cells = [cell.strip() for cell in row.split("│")[1:-1]]
    assert cells[:3] == ["sampling", "grid | adaptive", "grid"]
    assert "adaptive" in cells[3:-1] and cells[-1].startswith("grid: points_per_side")  # the cpu preset's own value
    assert "auto | diffusion | lama | migan | opencv" in result.stdout  # a registry's names
    result = run_ovseg_in_process("settings", "mask", cwd=tmp_path)
    assert result.returncode == 2 and "unknown settings section 'mask'" in result.stderr
